"""GradCache: parameter gradients equal the uncached loss's, with dense + sparse outputs, dropout, rerankers."""

from __future__ import annotations

import pytest
import torch

from mgte_hf import MgteForEmbedding, MgteForSequenceClassification
from mgte_hf.training.grad_cache import GradCache, RandState, split_inputs
from mgte_hf.training.losses import InfoNCELoss, ListwiseCELoss, TRMLoss, embedding_features
from tiny import make_model, random_batch


SPECIAL_IDS = (0, 1, 2, 3)
TOLERANCE = 1e-10  # float64


def _batch():
    q_ids, q_mask = random_batch([5, 9, 7, 4], seed=1)
    p_ids, p_mask = random_batch([6, 4, 11, 7, 3, 8, 12, 5], seed=2)
    p_ids[::2, 1:3] = q_ids[:, 1:3]  # shared tokens: non-zero lexical scores
    return {"input_ids": q_ids, "attention_mask": q_mask}, {"input_ids": p_ids, "attention_mask": p_mask}


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_grads(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], tol: float = TOLERANCE):
    assert got.keys() == expected.keys() and len(got) > 0
    for name, grad in expected.items():
        assert float(grad.abs().max()) > 0 or name.endswith("bias"), name
        torch.testing.assert_close(got[name], grad, rtol=0, atol=tol, msg=name)


def _uncached(model, loss_fn, query, passages):
    model.zero_grad()
    out = loss_fn(embedding_features(model, query), embedding_features(model, passages))
    out["loss"].backward()
    return {k: v.detach() for k, v in out.items()}, _grads(model)


@pytest.mark.parametrize("chunk_size", [1, 3])
def test_trm_gradients_equal_the_uncached_loss(chunk_size):
    model = make_model(MgteForEmbedding).double()
    loss_fn = TRMLoss(matryoshka_dimensions=[8, 16, 32], ignore_token_ids=SPECIAL_IDS)
    query, passages = _batch()
    expected_out, expected = _uncached(model, loss_fn, query, passages)
    model.zero_grad()
    out = GradCache(model, loss_fn, chunk_size=chunk_size).step(query, passages)
    assert out.keys() == expected_out.keys() and not out["loss"].requires_grad
    for name, value in expected_out.items():
        torch.testing.assert_close(out[name], value, rtol=0, atol=TOLERANCE)
    _assert_same_grads(_grads(model), expected)


def test_dropout_is_replayed_exactly():
    """With dropout, the re-run must reuse each chunk's RNG state: the gradients then equal an uncached forward that
    draws the same masks (the same chunks, in order, from the same seed)."""
    model = make_model(MgteForEmbedding, hidden_dropout_prob=0.3).double().train()
    loss_fn = TRMLoss(matryoshka_dimensions=[16, 32], ignore_token_ids=SPECIAL_IDS)
    query, passages = _batch()

    def chunked_reference(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        model.zero_grad()
        reps = [_cat([embedding_features(model, c) for c in split_inputs(side, 2)]) for side in (query, passages)]
        loss_fn(*reps)["loss"].backward()
        return _grads(model)

    expected = chunked_reference(seed=7)
    different = chunked_reference(seed=8)
    assert max(float((expected[n] - different[n]).abs().max()) for n in expected) > 1e-4  # dropout matters
    torch.manual_seed(7)
    model.zero_grad()
    GradCache(model, loss_fn, chunk_size=2).step(query, passages)
    after_step = torch.get_rng_state()
    _assert_same_grads(_grads(model), expected)
    chunked_reference(seed=7)
    assert torch.equal(after_step, torch.get_rng_state())  # the RNG advances as by one forward pass


def _cat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def test_tensor_representations_and_grad_scale():
    model = make_model(MgteForEmbedding).double()
    query, passages = _batch()
    loss_fn = InfoNCELoss(temperature=0.05)

    def encode(m, inputs):
        return m(**inputs, return_sparse=False).dense

    model.zero_grad()
    loss_fn(encode(model, query), encode(model, passages))["loss"].backward()
    expected = _grads(model)
    model.zero_grad()
    GradCache(model, loss_fn, chunk_size=3, encode_fn=encode).step(query, passages, grad_scale=0.5)
    _assert_same_grads({n: 2 * g for n, g in _grads(model).items()}, expected)


def test_reranker_groups_with_loss_kwargs():
    model = make_model(MgteForSequenceClassification, num_labels=1).double()
    ids, mask = random_batch([5, 9, 7, 4, 6, 8], seed=3)
    pairs = {"input_ids": ids, "attention_mask": mask}
    loss_fn = ListwiseCELoss()

    def encode(m, inputs):
        return m(**inputs).logits  # (n, 1)

    model.zero_grad()
    expected_loss = loss_fn(encode(model, pairs), group_size=3)["loss"]
    expected_loss.backward()
    expected = _grads(model)
    model.zero_grad()
    out = GradCache(model, loss_fn, chunk_size=4, encode_fn=encode).step(pairs, group_size=3)
    torch.testing.assert_close(out["loss"], expected_loss.detach(), rtol=0, atol=TOLERANCE)
    _assert_same_grads(_grads(model), expected)


def test_split_inputs_and_errors():
    query, _ = _batch()
    chunks = split_inputs({**query, "dimension": 16}, 3)
    assert [c["input_ids"].shape[0] for c in chunks] == [3, 1]
    assert all(c["dimension"] == 16 for c in chunks)
    assert torch.equal(torch.cat([c["attention_mask"] for c in chunks]), query["attention_mask"])
    with pytest.raises(ValueError, match="not packed seqlens"):
        split_inputs({"input_ids": query["input_ids"], "seqlens": torch.tensor([3])}, 2)
    with pytest.raises(ValueError, match="share one first"):
        split_inputs({"input_ids": query["input_ids"], "attention_mask": query["attention_mask"][:2]}, 2)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        GradCache(torch.nn.Linear(2, 2), InfoNCELoss(), chunk_size=0)


def test_rand_state_replays_cpu_dropout():
    state = RandState(torch.zeros(1))
    first = torch.rand(5)
    with state.replay():
        assert torch.equal(torch.rand(5), first)
    assert not torch.equal(torch.rand(5), first)  # the outer stream continued
