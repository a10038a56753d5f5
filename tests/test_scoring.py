import pytest
import torch

from mgte_hf import token_weights_to_dicts
from mgte_hf.scoring import (
    dense_scores,
    hybrid_scores,
    lexical_matching_score,
    lexical_matching_scores,
    lexical_scores,
)


def brute_force(q_ids, q_w, d_ids, d_w, ignore):
    """Σ over shared ids of max-weight products, with explicit Python loops."""
    def weights(ids, w):
        out = {}
        for t, x in zip(ids.tolist(), w.tolist()):
            if t not in ignore and x > 0:
                out[t] = max(out.get(t, 0.0), x)
        return out

    scores = torch.zeros(len(q_ids), len(d_ids))
    for i in range(len(q_ids)):
        for j in range(len(d_ids)):
            a, b = weights(q_ids[i], q_w[i]), weights(d_ids[j], d_w[j])
            scores[i, j] = sum(a[t] * b[t] for t in a if t in b)
    return scores


def test_lexical_scores_equal_brute_force_and_dicts():
    torch.manual_seed(0)
    q_ids, d_ids = torch.randint(0, 30, (4, 9)), torch.randint(0, 30, (5, 13))
    q_w, d_w = torch.randn(4, 9).relu(), torch.randn(5, 13).relu()
    ignore = [0, 1, 2]
    fast = lexical_scores(q_ids, q_w, d_ids, d_w, ignore)
    assert torch.allclose(fast, brute_force(q_ids, q_w, d_ids, d_w, set(ignore)), atol=1e-6)
    qd, dd = token_weights_to_dicts(q_w, q_ids, None, ignore), token_weights_to_dicts(d_w, d_ids, None, ignore)
    assert torch.allclose(lexical_matching_scores(qd, dd), fast, atol=1e-6)
    assert abs(lexical_matching_score(qd[1], dd[2]) - fast[1, 2].item()) < 1e-6


def test_lexical_scores_are_differentiable():
    q_w = torch.rand(2, 4, requires_grad=True)
    ids = torch.tensor([[5, 6, 6, 7], [5, 8, 9, 9]])
    lexical_scores(ids, q_w, ids, q_w.detach()).sum().backward()
    assert q_w.grad is not None and q_w.grad.abs().sum() > 0


def test_dense_and_hybrid():
    q, d = torch.eye(3)[:2], torch.eye(3)
    assert torch.equal(dense_scores(q, d), torch.eye(3)[:2])
    assert torch.allclose(hybrid_scores(torch.ones(2, 2), torch.full((2, 2), 2.0)), torch.full((2, 2), 1.2))
    with pytest.raises(ValueError):
        dense_scores(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError):
        hybrid_scores(torch.ones(2, 2), torch.ones(2, 3))
