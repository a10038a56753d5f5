"""Behaviour of the packed encoder and its heads on generated configurations and weights."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mgte_hf import (
    MgteConfig,
    MgteForEmbedding,
    MgteForMaskedLM,
    MgteForSequenceClassification,
    MgteForTokenClassification,
    MgteModel,
)
from mgte_hf.modeling.modeling_mgte import apply_rope
from tiny import make_config, make_model, random_batch, skip_without_inductor, valid_rows


TOL = 1e-5
VARIANTS = {
    "ntk": {},
    "mixed_b": {"rope_scaling": {"type": "ntk", "factor": 4.0, "mixed_b": 0.75}},
    "plain_unpacked_qkv": {"rope_scaling": None, "pack_qkv": False},
    "no_token_types": {"type_vocab_size": 0},
    "two_token_types": {"type_vocab_size": 2},
    "pad_zero": {"pad_token_id": 0},
    "rms_norm": {"layer_norm_type": "rms_norm"},
    "absolute": {"position_embedding_type": "absolute", "max_position_embeddings": 64},
}


@pytest.fixture(scope="module")
def encoder():
    return make_model(MgteModel)


def per_sequence(model, ids, mask, **kw):
    """Reference: each sequence run alone, without padding."""
    return [model(input_ids=ids[i:i + 1][:, mask[i].bool()], **kw).last_hidden_state[0] for i in range(ids.shape[0])]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padding_layout_does_not_change_outputs(variant):
    model = make_model(MgteModel, **VARIANTS[variant])
    lengths = [9, 1, 20, 4]  # 20 > max_position_embeddings (16) for the RoPE variants
    alone = None
    with torch.no_grad():
        for left in (False, True):
            ids, mask = random_batch(lengths, pad_id=model.config.pad_token_id or 0, left=left)
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
            alone = alone or per_sequence(model, ids, mask)
            for got, exp in zip(valid_rows(out, mask), alone):
                assert (got - exp).abs().max().item() <= TOL


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("implementation", ["eager", "flex_attention"])
def test_padded_kernels_agree_with_packed_sdpa(variant, implementation):
    """transformers' padded kernels (eager; flex attention with its block mask) equal mGTE's packed default."""
    skip_without_inductor(implementation)
    model = make_model(MgteModel, **VARIANTS[variant])
    ids, mask = random_batch([12, 3, 7, 1], pad_id=model.config.pad_token_id or 0)
    assert model.config._attn_implementation == "sdpa"  # the default, packed
    with torch.no_grad():
        packed = model(input_ids=ids, attention_mask=mask).last_hidden_state
        model.set_attn_implementation(implementation)
        other = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert model.config._attn_implementation == implementation
    assert (packed - other)[mask.bool()].abs().max().item() <= TOL


def test_batch_of_one_token_rows(encoder):
    """Every row one token (the released unpad path crashes here)."""
    ids, mask = random_batch([1, 1, 1])
    ids = torch.cat([ids, torch.ones(3, 2, dtype=torch.long)], dim=1)
    mask = torch.cat([mask, torch.zeros(3, 2, dtype=torch.long)], dim=1)
    with torch.no_grad():
        out = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        single = encoder(input_ids=ids[:, :1]).last_hidden_state
    assert out.shape == (3, 3, 32)
    assert (out[:, 0] - single[:, 0]).abs().max().item() <= TOL
    assert out[:, 1:].abs().max().item() == 0.0


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=5),
    left=st.booleans(),
    extra=st.integers(min_value=0, max_value=3),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_invariance_to_padding_side_and_batch_composition(encoder, lengths, left, extra, seed):
    """Random lengths up to 2.5× max_position_embeddings, random padding side and extra padding columns."""
    ids, mask = random_batch(lengths, left=left, seed=seed)
    if extra:
        pad_ids = torch.ones(len(lengths), extra, dtype=torch.long)
        pad_mask = torch.zeros(len(lengths), extra, dtype=torch.long)
        ids, mask = (torch.cat([pad_ids, ids], 1), torch.cat([pad_mask, mask], 1)) if left else (
            torch.cat([ids, pad_ids], 1), torch.cat([mask, pad_mask], 1))
    with torch.no_grad():
        out = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        alone = per_sequence(encoder, ids, mask)
        shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed))
        out_shuffled = encoder(input_ids=ids[shuffled], attention_mask=mask[shuffled]).last_hidden_state
    rows = valid_rows(out, mask)
    for got, exp in zip(rows, alone):
        assert (got - exp).abs().max().item() <= TOL
    for j, i in enumerate(shuffled.tolist()):
        assert (valid_rows(out_shuffled, mask[shuffled])[j] - rows[i]).abs().max().item() <= TOL


def test_packed_input_equals_padded(encoder):
    ids, mask = random_batch([5, 11, 2])
    lengths = mask.sum(1)
    packed_ids = ids[mask.bool()][None]  # (1, T)
    with torch.no_grad():
        padded = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        packed = encoder(input_ids=packed_ids, seqlens=lengths).last_hidden_state
    assert packed.shape == (1, int(lengths.sum()), 32)
    assert (packed[0] - padded[mask.bool()]).abs().max().item() <= TOL


def test_gradcheck_through_packed_path():
    torch.manual_seed(0)
    model = MgteModel(make_config(hidden_size=8, num_attention_heads=2, intermediate_size=8, num_hidden_layers=1,
                                  vocab_size=20, matryoshka_dimensions=None)).double().eval()
    ids, mask = random_batch([3, 1, 2], vocab_size=20)
    embeds = model.embeddings.word_embeddings(ids).detach().requires_grad_(True)

    def f(x):
        return model(inputs_embeds=x, attention_mask=mask).last_hidden_state[mask.bool()]

    assert torch.autograd.gradcheck(f, (embeds,), eps=1e-6, atol=1e-5)


def test_packed_gradients_equal_eager_gradients():
    model = make_model(MgteForEmbedding)
    ids, mask = random_batch([6, 13, 2])
    grads = {}
    for implementation in ("sdpa", "eager"):
        model.zero_grad()
        model.set_attn_implementation(implementation)
        out = model(input_ids=ids, attention_mask=mask)
        (out.dense.sum() + out.sparse.sum()).backward()
        grads[implementation] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert (grads["sdpa"] - grads["eager"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("cls", [MgteForMaskedLM, MgteForEmbedding])
def test_gradient_checkpointing_gives_same_gradients(cls):
    model = make_model(cls, hidden_dropout_prob=0.0).train()
    ids, mask = random_batch([6, 9])

    def loss():
        if cls is MgteForMaskedLM:
            return model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        out = model(input_ids=ids, attention_mask=mask)
        return out.dense.pow(2).sum() + out.sparse.sum()

    grads = []
    for enable in (False, True):
        if enable:
            model.activation_checkpointing_enable()
        model.zero_grad()
        loss().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert model.new.encoder.layer[0].gradient_checkpointing
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_mlm_sparse_prediction_matches_full_logits():
    model = make_model(MgteForMaskedLM, sparse_prediction=True)
    ids, mask = random_batch([7, 12])
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 5], labels[1, 11] = 7, 8, 9
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits  # (B, L, V)
        sparse = model(input_ids=ids, attention_mask=mask, labels=labels)
        model.config.sparse_prediction = False
        dense = model(input_ids=ids, attention_mask=mask, labels=labels)
    selected = full[labels != -100]
    assert sparse.logits.shape == (3, 320)
    assert (sparse.logits - selected).abs().max().item() <= TOL
    assert dense.logits.shape == full.shape
    assert abs(sparse.loss.item() - dense.loss.item()) <= 1e-5
    expected = torch.nn.functional.cross_entropy(selected, labels[labels != -100])
    assert abs(sparse.loss.item() - expected.item()) <= 1e-5


def test_reranker_and_token_heads_shapes_and_losses():
    rr = make_model(MgteForSequenceClassification, num_labels=1)
    ids, mask = random_batch([4, 9])
    out = rr(input_ids=ids, attention_mask=mask, labels=torch.tensor([1, 0]))  # long labels, regression: cast
    assert out.logits.shape == (2, 1) and out.loss.dim() == 0
    tc = make_model(MgteForTokenClassification, num_labels=3)
    out = tc(input_ids=ids, attention_mask=mask, labels=torch.where(mask.bool(), 1, -100))
    assert out.logits.shape == (2, 9, 3) and out.last_hidden_state.shape == (2, 9, 32) and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="labels must be in"):
        tc(input_ids=ids, attention_mask=mask, labels=torch.full_like(ids, 3))


def test_embedding_head_dimensions_and_sparse():
    model = make_model(MgteForEmbedding)
    ids, mask = random_batch([4, 9])
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask)
        small = model(input_ids=ids, attention_mask=mask, dimension=8)
        hidden = model.new(input_ids=ids, attention_mask=mask).last_hidden_state
    assert full.dense.shape == (2, 32) and small.dense.shape == (2, 8)
    cls = torch.stack([hidden[0, 0], hidden[1, 0]])
    assert torch.allclose(small.dense, torch.nn.functional.normalize(cls[:, :8], dim=-1), atol=1e-6)
    assert (full.sparse >= 0).all() and full.sparse[mask == 0].abs().max() == 0
    expected = torch.relu(model.classifier(hidden)).squeeze(-1)
    assert torch.allclose(full.sparse[mask.bool()], expected[mask.bool()], atol=1e-6)
    for bad in (12, 64, 0, "8"):
        with pytest.raises(ValueError, match="not allowed"):
            model(input_ids=ids, attention_mask=mask, dimension=bad)


def test_mlm_logits_are_padded_by_default():
    model = make_model(MgteForMaskedLM)
    ids, mask = random_batch([7, 12])
    labels = ids.masked_fill(mask == 0, -100)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert not model.config.sparse_prediction and out.logits.shape == (2, 12, 320)


def test_attentions_and_hidden_states_come_padded_by_input_position_with_gradients():
    model = make_model(MgteModel, attn_implementation="eager")
    ids, mask = random_batch([5, 3], left=True)
    out = model(input_ids=ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 5, 5)
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(2, 4, 5))
    assert out.attentions[0][1, :, :, :2].abs().max() == 0  # the left padding of row 1 gets no weight
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (2, 5, 32)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert out.hidden_states[1][1, :2].abs().max() == 0  # zeros at padding, in the input's layout
    for t in (*out.hidden_states[:-1], out.attentions[0]):
        t.retain_grad()
    out.last_hidden_state[1, 4].sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (*out.hidden_states[:-1], out.attentions[0]))


def test_sdpa_returns_no_attention_weights_and_says_so(encoder, caplog):
    ids, mask = random_batch([5, 3])
    with torch.no_grad():
        out = encoder(input_ids=ids, attention_mask=mask, output_attentions=True)
    assert out.attentions == ()


def test_hidden_states_selected_by_index(encoder):
    ids, mask = random_batch([5, 3])
    with torch.no_grad():
        full = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        some = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=[0, -1]).hidden_states
    assert some[1] is None and torch.equal(some[0], full[0]) and torch.equal(some[-1], full[-1])


def test_return_tuple(encoder):
    ids, mask = random_batch([3])
    with torch.no_grad():
        tup = encoder(input_ids=ids, attention_mask=mask, return_dict=False)
    assert isinstance(tup, tuple) and tup[0].shape == (1, 3, 32)


def test_unavailable_mgte_kernels_are_refused_at_load(monkeypatch):
    from mgte_hf.modeling import attention_mgte

    monkeypatch.setattr(attention_mgte, "xops", None)
    with pytest.raises(ValueError, match="needs xformers"):
        make_model(MgteModel, attn_implementation="mgte_xformers")
    with pytest.raises(ValueError, match="is not supported"):
        make_model(MgteModel).set_attn_implementation("no_such_kernel")


def test_packed_input_from_transformers_flattening_collator():
    """DataCollatorWithFlattening's two outputs — position ids restarting at 0, or flash-attention offsets — are
    packed input, equal to the padded batch."""
    from transformers import DataCollatorWithFlattening

    model = make_model(MgteForMaskedLM)
    ids, mask = random_batch([5, 11, 2])
    features = [{"input_ids": row[m.bool()].tolist()} for row, m in zip(ids, mask)]
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask).logits[mask.bool()]
        for flash_kwargs in (False, True):
            batch = DataCollatorWithFlattening(return_flash_attn_kwargs=flash_kwargs, return_position_ids=not flash_kwargs)(
                features, return_tensors="pt")
            batch.pop("labels")
            got = model(**batch).logits[0]
            assert (got - padded).abs().max().item() <= TOL


@pytest.fixture(scope="module")
def two_type_embedder():
    return make_model(MgteForEmbedding, type_vocab_size=2)


class TestBadInput:
    @pytest.mark.parametrize("make,match", [
        (lambda: dict(input_ids=torch.zeros(0, 4, dtype=torch.long)), "Empty batch"),
        (lambda: dict(input_ids=torch.zeros(2, 0, dtype=torch.long)), "Empty batch"),
        (lambda: dict(input_ids=torch.ones(2, 3, dtype=torch.long), attention_mask=torch.tensor([[1, 1, 0], [0, 0, 0]])),
         "all zero"),
        (lambda: dict(input_ids=torch.tensor([[0, 320]])), "vocab_size"),
        (lambda: dict(input_ids=torch.tensor([[0, -1]])), "vocab_size"),
        (lambda: dict(input_ids=torch.ones(2, 3, dtype=torch.long), attention_mask=torch.ones(2, 4, dtype=torch.long)),
         "attention_mask"),
        (lambda: dict(input_ids=torch.ones(2, 3, dtype=torch.long), token_type_ids=torch.zeros(3, 2, dtype=torch.long)),
         "token_type_ids"),
        (lambda: dict(input_ids=torch.ones(1, 3, dtype=torch.long), token_type_ids=torch.tensor([[0, 1, 2]])),
         "type_vocab_size"),
        (lambda: dict(input_ids=torch.ones(1, 3)), "integer"),
        (lambda: dict(input_ids=torch.ones(3, dtype=torch.long)), "batch, seq_len"),
        (lambda: dict(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mask=torch.tensor([[1, 2, 1]])),
         "0 and 1"),
        (lambda: dict(), "input_ids or inputs_embeds"),
        (lambda: dict(input_ids=torch.ones(1, 3, dtype=torch.long), dimension=33), "not allowed"),
        (lambda: dict(input_ids=torch.ones(1, 3, dtype=torch.uint8)), "torch.long"),
        (lambda: dict(inputs_embeds=torch.zeros(1, 3, 16)), "hidden_size=32"),
        (lambda: dict(inputs_embeds=torch.zeros(1, 3, 32, dtype=torch.float64)), "cast them"),
        (lambda: dict(inputs_embeds=torch.full((1, 3, 32), float("nan"))), "NaN or inf"),
        (lambda: dict(inputs_embeds=torch.tensor([[[float("inf")] * 32]])), "NaN or inf"),
        (lambda: dict(input_ids=torch.ones(2, 3, dtype=torch.long), position_ids=torch.arange(3)[None]),
         "position_ids"),
        (lambda: dict(input_ids=torch.ones(1, 3, dtype=torch.long), position_ids=torch.tensor([[0, -1, 2]])),
         "position_ids"),
        (lambda: dict(input_ids=torch.ones(1, 3, dtype=torch.long), position_ids=torch.tensor([[0.0, 1.0, 2.0]])),
         "position_ids"),
        (lambda: dict(input_ids=torch.ones(1, 3, dtype=torch.long), seqlens=[2, 2]), "seqlens"),
        (lambda: dict(input_ids=torch.ones(1, 3, dtype=torch.long), seqlens=[3, 0]), "seqlens"),
        (lambda: dict(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 3), seqlens=[3]),
         "no attention_mask"),
    ])
    def test_clear_errors(self, two_type_embedder, make, match):
        with pytest.raises(ValueError, match=match):
            two_type_embedder(**make())

    def test_inputs_are_never_mutated(self, two_type_embedder):
        model = two_type_embedder
        ids, mask = random_batch([4, 2])
        types = torch.ones_like(ids)
        copies = [t.clone() for t in (ids, mask, types)]
        model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        for t, c in zip((ids, mask, types), copies):
            assert torch.equal(t, c)

    @pytest.mark.parametrize("cls,labels,match", [
        (MgteForSequenceClassification, torch.tensor([1, 0, 1]), r"labels \(3,\) do not fit"),  # batch of 1
        (MgteForMaskedLM, torch.ones(1, 4, dtype=torch.long), "shape of input_ids"),
        (MgteForTokenClassification, torch.ones(3, dtype=torch.long), "shape of input_ids"),
        (MgteForMaskedLM, torch.ones(1, 3), "integer class ids"),
    ])
    def test_labels_that_do_not_fit_are_refused_not_broadcast(self, cls, labels, match):
        model = make_model(cls, num_labels=1 if cls is MgteForSequenceClassification else 2)
        with pytest.raises(ValueError, match=match):
            model(input_ids=torch.ones(1, 3, dtype=torch.long), labels=labels)

    def test_unknown_keyword_arguments_are_refused(self, two_type_embedder):
        with pytest.raises(TypeError, match="attention_mak"):
            two_type_embedder(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mak=torch.ones(1, 3))

    def test_sequences_past_the_trained_length_warn_once(self, caplog):
        from transformers.utils import logging as hf_logging

        model = make_model(MgteModel)  # max_position_embeddings 16
        hf_logging.get_logger("mgte_hf.modeling.modeling_mgte").warning_once.cache_clear()
        with caplog.at_level("WARNING"):
            model(input_ids=torch.ones(1, 200, dtype=torch.long))
            model(input_ids=torch.ones(1, 300, dtype=torch.long))
        assert sum("max_position_embeddings" in r.message for r in caplog.records) == 1

    def test_absolute_positions_refuse_long_sequences(self):
        model = make_model(MgteModel, position_embedding_type="absolute", max_position_embeddings=8)
        with pytest.raises(ValueError, match="max_position_embeddings"):
            model(input_ids=torch.ones(1, 9, dtype=torch.long))


def test_a_mask_with_a_hole_matches_transformers_gte():
    """[1, 0, 1, 1, 1]: the masked token is a hidden key, not a deleted one, as in transformers' GteModel."""
    from benchmarks.gte import gte_from_mgte

    model = make_model(MgteModel, rope_scaling=None)
    gte = gte_from_mgte(model).eval()
    ids, _ = random_batch([5, 5], seed=3)
    mask = torch.tensor([[1, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask).last_hidden_state
        theirs = gte(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (ours - theirs)[mask.bool()].abs().max().item() <= TOL


def test_token_type_ids_are_used_when_type_vocab_is_two():
    model = make_model(MgteModel, type_vocab_size=2)
    ids, mask = random_batch([5])
    with torch.no_grad():
        a = model(input_ids=ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state
        b = model(input_ids=ids, token_type_ids=torch.ones_like(ids)).last_hidden_state
        c = model(input_ids=ids).last_hidden_state
    assert torch.equal(a, c) and not torch.allclose(a, b)


def test_config_is_the_only_source_of_rope():
    """RoPE is computed from the config at every forward: changing rope_theta changes the outputs at once."""
    model = make_model(MgteModel)
    ids, _ = random_batch([10])
    with torch.no_grad():
        before = model(input_ids=ids).last_hidden_state
        model.config.rope_theta = 160000.0
        after = model(input_ids=ids).last_hidden_state
    assert not torch.allclose(before, after)
    assert isinstance(model.config, MgteConfig)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_rope_is_bitwise_the_autograd_rope(dtype):
    """Without autograd RoPE writes into one buffer; it must round exactly as x·cos + rot(x)·sin and leave x alone."""
    g = torch.Generator().manual_seed(0)
    x, cos, sin = (torch.randn(shape, generator=g).to(dtype) for shape in ((9, 3, 8), (9, 1, 8), (9, 1, 8)))
    before = x.clone()
    expected = apply_rope(x, cos, sin)
    with torch.no_grad():
        got = apply_rope(x, cos, sin)
    assert torch.equal(got, expected) and torch.equal(x, before)


def test_packed_mlm_with_labels_equals_padded():
    model = make_model(MgteForMaskedLM, sparse_prediction=True)
    ids, mask = random_batch([6, 3, 9])
    labels = torch.full_like(ids, -100)
    labels[0, 1], labels[2, 8], labels[1, 2] = 11, 12, 13
    flat = mask.bool()
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask, labels=labels)
        packed = model(input_ids=ids[flat][None], labels=labels[flat][None], seqlens=mask.sum(1))
    assert torch.allclose(padded.logits, packed.logits, atol=1e-5)
    assert abs(padded.loss.item() - packed.loss.item()) <= 1e-6


@pytest.mark.parametrize("left", [False, True])
def test_encode_padded_equals_packed_forward(encoder, left):
    ids, mask = random_batch([7, 2, 12], left=left)
    with torch.no_grad():
        padded = encoder.encode_padded(ids, mask)
        packed = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    assert (padded - packed)[mask.bool()].abs().max().item() <= TOL
