"""The released-layout fixture checkpoints reproduce the reference outputs of the released mGTE code.

fp32 agrees within 1e-5, or 16 ulp of the output's largest magnitude where that is more (`tiny.fp32_bound`: the MLM
logits reach |16|, where the reference's own rounding is ~1e-5 and moves with the CPU's GEMM kernel). Our float64 run
agrees with the fp32 reference within the same bound, which shows that what remains is the reference's rounding.
"""

import json

import pytest
import torch
from safetensors.torch import load_file

import mgte_hf
from tiny import fp32_bound


TOL = 1e-5

HEADS = [
    ("backbone", mgte_hf.MgteModel, lambda o: o.last_hidden_state, "backbone.last_hidden_state"),
    ("mlm", mgte_hf.MgteForMaskedLM, lambda o: o.logits, "mlm.logits"),
    ("token_cls", mgte_hf.MgteForTokenClassification, lambda o: o.logits, "token_cls.logits"),
    ("token_cls", mgte_hf.MgteForEmbedding, lambda o: o.sparse, "sparse.token_weights"),
]


@pytest.fixture(scope="module")
def reference(fixture_dir):
    return load_file(fixture_dir / "reference_outputs.safetensors")


@pytest.fixture(scope="module")
def models(fixture_dir):
    cache = {}

    def get(folder, cls, dtype=torch.float32):
        if (folder, cls, dtype) not in cache:
            cache[folder, cls, dtype] = cls.from_pretrained(fixture_dir / folder, dtype=dtype).eval()
        return cache[folder, cls, dtype]

    return get


def left_pad(ids, mask, pad_id=1):
    out_ids, out_mask = torch.full_like(ids, pad_id), torch.zeros_like(mask)
    for i, n in enumerate(mask.sum(1).tolist()):
        out_ids[i, ids.shape[1] - n:] = ids[i, :n]
        out_mask[i, ids.shape[1] - n:] = 1
    return out_ids, out_mask


def valid(t, mask):
    return [t[i][mask[i].bool()] for i in range(t.shape[0])]


@pytest.mark.parametrize("folder,cls,get,key", HEADS, ids=[f"{h[0]}-{h[1].__name__}" for h in HEADS])
@pytest.mark.parametrize("layout", ["right", "left", "alone"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_token_outputs_match_reference(models, reference, folder, cls, get, key, layout, dtype):
    ids, mask = reference["input_ids"], reference["attention_mask"]
    lengths = mask.sum(1).tolist()
    expected = [reference[key][i, :n] for i, n in enumerate(lengths)]
    bound = fp32_bound(reference[key][mask.bool()])
    model = models(folder, cls, dtype)
    with torch.no_grad():
        if layout == "alone":
            got = [get(model(input_ids=ids[i:i + 1, :n]))[0] for i, n in enumerate(lengths)]
        else:
            lids, lmask = (ids, mask) if layout == "right" else left_pad(ids, mask)
            got = valid(get(model(input_ids=lids, attention_mask=lmask)), lmask)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert (g.float() - e).abs().max().item() <= bound, f"sequence {i}"


def test_padding_positions_are_zero(models, reference):
    mask = reference["attention_mask"]
    with torch.no_grad():
        out = models("backbone", mgte_hf.MgteModel)(input_ids=reference["input_ids"], attention_mask=mask)
    assert out.last_hidden_state[mask == 0].abs().max().item() == 0.0


def test_hidden_states_match_reference(models, reference):
    ids, mask = reference["input_ids"], reference["attention_mask"]
    with torch.no_grad():
        out = models("backbone", mgte_hf.MgteModel)(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == 3
    for layer, h in enumerate(out.hidden_states):
        ref = reference[f"backbone.hidden_states.{layer}"]
        for g, e in zip(valid(h, mask), valid(ref, mask)):
            assert (g - e).abs().max().item() <= TOL


@pytest.mark.parametrize("layout", ["right", "left", "alone"])
def test_reranker_logits_and_pooler_match_reference(models, reference, layout):
    ids, mask = reference["input_ids"], reference["attention_mask"]
    model = models("seq_cls", mgte_hf.MgteForSequenceClassification)
    with torch.no_grad():
        if layout == "alone":
            logits = torch.cat([model(input_ids=ids[i:i + 1, :n]).logits for i, n in enumerate(mask.sum(1).tolist())])
        else:
            lids, lmask = (ids, mask) if layout == "right" else left_pad(ids, mask)
            logits = model(input_ids=lids, attention_mask=lmask).logits
            out = model.new(input_ids=lids, attention_mask=lmask)
            assert (out.pooler_output - reference["seq_cls.pooled_output"]).abs().max().item() <= TOL
    assert logits.shape == (4, 1)
    assert (logits - reference["seq_cls.logits"]).abs().max().item() <= TOL


@pytest.mark.parametrize("dimension,key", [(None, "dense.cls_normalized"), (16, "dense.cls_normalized_dim16"),
                                           (32, "dense.cls_normalized_dim32")])
def test_embedding_dense_matches_reference(models, reference, dimension, key):
    model = models("token_cls", mgte_hf.MgteForEmbedding)
    with torch.no_grad():
        out = model(input_ids=reference["input_ids"], attention_mask=reference["attention_mask"], dimension=dimension)
    assert out.dense.shape == reference[key].shape
    assert (out.dense - reference[key]).abs().max().item() <= TOL
    assert torch.allclose(out.dense.norm(dim=-1), torch.ones(4), atol=1e-6)
    assert out.sparse.shape == reference["input_ids"].shape


def test_sparse_dictionaries_match_reference(models, reference, fixture_dir):
    meta = json.loads((fixture_dir / "meta.json").read_text())
    ignore = sorted(meta["special_token_ids"].values())
    model = models("token_cls", mgte_hf.MgteForEmbedding)
    ids, mask = reference["input_ids"], reference["attention_mask"]
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    dicts = mgte_hf.token_weights_to_dicts(out.sparse, ids, mask, ignore)
    expected = meta["sparse_token_weights_by_id"]
    expected = expected if isinstance(expected, list) else [expected[k] for k in sorted(expected, key=int)]
    assert len(dicts) == len(expected)
    for got, exp in zip(dicts, expected):
        exp = {int(k): v for k, v in exp.items()}
        assert got.keys() == exp.keys()
        assert max(abs(got[k] - exp[k]) for k in exp) <= TOL


def test_rope_tables_match_reference(models, reference):
    from mgte_hf.modeling import rope_cos_sin, rope_inv_freq

    config = models("backbone", mgte_hf.MgteModel).config
    inv_freq = rope_inv_freq(config)
    cos, sin = rope_cos_sin(torch.arange(reference["rope.cos"].shape[0]), inv_freq)
    assert torch.equal(inv_freq, reference["rope.inv_freq"])
    assert (cos - reference["rope.cos"]).abs().max() <= 1e-6
    assert (sin - reference["rope.sin"]).abs().max() <= 1e-6


def test_mlm_decoder_is_tied_and_released_keys_load(models, fixture_dir):
    model = models("mlm", mgte_hf.MgteForMaskedLM)
    assert model.lm_head.decoder.weight.data_ptr() == model.new.embeddings.word_embeddings.weight.data_ptr()
    meta = json.loads((fixture_dir / "meta.json").read_text())
    released = set(meta["state_dict_keys"]["mlm"])
    ours = set(model.state_dict())
    assert released <= ours
    assert ours - released == {"lm_head.decoder.weight"}  # the tied weight a v4 save omits
