"""Benchmark workloads: sequence lengths (fixed seeds) and random token ids in the XLM-R layout."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch


CLS_ID, PAD_ID, EOS_ID = 0, 1, 2  # XLM-R: <s>, <pad>, </s>
FIRST_ORDINARY_ID = 5  # ids below are special tokens


@dataclass(frozen=True)
class Workload:
    """A named list of sequence lengths."""

    name: str
    lengths: tuple[int, ...]
    description: str

    @property
    def real_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def padded_tokens(self) -> int:
        """Tokens of one padded batch holding every sequence (batch × longest)."""
        return len(self.lengths) * max(self.lengths)


def lognormal_lengths(n: int, mu: float, sigma: float, low: int, high: int, seed: int) -> tuple[int, ...]:
    """`n` lengths drawn from a log-normal(mu, sigma), rounded and clipped to [low, high] (reproducible)."""
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= low <= high, got low={low}, high={high}.")
    rng = random.Random(seed)
    return tuple(min(high, max(low, round(rng.lognormvariate(mu, sigma)))) for _ in range(n))


def skewed(seed: int = 0) -> Workload:
    """32 sequences, log-normal lengths clipped to 16…2048: about 15 % of the padded batch is real tokens."""
    lengths = lognormal_lengths(32, 5.0, 1.6, 16, 2048, seed)
    return Workload("skewed", lengths, "32 × lognormal(5.0, 1.6) in 16…2048")


def uniform(length: int = 512, batch: int = 32) -> Workload:
    return Workload("uniform", (length,) * batch, f"{batch} × {length}")


def long(length: int = 8192) -> Workload:
    return Workload("long", (length,), f"1 × {length}")


def documents(n: int = 3806, seed: int = 0) -> Workload:
    """Lengths like the paper's MLDR-hi corpus (3 806 documents, 4 456 tokens on average after truncation to 8 192)."""
    return Workload("documents", lognormal_lengths(n, 8.3, 0.6, 64, 8192, seed),
                    f"{n} × lognormal(8.3, 0.6) in 64…8192")


WORKLOADS = {"skewed": skewed, "uniform": uniform, "long": long, "documents": documents}
_SEEDED = ("skewed", "documents")


def make_workload(name: str, seed: int = 0) -> Workload:
    """The workload called `name` (a key of `WORKLOADS`); `seed` draws the lengths of the random ones."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose from {sorted(WORKLOADS)}.")
    return WORKLOADS[name](seed=seed) if name in _SEEDED else WORKLOADS[name]()


def token_ids(lengths: tuple[int, ...] | list[int], vocab_size: int, seed: int = 0) -> list[torch.Tensor]:
    """One `(length,)` int64 tensor per sequence: `<s>`, random ordinary ids, `</s>` (a lone token is `<s>`)."""
    if vocab_size <= FIRST_ORDINARY_ID:
        raise ValueError(f"vocab_size must exceed {FIRST_ORDINARY_ID} (the XLM-R special ids), got {vocab_size}.")
    if any(n < 1 for n in lengths):
        raise ValueError(f"every length must be >= 1, got {list(lengths)}.")
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for n in lengths:
        ids = torch.randint(FIRST_ORDINARY_ID, vocab_size, (n,), generator=g)
        ids[0] = CLS_ID
        if n > 1:
            ids[-1] = EOS_ID
        seqs.append(ids)
    return seqs


def padded_batch(seqs: list[torch.Tensor], pad_id: int = PAD_ID) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded `(batch, longest)` ids and the 0/1 attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = s
        mask[row, : len(s)] = 1
    return ids, mask


def packed_batch(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """`(total_tokens,)` ids, sequence after sequence, and the lengths (the `seqlens=` input of our models)."""
    return torch.cat(seqs), [len(s) for s in seqs]
