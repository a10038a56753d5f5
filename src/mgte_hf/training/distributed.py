"""Collectives for cross-device negatives: gathers that keep gradients, with or without a process group.

Everything here degrades to a no-op in a single process (no `torch.distributed` process group initialised), so the
losses call these functions unconditionally.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..ranks import get_rank, get_world_size, is_distributed


def gather_sizes(size: int, device: torch.device) -> list[int]:
    """Every rank's `size` (an int per rank, in rank order)."""
    if not is_distributed():
        return [size]
    local = torch.tensor([size], dtype=torch.long, device=device)
    out = [torch.zeros_like(local) for _ in range(get_world_size())]
    dist.all_gather(out, local)
    return [int(t) for t in out]


def all_gather_rows(tensor: torch.Tensor, sizes: list[int] | None = None) -> tuple[torch.Tensor, int]:
    """Concatenate every rank's `(n_r, ...)` tensor along dim 0, without gradients.

    The first dimension may differ between ranks; the trailing dimensions must be equal.

    Args:
        tensor: `(n_r, ...)` local rows.
        sizes: every rank's `n_r` when already known (saves one collective).

    Returns:
        The `(Σ n_r, ...)` concatenation in rank order and the row offset of this rank's rows in it.
    """
    sizes = gather_sizes(tensor.shape[0], tensor.device) if sizes is None else sizes
    if len(sizes) == 1:
        return tensor.detach(), 0
    padded = _pad_rows(tensor.detach().contiguous(), max(sizes))
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    gathered = torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)], dim=0)
    return gathered, sum(sizes[: get_rank()])


def _pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    if tensor.shape[0] == rows:
        return tensor
    return torch.cat([tensor, tensor.new_zeros((rows - tensor.shape[0], *tensor.shape[1:]))], dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums every rank's gradient of the gathered tensor and keeps this rank's rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        gathered, offset = all_gather_rows(tensor, sizes)
        ctx.rows = (offset, offset + tensor.shape[0])
        return gathered

    @staticmethod
    def backward(ctx, grad_gathered: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad_gathered.contiguous().clone()
        # all_reduce (not reduce_scatter) because gloo has no reduce_scatter and the row counts may differ.
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start, end = ctx.rows
        return grad[start:end], None


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Like `all_gather_with_grad`, and also return the row offset of this rank's rows in the result."""
    if get_world_size() == 1:
        return tensor, 0
    sizes = gather_sizes(tensor.shape[0], tensor.device)
    return _AllGatherWithGrad.apply(tensor, sizes), sum(sizes[: get_rank()])


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's `(n_r, ...)` tensor along dim 0 so that gradients flow back to each rank's rows.

    The first dimension may differ between ranks; the trailing dimensions must be equal. In backward, the gradient of
    the gathered tensor is summed over ranks (each rank's loss depends on every rank's rows) and each rank keeps the
    rows it contributed. With DDP, which averages parameter gradients over ranks, the resulting update is the gradient
    of the mean of the per-rank losses: for equal local batches, the loss of the concatenated batch.

    Args:
        tensor: `(n_r, ...)` local rows.

    Returns:
        `(Σ_r n_r, ...)` rows of all ranks in rank order; the input itself without a process group.
    """
    return gather_with_grad(tensor)[0]


def max_across_ranks(value: int, device: torch.device) -> int:
    """The largest `value` over all ranks (`device`: where the backend communicates, e.g. CUDA for NCCL)."""
    return max(gather_sizes(value, device))


def pad_to_width(tensor: torch.Tensor, width: int, pad_value: float = 0) -> torch.Tensor:
    """Right pad a `(n, L)` tensor to `(n, width)` with `pad_value` (differentiable; the input is not modified)."""
    if tensor.shape[1] > width:
        raise ValueError(f"cannot pad a tensor of width {tensor.shape[1]} to the smaller width {width}.")
    return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]), value=pad_value)


__all__ = [
    "all_gather_rows",
    "all_gather_with_grad",
    "gather_sizes",
    "gather_with_grad",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "max_across_ranks",
    "pad_to_width",
]
