"""`MilvusIndex`: mGTE's dense + sparse hybrid index in a Milvus collection (Milvus Lite in-process, or a server).

    index = MilvusIndex(embedder, uri="index.db", collection="docs")             # Milvus Lite: a local folder
    index = MilvusIndex(embedder, uri="http://milvus:19530", collection="docs")  # a server or a cluster
    index.add(["Berlin is the capital of Germany.", "Paris is in France."], ids=["d1", "d2"])
    index.search("capital of Germany", top_k=1)   # [SearchHit(id='d1', score=..., index=0, document=...)]

The surface and the scores are those of `HybridIndex`: dense = inner product of the L2-normalised vectors (a
`FLOAT_VECTOR` field, index FLAT or HNSW), sparse = Σ over shared tokens of w_q·w_d (a `SPARSE_FLOAT_VECTOR` field,
exact inverted index), hybrid = Milvus `hybrid_search` with `WeightedRanker(dense_weight, sparse_weight,
norm_score=False)`, which scores each candidate dense_weight·dense + sparse_weight·sparse. Hybrid candidates are the
top `hybrid_candidates` of each of the two searches; a candidate missing from one of them counts 0 there, so hybrid
hits equal `HybridIndex`'s whenever the exact top k lies within both candidate lists. Equal scores rank the
earlier-added document first, at the cut too (the engine is asked for 2·top_k hits, so up to top_k documents tied
with the k-th are all seen). A sparse search that matches fewer than `top_k` documents is filled up with
score-0 documents in the order they were added, as `HybridIndex` ranks them.

One row per document: `id` (VARCHAR primary key), `row` (the insertion order: `SearchHit.index`), `dense`,
`sparse` and `text` (VARCHAR, at most 65 535 bytes of UTF-8; empty for documents loaded from shards without
their corpus). The collection's properties record the model (`mgte.model`: `hashing.model_identity`), the dense
`mgte.dimension`, the sparse settings (`mgte.sparse`: vocabulary size and ignored token ids), whether texts are
stored (`mgte.texts`) and a bulk load's progress (`mgte.shards`, see `load_shards`). Opening a collection with
another model (`hashing.check_model_identity`: weights, config and tokenizer, which fix the sparse settings too) or
another dimension is refused; an existing collection is replaced only with `overwrite=True`. A document without any sparse weight (an empty text) is stored with one
placeholder term outside every vocabulary (id 2³²−2, the smallest float32 weight), since Milvus stores no empty
sparse vector; no query holds that term, so its sparse score is 0 as in `HybridIndex`.

One writer at a time per collection: rows are numbered from the collection's size when `add` starts.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..hashing import check_model_identity, model_identity
from ..index import QUERY_CHUNK, SearchableIndex, SearchHit
from ..inference.common import check_choice, check_dimension, check_positive_int
from ..inference.embedder import EmbeddingResult, MgteEmbedder
from ..ranking import top_k
from ..scoring import check_unit_rows, sparse_rows
from ..shards.storage import sparse_to_csr
from .client import DEFAULT_TIMEOUT, connect, quiet_lite_gaps


logger = logging.getLogger(__name__)

FORMAT = "mgte-hf-milvus/1"
INDEX_TYPES = ("FLAT", "HNSW")
HNSW_BUILD = {"M": 16, "efConstruction": 200}
HNSW_EF = 128  # search breadth of HNSW (at least top_k)
MAX_TOP_K = 16384  # Milvus' limit on hits per query
TEXT_MAX_BYTES = 65535  # a Milvus VARCHAR's default limit
DEFAULT_ID_BYTES = 512
INSERT_BYTES = 8 << 20  # payload of one insert call (a server takes at most 64 MiB per gRPC message)
EMPTY_TERM = 2**32 - 2  # Milvus' largest sparse index: the placeholder term of a document without sparse weights
EMPTY_WEIGHT = float(np.finfo(np.float32).tiny)
COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
ID_CHECK_BATCH = 1000  # ids looked up per query when checking for duplicates


class MilvusIndex(SearchableIndex[SearchHit]):
    """Dense + sparse index of documents encoded by an `MgteEmbedder`, held in a Milvus collection.

    Args:
        embedder: encodes documents on `add` and queries on `search`; optional when embeddings are passed in.
        uri: a Milvus Lite index folder (a path ending in `.db`, created if missing) or a server URL
            (`http://host:19530`).
        collection: the collection's name (letters, digits and underscores); created on the first write.
        dimension: dense size (Matryoshka); default: the collection's, else the embedder's, else the width of the
            first embeddings added.
        index: dense index of a new collection: `"FLAT"` (exact) or `"HNSW"` (approximate, faster on large
            collections); default: the collection's, else FLAT.
        hybrid_candidates: hits of each of the dense and sparse searches that hybrid search fuses (at least
            `top_k` are taken).
        max_id_bytes: the longest id (UTF-8 bytes) a new collection takes.
        token: the server's credentials (`"user:password"` or an API key).
        timeout: seconds to wait for a server before a `ConnectionError`.
        allow_other_model: open a collection built by another model anyway, with a warning (its scores then mix
            two models' vector spaces).
        overwrite: drop an existing collection of this name and start an empty one (its documents are lost).

    Raises:
        ConnectionError: the server does not answer, or the Lite folder is open in another process.
        ValueError: a collection of another model or dimension, not written by mgte-hf, or another index type.
    """

    def __init__(self, embedder: MgteEmbedder | None = None, uri: str = "index.db", collection: str = "docs", *,
                 dimension: int | None = None, index: str | None = None, hybrid_candidates: int = 100,
                 max_id_bytes: int = DEFAULT_ID_BYTES, token: str = "", timeout: float = DEFAULT_TIMEOUT,
                 allow_other_model: bool = False, overwrite: bool = False):
        if not isinstance(collection, str) or not COLLECTION_NAME.fullmatch(collection):
            raise ValueError(f"collection must be 1-255 letters, digits or underscores, not starting with a digit; "
                             f"got {collection!r}.")
        if index is not None:
            check_choice(index, INDEX_TYPES, "index")
        if dimension is not None:
            check_positive_int(dimension, "dimension")
        self.embedder = embedder
        self.uri, self.collection = uri, collection
        self.hybrid_candidates = check_positive_int(hybrid_candidates, "hybrid_candidates")
        self.allow_other_model = allow_other_model
        self.client = connect(uri, token=token, timeout=timeout)
        if overwrite and self.client.has_collection(collection):
            self.client.drop_collection(collection)
        if self.client.has_collection(collection):
            self._open(dimension, index)
        else:
            if embedder is not None:
                dimension = check_dimension(embedder.model, embedder.dimension if dimension is None else dimension)
            self.dimension = dimension
            self.index_type = index or "FLAT"
            self.max_id_bytes = check_positive_int(max_id_bytes, "max_id_bytes")
            self.holds_texts = True

    def __repr__(self) -> str:
        return (f"MilvusIndex(uri={self.uri!r}, collection={self.collection!r}, dimension={self.dimension}, "
                f"index={self.index_type!r})")

    def __len__(self) -> int:
        if not self.client.has_collection(self.collection):
            return 0
        return int(self.client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a Milvus Lite folder stays open to this process until it exits)."""
        self.client.close()

    # ------------------------------------------------------------------------------------------------ opening
    def _open(self, dimension: int | None, index: str | None) -> None:
        """Read and check the properties of an existing collection, and load it for search."""
        where = f"Collection {self.collection!r} at {self.uri}"
        described = self.client.describe_collection(self.collection)
        props = described.get("properties", {})
        if props.get("mgte.format") != FORMAT:
            raise ValueError(f"{where} was not written by mgte-hf (its mgte.format property is "
                             f"{props.get('mgte.format')!r}, expected {FORMAT!r}); choose another collection name.")
        stored = int(props["mgte.dimension"])
        if dimension is not None and dimension != stored:
            raise ValueError(f"{where} holds dense vectors of dimension {stored}, not {dimension}; open it with "
                             f"dimension={stored} (or None), or build another collection.")
        self.dimension = stored
        if self.embedder is not None:
            check_dimension(self.embedder.model, stored)
            check_model_identity(json.loads(props.get("mgte.model", "null")), self.embedder.model,
                                 self.embedder.tokenizer, artifact=where, allow_other_model=self.allow_other_model)
        self.index_type = self.client.describe_index(self.collection, "dense")["index_type"]
        if index is not None and index != self.index_type:
            raise ValueError(f"{where} has a {self.index_type} dense index, not {index}; open it with "
                             f"index={self.index_type!r} (or None), or build another collection.")
        fields = {f["name"]: f for f in described["fields"]}
        self.max_id_bytes = int(fields["id"]["params"]["max_length"])
        self.holds_texts = props.get("mgte.texts") == "true"
        self.client.load_collection(self.collection)

    def _create(self, dimension: int, identity: dict | None, texts: bool) -> None:
        """Create the collection (schema, indexes, model facts) and load it."""
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=self.max_id_bytes)
        schema.add_field("row", DataType.INT64)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
        params = self.client.prepare_index_params()
        params.add_index("dense", index_type=self.index_type, metric_type="IP",
                         params=HNSW_BUILD if self.index_type == "HNSW" else {})
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        params.add_index("row", index_type="INVERTED")
        properties = {"mgte.format": FORMAT, "mgte.dimension": str(dimension), "mgte.model": json.dumps(identity),
                      "mgte.sparse": json.dumps(_sparse_settings(self.embedder)),
                      "mgte.texts": "true" if texts else "false"}
        with quiet_lite_gaps():
            self.client.create_collection(self.collection, schema=schema, index_params=params,
                                          consistency_level="Strong", properties=properties)
        self.client.load_collection(self.collection)
        self.dimension = dimension
        self.holds_texts = texts

    def _property(self, key: str) -> Any:
        """A JSON collection property (`None` when absent)."""
        value = self.client.describe_collection(self.collection).get("properties", {}).get(key)
        return None if value is None else json.loads(value)

    def _set_property(self, key: str, value: Any) -> None:
        self.client.alter_collection_properties(self.collection, properties={key: json.dumps(value)})

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

        Everything is checked before anything is written (ids unique, new and short enough, text lengths, finite
        L2-normalised dense vectors, finite non-negative sparse weights), and a write that fails part-way is undone,
        so a refused `add` leaves the collection as it was.

        Args:
            documents: the texts, or `{"title", "text"}` records (joined as `encode_corpus` does); stored for
                reranking and for the hits.
            ids: one unique string id per document (at most `max_id_bytes` of UTF-8); default the running row number.
            embeddings: precomputed `EmbeddingResult` of `documents` (same order), with dense and sparse parts.
            **encode_kwargs: passed to `embedder.encode_corpus` (`batch_tokens`, `show_progress_bar`, ...).
        """
        self._check_no_unfinished_load()
        documents, ids = self._new_documents(documents, ids)
        self._check_id_sizes(ids)
        _check_texts(documents, ids)
        if embeddings is None and documents:
            embeddings = self._embedder("add documents").encode_corpus(documents, dimension=self.dimension,
                                                                       **encode_kwargs)
        if not documents:
            return
        dense, csr = self._check_embeddings(embeddings, len(documents))
        identity = None
        if self.embedder is not None and not self.client.has_collection(self.collection):
            identity = model_identity(self.embedder.model, self.embedder.tokenizer)  # recorded by the new collection
        self._write(ids, documents, dense, csr, identity=identity, what="embeddings.dense")

    def _write(self, ids: list[str], texts: list[str] | None, dense: np.ndarray,
               csr: tuple[np.ndarray, np.ndarray, np.ndarray], *, identity: dict | None, what: str,
               start: int | None = None, flush: bool = True) -> None:
        """Check, then insert rows numbered from `start` (default: the collection's size); a failed insert is undone.

        Args:
            ids: the documents' ids (checked by the caller).
            texts: their texts, or `None` to store none (empty texts).
            dense: `(n, dimension)` float32, L2-normalised rows.
            csr: the sparse weights as CSR `(indptr (n+1,), indices (nnz,), values (nnz,))`.
            identity: the model identity a new collection records (`hashing.model_identity`).
            what: how the dense matrix is named in messages.
            flush: seal the rows (Milvus indexes sealed rows; unsealed ones are searched by brute force).
        """
        self._check_id_sizes(ids)
        dense = self._check_dense(dense, what)
        sparse = _sparse_rows(*csr, ids)
        text_bytes = _check_texts(texts, ids) if texts is not None else [0] * len(ids)
        if not self.client.has_collection(self.collection):
            self._create(dense.shape[1], identity, texts is not None)
        start = len(self) if start is None else start
        try:
            batch: list[dict] = []
            size = 0
            for i, doc_id in enumerate(ids):
                batch.append({"id": doc_id, "row": start + i, "dense": dense[i], "sparse": sparse[i],
                              "text": "" if texts is None else texts[i]})
                size += 4 * dense.shape[1] + 8 * len(sparse[i]) + text_bytes[i] + len(doc_id) + 16
                if size >= INSERT_BYTES or i == len(ids) - 1:
                    self.client.insert(self.collection, batch)
                    batch, size = [], 0
        except BaseException:
            self._delete_from(start)
            raise
        if flush:
            self.client.flush(self.collection)

    def _delete_from(self, row: int) -> None:
        """Delete every row numbered `row` or more (what a failed or killed write left)."""
        self.client.delete(self.collection, filter=f"row >= {int(row)}")

    def _check_no_unfinished_load(self) -> None:
        if not self.client.has_collection(self.collection):
            return
        state = self._property("mgte.shards")
        if state is not None and state["loaded"] < state["chunks"]:
            raise ValueError(f"Collection {self.collection!r} at {self.uri} is part-way through a bulk load from "
                             f"shards ({state['loaded']} of {state['chunks']} chunks); finish it first (run the same "
                             "`mgte-hf index --shards ...` or load_shards again), then add documents.")

    def _stored_ids(self, ids: list[str]) -> list[str]:
        """Those of `ids` in the collection."""
        stored: list[str] = []
        if self.client.has_collection(self.collection):
            for start in range(0, len(ids), ID_CHECK_BATCH):
                part = ids[start:start + ID_CHECK_BATCH]
                found = self.client.query(self.collection, filter=f"id in [{', '.join(map(_literal, part))}]",
                                          output_fields=["id"])
                stored += [row["id"] for row in found]
        return stored

    def _check_id_sizes(self, ids: list[str]) -> None:
        """Ids must fit the collection's id field: non-empty, at most `max_id_bytes` of UTF-8."""
        if "" in ids:
            raise ValueError(f"Document ids must be non-empty; ids[{ids.index('')}] is ''.")
        long = [i for i in ids if len(i.encode("utf-8")) > self.max_id_bytes]
        if long:
            raise ValueError(f"{len(long)} ids are longer than {self.max_id_bytes} bytes of UTF-8 (the collection's "
                             f"id field), e.g. {long[0][:40]!r}… ({len(long[0].encode('utf-8'))} bytes); shorten "
                             "them, or build a new collection with a larger max_id_bytes (--max-id-bytes).")

    def _check_embeddings(self, embeddings: EmbeddingResult, count: int
                          ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The dense `(count, D)` float32 matrix (a copy) and the sparse part as CSR arrays."""
        if not isinstance(embeddings, EmbeddingResult):
            raise TypeError(f"embeddings must be an EmbeddingResult, got {type(embeddings).__name__}.")
        if embeddings.dense is None or embeddings.sparse is None:
            raise ValueError("The embeddings of documents need both dense and sparse parts (encode with dense=True, "
                             "sparse=True).")
        dense = np.array(_float32(embeddings.dense))  # a copy: never the caller's memory
        if dense.ndim != 2 or len(dense) != count or len(embeddings.sparse) != count:
            raise ValueError(f"Got embeddings of shape {tuple(dense.shape)} with {len(embeddings.sparse)} sparse rows "
                             f"for {count} documents.")
        return dense, sparse_to_csr(sparse_rows(embeddings.sparse, "embeddings.sparse"))

    def _check_dense(self, dense: np.ndarray, what: str) -> np.ndarray:
        """`(n, D)` float32 with D the index's dimension, every row finite and L2-normalised (`check_unit_rows`)."""
        dense = np.asarray(dense, dtype=np.float32)
        if dense.ndim != 2 or dense.shape[1] == 0:
            raise ValueError(f"{what} is empty (shape {tuple(dense.shape)}); encode the documents with dense=True.")
        if self.dimension is not None and dense.shape[1] != self.dimension:
            raise ValueError(f"The embeddings have dimension {dense.shape[1]}; this index holds {self.dimension}.")
        check_unit_rows(torch.from_numpy(dense), what)
        return dense

    # ------------------------------------------------------------------------------------------------ search
    def _first_stage(self, embeddings: EmbeddingResult, mode: str, k: int, dense_weight: float,
                     sparse_weight: float) -> list[list[SearchHit]]:
        if k > MAX_TOP_K:
            raise ValueError(f"Milvus returns at most {MAX_TOP_K} hits per query; got top_k (or rerank_top_k) {k}.")
        if mode == "hybrid":
            _check_weights(dense_weight, sparse_weight)
        if not k:
            return [[] for _ in range(len(embeddings))]
        limit = min(2 * k, MAX_TOP_K)  # room for documents tied with the k-th: the earlier ones are kept
        hits: list[list[SearchHit]] = []
        for start in range(0, len(embeddings), QUERY_CHUNK):
            part = slice(start, start + QUERY_CHUNK)
            dense = None if mode == "sparse" else list(_float32(embeddings.dense[part]))
            sparse = None if mode == "dense" else [dict(q) for q in embeddings.sparse[part]]
            hits += [self._fill(_ranked(row, k), k)
                     for row in self._search_part(dense, sparse, mode, limit, dense_weight, sparse_weight)]
        return hits

    def _search_part(self, dense: list[np.ndarray] | None, sparse: list[dict[int, float]] | None, mode: str, k: int,
                     dense_weight: float, sparse_weight: float) -> list[list[SearchHit]]:
        """The engine's hits for a part of the queries; a query without sparse terms matches nothing lexically, so
        it gets no sparse hit, and in hybrid mode its weighted dense hits."""
        if mode == "dense":
            return self._search_dense(dense, k, 1.0)
        out: list[list[SearchHit]] = [[] for _ in sparse]
        lexical = [i for i, query in enumerate(sparse) if query]
        if lexical:
            found = (self._search_sparse([sparse[i] for i in lexical], k) if mode == "sparse" else
                     self._search_hybrid([dense[i] for i in lexical], [sparse[i] for i in lexical], k, dense_weight,
                                         sparse_weight))
            for i, row in zip(lexical, found, strict=True):
                out[i] = row
        blank = [i for i, query in enumerate(sparse) if not query]
        if blank and mode == "hybrid":
            for i, row in zip(blank, self._search_dense([dense[i] for i in blank], k, dense_weight), strict=True):
                out[i] = row
        return out

    def _search_dense(self, queries: list[np.ndarray], limit: int, scale: float) -> list[list[SearchHit]]:
        raw = self.client.search(self.collection, data=queries, anns_field="dense", limit=limit,
                                 search_params=self._dense_params(limit), output_fields=self._outputs())
        return self._hits(raw, scale)

    def _search_sparse(self, queries: list[dict[int, float]], limit: int) -> list[list[SearchHit]]:
        raw = self.client.search(self.collection, data=queries, anns_field="sparse", limit=limit,
                                 search_params={"metric_type": "IP"}, output_fields=self._outputs())
        return self._hits(raw, 1.0)

    def _search_hybrid(self, dense: list[np.ndarray], sparse: list[dict[int, float]], limit: int,
                       dense_weight: float, sparse_weight: float) -> list[list[SearchHit]]:
        """WeightedRanker(w_d, w_s, norm_score=False) over both searches' top candidates (weights scaled into
        [0, 1] as Milvus requires, and the scores scaled back)."""
        from pymilvus import AnnSearchRequest, WeightedRanker

        depth = min(max(limit, self.hybrid_candidates), MAX_TOP_K)
        scale = max(dense_weight, sparse_weight)
        requests = [AnnSearchRequest(dense, "dense", self._dense_params(depth), limit=depth),
                    AnnSearchRequest(sparse, "sparse", {"metric_type": "IP"}, limit=depth)]
        ranker = WeightedRanker(dense_weight / scale, sparse_weight / scale, norm_score=False)
        raw = self.client.hybrid_search(self.collection, requests, ranker, limit=limit, output_fields=self._outputs())
        return self._hits(raw, scale)

    def _dense_params(self, limit: int) -> dict:
        if self.index_type == "HNSW":
            return {"metric_type": "IP", "params": {"ef": max(HNSW_EF, limit)}}
        return {"metric_type": "IP"}

    def _outputs(self) -> list[str]:
        return ["row", "text"] if self.holds_texts else ["row"]

    @staticmethod
    def _hits(raw: Sequence[Sequence[Mapping]], scale: float) -> list[list[SearchHit]]:
        return [[SearchHit(hit["id"], float(hit["distance"]) * scale, int(hit["entity"]["row"]),
                           hit["entity"].get("text", "")) for hit in row] for row in raw]

    def _fill(self, hits: list[SearchHit], k: int) -> list[SearchHit]:
        """Fewer than `k` hits (a sparse search matched fewer documents): add score-0 documents in row order."""
        if len(hits) >= k:
            return hits
        have = {hit.index for hit in hits}
        rows = self.client.query(self.collection, filter=f"row < {int(k)}", output_fields=self._outputs(), limit=k)
        extra = sorted((r for r in rows if r["row"] not in have), key=lambda r: r["row"])[: k - len(hits)]
        return hits + [SearchHit(r["id"], 0.0, int(r["row"]), r.get("text", "")) for r in extra]


def _ranked(hits: list[SearchHit], k: int) -> list[SearchHit]:
    """The best `k` hits by score, ties by row (`ranking.top_k`, as every ranking of the package)."""
    if not hits:
        return []
    hits = sorted(hits, key=lambda hit: hit.index)
    _, columns = top_k(torch.tensor([[hit.score for hit in hits]], dtype=torch.float64), min(k, len(hits)))
    return [hits[c] for c in columns[0].tolist()]


def _float32(matrix: np.ndarray | torch.Tensor) -> np.ndarray:
    """A numpy or torch matrix as a float32 numpy array (no copy when it already is one)."""
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().float().numpy()
    return np.asarray(matrix, dtype=np.float32)


def _check_weights(dense_weight: float, sparse_weight: float) -> None:
    for name, weight in (("dense_weight", dense_weight), ("sparse_weight", sparse_weight)):
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"{name} must be a finite number >= 0 on Milvus (its WeightedRanker takes no negative "
                             f"weight); got {weight!r}.")
    if dense_weight == sparse_weight == 0:
        raise ValueError("dense_weight and sparse_weight are both 0: every hybrid score would be 0.")


def _sparse_rows(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
                 ids: list[str]) -> list[dict[int, float]]:
    """Checked CSR → one `{token_id: weight}` per row, zero weights dropped, an empty row given the placeholder term
    (Milvus takes neither negative weights nor token ids from `EMPTY_TERM` on)."""
    values = np.asarray(values, dtype=np.float32)
    indices = np.asarray(indices, dtype=np.int64)
    for bad, what in ((~np.isfinite(values), "a NaN or infinite weight"), (values < 0, "a negative weight"),
                      ((indices < 0) | (indices >= EMPTY_TERM), f"a token id outside [0, {EMPTY_TERM})")):
        if bad.any():
            row = int(np.searchsorted(indptr, int(bad.argmax()), side="right")) - 1
            raise ValueError(f"The sparse vector of document {ids[row]!r} has {what}; mGTE's sparse weights are "
                             "finite and positive. Nothing was written: fix or drop it.")
    rows = [dict(zip(indices[a:b].tolist(), values[a:b].tolist()))
            for a, b in zip(indptr[:-1].tolist(), indptr[1:].tolist())]
    return [{t: w for t, w in row.items() if w > 0} or {EMPTY_TERM: EMPTY_WEIGHT} for row in rows]


def _check_texts(texts: list[str], ids: list[str]) -> list[int]:
    """The UTF-8 size of each text, which must fit a Milvus VARCHAR."""
    sizes = [len(text.encode("utf-8")) for text in texts]
    long = [i for i, size in enumerate(sizes) if size > TEXT_MAX_BYTES]
    if long:
        raise ValueError(f"{len(long)} documents are longer than {TEXT_MAX_BYTES} bytes of UTF-8 (a Milvus VARCHAR), "
                         f"e.g. {ids[long[0]]!r} ({sizes[long[0]]} bytes); split them into passages first.")
    return sizes


def _literal(text: str) -> str:
    """A string literal of Milvus' filter expressions (double-quoted, C escapes)."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
               .replace("\t", "\\t"))
    return f'"{escaped}"'


def _sparse_settings(embedder: MgteEmbedder | None) -> dict | None:
    """What shapes the embedder's sparse vectors besides its weights: the vocabulary size and the ignored token ids."""
    if embedder is None:
        return None
    return {"vocab_size": embedder.model.config.vocab_size, "ignored_token_ids": embedder.sparse_ignore_token_ids}


__all__ = ["FORMAT", "INDEX_TYPES", "MAX_TOP_K", "TEXT_MAX_BYTES", "MilvusIndex"]
