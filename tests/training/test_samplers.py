"""Batch samplers: token budgets with length buckets, single-source batches ∝ size^0.5, epochs and DDP splits."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from mgte_hf.training.collators import MLMCollator
from mgte_hf.training.samplers import SingleSourceBatchSampler, TokenBudgetBatchSampler, source_probabilities
from tiny import SENTENCES


LENGTHS = [int(n) for n in torch.randint(1, 200, (500,), generator=torch.Generator().manual_seed(0))]


# ------------------------------------------------------------------------------------------------ token budget
def test_token_budget_covers_every_example_once_within_budget():
    sampler = TokenBudgetBatchSampler(LENGTHS, max_tokens=1024, bucket_size=100, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    assert all(len(b) * max(LENGTHS[i] for i in b) <= 1024 for b in batches)


def test_token_budget_buckets_pad_less_than_random_batches():
    sampler = TokenBudgetBatchSampler(LENGTHS, max_tokens=1024, bucket_size=100, seed=0)
    padded = sum(len(b) * max(LENGTHS[i] for i in b) for b in sampler)
    assert padded / sum(LENGTHS) < 1.15  # sorted buckets: little padding
    unsorted = TokenBudgetBatchSampler(LENGTHS, max_tokens=1024, bucket_size=1, seed=0)  # one example per bucket
    assert len(unsorted) == len(LENGTHS) > 3 * len(sampler)


def test_token_budget_is_deterministic_per_epoch():
    a = TokenBudgetBatchSampler(LENGTHS, max_tokens=1024, seed=3)
    b = TokenBudgetBatchSampler(LENGTHS, max_tokens=1024, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    ordered = list(TokenBudgetBatchSampler(LENGTHS, max_tokens=1024, shuffle=False))
    assert ordered == list(TokenBudgetBatchSampler(LENGTHS, max_tokens=1024, shuffle=False, seed=9))


def test_token_budget_rank_split():
    kwargs = {"lengths": LENGTHS, "max_tokens": 4096, "seed": 1, "num_replicas": 3}
    whole = list(TokenBudgetBatchSampler(**kwargs))
    ranks = [list(TokenBudgetBatchSampler(**kwargs, rank=r)) for r in range(3)]
    assert len(whole) % 3 == 0 and len({len(r) for r in ranks}) == 1
    assert [b for r in range(3) for b in whole[r::3]] == [b for rank in ranks for b in rank]
    covered = {i for rank in ranks for b in rank for i in b}
    assert covered == set(range(len(LENGTHS)))  # the short round is filled by repeating batches, none lost
    dropped = list(TokenBudgetBatchSampler(**kwargs, drop_last=True))
    indices = [i for b in dropped for i in b]
    assert len(dropped) % 3 == 0 and len(indices) == len(set(indices)) < len(LENGTHS)  # no repeats, a few left out


def test_token_budget_bad_input():
    with pytest.raises(ValueError, match="example 1 has length 0"):
        TokenBudgetBatchSampler([3, 0], max_tokens=10)
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        TokenBudgetBatchSampler([3], max_tokens=0)
    with pytest.raises(ValueError, match=r"rank must be None or an integer in \[0, 1\]"):
        TokenBudgetBatchSampler([3], max_tokens=10, num_replicas=2, rank=2)


def test_token_budget_drives_a_packed_mlm_dataloader(tiny_tokenizer):
    dataset = [{"input_ids": ids} for ids in tiny_tokenizer(SENTENCES)["input_ids"]]  # 16 to 43 tokens
    sampler = TokenBudgetBatchSampler([len(f["input_ids"]) for f in dataset], max_tokens=64, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=MLMCollator(tiny_tokenizer, seed=0))
    batches = list(loader)
    assert len(batches) == len(sampler)
    assert sum(b["seqlens"].numel() for b in batches) == len(dataset)
    assert all(b["input_ids"].shape[1] == int(b["seqlens"].sum()) <= 64 for b in batches)
    assert max(b["seqlens"].numel() for b in batches) > 1


# ------------------------------------------------------------------------------------------------ single source
def test_source_probabilities_follow_size_to_the_alpha():
    torch.testing.assert_close(source_probabilities([100, 400], 0.5), torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    torch.testing.assert_close(source_probabilities([1, 3], 1.0), torch.tensor([0.25, 0.75], dtype=torch.float64))
    with pytest.raises(ValueError, match="alpha must be in"):
        source_probabilities([1, 2], 2.0)


def test_single_source_batches_and_source_frequencies():
    sizes = {"msmarco": 900, "nq": 100, "mix": 400}
    labels = [name for name, n in sizes.items() for _ in range(n)]
    sampler = SingleSourceBatchSampler(labels, batch_size=4, seed=0, num_batches=3000)
    batches = list(sampler)
    assert len(batches) == 3000 and all(len(b) == 4 for b in batches)
    assert all(len({labels[i] for i in b}) == 1 for b in batches)  # one source per batch
    assert all(len(set(b)) == 4 for b in batches)  # no example twice in a batch
    counts = Counter(labels[b[0]] for b in batches)
    expected = source_probabilities(list(sizes.values()), 0.5)
    for (name, _), q in zip(sizes.items(), expected.tolist(), strict=True):
        assert abs(counts[name] / 3000 - q) < 0.03, (name, counts[name], q)  # 900:100:400 → 0.5 : 0.167 : 0.333
    assert sampler.batch_sources() == [labels[b[0]] for b in batches]


def test_single_source_default_epoch_visits_small_sources_in_full():
    sampler = SingleSourceBatchSampler({"a": 40, "b": 8}, batch_size=4, seed=1)  # a mapping: 0..39 then 40..47
    batches = list(sampler)
    assert len(batches) == 12  # (40 + 8) // 4
    seen_b = [i for b in batches for i in b if i >= 40]
    # each pass over a source visits all its examples before any repeats
    assert all(sorted(seen_b[k : k + 8]) == list(range(40, 48)) for k in range(0, len(seen_b) - 7, 8))


def test_single_source_replicas_share_the_source_of_a_step():
    labels = ["a"] * 64 + ["b"] * 16
    whole = list(SingleSourceBatchSampler(labels, batch_size=4, num_replicas=2, seed=0))
    ranks = [list(SingleSourceBatchSampler(labels, batch_size=4, num_replicas=2, rank=r, seed=0)) for r in range(2)]
    assert whole[0::2] == ranks[0] and whole[1::2] == ranks[1]
    for b0, b1 in zip(ranks[0], ranks[1], strict=True):
        assert len({labels[i] for i in b0 + b1}) == 1  # the global batch is single-source
        assert not set(b0) & set(b1)


def test_single_source_is_deterministic_per_epoch():
    labels = ["a"] * 30 + ["b"] * 30
    sampler = SingleSourceBatchSampler(labels, batch_size=5, seed=2)
    first = list(sampler)
    assert first == list(SingleSourceBatchSampler(labels, batch_size=5, seed=2))
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_single_source_bad_input():
    with pytest.raises(ValueError, match=r"sources \[\('b', 3\)\] hold fewer examples than one global batch"):
        SingleSourceBatchSampler(["a"] * 10 + ["b"] * 3, batch_size=4)
    with pytest.raises(ValueError, match="drop_last=False gives batches of unequal size"):
        SingleSourceBatchSampler(["a"] * 10, batch_size=2, drop_last=False, num_replicas=2)
    with pytest.raises(ValueError, match="source 'b' has size 0"):
        SingleSourceBatchSampler({"a": 4, "b": 0}, batch_size=2)
    small = list(SingleSourceBatchSampler(["a"] * 10 + ["b"] * 3, batch_size=4, drop_last=False, num_batches=50))
    assert any(len(b) < 4 for b in small)
