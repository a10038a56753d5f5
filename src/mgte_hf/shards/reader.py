"""Reading finished shards: the chunks in corpus order, their arrays memory-mapped."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..hashing import file_problem, sha256_file
from ..inference.embedder import EmbeddingResult
from .storage import CHUNK_FILES, MANIFEST, SHARDS_FORMAT, SHARDS_VERSION, csr_to_sparse, read_json


@dataclass(frozen=True)
class ShardChunk:
    """One chunk on disk; arrays are memory-mapped (copy-on-write: pages are read when touched, never written).

    Each file is checked against the sha256 its chunk manifest records the first time it is read (a damaged file is
    a `ValueError` that names it).
    """

    path: Path
    index: int
    first_row: int
    count: int
    nnz: int
    files: dict = field(default_factory=dict, repr=False, compare=False)  # name -> {"sha256", "bytes"}
    _verified: set = field(default_factory=set, repr=False, compare=False)

    def verify(self, name: str) -> Path:
        """`path / name`, once checked against its recorded sha256 and size."""
        file = self.path / name
        if name not in self._verified:
            problem = file_problem(file, self.files.get(name, {}))
            if problem:
                raise ValueError(f"{problem}; the shards are damaged: run the encoding again to repair them.")
            self._verified.add(name)
        return file

    def ids(self) -> list[str]:
        return [json.loads(line) for line in self.verify("ids.jsonl").read_text(encoding="utf-8").splitlines()]

    def dense(self) -> np.ndarray:
        """`(count, dimension)` float32, memory-mapped."""
        return np.load(self.verify("dense.npy"), mmap_mode="c")

    def sparse_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(indptr, indices, values)`, memory-mapped."""
        return tuple(np.load(self.verify(f"sparse_{part}.npy"), mmap_mode="c")
                     for part in ("indptr", "indices", "values"))

    def sparse(self) -> list[dict[int, float]]:
        """One `{token_id: weight}` per document."""
        return csr_to_sparse(*self.sparse_csr())


class ShardReader:
    """The shards written by `encode_to_shards`, in corpus order.

    Args:
        folder: the shard folder (its top-level manifest must exist: the run finished).
        verify: check every file's sha256 now (reads everything once); otherwise each file is checked the first
            time it is read.
    """

    def __init__(self, folder: str | os.PathLike, *, verify: bool = False):
        self.folder = Path(folder)
        top = self.folder / MANIFEST
        if not top.is_file():
            raise FileNotFoundError(f"No finished shards in {self.folder} ({MANIFEST} is missing); run "
                                    "encode_to_shards / `mgte-hf encode-corpus` (again) to finish them.")
        manifest = read_json(top)
        if not isinstance(manifest, dict) or manifest.get("format") != SHARDS_FORMAT:
            raise ValueError(f"{top} is damaged or not an {SHARDS_FORMAT} manifest; run the encoding again to "
                             "write it.")
        if manifest.get("version") != SHARDS_VERSION:
            raise ValueError(f"{self.folder} holds version {manifest.get('version')} shards; this mgte-hf reads "
                             f"version {SHARDS_VERSION}.")
        self.manifest = manifest
        self.chunks = []
        for i, entry in enumerate(manifest["chunks"]):
            path = self.folder / entry["name"] / MANIFEST
            if not path.is_file() or sha256_file(path) != entry["manifest_sha256"]:
                raise ValueError(f"{path} does not match the sha256 in {top}; encode again.")
            files = read_json(path)["files"]
            self.chunks.append(ShardChunk(path.parent, i, entry["first_row"], entry["count"], entry["nnz"], files))
        if verify:
            for chunk in self.chunks:
                for name in CHUNK_FILES:
                    chunk.verify(name)

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
