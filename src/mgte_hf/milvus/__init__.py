"""mGTE's hybrid index on Milvus: Milvus Lite inside the process by default, a Milvus server or cluster by URL.

    from mgte_hf.milvus import MilvusIndex, load_shards
    index = MilvusIndex(embedder, uri="index.db", collection="docs")   # or uri="http://host:19530"
    index.add(texts, ids=ids)
    index.search("capital of Germany", top_k=10, mode="hybrid")       # the SearchHits of HybridIndex
    load_shards(index, "shards/")                                     # encode-corpus shards, resumable

Split by job: `client` (opening a server or a Lite folder, with clear errors), `index` (`MilvusIndex`), `load`
(`load_shards`) and `functions` (`MgteEmbeddingFunction`, pymilvus' model-function interface). Needs the `milvus`
extra: `pip install "mgte-hf[milvus]"`.
"""

try:
    import pymilvus  # noqa: F401
except ImportError as err:  # pragma: no cover - the extra is installed everywhere the tests run
    raise ImportError('mgte_hf.milvus needs pymilvus and milvus-lite: pip install "mgte-hf[milvus]"') from err

from .client import connect, is_server
from .functions import MgteEmbeddingFunction, sparse_matrix
from .index import FORMAT, INDEX_TYPES, MAX_TOP_K, TEXT_MAX_BYTES, MilvusIndex
from .load import LoadRun, load_shards


__all__ = [
    "FORMAT",
    "INDEX_TYPES",
    "MAX_TOP_K",
    "TEXT_MAX_BYTES",
    "LoadRun",
    "MgteEmbeddingFunction",
    "MilvusIndex",
    "connect",
    "is_server",
    "load_shards",
    "sparse_matrix",
]
