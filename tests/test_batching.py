import pytest
from hypothesis import given
from hypothesis import strategies as st

from mgte_hf.batching import restore_order, token_budget_batches


@given(st.lists(st.integers(1, 300), min_size=1, max_size=60), st.integers(1, 1000), st.none() | st.integers(1, 8))
def test_batches_cover_every_index_once_within_budget(lengths, budget, cap):
    batches = token_budget_batches(lengths, budget, max_batch_size=cap)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= budget
        assert cap is None or len(b) <= cap
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert restore_order(batches, [[lengths[i] for i in b] for b in batches]) == lengths


def test_long_input_gets_its_own_batch():
    assert token_budget_batches([10, 500, 20], 100) == [[1], [2, 0]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_tokens"):
        token_budget_batches([1], 0)
    with pytest.raises(ValueError, match="max_batch_size"):
        token_budget_batches([1], 10, max_batch_size=0)
    with pytest.raises(ValueError, match="came back"):
        restore_order([[0, 1]], [[1]])
