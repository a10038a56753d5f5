"""Batch samplers: token-budget length buckets, and single-source batches with sources sampled ∝ size^α.

Both are deterministic functions of `(seed, epoch)` (call `set_epoch` each epoch) and split batches over data-parallel
ranks in one of two ways:

* `rank=None` (the default): yield every batch, their number a multiple of `num_replicas`, so that a wrapper that
  deals batch i to process i % num_replicas (accelerate's `BatchSamplerShard`, used by the transformers `Trainer`)
  gives every process the same number of batches;
* `rank=r`: yield only the batches of rank r (a plain `DataLoader` in each DDP process).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import Sampler

from mgte_hf.batching import token_budget_batches


logger = logging.getLogger(__name__)

DEFAULT_BUCKET_SIZE = 1024  # examples sorted together: larger buckets pad less, smaller ones mix lengths more
SOURCE_ALPHA = 0.5  # paper Eq. 1: q_i ∝ p_i^α


def _check_replicas(num_replicas: int, rank: int | None) -> None:
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
        raise ValueError(f"num_replicas must be an integer >= 1, got {num_replicas!r}.")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas):
        raise ValueError(f"rank must be None or an integer in [0, {num_replicas - 1}], got {rank!r}.")


class _EpochBatchSampler(Sampler[list[int]], ABC):
    """Shared epoch handling: batches are built once per epoch and cached for `__len__` and `__iter__`."""

    def __init__(self, seed: int, num_replicas: int, rank: int | None):
        _check_replicas(num_replicas, rank)
        self.seed = int(seed)
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches the next iteration yields."""
        self.epoch = int(epoch)

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)

    @abstractmethod
    def build_batches(self) -> list[list[int]]:
        """All batches of the epoch in yield order, their number a multiple of `num_replicas`."""

    def epoch_batches(self) -> list[list[int]]:
        """The batches this sampler yields in the current epoch (this rank's only, when `rank` is set)."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self.build_batches())
        batches = self._cache[1]
        return batches if self.rank is None else batches[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        yield from (list(batch) for batch in self.epoch_batches())

    def __len__(self) -> int:
        return len(self.epoch_batches())


class TokenBudgetBatchSampler(_EpochBatchSampler):
    """Length-bucketed batches under a token budget: `len(batch) · longest <= max_tokens`.

    Each epoch: shuffle the examples, cut them into buckets of `bucket_size`, batch each bucket longest first with
    `mgte_hf.batching.token_budget_batches`, then shuffle the batch order. A sequence longer than the budget gets a
    batch of its own. The padded-size budget also bounds a packed batch (which holds exactly Σ lengths tokens).

    Args:
        lengths: token count of each example (>= 1).
        max_tokens: budget of padded tokens per batch.
        shuffle: shuffle examples and batches (otherwise one bucket per `bucket_size` examples in order).
        seed: base seed; epoch e uses seed + e.
        bucket_size: examples sorted together.
        max_batch_size: optional cap on sequences per batch.
        drop_last: with several replicas, drop the batches that do not fill a round instead of repeating the first
            ones.
        num_replicas, rank: data-parallel split (see the module docstring).
    """

    def __init__(self, lengths: Sequence[int], max_tokens: int, shuffle: bool = True, seed: int = 0,
                 bucket_size: int = DEFAULT_BUCKET_SIZE, max_batch_size: int | None = None, drop_last: bool = False,
                 num_replicas: int = 1, rank: int | None = None):
        super().__init__(seed, num_replicas, rank)
        self.lengths = [int(n) for n in lengths]
        if not self.lengths:
            raise ValueError("TokenBudgetBatchSampler got no examples.")
        if min(self.lengths) < 1:
            raise ValueError(f"example {self.lengths.index(min(self.lengths))} has length {min(self.lengths)}; every "
                             "example needs at least one token.")
        if bucket_size < 1:
            raise ValueError(f"bucket_size must be >= 1, got {bucket_size!r}.")
        token_budget_batches([1], max_tokens, max_batch_size=max_batch_size)  # validates the budget arguments
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.bucket_size = bucket_size
        self.max_batch_size = max_batch_size
        self.drop_last = drop_last
        longest = max(self.lengths)
        if longest > max_tokens:
            logger.warning("%d examples are longer than max_tokens=%d; each gets a batch of its own.",
                           sum(n > max_tokens for n in self.lengths), max_tokens)

    def build_batches(self) -> list[list[int]]:
        generator = self.generator()
        count = len(self.lengths)
        order = torch.randperm(count, generator=generator).tolist() if self.shuffle else list(range(count))
        batches: list[list[int]] = []
        for start in range(0, count, self.bucket_size):
            bucket = order[start : start + self.bucket_size]
            local = token_budget_batches([self.lengths[i] for i in bucket], self.max_tokens,
                                         max_batch_size=self.max_batch_size)
            batches.extend([bucket[j] for j in batch] for batch in local)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return _fill_rounds(batches, self.num_replicas, self.drop_last)


def _fill_rounds(batches: list[list[int]], num_replicas: int, drop_last: bool) -> list[list[int]]:
    """Drop or repeat batches so that every replica gets as many."""
    remainder = len(batches) % num_replicas
    if remainder == 0:
        return batches
    if drop_last and len(batches) >= num_replicas:
        return batches[: len(batches) - remainder]
    return batches + [batches[i % len(batches)] for i in range(num_replicas - remainder)]


def source_probabilities(sizes: Sequence[int], alpha: float = SOURCE_ALPHA) -> torch.Tensor:
    """`(S,)` sampling probabilities q_i = n_i^α / Σ_j n_j^α (paper Eq. 1; α = 1 is proportional, 0 uniform)."""
    counts = torch.tensor([float(n) for n in sizes], dtype=torch.float64)
    if counts.numel() == 0 or bool((counts <= 0).any()):
        raise ValueError(f"source sizes must be positive, got {list(sizes)}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}.")
    weights = counts**alpha
    return weights / weights.sum()


class SingleSourceBatchSampler(_EpochBatchSampler):
    """Batches drawn each from one data source, the source of each step sampled ∝ size^α (the paper: α = 0.5).

    With several replicas, a step draws one source and `batch_size · num_replicas` of its examples, split into one
    batch per rank, so the global batch (and its cross-device negatives) is single-source too. Within a source the
    examples are visited in a random order, reshuffled each time the source is used up, so small sources repeat and
    large ones are under-sampled, as sampling with α < 1 intends.

    Args:
        sources: the source label of each example (any hashable), or a mapping `{source: size}` for a dataset that
            concatenates the sources in that order.
        batch_size: examples per batch and rank.
        alpha: exponent of the source sampling.
        seed: base seed; epoch e uses seed + e.
        drop_last: keep batches full: the last examples of a pass over a source that cannot fill a batch are left
            out of that pass (the source is reshuffled). `False` yields them as a smaller batch (one replica only).
        num_batches: steps per epoch; default: as many as the dataset fills, Σ_i n_i // (batch_size · num_replicas)
            (at least 1).
        num_replicas, rank: data-parallel split (see the module docstring).
    """

    def __init__(self, sources: Sequence[Hashable] | Mapping[Hashable, int], batch_size: int,
                 alpha: float = SOURCE_ALPHA, seed: int = 0, drop_last: bool = True, num_batches: int | None = None,
                 num_replicas: int = 1, rank: int | None = None):
        super().__init__(seed, num_replicas, rank)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
        if not drop_last and num_replicas > 1:
            raise ValueError("drop_last=False gives batches of unequal size, which cross-device negatives cannot "
                             "split over ranks; use drop_last=True with several replicas.")
        self.members = _source_members(sources)
        self.names = list(self.members)
        sizes = [len(self.members[name]) for name in self.names]
        self.probabilities = source_probabilities(sizes, alpha)
        self.batch_size = batch_size
        self.drop_last = drop_last
        step = batch_size * num_replicas
        small = [(name, n) for name, n in zip(self.names, sizes, strict=True) if n < step]
        if drop_last and small:
            raise ValueError(f"sources {small} hold fewer examples than one global batch ({step}); merge small "
                             "sources into a mixed one (the paper's 'MIX' source) or lower batch_size.")
        self.num_batches = max(1, sum(sizes) // step) if num_batches is None else int(num_batches)
        if self.num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches!r}.")

    def build_batches(self) -> list[list[int]]:
        generator = self.generator()
        picks = torch.multinomial(self.probabilities, self.num_batches, replacement=True, generator=generator)
        streams = {name: _SourceStream(self.members[name], generator) for name in self.names}
        step = self.batch_size * self.num_replicas
        batches: list[list[int]] = []
        for pick in picks.tolist():
            examples = streams[self.names[pick]].take(step, self.drop_last)
            batches.extend(examples[r * self.batch_size : (r + 1) * self.batch_size] for r in range(self.num_replicas))
        return batches

    def batch_sources(self) -> list[Hashable]:
        """The source of each batch this sampler yields in the current epoch."""
        lookup = {i: name for name, members in self.members.items() for i in members}
        return [lookup[batch[0]] for batch in self.epoch_batches()]


def _source_members(sources: Sequence[Hashable] | Mapping[Hashable, int]) -> dict[Hashable, list[int]]:
    """`{source: [example indices]}` in first-seen order."""
    members: dict[Hashable, list[int]] = {}
    if isinstance(sources, Mapping):
        start = 0
        for name, size in sources.items():
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"source {name!r} has size {size!r}; sizes must be positive integers.")
            members[name] = list(range(start, start + size))
            start += size
    else:
        for index, name in enumerate(sources):
            members.setdefault(name, []).append(index)
    if not members:
        raise ValueError("SingleSourceBatchSampler got no examples.")
    return members


class _SourceStream:
    """The examples of one source in random order, reshuffled after each complete pass."""

    def __init__(self, members: list[int], generator: torch.Generator):
        self.members = members
        self.generator = generator
        self.order: list[int] = []

    def take(self, count: int, full: bool) -> list[int]:
        """The next `count` examples; with `full=False` the rest of the current pass when fewer remain."""
        if not self.order or (full and len(self.order) < count):
            self.order = [self.members[i] for i in torch.randperm(len(self.members), generator=self.generator)]
        taken, self.order = self.order[:count], self.order[count:]
        return taken


__all__ = [
    "DEFAULT_BUCKET_SIZE",
    "SOURCE_ALPHA",
    "SingleSourceBatchSampler",
    "TokenBudgetBatchSampler",
    "source_probabilities",
]
