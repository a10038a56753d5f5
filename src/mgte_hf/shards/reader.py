"""Reading finished shards: the chunks in corpus order, their arrays memory-mapped."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..hashing import sha256_file
from ..inference.embedder import EmbeddingResult
from .storage import MANIFEST, SHARDS_FORMAT, SHARDS_VERSION, chunk_problem, csr_to_sparse, read_json


@dataclass(frozen=True)
class ShardChunk:
    """One chunk on disk; arrays are memory-mapped (copy-on-write: pages are read when touched, never written)."""

    path: Path
    index: int
    first_row: int
    count: int
    nnz: int

    def ids(self) -> list[str]:
        return [json.loads(line) for line in (self.path / "ids.jsonl").read_text(encoding="utf-8").splitlines()]

    def dense(self) -> np.ndarray:
        """`(count, dimension)` float32, memory-mapped."""
        return np.load(self.path / "dense.npy", mmap_mode="c")

    def sparse_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(indptr, indices, values)`, memory-mapped."""
        return tuple(np.load(self.path / f"sparse_{part}.npy", mmap_mode="c")
                     for part in ("indptr", "indices", "values"))

    def sparse(self) -> list[dict[int, float]]:
        """One `{token_id: weight}` per document."""
        return csr_to_sparse(*self.sparse_csr())


class ShardReader:
    """The shards written by `encode_to_shards`, in corpus order.

    Args:
        folder: the shard folder (its top-level manifest must exist: the run finished).
        verify: check every file's sha256 against the chunk manifests (reads everything once).
    """

    def __init__(self, folder: str | os.PathLike, *, verify: bool = False):
        self.folder = Path(folder)
        manifest = read_json(self.folder / MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("format") != SHARDS_FORMAT:
            raise FileNotFoundError(f"No finished shards in {self.folder} ({MANIFEST} is missing or not an "
                                    f"{SHARDS_FORMAT} manifest); run encode_to_shards / `mgte-hf encode-corpus` "
                                    "(again) to finish them.")
        if manifest.get("version") != SHARDS_VERSION:
            raise ValueError(f"{self.folder} holds version {manifest.get('version')} shards; this mgte-hf reads "
                             f"version {SHARDS_VERSION}.")
        self.manifest = manifest
        self.chunks = [ShardChunk(self.folder / c["name"], i, c["first_row"], c["count"], c["nnz"])
                       for i, c in enumerate(manifest["chunks"])]
        for entry, chunk in zip(manifest["chunks"], self.chunks, strict=True):
            path = chunk.path / MANIFEST
            if not path.is_file() or sha256_file(path) != entry["manifest_sha256"]:
                raise ValueError(f"{path} does not match the sha256 in {self.folder / MANIFEST}; encode again.")
            problem = chunk_problem(chunk.path, manifest["run"]) if verify else None
            if problem:
                raise ValueError(f"{chunk.path} is damaged ({problem}); run the encoding again to repair it.")

    @property
    def dimension(self) -> int:
        return self.manifest["dimension"]

    def __len__(self) -> int:
        return self.manifest["count"]

    def __iter__(self) -> Iterator[ShardChunk]:
        return iter(self.chunks)

    def embeddings(self) -> tuple[list[str], EmbeddingResult]:
        """All ids and one `EmbeddingResult` in memory (for corpora that fit, e.g. to fill a `HybridIndex`)."""
        ids = [i for chunk in self.chunks for i in chunk.ids()]
        dense = np.concatenate([chunk.dense() for chunk in self.chunks])
        return ids, EmbeddingResult(dense, [row for chunk in self.chunks for row in chunk.sparse()])


__all__ = ["ShardChunk", "ShardReader"]
