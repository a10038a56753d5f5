"""Top k exact under ties, and a reranked head merged into a first-stage ranking (`mgte_hf.ranking`)."""

import pytest
import torch

from mgte_hf.ranking import rerank_merge, top_k, top_k_columns


def test_top_k_columns_is_exact_under_ties():
    scores = torch.tensor([[1.0, 3, 3, 0, 3, 2], [0, 0, 0, 0, 0, 0]])
    assert top_k_columns(scores, 2).tolist() == [[1, 2], [0, 1]]
    assert top_k_columns(scores, 4).tolist() == [[1, 2, 4, 5], [0, 1, 2, 3]]
    g = torch.Generator().manual_seed(0)
    rounded = torch.randint(0, 5, (20, 30), generator=g).float()  # many ties
    expected = [sorted(sorted(range(30), key=lambda j: (-float(row[j]), j))[:7]) for row in rounded]
    assert top_k_columns(rounded, 7).tolist() == expected


def test_top_k_is_best_first_with_ties_by_column():
    g = torch.Generator().manual_seed(1)
    rounded = torch.randint(0, 4, (10, 25), generator=g).float()
    values, columns = top_k(rounded, 9)
    for row, vals, cols in zip(rounded, values.tolist(), columns.tolist(), strict=True):
        want = sorted(range(25), key=lambda j: (-float(row[j]), j))[:9]
        assert cols == want and vals == [float(row[j]) for j in want]


def test_rerank_merge_reorders_the_head_and_keeps_the_tail():
    ranked = ["a", "b", "c", "d", "e"]
    merged = rerank_merge(ranked, [0.1, 0.9, 0.5])
    assert merged == [("b", 0.9), ("c", 0.5), ("a", 0.1), ("d", None), ("e", None)]
    # equal new scores keep the first-stage order, unless a tie key says otherwise
    assert [i for i, _ in rerank_merge(ranked, [0.2, 0.2, 0.2])] == ranked
    assert [i for i, _ in rerank_merge(ranked, [0.2, 0.2, 0.2], tie_key=lambda x: -ord(x))] == ["c", "b", "a", "d",
                                                                                                    "e"]
    with pytest.raises(ValueError, match="6 new scores for a ranking of 5"):
        rerank_merge(ranked, [0.0] * 6)
