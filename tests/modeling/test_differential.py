"""Differential test: every head × every attention kernel that runs here, a batch against each sequence run alone.

The oracle is the model itself on one sequence without padding, where no packing shortcut can apply. Length patterns
are chosen to break shortcuts: the mean equal to the first length (what a `total == batch × first` uniformity test
mistakes for equal lengths), all equal, one-token rows, lengths either side of the explicit/fused attention switch
(128 tokens) and of the feed-forward chunk (2 048 tokens in all), a single row, sorted and unsorted, left and right
padding, and a mask with holes. Forward outputs and parameter gradients are compared in float64, where a correct
result agrees to rounding (1e-9) and a wrong one by orders of magnitude more; an fp32 pass checks the same at fp32
tolerance.
"""

import pytest
import torch

from mgte_hf import (
    MgteForEmbedding,
    MgteForMaskedLM,
    MgteForSequenceClassification,
    MgteForTokenClassification,
    MgteModel,
)
from mgte_hf.modeling.attention_mgte import EXPLICIT_ATTENTION_MAX_LEN
from tiny import make_model, random_batch, skip_without_inductor


E = EXPLICIT_ATTENTION_MAX_LEN
PATTERNS = {
    "mean_is_first": [200, 300, 100],
    "mean_is_first_short": [4, 6, 2],
    "all_equal_short": [7, 7, 7],
    "all_equal_long": [E + 3, E + 3],
    "one_token_rows": [1, 1, 5, 1],
    "around_the_switch": [E - 1, E, E + 1],
    "single_row": [E + 20],
    "sorted": [1, 2, 3, 9, 17],
    "unsorted": [17, 3, 9, 1, 2],
    "past_the_feed_forward_chunk": [1500, 700],
}
# Each head: (class, config overrides, what to compare per row of a batch of `n` rows).
HEADS = {
    "encoder": (MgteModel, {}, lambda o: o.last_hidden_state),
    "mlm": (MgteForMaskedLM, {}, lambda o: o.logits),
    "reranker": (MgteForSequenceClassification, {"num_labels": 1}, lambda o: o.logits),
    "token_cls": (MgteForTokenClassification, {"num_labels": 3}, lambda o: o.logits),
    "dense": (MgteForEmbedding, {}, lambda o: o.dense),
    "sparse": (MgteForEmbedding, {}, lambda o: o.sparse),
}
PER_TOKEN = {"encoder", "mlm", "token_cls", "sparse"}
IMPLEMENTATIONS = ["sdpa", "eager"]


def model_for(head: str, implementation: str, dtype: torch.dtype):
    cls, overrides, _ = HEADS[head]
    model = make_model(cls, max_position_embeddings=4096, **overrides).to(dtype)
    model.set_attn_implementation(implementation)
    return model


def batch_in_layout(lengths: list[int], layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Right or left padding, or right padding with a masked-out column after every row's first token (a hole)."""
    ids, mask = random_batch(lengths, left=layout == "left")
    if layout == "holes":
        ids = torch.cat([ids[:, :1], torch.ones_like(ids[:, :1]), ids[:, 1:]], dim=1)
        mask = torch.cat([mask[:, :1], torch.zeros_like(mask[:, :1]), mask[:, 1:]], dim=1)
    return ids, mask


def rows(head: str, out, mask: torch.Tensor) -> list[torch.Tensor]:
    """Per row, the compared values at valid positions (per-token heads) or the row's vector."""
    value = HEADS[head][2](out)
    if head in PER_TOKEN:
        return [value[i][mask[i].bool()] for i in range(mask.shape[0])]
    return [value[i] for i in range(mask.shape[0])]


def alone(model, head: str, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Each row's valid tokens alone, at the positions the batch gives them (their columns from the first one)."""
    outs = []
    for i in range(ids.shape[0]):
        keep = mask[i].bool()
        single = ids[i:i + 1][:, keep]
        positions = (torch.arange(ids.shape[1]) - keep.long().argmax())[keep][None]
        outs.append(rows(head, model(input_ids=single, position_ids=positions), torch.ones_like(single))[0])
    return outs


# The eager kernel materialises (B, n, L, L) scores in float64: the pattern past the feed-forward chunk (2 200 tokens)
# runs on sdpa only.
FORWARD_CASES = [(p, i) for p in PATTERNS for i in IMPLEMENTATIONS
                 if not (i == "eager" and p == "past_the_feed_forward_chunk")]


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("pattern,implementation", FORWARD_CASES)
@pytest.mark.parametrize("layout", ["right", "left", "holes"])
def test_batch_equals_each_sequence_alone_float64(pattern, head, implementation, layout):
    lengths = PATTERNS[pattern]
    model = model_for(head, implementation, torch.float64)
    ids, mask = batch_in_layout(lengths, layout)
    with torch.no_grad():
        batch = rows(head, model(input_ids=ids, attention_mask=mask), mask)
        single = alone(model, head, ids, mask)
    for i, (b, s) in enumerate(zip(batch, single)):
        assert (b - s).abs().max().item() <= 1e-9 * max(1.0, s.abs().max().item()), f"row {i} ({lengths[i]} tokens)"


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("pattern", ["mean_is_first_short", "one_token_rows", "unsorted", "around_the_switch"])
def test_gradients_of_a_batch_equal_the_sum_over_sequences_alone(pattern, head, implementation):
    """d(Σ_rows f(row)) / dθ of the batch equals Σ_rows df(row alone) / dθ, for every parameter."""
    model = model_for(head, implementation, torch.float64)
    ids, mask = random_batch(PATTERNS[pattern])
    weights = [torch.randn(r.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(i))
               for i, r in enumerate(alone(model, head, ids, mask))]

    def grads(loss: torch.Tensor) -> torch.Tensor:
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel(), dtype=p.dtype)
                          for p in model.parameters()])

    batch = grads(sum((w * r).sum() for w, r in zip(weights, rows(head, model(input_ids=ids, attention_mask=mask),
                                                                      mask))))
    single = grads(sum((w * r).sum() for w, r in zip(weights, alone(model, head, ids, mask))))
    assert batch.abs().max() > 0
    assert (batch - single).abs().max().item() <= 1e-9 * max(1.0, single.abs().max().item())


FLOAT32_CASES = [("sdpa", "mean_is_first", "right"), ("sdpa", "around_the_switch", "left"),
                 ("sdpa", "one_token_rows", "holes"), ("sdpa", "unsorted", "holes"),
                 ("flex_attention", "mean_is_first_short", "holes")]  # flex compiles per shape: one pattern


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("implementation,pattern,layout", FLOAT32_CASES)
def test_batch_equals_each_sequence_alone_float32(implementation, pattern, layout, head):
    """fp32, with the default kernel and flex attention (compiled by torch, fp32 only): the same agreement at fp32
    rounding, scaled by the magnitude of the output."""
    skip_without_inductor(implementation)
    model = model_for(head, implementation, torch.float32)
    ids, mask = batch_in_layout(PATTERNS[pattern], layout)
    with torch.no_grad():
        batch = rows(head, model(input_ids=ids, attention_mask=mask), mask)
        single = alone(model, head, ids, mask)
    for b, s in zip(batch, single):
        assert (b - s).abs().max().item() <= 1e-5 * max(1.0, s.abs().max().item())


def test_a_mask_with_holes_matches_the_same_tokens_with_their_positions():
    """A hole keeps the columns' positions: [a, (x), b, c] equals a, b, c at positions 0, 2, 3 alone."""
    model = make_model(MgteModel).double()
    ids, _ = random_batch([5])
    mask = torch.tensor([[1, 0, 1, 1, 1]])
    keep = mask[0].bool()
    with torch.no_grad():
        holed = model(input_ids=ids, attention_mask=mask).last_hidden_state[0][keep]
        alone_ = model(input_ids=ids[:, keep], position_ids=torch.tensor([[0, 2, 3, 4]])).last_hidden_state[0]
    assert (holed - alone_).abs().max().item() <= 1e-12
