"""Counting tokens, and using a tokenizer without leaving its settings changed.

`token_counts` is the one way the package counts tokens: the embedder's length checks, the evaluator's re-encoding
plan, the trainers' token budgets and the data statistics all call it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from transformers import PreTrainedTokenizerBase


COUNT_CHUNK = 1024  # texts tokenised at once: bounds the encodings held in memory


def token_counts(tokenizer: PreTrainedTokenizerBase | Any, texts: Sequence[str], pairs: Sequence[str] | None = None,
                 *, special_tokens: bool = True, max_length: int | None = None) -> list[int]:
    """Tokens in each text (or `(text, pair)`), never truncated or padded, then capped at `max_length` when given.

    Args:
        tokenizer: a transformers tokenizer or a Rust `tokenizers.Tokenizer`.
        texts: the texts.
        pairs: second texts, one per text (cross-encoder pairs).
        special_tokens: count the special tokens the tokenizer adds (`<s>`, `</s>`).
        max_length: cap every count at this many tokens (the count after truncation to it).
    """
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(f"Got {len(pairs)} pair texts for {len(texts)} texts.")
    counts: list[int] = []
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    with kept_tokenizer_state(tokenizer):
        if hasattr(backend, "no_truncation"):  # settings left by an earlier call would cut or pad the counts
            backend.no_truncation()
            backend.no_padding()
        for start in range(0, len(texts), COUNT_CHUNK):
            part = list(texts[start:start + COUNT_CHUNK])
            second = None if pairs is None else list(pairs[start:start + COUNT_CHUNK])
            if hasattr(backend, "encode_batch"):
                inputs = part if second is None else list(zip(part, second, strict=True))
                counts += [len(e.ids) for e in backend.encode_batch(inputs, add_special_tokens=special_tokens)]
            else:
                ids = tokenizer(part, second, add_special_tokens=special_tokens, verbose=False)["input_ids"]
                counts += [len(row) for row in ids]
    return counts if max_length is None else [min(n, max_length) for n in counts]


@contextmanager
def kept_tokenizer_state(tokenizer: PreTrainedTokenizerBase) -> Iterator[None]:
    """Restore a fast tokenizer's truncation and padding settings afterwards.

    Every call of a fast tokenizer rewrites these settings of its backend (they persist, and `save_pretrained`
    writes them), so without this an `encode` would leave the caller's tokenizer changed.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        yield
        return
    truncation, padding = backend.truncation, backend.padding
    try:
        yield
    finally:
        if truncation is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(**truncation)
        if padding is None:
            backend.no_padding()
        else:
            backend.enable_padding(**padding)


__all__ = ["token_counts", "kept_tokenizer_state"]
