"""Search across the shards of `encode_to_shards`: each chunk's top k merged into one top k."""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass

import torch

from .. import scoring
from ..hashing import check_model_identity
from ..index import QUERY_CHUNK, Postings, SearchableIndex
from ..inference.embedder import EmbeddingResult, MgteEmbedder
from ..ranking import top_k_columns
from .reader import ShardReader


@dataclass(frozen=True)
class ShardHit:
    """One retrieved document: its id, score and row (position in the corpus)."""

    id: str
    score: float
    index: int


class ShardedIndex(SearchableIndex[ShardHit]):
    """Dense, sparse or hybrid search across the shards of `encode_to_shards`, merged into one top-k.

    Results equal those of a `HybridIndex` holding the whole corpus: the same `mgte_hf.scoring` scores (sparse
    bit for bit, dense up to BLAS rounding) and order; ties rank the earlier document first, across chunks too.
    Dense matrices stay memory-mapped; the sparse postings of a chunk are built in memory on its first sparse or
    hybrid search (12 bytes per stored weight, about twice that while building). Shards hold no texts: `search`
    takes no reranker.

    Args:
        folder: the shard folder.
        embedder: encodes query texts; it must be the model that wrote the shards (checked by sha256).
        verify: check every file's sha256 on opening (otherwise each is checked when first read).
        allow_other_model: query with another embedder anyway, with a warning.
    """

    holds_texts = False

    def __init__(self, folder: str | os.PathLike, embedder: MgteEmbedder | None = None, *, verify: bool = False,
                 allow_other_model: bool = False):
        self.reader = ShardReader(folder, verify=verify)
        if embedder is not None:
            check_model_identity(self.reader.manifest["run"]["model"], embedder.model, embedder.tokenizer,
                                 artifact=f"The shard folder {self.reader.folder}",
                                 allow_other_model=allow_other_model)
        self.embedder = embedder
        self._postings: dict[int, Postings] = {}
        self._ids: dict[int, list[str]] = {}
        self._first_rows = [chunk.first_row for chunk in self.reader.chunks]

    @property
    def dimension(self) -> int:
        return self.reader.dimension

    def __len__(self) -> int:
        return len(self.reader)

    def _first_stage(self, embeddings: EmbeddingResult, mode: str, k: int, dense_weight: float,
                     sparse_weight: float) -> list[list[ShardHit]]:
        hits = []
        for start in range(0, len(embeddings), QUERY_CHUNK):
            part = slice(start, start + QUERY_CHUNK)
            dense = None if mode == "sparse" else torch.as_tensor(embeddings.dense[part]).float()
            sparse = None if mode == "dense" else embeddings.sparse[part]
            scores, rows = self._top_k(dense, sparse, mode, k, dense_weight, sparse_weight)  # (q, k) each
            order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # ties: lower row first
            hits += [[self._hit(row, score) for row, score in zip(r, s)]
                     for r, s in zip(rows.gather(1, order).tolist(), scores.gather(1, order).tolist())]
        return hits

    def _top_k(self, dense: torch.Tensor | None, sparse: list[dict[int, float]] | None, mode: str, k: int,
               dense_weight: float, sparse_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Merge each chunk's top-k into a running top-k; candidates stay in ascending row order."""
        q = len(dense) if dense is not None else len(sparse)
        best_scores, best_rows = torch.zeros((q, 0)), torch.zeros((q, 0), dtype=torch.long)
        for index, chunk in enumerate(self.reader.chunks):
            scores = None if dense is None else scoring.dense_scores(dense, torch.from_numpy(chunk.dense()))
            if sparse is not None:
                postings = self._chunk_postings(index)
                lexical = torch.stack([postings.scores(query, chunk.count) for query in sparse])  # (q, count)
                scores = lexical if scores is None else scoring.hybrid_scores(scores, lexical, dense_weight,
                                                                              sparse_weight)
            cols = top_k_columns(scores, min(k, chunk.count))
            candidates = torch.cat([best_scores, scores.gather(1, cols)], dim=1)
            rows = torch.cat([best_rows, cols + chunk.first_row], dim=1)
            keep = top_k_columns(candidates, min(k, candidates.shape[1]))
            best_scores, best_rows = candidates.gather(1, keep), rows.gather(1, keep)
        return best_scores, best_rows

    def _chunk_postings(self, index: int) -> Postings:
        if index not in self._postings:
            indptr, indices, values = (torch.from_numpy(a) for a in self.reader.chunks[index].sparse_csr())
            rows = torch.repeat_interleave(torch.arange(len(indptr) - 1), indptr.diff())
            self._postings[index] = Postings.build(rows, indices.long(), values)
        return self._postings[index]

    def _hit(self, row: int, score: float) -> ShardHit:
        index = bisect.bisect_right(self._first_rows, row) - 1
        if index not in self._ids:
            self._ids[index] = self.reader.chunks[index].ids()
        return ShardHit(self._ids[index][row - self._first_rows[index]], score, row)


__all__ = ["ShardHit", "ShardedIndex"]
