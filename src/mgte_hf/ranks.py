"""This process's place among `torch.distributed` ranks, with single-process defaults when no group is set up."""

from __future__ import annotations

import torch.distributed as dist


def is_distributed() -> bool:
    """Whether a `torch.distributed` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank, 0 without a process group."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes, 1 without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if is_distributed():
        dist.barrier()


__all__ = ["barrier", "get_rank", "get_world_size", "is_distributed"]
