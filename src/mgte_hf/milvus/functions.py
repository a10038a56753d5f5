"""`MgteEmbeddingFunction`: mGTE behind pymilvus' model-function interface, in place of its BGE-M3 function.

    from mgte_hf.milvus import MgteEmbeddingFunction
    ef = MgteEmbeddingFunction("path/to/gte-multilingual-base")   # was: BGEM3EmbeddingFunction(...)
    docs = ef.encode_documents(texts)        # {"dense": [np.ndarray (dim,), ...], "sparse": csr_array (N, vocab)}
    query = ef.encode_queries(["capital of Germany"])
    ef.dim                                   # {"dense": 768, "sparse": 250048}

The dictionaries have the layout of pymilvus' `BGEM3EmbeddingFunction`: `dense` a list of float32 vectors
(L2-normalised, so Milvus' IP metric is the cosine), `sparse` a `scipy.sparse.csr_array` with one row per text and
one column per vocabulary entry; insert `sparse[[i]]` as row i's `SPARSE_FLOAT_VECTOR`, search with
`[sparse[[0]]]`. mGTE's hybrid score is `WeightedRanker(1.0, 0.1, norm_score=False)` over the two fields.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.sparse import csr_array

from ..inference.common import check_dimension, check_texts
from ..inference.embedder import EmbeddingResult, MgteEmbedder
from ..shards.storage import sparse_to_csr


class MgteEmbeddingFunction:
    """Dense and sparse embeddings of texts in pymilvus' model-function layout (`encode_documents`, `dim`, ...).

    Args:
        model_name_or_embedder: a checkpoint folder (ours or the released layout) or an `MgteEmbedder`.
        dimension: dense size (Matryoshka); default the model's full size.
        return_dense, return_sparse: which parts the dictionaries hold.
        **kwargs: for a folder, the loading and encoding settings of `MgteEmbedder.from_pretrained` (`device`,
            `dtype`, `max_length`, `batch_tokens`, `truncation`).
    """

    def __init__(self, model_name_or_embedder: str | os.PathLike | MgteEmbedder, *, dimension: int | None = None,
                 return_dense: bool = True, return_sparse: bool = True, **kwargs):
        if not (return_dense or return_sparse):
            raise ValueError("Nothing to return: set return_dense=True and/or return_sparse=True.")
        if isinstance(model_name_or_embedder, MgteEmbedder):
            if kwargs:
                raise TypeError(f"{sorted(kwargs)} configure loading a folder; an MgteEmbedder comes configured.")
            self.embedder = model_name_or_embedder
            self.model_name = self.embedder.model.config.name_or_path
        else:
            self.embedder = MgteEmbedder.from_pretrained(model_name_or_embedder, **kwargs)
            self.model_name = str(model_name_or_embedder)
        self.dimension = check_dimension(self.embedder.model,
                                         self.embedder.dimension if dimension is None else dimension)
        self.return_dense, self.return_sparse = return_dense, return_sparse

    @property
    def dim(self) -> dict[str, int]:
        """`{"dense": dense size, "sparse": vocabulary size}` (the columns of the sparse matrix)."""
        return {"dense": self.dimension, "sparse": self.embedder.model.config.vocab_size}

    def __call__(self, texts: list[str]) -> dict:
        return self.encode_documents(texts)

    def encode_documents(self, documents: list[str]) -> dict:
        """`{"dense": [(dim,) float32, ...], "sparse": csr_array (N, vocab)}` of the documents."""
        return self._dictionary(self.embedder.encode_corpus(check_texts(documents, "documents"),
                                                            **self._encode_kwargs()))

    def encode_queries(self, queries: list[str]) -> dict:
        """`{"dense": [(dim,) float32, ...], "sparse": csr_array (N, vocab)}` of the queries."""
        return self._dictionary(self.embedder.encode_queries(check_texts(queries, "queries"), **self._encode_kwargs()))

    def _encode_kwargs(self) -> dict:
        return {"dimension": self.dimension, "dense": self.return_dense, "sparse": self.return_sparse}

    def _dictionary(self, result: EmbeddingResult) -> dict:
        out = {}
        if self.return_dense:
            out["dense"] = list(np.asarray(result.dense, dtype=np.float32))
        if self.return_sparse:
            out["sparse"] = sparse_matrix(result.sparse, self.dim["sparse"])
        return out


def sparse_matrix(rows: list[dict[int, float]], vocab_size: int) -> csr_array:
    """`{token_id: weight}` rows → a float32 `csr_array` of shape `(len(rows), vocab_size)`, ids ascending."""
    indptr, indices, values = sparse_to_csr(rows)
    return csr_array((values, indices, indptr), shape=(len(rows), vocab_size))


__all__ = ["MgteEmbeddingFunction", "sparse_matrix"]
