"""BM25 over XLM-R sub-word ids (the `bm25s` library): the lexical baseline of the retrieval reports.

Plain BM25 (k1=0.9, b=0.4, Lucene idf by default) over the tokenizer's ids, no language analyzer, as the reference
figures of `shared/data/SOURCES.md` were measured: a sanity reference, not a tuned number.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

from ..tokenizer import xlmr_tokenizer_dir


BM25_K1 = 0.9
BM25_B = 0.4
BM25_METHOD = "lucene"


def xlmr_subword_tokenizer(folder: str | os.PathLike | None = None) -> Tokenizer:
    """The real XLM-R tokenizer as a Rust `tokenizers.Tokenizer` (loads in ~1 s), from the data cache by default."""
    path = xlmr_tokenizer_dir(folder) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no XLM-R tokenizer at {path}; run `mgte-hf data fetch --only tokenizer`.")
    return Tokenizer.from_file(str(path))


def subword_tokens(tokenizer: PreTrainedTokenizerBase | Tokenizer, texts: Sequence[str]) -> list[list[str]]:
    """Each text as its sub-word ids (as strings, so that bm25s keeps its own vocabulary), no special tokens."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if hasattr(backend, "encode_batch"):
        return [[str(i) for i in e.ids] for e in backend.encode_batch(list(texts), add_special_tokens=False)]
    ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return [[str(i) for i in row] for row in ids]


def bm25_search(
    documents: Sequence[str],
    queries: Sequence[str],
    tokenizer: PreTrainedTokenizerBase | Tokenizer,
    *,
    top_k: int = 100,
    k1: float = BM25_K1,
    b: float = BM25_B,
    method: str = BM25_METHOD,
    show_progress_bar: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Index `documents` and retrieve the best `top_k` (at most all) for every query.

    Returns:
        `(Nq, k)` document indices and `(Nq, k)` scores, best first.
    """
    import bm25s

    if not documents:
        raise ValueError("BM25 needs at least one document.")
    retriever = bm25s.BM25(k1=k1, b=b, method=method, backend="numpy")
    retriever.index(subword_tokens(tokenizer, documents), show_progress=show_progress_bar)
    k = min(top_k, len(documents))
    indices, scores = retriever.retrieve(subword_tokens(tokenizer, queries), k=k, show_progress=show_progress_bar)
    return np.asarray(indices), np.asarray(scores)


__all__ = ["BM25_B", "BM25_K1", "BM25_METHOD", "bm25_search", "subword_tokens", "xlmr_subword_tokenizer"]
