"""Losses: InfoNCE with in-batch + hard negatives, Matryoshka, sparse InfoNCE on the served lexical score, TRM, listwise CE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mgte_hf import MgteForEmbedding, token_weights_to_dicts
from mgte_hf.modeling import dense_embedding
from mgte_hf.scoring import lexical_matching_scores
from mgte_hf.training.losses import (
    InfoNCELoss,
    ListwiseCELoss,
    MatryoshkaLoss,
    SparseInfoNCELoss,
    TRMLoss,
    embedding_features,
    resolve_dimensions,
)
from tiny import make_model, random_batch


SPECIAL_IDS = (0, 1, 2, 3)


def _vectors(rows: int, dim: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=g, dtype=torch.float64), dim=-1)


def _reference_info_nce(query: torch.Tensor, passages: torch.Tensor, temperature: float) -> float:
    """−mean_i log(exp(s(q_i, d_i+)/τ) / Σ_j exp(s(q_i, d_j)/τ)), written out one query at a time."""
    group = passages.shape[0] // query.shape[0]
    total = 0.0
    for i, q in enumerate(query):
        logits = [float(q @ p) / temperature for p in passages]
        total -= logits[i * group] - math.log(sum(math.exp(x) for x in logits))
    return total / query.shape[0]


# ------------------------------------------------------------------------------------------------ InfoNCE
def test_info_nce_matches_the_formula_with_in_batch_and_hard_negatives():
    query, passages = _vectors(3), _vectors(9, seed=1)  # 3 queries, positive + 2 hard negatives each
    out = InfoNCELoss(temperature=0.05)(query, passages)
    assert set(out) == {"loss"}
    assert float(out["loss"]) == pytest.approx(_reference_info_nce(query, passages, 0.05), rel=1e-12)


def test_info_nce_uses_the_other_queries_passages():
    query, passages = _vectors(2), _vectors(6, seed=1)
    loss = InfoNCELoss()
    changed = passages.clone()
    changed[4] = query[0]  # a passage of query 1 becomes a perfect (false) negative of query 0
    assert float(loss(query, changed)["loss"]) > float(loss(query, passages)["loss"]) + 1.0


def test_info_nce_cross_device_without_process_group_is_local():
    query, passages = _vectors(2), _vectors(4, seed=1)
    assert torch.equal(InfoNCELoss(cross_device=True)(query, passages)["loss"], InfoNCELoss()(query, passages)["loss"])


@pytest.mark.parametrize(("query_rows", "passage_rows", "match"), [(2, 5, "B·\\(1\\+k\\) rows"), (3, 2, "B·\\(1\\+k\\)")])
def test_info_nce_bad_shapes(query_rows, passage_rows, match):
    with pytest.raises(ValueError, match=match):
        InfoNCELoss()(_vectors(query_rows), _vectors(passage_rows))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        InfoNCELoss(temperature=0.0)


# ------------------------------------------------------------------------------------------------ Matryoshka
def test_matryoshka_parts_are_info_nce_on_truncated_renormalised_vectors():
    raw_query, raw_passages = 3 * _vectors(2), 2 * _vectors(6, seed=1)  # raw CLS states: not unit length
    base = InfoNCELoss(temperature=0.05)
    out = MatryoshkaLoss(base, dimensions=[8, 16, 32], weights=[0.5, 0.3, 0.2])(raw_query, raw_passages)
    assert set(out) == {"loss", "dim_8", "dim_16", "dim_32"}
    for dim in (8, 16, 32):
        expected = base(dense_embedding(raw_query, dim), dense_embedding(raw_passages, dim))["loss"]
        torch.testing.assert_close(out[f"dim_{dim}"], expected)
    torch.testing.assert_close(out["loss"], 0.5 * out["dim_8"] + 0.3 * out["dim_16"] + 0.2 * out["dim_32"])


def test_matryoshka_defaults_are_the_paper_prefixes_averaged():
    out = MatryoshkaLoss(InfoNCELoss())(_vectors(2, dim=96), _vectors(4, dim=96, seed=1))
    assert [k for k in out if k != "loss"] == ["dim_32", "dim_64", "dim_96"]
    torch.testing.assert_close(out["loss"], (out["dim_32"] + out["dim_64"] + out["dim_96"]) / 3)
    assert resolve_dimensions(None, 768) == list(range(32, 769, 32))
    assert resolve_dimensions(None, 48) == [32, 48]  # the full size always trains


def test_matryoshka_bad_arguments():
    with pytest.raises(ValueError, match="distinct positive sizes up to the vector size 32"):
        MatryoshkaLoss(InfoNCELoss(), dimensions=[8, 64])(_vectors(2), _vectors(4))
    with pytest.raises(ValueError, match="need 2 non-negative Matryoshka weights"):
        MatryoshkaLoss(InfoNCELoss(), dimensions=[8, 16], weights=[1.0])
    with pytest.raises(ValueError, match=r"distinct positive sizes, got \[8, 8\]"):
        MatryoshkaLoss(InfoNCELoss(), dimensions=[8, 8])
    with pytest.raises(TypeError, match="needs an InfoNCELoss"):
        MatryoshkaLoss(ListwiseCELoss(), dimensions=[8])


# ------------------------------------------------------------------------------------------------ sparse
def _sparse_batch(seed: int = 0):
    q_ids, q_mask = random_batch([5, 7], vocab_size=12, seed=seed)  # a small vocabulary: many shared tokens
    p_ids, p_mask = random_batch([6, 4, 8, 5], vocab_size=12, seed=seed + 1)
    g = torch.Generator().manual_seed(seed)
    q_w = torch.rand(q_ids.shape, generator=g, dtype=torch.float64) * q_mask
    p_w = torch.rand(p_ids.shape, generator=g, dtype=torch.float64) * p_mask
    return q_ids, q_w, q_mask, p_ids, p_w, p_mask


def test_sparse_info_nce_uses_the_served_lexical_score():
    """The loss's scores are the inference path's: {token: max weight} dicts (special ids dropped) and Σ w_q·w_d."""
    q_ids, q_w, q_mask, p_ids, p_w, p_mask = _sparse_batch()
    q_w.requires_grad_(True)
    out = SparseInfoNCELoss(temperature=0.01, ignore_token_ids=SPECIAL_IDS)(q_ids, q_w, p_ids, p_w, q_mask, p_mask)
    scores = lexical_matching_scores(token_weights_to_dicts(q_w.detach(), q_ids, q_mask, SPECIAL_IDS),
                                     token_weights_to_dicts(p_w, p_ids, p_mask, SPECIAL_IDS)).double()
    assert float(scores.abs().sum()) > 0
    expected = F.cross_entropy(scores / 0.01, torch.tensor([0, 2]))
    assert float(out["loss"].detach()) == pytest.approx(float(expected), rel=1e-5)
    out["loss"].backward()
    assert torch.isfinite(q_w.grad).all() and float(q_w.grad.abs().sum()) > 0
    special = torch.isin(q_ids, torch.tensor(SPECIAL_IDS))
    assert float(q_w.grad[special].abs().sum()) == 0.0  # ignored ids get no gradient


def test_sparse_info_nce_masks_padding_and_checks_shapes():
    q_ids, q_w, q_mask, p_ids, p_w, p_mask = _sparse_batch()
    loss = SparseInfoNCELoss(ignore_token_ids=SPECIAL_IDS)
    noisy = p_w + (1 - p_mask) * 5.0  # weight at padding must not count when the mask is given
    torch.testing.assert_close(loss(q_ids, q_w, p_ids, noisy, q_mask, p_mask)["loss"],
                               loss(q_ids, q_w, p_ids, p_w, q_mask, p_mask)["loss"])
    with pytest.raises(ValueError, match="passage ids, weights and mask must all be"):
        loss(q_ids, q_w, p_ids, p_w[:, :2], q_mask, p_mask)


# ------------------------------------------------------------------------------------------------ TRM
@pytest.fixture(scope="module")
def trm_features():
    model = make_model(MgteForEmbedding).double().train()
    q_ids, q_mask = random_batch([5, 9], seed=1)
    p_ids, p_mask = random_batch([6, 4, 11, 7, 3, 8], seed=2)
    p_ids[::3, 1:3] = q_ids[:, 1:3]
    query = embedding_features(model, {"input_ids": q_ids, "attention_mask": q_mask})
    passages = embedding_features(model, {"input_ids": p_ids, "attention_mask": p_mask})
    return model, query, passages


def test_trm_loss_combines_its_parts(trm_features):
    model, query, passages = trm_features
    assert set(query) == {"dense", "sparse", "input_ids", "attention_mask"} and query["dense"].shape == (2, 32)
    loss = TRMLoss(dense_weight=1.0, sparse_weight=0.3, matryoshka_dimensions=[8, 16, 32],
                   ignore_token_ids=SPECIAL_IDS)
    out = loss(query, passages)
    assert set(out) == {"loss", "dense", "sparse", "dense_dim_8", "dense_dim_16", "dense_dim_32"}
    torch.testing.assert_close(out["loss"], out["dense"] + 0.3 * out["sparse"])
    expected_dense = MatryoshkaLoss(InfoNCELoss(0.05), [8, 16, 32])(query["dense"], passages["dense"])["loss"]
    expected_sparse = SparseInfoNCELoss(0.01, SPECIAL_IDS)(query["input_ids"], query["sparse"], passages["input_ids"],
                                                            passages["sparse"], query["attention_mask"],
                                                            passages["attention_mask"])["loss"]
    torch.testing.assert_close(out["dense"], expected_dense)
    torch.testing.assert_close(out["sparse"], expected_sparse)
    model.zero_grad()
    out["loss"].backward(retain_graph=True)
    assert float(model.classifier.weight.grad.abs().sum()) > 0  # the sparse head trains
    assert float(model.new.embeddings.word_embeddings.weight.grad.abs().sum()) > 0


def test_trm_loss_dense_only_and_missing_inputs(trm_features):
    _, query, passages = trm_features
    dense_only = TRMLoss(sparse_weight=0.0)
    out = dense_only({"dense": query["dense"]}, {"dense": passages["dense"]})
    assert "sparse" not in out and out["loss"] is not None
    torch.testing.assert_close(out["loss"], out["dense"])
    with pytest.raises(ValueError, match=r"TRMLoss needs passages\['sparse'\]"):
        TRMLoss()(query, {k: v for k, v in passages.items() if k != "sparse"})
    with pytest.raises(ValueError, match="not both 0"):
        TRMLoss(dense_weight=0.0, sparse_weight=0.0)


# ------------------------------------------------------------------------------------------------ reranker
@pytest.mark.parametrize("shape", [(6,), (6, 1)])
def test_listwise_ce_is_cross_entropy_with_the_positive_first(shape):
    logits = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = ListwiseCELoss()(logits, group_size=3)
    expected = F.cross_entropy(logits.reshape(2, 3), torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(out["loss"], expected)
    torch.testing.assert_close(ListwiseCELoss(temperature=0.5)(logits, 3)["loss"],
                               F.cross_entropy(logits.reshape(2, 3) / 0.5, torch.zeros(2, dtype=torch.long)))


def test_listwise_ce_bad_input():
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        ListwiseCELoss()(torch.zeros(6), group_size=4)
    with pytest.raises(ValueError, match=r"\(B·G,\) or \(B·G, 1\)"):
        ListwiseCELoss()(torch.zeros(6, 2), group_size=3)
    with pytest.raises(ValueError, match="group_size must be a positive int"):
        ListwiseCELoss()(torch.zeros(6), group_size=0)
