"""Scores between queries and documents: dense, lexical (sparse) and hybrid. Training and inference both use these.

Dense vectors are L2-normalised, so the dense score is a dot product (cosine). The lexical score of mGTE is
Σ over tokens shared by query and document of w_q(t)·w_d(t), where a token's weight in a text is the maximum
weight over its occurrences. The tensor form below computes it for whole batches without Python loops over
tokens, on a vocabulary compacted to the ids present, so its memory is `(rows, distinct ids)`, not `(rows, V)`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import torch


DEFAULT_DENSE_WEIGHT = 1.0
DEFAULT_SPARSE_WEIGHT = 0.1  # the released mGTE helper's hybrid weights
UNIT_NORM_TOLERANCE = 1e-2  # |‖v‖ - 1| allowed for a dense vector (bfloat16 models normalise within ~4e-3)


def sparse_rows(rows: Sequence[Mapping], name: str = "sparse") -> list[dict[int, float]]:
    """`{token_id: weight}` rows as `dict[int, float]`, checked; new dicts (the caller's are never changed).

    Token ids may be integers or strings of digits (as `mgte-hf encode` writes them to JSON); weights must be finite
    numbers.

    Raises:
        TypeError: a row that is not a mapping, or a key or weight of another type.
        ValueError: a negative token id, or a weight that is NaN or infinite.
    """
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
        raise TypeError(f"{name} must be a list of {{token_id: weight}} dicts, got {type(rows).__name__}.")
    return [_sparse_row(row, f"{name}[{i}]") for i, row in enumerate(rows)]


def _sparse_row(row: Mapping, where: str) -> dict[int, float]:
    if not isinstance(row, Mapping):
        raise TypeError(f"{where} is a {type(row).__name__}, not a {{token_id: weight}} dict.")
    out: dict[int, float] = {}
    for key, weight in row.items():
        integral = isinstance(key, numbers.Integral) and not isinstance(key, bool)
        if not (integral or (isinstance(key, str) and key.isascii() and key.isdigit())):
            raise TypeError(f"{where} has the key {key!r}: token ids are integers (or strings of digits); map "
                            "token strings to ids with the tokenizer first.")
        token = int(key)
        if token < 0:
            raise ValueError(f"{where} has the negative token id {token}.")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise TypeError(f"{where}[{key!r}] is a {type(weight).__name__}, not a number.")
        if not math.isfinite(weight):
            raise ValueError(f"{where}[{key!r}] is {weight}; sparse weights must be finite.")
        out[token] = float(weight)
    return out


def check_unit_rows(dense: torch.Tensor, name: str = "dense") -> torch.Tensor:
    """Refuse rows of a `(N, D)` matrix that are not finite or not L2-normalised (`UNIT_NORM_TOLERANCE`)."""
    finite = torch.isfinite(dense).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0])
        raise ValueError(f"{name} row {row} holds NaN or infinite values.")
    norms = torch.linalg.vector_norm(dense.double(), dim=1)
    off = (norms - 1).abs() > UNIT_NORM_TOLERANCE
    if bool(off.any()):
        row = int(off.nonzero()[0])
        raise ValueError(f"{name} row {row} has L2 norm {float(norms[row]):.4g}, not 1: dense scores are dot "
                         "products of L2-normalised vectors; normalise the rows (v / ‖v‖) first.")
    return dense


def dense_scores(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """`(Nq, D)` · `(Nd, D)` → `(Nq, Nd)` dot products (cosine for normalised vectors)."""
    if queries.dim() != 2 or documents.dim() != 2 or queries.shape[1] != documents.shape[1]:
        raise ValueError(f"dense_scores needs (Nq, D) and (Nd, D) with the same D, got {tuple(queries.shape)} and "
                         f"{tuple(documents.shape)}.")
    return queries @ documents.T


def term_weight_matrix(
    input_ids: torch.Tensor,
    token_weights: torch.Tensor,
    vocab: torch.Tensor,
    ignore_token_ids: Sequence[int] = (),
) -> torch.Tensor:
    """`(N, L)` ids and weights → `(N, len(vocab))` weight of each vocabulary entry (max over repeats).

    `vocab` is a sorted 1-D tensor holding every id of `input_ids`. Padding must carry weight 0 (the model's sparse
    output does). Differentiable with respect to `token_weights`.
    """
    weights = torch.relu(token_weights)
    if len(ignore_token_ids):
        weights = weights.masked_fill(torch.isin(input_ids, torch.as_tensor(list(ignore_token_ids),
                                                                            device=input_ids.device)), 0.0)
    cols = torch.searchsorted(vocab, input_ids.contiguous())  # (N, L) column of each token
    out = weights.new_zeros((input_ids.shape[0], vocab.numel()))
    return out.scatter_reduce(1, cols, weights, reduce="amax", include_self=True)


def lexical_scores(
    query_ids: torch.Tensor,
    query_weights: torch.Tensor,
    doc_ids: torch.Tensor,
    doc_weights: torch.Tensor,
    ignore_token_ids: Sequence[int] = (),
) -> torch.Tensor:
    """Lexical matching scores `(Nq, Nd)` from token ids and token weights `(N, L)` (0 at padding)."""
    vocab = torch.unique(torch.cat([query_ids.flatten(), doc_ids.flatten()]))  # sorted distinct ids
    q = term_weight_matrix(query_ids, query_weights, vocab, ignore_token_ids)  # (Nq, U)
    d = term_weight_matrix(doc_ids, doc_weights, vocab, ignore_token_ids)  # (Nd, U)
    return q @ d.T


def lexical_matching_score(query: Mapping[int, float], document: Mapping[int, float]) -> float:
    """Σ over shared tokens of w_q·w_d for two `{token_id: weight}` dictionaries (see `sparse_rows`)."""
    query, document = sparse_rows([query, document], "lexical_matching_score's dicts")
    if len(document) < len(query):
        query, document = document, query
    return float(sum(w * document[t] for t, w in query.items() if t in document))


def lexical_matching_scores(
    queries: Sequence[Mapping[int, float]], documents: Sequence[Mapping[int, float]]
) -> torch.Tensor:
    """`(Nq, Nd)` lexical scores between lists of `{token_id: weight}` dictionaries (see `sparse_rows`)."""
    queries, documents = sparse_rows(queries, "queries"), sparse_rows(documents, "documents")
    ids = sorted({t for d in (*queries, *documents) for t in d})
    index = {t: i for i, t in enumerate(ids)}
    q = _dicts_to_matrix(queries, index)
    d = _dicts_to_matrix(documents, index)
    return q @ d.T


def _dicts_to_matrix(rows: Sequence[Mapping[int, float]], index: Mapping[int, int]) -> torch.Tensor:
    out = torch.zeros((len(rows), len(index)), dtype=torch.float32)
    for r, row in enumerate(rows):
        if row:
            out[r, [index[t] for t in row]] = torch.tensor(list(row.values()), dtype=torch.float32)
    return out


def hybrid_scores(
    dense: torch.Tensor,
    sparse: torch.Tensor,
    dense_weight: float = DEFAULT_DENSE_WEIGHT,
    sparse_weight: float = DEFAULT_SPARSE_WEIGHT,
) -> torch.Tensor:
    """Weighted sum of dense and lexical score matrices of the same shape."""
    if dense.shape != sparse.shape:
        raise ValueError(f"dense {tuple(dense.shape)} and sparse {tuple(sparse.shape)} scores must have one shape.")
    return dense_weight * dense + sparse_weight * sparse


__all__ = [
    "DEFAULT_DENSE_WEIGHT",
    "DEFAULT_SPARSE_WEIGHT",
    "UNIT_NORM_TOLERANCE",
    "check_unit_rows",
    "dense_scores",
    "hybrid_scores",
    "lexical_matching_score",
    "lexical_matching_scores",
    "lexical_scores",
    "sparse_rows",
    "term_weight_matrix",
]
