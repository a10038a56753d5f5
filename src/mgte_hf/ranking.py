"""Rankings: the top k of a score matrix, exact under ties, and a reranked head merged into a first-stage ranking.

Every ranking of the package goes through these two functions, so ties are broken one way everywhere: of equal
scores, the lower column (the earlier document) ranks first, also at the cut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch


T = TypeVar("T")


def top_k_columns(scores: torch.Tensor, k: int) -> torch.Tensor:
    """`(Q, N)` scores → `(Q, k)` columns of the k best per row by (score desc, column asc), in ascending order.

    Exact under ties: of equal scores at the cut, the lower columns are kept.
    """
    kth = torch.topk(scores, k, dim=1).values[:, -1:]  # (Q, 1)
    above, tie = scores > kth, scores == kth
    need = k - above.sum(dim=1, keepdim=True)
    chosen = above | (tie & (tie.cumsum(dim=1) <= need))  # exactly k per row
    return chosen.nonzero()[:, 1].view(len(scores), k)


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(Q, N)` scores → `(Q, k)` scores and `(Q, k)` columns of the k best per row, best first, ties by column."""
    columns = top_k_columns(scores, k)  # (Q, k) ascending
    values = scores.gather(1, columns)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices  # stable: ties keep the lower column
    return values.gather(1, order), columns.gather(1, order)


def rerank_merge(ranked: Sequence[T], scores: Sequence[float],
                 tie_key: Callable[[T], Any] | None = None) -> list[tuple[T, float | None]]:
    """A first-stage ranking whose head was re-scored: the head reordered by its new scores, then the rest.

    Args:
        ranked: the first-stage ranking, best first.
        scores: new scores of its first `len(scores)` items (e.g. a reranker's logits).
        tie_key: orders equal new scores (ascending); default: their first-stage order.

    Returns:
        `(item, new score)` for the reranked head, best first, followed by `(item, None)` for the rest of `ranked`
        in first-stage order.
    """
    if len(scores) > len(ranked):
        raise ValueError(f"Got {len(scores)} new scores for a ranking of {len(ranked)} items.")
    head = list(zip(ranked, scores))
    order = range(len(head)) if tie_key is None else [tie_key(item) for item, _ in head]
    reordered = [head[i] for i in sorted(range(len(head)), key=lambda i: (-head[i][1], order[i]))]
    return reordered + [(item, None) for item in ranked[len(head):]]


__all__ = ["rerank_merge", "top_k", "top_k_columns"]
