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

On disk (never pickle): `index.safetensors` (the dense matrix and the postings), `documents.jsonl` (one
`{"id": ..., "text": ...}` per document, in index order) and `index.json` (format, sizes, the sha256 and size of
both files, and the identity of the model that built it: `mgte_hf.hashing.model_identity`). `load` refuses a
damaged or edited file by name, and a model other than the one that built the index (`allow_other_model=True`
warns instead). `save` never replaces a non-empty folder without `overwrite=True`.

Embeddings passed in (`add(embeddings=...)`, `search(query_embeddings=...)`) are checked: dense rows finite and
L2-normalised, sparse weights finite with integer token ids (strings of digits, as JSON holds them, are read as ids).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Generic, TypeVar, overload

import torch
from safetensors.torch import load_file, save_file

from . import scoring
from .hashing import check_model_identity, file_problem, file_record, model_identity
from .inference.common import check_choice, check_dimension, check_positive_int, check_texts
from .inference.embedder import EmbeddingResult, MgteEmbedder, corpus_texts
from .inference.reranker import MgteReranker, check_first_stage_weight
from .outputs import staged_folder, write_atomic
from .ranking import rerank_merge, top_k
from .scoring import check_unit_rows, sparse_rows


logger = logging.getLogger(__name__)

INDEX_FORMAT = "mgte-hf-hybrid-index"
INDEX_VERSION = 2  # 2: file checksums and the model identity
INDEX_META = "index.json"
INDEX_TENSORS = "index.safetensors"
INDEX_DOCUMENTS = "documents.jsonl"
TENSOR_DTYPES = {"dense": torch.float32, "term_ids": torch.long, "offsets": torch.long, "doc_rows": torch.long,
                 "weights": torch.float32}
SEARCH_MODES = ("dense", "sparse", "hybrid")
QUERY_CHUNK = 256  # queries scored at once: bounds the (queries, documents) score matrix in memory
Hit = TypeVar("Hit")  # the hit type of an index (`SearchHit` here)


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


class SearchableIndex(Generic[Hit]):
    """What the in-memory index and the Milvus one share: query checks and encoding, the top k, reranking.

    Subclasses set `embedder`, `dimension` and `__len__`, and implement `_first_stage`; `holds_texts` says whether
    their hits carry document texts (which reranking needs).
    """

    embedder: MgteEmbedder | None
    dimension: int | None
    holds_texts = True

    def __len__(self) -> int:
        raise NotImplementedError

    @overload
    def search(self, queries: str, **kwargs) -> list[Hit]: ...

    @overload
    def search(self, queries: Iterable[str], **kwargs) -> list[list[Hit]]: ...

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
    ) -> list[Hit] | list[list[Hit]]:
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
        if reranker is not None and not self.holds_texts:
            raise ValueError(f"{type(self).__name__} holds no document texts to rerank; look the hits up in the "
                             "corpus and call rerank_hits on them, or search a HybridIndex.")
        if rerank_top_k is not None and reranker is None:
            raise ValueError("rerank_top_k has no effect without a reranker; pass reranker= as well.")
        first_k = top_k if rerank_top_k is None else check_positive_int(rerank_top_k, "rerank_top_k")
        if first_k < top_k:
            raise ValueError(f"rerank_top_k ({first_k}) must be at least top_k ({top_k}).")
        if query_embeddings is None:
            query_embeddings = self._embedder("search with query texts").encode_queries(
                queries, dimension=self.dimension, dense=mode != "sparse", sparse=mode != "dense",
                convert_to="torch", **encode_kwargs)
        query_embeddings = self._check_query_embeddings(query_embeddings, len(queries), mode)
        hits = self._first_stage(query_embeddings, mode, min(first_k, len(self)), dense_weight, sparse_weight)
        if reranker is not None:
            hits = [row[:top_k] for row in rerank_hits(reranker, queries, hits)]
        return hits[0] if single else hits

    def _first_stage(self, embeddings: EmbeddingResult, mode: str, k: int, dense_weight: float,
                     sparse_weight: float) -> list[list[Hit]]:
        """The best `k` rows per query (`k` at most the index size), best first, ties by row."""
        raise NotImplementedError

    def _stored_ids(self, ids: list[str]) -> list[str]:
        """Those of `ids` that the index holds already."""
        raise NotImplementedError

    def _new_documents(self, documents: Iterable[str | Mapping[str, str]],
                       ids: Iterable[str] | None) -> tuple[list[str], list[str]]:
        """The texts of `documents` and one id each (default: the running row number), checked to be unique and new."""
        documents = corpus_texts(documents)
        ids = [str(len(self) + i) for i in range(len(documents))] if ids is None else check_texts(ids, "ids")
        if len(ids) != len(documents):
            raise ValueError(f"Got {len(ids)} ids for {len(documents)} documents; pass one id per document.")
        clashes = [doc_id for doc_id, count in Counter(ids).items() if count > 1] + self._stored_ids(ids)
        if clashes:
            raise ValueError(f"Document ids must be unique; {len(clashes)} repeat, e.g. {clashes[0]!r}.")
        return documents, ids

    def _embedder(self, action: str) -> MgteEmbedder:
        if self.embedder is None:
            raise ValueError(f"This index has no embedder to {action}; pass embeddings, or build/load the index with "
                             "an MgteEmbedder.")
        return self.embedder

    def _check_query_embeddings(self, embeddings: EmbeddingResult, count: int, mode: str) -> EmbeddingResult:
        """The parts that `mode` needs, checked: a float32 `(count, dimension)` dense matrix, sparse dicts."""
        if not isinstance(embeddings, EmbeddingResult):
            raise TypeError(f"query_embeddings must be an EmbeddingResult, got {type(embeddings).__name__}.")
        if len(embeddings) != count:
            raise ValueError(f"Got {len(embeddings)} query embeddings for {count} queries.")
        dense = sparse = None
        if mode != "sparse":
            if embeddings.dense is None:
                raise ValueError(f"mode={mode!r} needs dense query embeddings.")
            dense = torch.as_tensor(embeddings.dense).float()
            if dense.dim() != 2 or (count and len(self) and dense.shape[1] != self.dimension):
                raise ValueError(f"The query embeddings have dimension {tuple(dense.shape)[1:]}; this index holds "
                                 f"dimension {self.dimension}.")
            check_unit_rows(dense, "query_embeddings.dense")
        if mode != "dense":
            if embeddings.sparse is None:
                raise ValueError(f"mode={mode!r} needs sparse query embeddings.")
            sparse = sparse_rows(embeddings.sparse, "query_embeddings.sparse")
        return EmbeddingResult(dense, sparse, embeddings.tokenizer)


class HybridIndex(SearchableIndex[SearchHit]):
    """Dense matrix + sparse inverted index over documents encoded by an `MgteEmbedder`.

    Args:
        embedder: encodes documents on `add` and queries on `search`; optional when embeddings are passed in.
        dimension: dense size (Matryoshka); default the embedder's `dimension`, or the width of the first
            embeddings added.
    """

    def __init__(self, embedder: MgteEmbedder | None = None, *, dimension: int | None = None):
        self.embedder = embedder
        if embedder is not None:
            dimension = check_dimension(embedder.model, embedder.dimension if dimension is None else dimension)
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
        documents, ids = self._new_documents(documents, ids)
        if embeddings is None:
            embeddings = self._embedder("add documents").encode_corpus(documents, dimension=self.dimension,
                                                                       convert_to="torch", **encode_kwargs)
        dense, sparse = self._check_embeddings(embeddings, len(documents), "documents")
        if not documents:
            return
        self.dimension = dense.shape[1]
        start = len(self)
        self._dense_parts.append(dense)
        self._coo_parts.append(_coo(sparse, start))
        self.ids.extend(ids)
        self.documents.extend(documents)
        self._id_set.update(ids)
        self._compiled = None

    # ------------------------------------------------------------------------------------------------ search
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
            values, rows = top_k(scores, k)  # (chunk, k) each, best first; ties: the lower row first
            hits.extend([self._hit(row, score) for row, score in zip(r, v, strict=True)]
                        for r, v in zip(rows.tolist(), values.tolist(), strict=True))
        return hits

    def _stored_ids(self, ids: list[str]) -> list[str]:
        return [doc_id for doc_id in ids if doc_id in self._id_set]

    def _hit(self, row: int, score: float) -> SearchHit:
        return SearchHit(self.ids[row], score, row, self.documents[row])

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
    def _check_embeddings(self, embeddings: EmbeddingResult, count: int,
                          what: str) -> tuple[torch.Tensor, list[dict[int, float]]]:
        """The dense part as a float32 `(count, dimension)` tensor and the sparse dicts, checked to fit this index."""
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
        return check_unit_rows(dense, "embeddings.dense"), sparse_rows(embeddings.sparse, "embeddings.sparse")

    # ------------------------------------------------------------------------------------------------ disk
    def save(self, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the index into `folder` (safetensors + JSON, no pickle), built aside and moved into place.

        Args:
            folder: the index folder; an existing non-empty one is replaced only with `overwrite=True`.
            overwrite: replace a non-empty `folder`.

        Returns:
            The folder.
        """
        if self.dimension is None:
            raise ValueError("Nothing to save: the index is empty and has no dimension yet.")
        if len(self):
            dense, postings = self._compile()
        else:
            dense = torch.zeros((0, self.dimension))
            postings = Postings.build(*(torch.zeros(0, dtype=t) for t in (torch.long, torch.long, torch.float32)))
        model = None
        if self.embedder is not None:
            config = self.embedder.model.config
            model = {"identity": model_identity(self.embedder.model, self.embedder.tokenizer),
                     "name_or_path": config.name_or_path, "hidden_size": config.hidden_size,
                     "vocab_size": config.vocab_size}
        with staged_folder(folder, overwrite=overwrite, what="index folder") as tmp:
            save_file({"dense": dense.contiguous(), "term_ids": postings.term_ids, "offsets": postings.offsets,
                       "doc_rows": postings.doc_rows, "weights": postings.weights}, str(tmp / INDEX_TENSORS))
            write_atomic(tmp / INDEX_DOCUMENTS, (json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n"
                                                 for doc_id, text in zip(self.ids, self.documents, strict=True)))
            meta = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "size": len(self), "dimension": self.dimension,
                    "files": {name: file_record(tmp / name) for name in (INDEX_TENSORS, INDEX_DOCUMENTS)},
                    "model": model}
            write_atomic(tmp / INDEX_META, json.dumps(meta, indent=2) + "\n")
        return Path(folder)

    @classmethod
    def load(cls, folder: str | os.PathLike, embedder: MgteEmbedder | None = None, *,
             allow_other_model: bool = False) -> HybridIndex:
        """Read an index written by `save`, refusing damaged files by name.

        Args:
            folder: the index folder.
            embedder: the model to search with; it must be the one that built the index (weights, config and
                tokenizer sha256 compared).
            allow_other_model: use another embedder anyway, with a warning.
        """
        folder = Path(folder)
        meta_path = folder / INDEX_META
        if not folder.is_dir():
            raise FileNotFoundError(f"No index folder {folder}; build one with HybridIndex.save (or mgte-hf search "
                                    "--corpus FILE --index-dir DIR).")
        if not meta_path.is_file():
            raise FileNotFoundError(f"No index in {folder} ({INDEX_META} is missing); build one with "
                                    "HybridIndex.save.")
        meta = _read_meta(meta_path)
        for name in (INDEX_TENSORS, INDEX_DOCUMENTS):
            problem = file_problem(folder / name, meta["files"][name])
            if problem:
                raise ValueError(f"The index in {folder} is damaged: {problem}. Rebuild it.")
        if embedder is not None:
            check_model_identity(meta["model"]["identity"] if meta["model"] else None, embedder.model,
                                 embedder.tokenizer, artifact=f"The index in {folder}",
                                 allow_other_model=allow_other_model)
        tensors = _read_tensors(folder / INDEX_TENSORS, meta)
        ids, documents = _read_documents(folder / INDEX_DOCUMENTS, meta["size"])
        index = cls(embedder, dimension=meta["dimension"])
        index.ids, index.documents, index._id_set = ids, documents, set(ids)
        if ids:
            dense = tensors["dense"]
            postings = Postings(tensors["term_ids"], tensors["offsets"], tensors["doc_rows"], tensors["weights"])
            terms = torch.repeat_interleave(postings.term_ids, postings.offsets.diff())
            index._dense_parts = [dense]
            index._coo_parts = [(postings.doc_rows, terms, postings.weights)]
            index._compiled = (dense, postings)
        return index


def rerank_hits(reranker: MgteReranker, queries: str | Iterable[str], hits: list[list[SearchHit]], *,
                depth: int | None = None) -> list[list[SearchHit]]:
    """Re-score the first `depth` hits of each query with a cross-encoder; below them the order is kept.

    Args:
        reranker: the cross-encoder; the reranked hits' scores become its logits, or with its
            `first_stage_weight` > 0 its logits interpolated with their first-stage scores (`MgteReranker.interpolate`).
        queries: the query of each hit list.
        hits: first-stage hits of each query, best first (e.g. from `HybridIndex.search`).
        depth: how many hits per query the reranker sees (default: all); the rest keep their order and scores.

    Returns:
        The hit lists with their head reordered by the reranker (ties: the lower row first).
    """
    return rerank_hits_weighted(reranker, queries, hits, [reranker.first_stage_weight], depth=depth)[0]


def rerank_hits_weighted(reranker: MgteReranker, queries: str | Iterable[str], hits: list[list[SearchHit]],
                         first_stage_weights: Sequence[float], *,
                         depth: int | None = None) -> list[list[list[SearchHit]]]:
    """`rerank_hits` at several interpolation weights α from one scoring pass (the cross-encoder sees each pair
    once): one set of reranked hit lists per weight, in the order of `first_stage_weights`. Choosing α on held-out
    queries costs one reranking, not one per candidate weight."""
    queries = check_texts(queries, "queries")
    if len(queries) != len(hits):
        raise ValueError(f"Got {len(hits)} hit lists for {len(queries)} queries.")
    weights = [check_first_stage_weight(w) for w in first_stage_weights]
    heads = [row if depth is None else row[:depth] for row in hits]
    pairs = [(q, hit.document) for q, head in zip(queries, heads, strict=True) for hit in head]
    scores = reranker.compute_score(pairs, convert_to="torch").tolist()
    out: list[list[list[SearchHit]]] = [[] for _ in weights]
    start = 0
    for row, head in zip(hits, heads, strict=True):
        head_logits, first = scores[start:start + len(head)], [hit.score for hit in head]
        start += len(head)
        for lists, weight in zip(out, weights, strict=True):
            head_scores = reranker.interpolate(head_logits, first, weight).tolist()
            merged = rerank_merge(row, head_scores, tie_key=lambda hit: hit.index)
            lists.append([hit if score is None else replace(hit, score=score) for hit, score in merged])
    return out


def _coo(sparse: Sequence[Mapping[int, float]], start: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`{token_id: weight}` rows → COO triples (doc row from `start`, term id, weight)."""
    rows = torch.tensor([start + r for r, row in enumerate(sparse) for _ in row], dtype=torch.long)
    terms = torch.tensor([t for row in sparse for t in row], dtype=torch.long)
    weights = torch.tensor([w for row in sparse for w in row.values()], dtype=torch.float32)
    return rows, terms, weights


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged (not valid JSON: {err}); rebuild the index.") from None
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        raise ValueError(f"{path} is not an {INDEX_FORMAT} file.")
    if meta.get("version") != INDEX_VERSION:
        raise ValueError(f"{path} is a version-{meta.get('version')} index; this mgte-hf reads version "
                         f"{INDEX_VERSION} (with checksums and the model's identity): rebuild the index.")
    fields = {"size": int, "dimension": int, "files": dict}
    bad = [k for k, t in fields.items() if not isinstance(meta.get(k), t)] + [
        name for name in (INDEX_TENSORS, INDEX_DOCUMENTS) if not isinstance(meta.get("files", {}).get(name), dict)]
    if bad or not (meta.get("model") is None or isinstance(meta["model"], dict)):
        raise ValueError(f"{path} is damaged (fields {bad or ['model']}); rebuild the index.")
    return meta


def _read_tensors(path: Path, meta: dict) -> dict[str, torch.Tensor]:
    """The index tensors, checked against each other and `index.json` (a file that passed its checksum was written
    by `save`; these checks name what is wrong in one that was not)."""
    try:
        tensors = load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for unreadable files
        raise ValueError(f"{path} is not a readable safetensors file ({err}); rebuild the index.") from None
    size, dimension = meta["size"], meta["dimension"]
    problems = [f"{name} is missing or not {dtype}" for name, dtype in TENSOR_DTYPES.items()
                if name not in tensors or tensors[name].dtype != dtype]
    if not problems:
        dense, terms, offsets = tensors["dense"], tensors["term_ids"], tensors["offsets"]
        rows, weights = tensors["doc_rows"], tensors["weights"]
        checks = {
            f"dense is {tuple(dense.shape)}, not ({size}, {dimension})": tuple(dense.shape) == (size, dimension),
            "dense holds NaN or infinite values": bool(torch.isfinite(dense).all()),
            "term_ids are not strictly increasing": bool((terms.diff() > 0).all()) and bool((terms >= 0).all()),
            "offsets do not run from 0 to the number of postings": len(offsets) == len(terms) + 1 and int(
                offsets[0]) == 0 and bool((offsets.diff() >= 0).all()) and int(offsets[-1]) == len(rows),
            "postings point outside the documents": len(weights) == len(rows) and bool(
                ((rows >= 0) & (rows < size)).all()),
            "postings weights hold NaN or infinite values": bool(torch.isfinite(weights).all()),
        }
        problems = [text for text, ok in checks.items() if not ok]
    if problems:
        raise ValueError(f"{path} is inconsistent: {'; '.join(problems)}. Rebuild the index.")
    return tensors


def _read_documents(path: Path, size: int) -> tuple[list[str], list[str]]:
    ids, texts, seen = [], [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not (isinstance(record, dict) and isinstance(record.get("id"), str) and isinstance(record.get("text"), str)):
            raise ValueError(f"{path}:{number} is not an {{\"id\", \"text\"}} record; rebuild the index.")
        if record["id"] in seen:
            raise ValueError(f"{path}:{number} repeats the id {record['id']!r}; rebuild the index.")
        seen.add(record["id"])
        ids.append(record["id"])
        texts.append(record["text"])
    if len(ids) != size:
        raise ValueError(f"{path} holds {len(ids)} documents; index.json says {size}. Rebuild the index.")
    return ids, texts


__all__ = [
    "INDEX_DOCUMENTS",
    "INDEX_FORMAT",
    "INDEX_META",
    "INDEX_TENSORS",
    "INDEX_VERSION",
    "QUERY_CHUNK",
    "SEARCH_MODES",
    "HybridIndex",
    "Postings",
    "SearchHit",
    "SearchableIndex",
    "rerank_hits",
    "rerank_hits_weighted",
]
