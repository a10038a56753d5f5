"""Corpora bigger than one machine: sharded, resumable encoding over `torch.distributed` ranks, and reading it back.

    embedder = MgteEmbedder.from_pretrained("path/to/gte-multilingual-base")
    encode_to_shards(embedder, JsonlCorpus("corpus.jsonl", id_field="_id"), "shards/")  # every rank calls this
    load_shards(MilvusIndex(embedder, uri="index.db"), "shards/")  # searched in Milvus (`mgte_hf.milvus`)

Launch it once per process (`torchrun --nproc_per_node K -m mgte_hf encode-corpus ...` or `accelerate launch`):
the rank and world size come from `torch.distributed` when a process group is initialised, else 1 process.

The package is split by job: `corpus` (the scan and the chunks), `storage` (files on disk), `encode`
(`encode_to_shards`) and `reader` (`ShardReader`). The corpus readers themselves are `mgte_hf.corpus`; shards are
searched once loaded into a `mgte_hf.milvus.MilvusIndex` (`load_shards`, `mgte-hf index --shards`), or, for a
corpus that fits in memory, in a `HybridIndex` filled from `ShardReader.embeddings()`.
"""

from ..corpus import DatasetCorpus, JsonlCorpus, open_corpus
from .corpus import CorpusScan, exact_duplicates, scan_corpus
from .encode import DEFAULT_CHUNK_SIZE, ShardRun, encode_to_shards
from .reader import ShardChunk, ShardReader
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
    "ShardReader",
    "ShardRun",
    "csr_to_sparse",
    "encode_to_shards",
    "exact_duplicates",
    "open_corpus",
    "scan_corpus",
    "sparse_to_csr",
]
