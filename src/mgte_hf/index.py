"""A small in-memory hybrid index: a dense matrix plus a sparse inverted index, searched dense, sparse or hybrid.

    index = HybridIndex(embedder)
    index.add(["Berlin is the capital of Germany.", "Paris is in France."], ids=["d1", "d2"])
    index.search("capital of Germany", top_k=1)             # [SearchHit(id='d1', score=..., index=0, document=...)]
    index.search(queries, mode="sparse", reranker=reranker)  # one hit list per query, reranked
    index.save("my-index"); HybridIndex.load("my-index", embedder)

Scores are those of `mgte_hf.scoring`: dense = dot product of the L2-normalised vectors, sparse = Σ over shared
tokens of w_q·w_d (computed from term postings instead of a dense vocabulary matrix, so it scales with the corpus),
hybrid = `scoring.hybrid_scores` (dense 1.0 / sparse 0.1 by default). A document that shares no token with the
query has sparse score 0. Ties rank the earlier-added document first.

On disk (never pickle): `index.safetensors` (the dense matrix and the postings), `index.json` (format, sizes, model
facts) and `documents.jsonl` (one `{"id": ..., "text": ...}` per document, in index order).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import torch
from safetensors.torch import load_file, save_file

from . import scoring
from .inference.common import check_choice, check_positive_int, check_texts
from .inference.embedder import EmbeddingResult, MgteEmbedder, corpus_texts
from .inference.reranker import MgteReranker


logger = logging.getLogger(__name__)

INDEX_FORMAT = "mgte-hf-hybrid-index"
INDEX_VERSION = 1
SEARCH_MODES = ("dense", "sparse", "hybrid")
QUERY_CHUNK = 256  # queries scored at once: bounds the (queries, documents) score matrix in memory


@dataclass(frozen=True)
class SearchHit:
    """One retrieved document: its id, score, row in the index and text."""

    id: str
    score: float
    index: int
    document: str


@dataclass
class Postings:
    """The sparse part in inverted (term-major, CSC) form: documents and weights of each term, sorted by term."""

    term_ids: torch.Tensor  # (U,) int64, sorted
    offsets: torch.Tensor  # (U + 1,) int64: postings of term_ids[j] are [offsets[j], offsets[j + 1])
    doc_rows: torch.Tensor  # (nnz,) int64
    weights: torch.Tensor  # (nnz,) float32

    @classmethod
    def build(cls, rows: torch.Tensor, terms: torch.Tensor, weights: torch.Tensor) -> Postings:
        """From COO triples `(doc_row, term_id, weight)`; a stable sort keeps each term's documents in row order."""
        order = torch.sort(terms, stable=True).indices
        terms, rows, weights = terms[order], rows[order], weights[order]
        term_ids, counts = torch.unique_consecutive(terms, return_counts=True)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        return cls(term_ids, offsets, rows, weights)

    def scores(self, query: Mapping[int, float], size: int) -> torch.Tensor:
        """`(size,)` Σ over the query's terms of w_q · w_d (0 for documents that share no term)."""
        out = torch.zeros(size, dtype=torch.float32)
        if not query or self.term_ids.numel() == 0:
            return out
        terms = torch.tensor(list(query), dtype=torch.long)
        pos = torch.searchsorted(self.term_ids, terms).clamp(max=self.term_ids.numel() - 1)
        for j, found, w in zip(pos.tolist(), (self.term_ids[pos] == terms).tolist(), query.values(), strict=True):
            if found:
                start, end = int(self.offsets[j]), int(self.offsets[j + 1])
                out.index_add_(0, self.doc_rows[start:end], self.weights[start:end] * w)
        return out


class HybridIndex:
    """Dense matrix + sparse inverted index over documents encoded by an `MgteEmbedder`.

    Args:
        embedder: encodes documents on `add` and queries on `search`; optional when embeddings are passed in.
        dimension: dense size (Matryoshka); default the embedder's `dimension`, or the width of the first
            embeddings added.
    """

    def __init__(self, embedder: MgteEmbedder | None = None, *, dimension: int | None = None):
        self.embedder = embedder
        if embedder is not None:
            dimension = embedder.model.check_dimension(embedder.dimension if dimension is None else dimension)
        elif dimension is not None:
            check_positive_int(dimension, "dimension")
        self.dimension = dimension
        self.ids: list[str] = []
        self.documents: list[str] = []
        self._id_set: set[str] = set()
        self._dense_parts: list[torch.Tensor] = []  # (n_i, dimension) float32 each
        self._coo_parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (rows, terms, weights)
        self._compiled: tuple[torch.Tensor, Postings] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    # ------------------------------------------------------------------------------------------------ adding
    def add(
        self,
        documents: Iterable[str | Mapping[str, str]],
        ids: Iterable[str] | None = None,
        *,
        embeddings: EmbeddingResult | None = None,
        **encode_kwargs,
    ) -> None:
        """Add documents; they are encoded with the embedder unless `embeddings` (dense and sparse) are given.

        Args:
            documents: the texts, or `{"title", "text"}` records (joined as `encode_corpus` does); the texts are
                kept for reranking and for the hits.
            ids: one unique string id per document; default the running row number.
            embeddings: precomputed `EmbeddingResult` of `documents` (same order), with dense and sparse parts.
            **encode_kwargs: passed to `embedder.encode_corpus` (`batch_tokens`, `show_progress_bar`, ...).
        """
        documents = corpus_texts(documents)
        ids = [str(len(self) + i) for i in range(len(documents))] if ids is None else check_texts(ids, "ids")
        if len(ids) != len(documents):
            raise ValueError(f"Got {len(ids)} ids for {len(documents)} documents; pass one id per document.")
        clashes = [i for i in ids if i in self._id_set] + _duplicates(ids)
        if clashes:
            raise ValueError(f"Document ids must be unique; {len(clashes)} repeat, e.g. {clashes[0]!r}.")
        if embeddings is None:
            embeddings = self._embedder("add documents").encode_corpus(documents, dimension=self.dimension,
                                                                       convert_to="torch", **encode_kwargs)
        dense = self._check_embeddings(embeddings, len(documents), "documents")
        if not documents:
            return
        self.dimension = dense.shape[1]
        start = len(self)
        self._dense_parts.append(dense)
        self._coo_parts.append(_coo(embeddings.sparse, start))
        self.ids.extend(ids)
        self.documents.extend(documents)
        self._id_set.update(ids)
        self._compiled = None

    # ------------------------------------------------------------------------------------------------ search
    @overload
    def search(self, queries: str, **kwargs) -> list[SearchHit]: ...

    @overload
    def search(self, queries: Iterable[str], **kwargs) -> list[list[SearchHit]]: ...

    def search(
        self,
        queries: str | Iterable[str],
        *,
        top_k: int = 10,
        mode: str = "hybrid",
        dense_weight: float = scoring.DEFAULT_DENSE_WEIGHT,
        sparse_weight: float = scoring.DEFAULT_SPARSE_WEIGHT,
        reranker: MgteReranker | None = None,
        rerank_top_k: int | None = None,
        query_embeddings: EmbeddingResult | None = None,
        **encode_kwargs,
    ) -> list[SearchHit] | list[list[SearchHit]]:
        """The best documents for each query, best first.

        Args:
            queries: one query (→ one hit list) or a list of queries (→ one hit list per query).
            top_k: hits per query (at most the index size).
            mode: `"dense"`, `"sparse"` or `"hybrid"`.
            dense_weight, sparse_weight: hybrid weights (`scoring.hybrid_scores`).
            reranker: re-score the first-stage candidates with this cross-encoder; hit scores are then its logits
                (interpolated with the first-stage scores when its `first_stage_weight` > 0).
            rerank_top_k: how many first-stage candidates the reranker sees (>= top_k); default `top_k`.
            query_embeddings: precomputed `EmbeddingResult` of the queries (skips the embedder).
            **encode_kwargs: passed to `embedder.encode_queries`.
        """
        single = isinstance(queries, str)
        queries = check_texts(queries, "queries")
        check_choice(mode, SEARCH_MODES, "mode")
        check_positive_int(top_k, "top_k")
        if rerank_top_k is not None and reranker is None:
            raise ValueError("rerank_top_k has no effect without a reranker; pass reranker= as well.")
        first_k = top_k if rerank_top_k is None else check_positive_int(rerank_top_k, "rerank_top_k")
        if first_k < top_k:
            raise ValueError(f"rerank_top_k ({first_k}) must be at least top_k ({top_k}).")
        if query_embeddings is None:
            query_embeddings = self._embedder("search with query texts").encode_queries(
                queries, dimension=self.dimension, dense=mode != "sparse", sparse=mode != "dense",
                convert_to="torch", **encode_kwargs)
        self._check_query_embeddings(query_embeddings, len(queries), mode)
        hits = self._first_stage(query_embeddings, mode, min(first_k, len(self)), dense_weight, sparse_weight)
        if reranker is not None:
            hits = self._rerank(reranker, queries, hits, top_k)
        return hits[0] if single else hits

    def _first_stage(self, embeddings: EmbeddingResult, mode: str, k: int, dense_weight: float,
                     sparse_weight: float) -> list[list[SearchHit]]:
        if not len(self):
            return [[] for _ in range(len(embeddings))]
        dense_matrix, postings = self._compile()
        hits = []
        for start in range(0, len(embeddings), QUERY_CHUNK):
            stop = start + QUERY_CHUNK
            dense = sparse = None
            if mode != "sparse":
                dense = scoring.dense_scores(torch.as_tensor(embeddings.dense[start:stop]).float(), dense_matrix)
            if mode != "dense":
                sparse = torch.stack([postings.scores(q, len(self)) for q in embeddings.sparse[start:stop]])
            scores = dense if sparse is None else sparse if dense is None else scoring.hybrid_scores(
                dense, sparse, dense_weight, sparse_weight)  # (chunk, N)
            hits.extend(self._top_k(row, k) for row in scores)
        return hits

    def _top_k(self, scores: torch.Tensor, k: int) -> list[SearchHit]:
        """Best `k` of `(N,)` scores; ties (also at the cut) keep the lower row first."""
        threshold = torch.topk(scores, k).values[-1]
        above = (scores > threshold).nonzero().flatten()  # ascending rows
        rows = torch.cat([above, (scores == threshold).nonzero().flatten()[: k - len(above)]]).tolist()
        return [self._hit(row, float(scores[row])) for row in sorted(rows, key=lambda r: (-float(scores[r]), r))]

    def _hit(self, row: int, score: float) -> SearchHit:
        return SearchHit(self.ids[row], score, row, self.documents[row])

    def _rerank(self, reranker: MgteReranker, queries: list[str], hits: list[list[SearchHit]],
                top_k: int) -> list[list[SearchHit]]:
        pairs = [(q, hit.document) for q, row in zip(queries, hits, strict=True) for hit in row]
        scores = reranker.compute_score(pairs, convert_to="torch").tolist()
        out, start = [], 0
        for row in hits:
            row_scores = reranker.interpolate(scores[start:start + len(row)], [hit.score for hit in row]).tolist()
            rescored = [self._hit(hit.index, s) for hit, s in zip(row, row_scores, strict=True)]
            start += len(row)
            out.append(sorted(rescored, key=lambda h: (-h.score, h.index))[:top_k])
        return out

    def _compile(self) -> tuple[torch.Tensor, Postings]:
        """Concatenate what was added into the dense matrix `(N, D)` and the postings (cached until the next add)."""
        if self._compiled is None:
            dense = torch.cat(self._dense_parts)
            self._dense_parts = [dense]
            rows, terms, weights = (torch.cat(parts) for parts in zip(*self._coo_parts, strict=True))
            self._coo_parts = [(rows, terms, weights)]
            self._compiled = (dense, Postings.build(rows, terms, weights))
        return self._compiled

    # ------------------------------------------------------------------------------------------------ checks
    def _embedder(self, action: str) -> MgteEmbedder:
        if self.embedder is None:
            raise ValueError(f"This index has no embedder to {action}; pass embeddings, or build/load the index with "
                             "an MgteEmbedder.")
        return self.embedder

    def _check_embeddings(self, embeddings: EmbeddingResult, count: int, what: str) -> torch.Tensor:
        """The dense part as a float32 `(count, dimension)` tensor, after checking the result fits this index."""
        if not isinstance(embeddings, EmbeddingResult):
            raise TypeError(f"embeddings must be an EmbeddingResult, got {type(embeddings).__name__}.")
        if embeddings.dense is None or embeddings.sparse is None:
            raise ValueError(f"The embeddings of {what} need both dense and sparse parts (encode with dense=True, "
                             "sparse=True).")
        dense = torch.as_tensor(embeddings.dense, dtype=torch.float32).clone()  # never shares the caller's memory
        if dense.dim() != 2 or len(dense) != count or len(embeddings.sparse) != count:
            raise ValueError(f"Got embeddings of shape {tuple(dense.shape)} with {len(embeddings.sparse)} sparse rows "
                             f"for {count} {what}.")
        if self.dimension is not None and count and dense.shape[1] != self.dimension:
            raise ValueError(f"The embeddings have dimension {dense.shape[1]}; this index holds {self.dimension}.")
        return dense

    def _check_query_embeddings(self, embeddings: EmbeddingResult, count: int, mode: str) -> None:
        if not isinstance(embeddings, EmbeddingResult):
            raise TypeError(f"query_embeddings must be an EmbeddingResult, got {type(embeddings).__name__}.")
        if len(embeddings) != count:
            raise ValueError(f"Got {len(embeddings)} query embeddings for {count} queries.")
        if mode != "sparse":
            if embeddings.dense is None:
                raise ValueError(f"mode={mode!r} needs dense query embeddings.")
            if count and len(self) and embeddings.dense.shape[1] != self.dimension:
                raise ValueError(f"The query embeddings have dimension {embeddings.dense.shape[1]}; this index holds "
                                 f"{self.dimension}.")
        if mode != "dense" and embeddings.sparse is None:
            raise ValueError(f"mode={mode!r} needs sparse query embeddings.")

    # ------------------------------------------------------------------------------------------------ disk
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index into `folder` (created if needed): safetensors + JSON, no pickle. Returns the folder."""
        if self.dimension is None:
            raise ValueError("Nothing to save: the index is empty and has no dimension yet.")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if len(self):
            dense, postings = self._compile()
        else:
            dense = torch.zeros((0, self.dimension))
            postings = Postings.build(*(torch.zeros(0, dtype=t) for t in (torch.long, torch.long, torch.float32)))
        save_file({"dense": dense.contiguous(), "term_ids": postings.term_ids, "offsets": postings.offsets,
                   "doc_rows": postings.doc_rows, "weights": postings.weights}, str(folder / "index.safetensors"))
        with open(folder / "documents.jsonl", "w", encoding="utf-8") as f:
            for doc_id, text in zip(self.ids, self.documents, strict=True):
                f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        meta = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "size": len(self), "dimension": self.dimension,
                "model": _model_facts(self.embedder)}
        (folder / "index.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, embedder: MgteEmbedder | None = None) -> HybridIndex:
        """Read an index written by `save`; with an embedder, check that it is the kind of model that built it."""
        folder = Path(folder)
        meta_path = folder / "index.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"No index in {folder} (index.json is missing); build one with HybridIndex.save.")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != INDEX_FORMAT or meta.get("version") != INDEX_VERSION:
            raise ValueError(f"{meta_path} is not a version-{INDEX_VERSION} {INDEX_FORMAT} file.")
        _check_model_facts(meta.get("model"), embedder, folder)
        tensors = load_file(str(folder / "index.safetensors"))
        records = [json.loads(line) for line in (folder / "documents.jsonl").read_text(encoding="utf-8").splitlines()]
        dense, offsets = tensors["dense"], tensors["offsets"]
        if (len(records) != meta["size"] or tuple(dense.shape) != (meta["size"], meta["dimension"])
                or len(offsets) != len(tensors["term_ids"]) + 1 or int(offsets[-1]) != len(tensors["doc_rows"])):
            raise ValueError(f"The index in {folder} is inconsistent ({len(records)} documents, dense matrix "
                             f"{tuple(dense.shape)}, index.json says {meta['size']} x {meta['dimension']}, or "
                             "broken postings); rebuild it.")
        index = cls(embedder, dimension=meta["dimension"])
        index.ids = [r["id"] for r in records]
        index.documents = [r["text"] for r in records]
        index._id_set = set(index.ids)
        if records:
            postings = Postings(tensors["term_ids"], offsets, tensors["doc_rows"], tensors["weights"])
            terms = torch.repeat_interleave(postings.term_ids, postings.offsets.diff())
            index._dense_parts = [dense]
            index._coo_parts = [(postings.doc_rows, terms, postings.weights)]
            index._compiled = (dense, postings)
        return index


def _coo(sparse: Sequence[Mapping[int, float]], start: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`{token_id: weight}` rows → COO triples (doc row from `start`, term id, weight)."""
    rows = torch.tensor([start + r for r, row in enumerate(sparse) for _ in row], dtype=torch.long)
    terms = torch.tensor([t for row in sparse for t in row], dtype=torch.long)
    weights = torch.tensor([w for row in sparse for w in row.values()], dtype=torch.float32)
    return rows, terms, weights


def _duplicates(ids: list[str]) -> list[str]:
    return [doc_id for doc_id, count in Counter(ids).items() if count > 1]


def _model_facts(embedder: MgteEmbedder | None) -> dict | None:
    if embedder is None:
        return None
    config = embedder.model.config
    return {"name_or_path": config.name_or_path, "hidden_size": config.hidden_size, "vocab_size": config.vocab_size}


def _check_model_facts(facts: dict | None, embedder: MgteEmbedder | None, folder: Path) -> None:
    if facts is None or embedder is None:
        return
    config = embedder.model.config
    for key in ("hidden_size", "vocab_size"):
        if facts.get(key) != getattr(config, key):
            raise ValueError(f"The index in {folder} was built with a model of {key}={facts.get(key)} "
                             f"({facts.get('name_or_path')}); this embedder's model has {getattr(config, key)}. "
                             "Query it with the model that built it.")


__all__ = ["INDEX_FORMAT", "QUERY_CHUNK", "SEARCH_MODES", "HybridIndex", "Postings", "SearchHit"]
