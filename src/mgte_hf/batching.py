"""Token-budget batching for inference: sort by length, cap tokens per batch, restore the caller's order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar


T = TypeVar("T")


def token_budget_batches(
    lengths: Sequence[int],
    max_tokens: int,
    *,
    max_batch_size: int | None = None,
) -> list[list[int]]:
    """Group indices into batches, longest first, so that `len(batch) * longest_in_batch <= max_tokens`.

    The padded size bounds what any backend allocates (a packed forward uses less). A sequence longer than the
    budget gets a batch of its own. Concatenating the batches gives a permutation of `range(len(lengths))`;
    undo it with `restore_order`.

    Args:
        lengths: token count of each input (all >= 1).
        max_tokens: budget of padded tokens per batch (>= 1).
        max_batch_size: optional cap on the number of sequences per batch.

    Returns:
        Lists of input indices, one per batch.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}.")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}.")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: equal lengths keep input order
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def restore_order(batches: Sequence[Sequence[int]], results: Sequence[Sequence[T]]) -> list[T]:
    """Put per-batch results (one item per index, in batch order) back into the original input order."""
    total = sum(len(b) for b in batches)
    out: list[T | None] = [None] * total
    for batch, items in zip(batches, results):
        if len(batch) != len(items):
            raise ValueError(f"a batch of {len(batch)} inputs came back with {len(items)} results.")
        for index, item in zip(batch, items):
            out[index] = item
    return out  # type: ignore[return-value]
