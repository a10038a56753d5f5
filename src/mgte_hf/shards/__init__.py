"""Corpora bigger than one machine: sharded, resumable encoding over `torch.distributed` ranks, and shard search.

    embedder = MgteEmbedder.from_pretrained("path/to/gte-multilingual-base")
    encode_to_shards(embedder, JsonlCorpus("corpus.jsonl", id_field="_id"), "shards/")  # every rank calls this
    index = ShardedIndex("shards/", embedder)
    index.search("capital of Germany", top_k=10, mode="hybrid")  # [ShardHit(id=..., score=..., index=...)]

Launch it once per process (`torchrun --nproc_per_node K -m mgte_hf encode-corpus ...` or `accelerate launch`):
the rank and world size come from `torch.distributed` when a process group is initialised, else 1 process.

The package is split by job: `corpus` (the scan and the chunks), `storage` (files on disk), `encode`
(`encode_to_shards`), `reader` (`ShardReader`) and `search` (`ShardedIndex`). The corpus readers themselves are
`mgte_hf.corpus`.
"""

from ..corpus import DatasetCorpus, JsonlCorpus, open_corpus
from .corpus import CorpusScan, exact_duplicates, scan_corpus
from .encode import DEFAULT_CHUNK_SIZE, ShardRun, encode_to_shards
from .reader import ShardChunk, ShardReader
from .search import ShardedIndex, ShardHit
from .storage import CHUNK_FILES, MANIFEST, SHARDS_FORMAT, csr_to_sparse, sparse_to_csr


__all__ = [
    "CHUNK_FILES",
    "DEFAULT_CHUNK_SIZE",
    "MANIFEST",
    "SHARDS_FORMAT",
    "CorpusScan",
    "DatasetCorpus",
    "JsonlCorpus",
    "ShardChunk",
    "ShardHit",
    "ShardReader",
    "ShardRun",
    "ShardedIndex",
    "csr_to_sparse",
    "encode_to_shards",
    "exact_duplicates",
    "open_corpus",
    "scan_corpus",
    "sparse_to_csr",
]
