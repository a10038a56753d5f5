"""LoRA through real PEFT: targets, trainable heads, adapter save/load, merge into a normal checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from mgte_hf import MgteForEmbedding, MgteForMaskedLM, MgteForSequenceClassification
from mgte_hf.adapters import DEFAULT_LORA_TARGET_MODULES, apply_lora, load_lora, merge_and_unload
from tiny import make_model, random_batch


def _perturb_lora(peft_model, seed: int = 1) -> None:
    """LoRA B starts at zero (a no-op update); give every adapter and saved head a non-trivial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def _embed(model, ids, mask):
    out = model(input_ids=ids, attention_mask=mask)
    return out.dense, out.sparse


@pytest.mark.parametrize("pack_qkv", [True, False])
def test_default_targets_cover_every_encoder_linear(pack_qkv):
    model = apply_lora(make_model(MgteForEmbedding, pack_qkv=pack_qkv), r=4, alpha=8)
    adapted = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")}
    expected = {"o_proj", "up_gate_proj", "down_proj"} | ({"qkv_proj"} if pack_qkv else {"q_proj", "k_proj", "v_proj"})
    assert adapted == expected
    assert adapted <= set(DEFAULT_LORA_TARGET_MODULES)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or ".classifier." in n for n in trainable)
    assert any(".classifier." in n for n in trainable)  # the new sparse head trains in full
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad and "word_embeddings" in n]
    assert frozen


def test_reranker_trains_pooler_and_classifier_in_full():
    model = apply_lora(make_model(MgteForSequenceClassification, num_labels=1), r=2)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    assert any("pooler" in n for n in trainable) and any("classifier" in n for n in trainable)


def test_lora_gradients_reach_only_trainable_parameters():
    model = apply_lora(make_model(MgteForEmbedding), r=4)
    ids, mask = random_batch([6, 9])
    dense, sparse = _embed(model, ids, mask)
    (dense.sum() + sparse.sum()).backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(model.get_parameter(n).requires_grad for n in grads)
    assert any("lora_B" in n for n in grads)


def test_merge_and_unload_gives_a_plain_checkpoint_with_equal_outputs(tmp_path):
    peft_model = apply_lora(make_model(MgteForEmbedding), r=4, alpha=8)
    _perturb_lora(peft_model)
    peft_model.eval()
    ids, mask = random_batch([5, 11, 8], seed=3)
    with torch.no_grad():
        want_dense, want_sparse = _embed(peft_model, ids, mask)
        merged = merge_and_unload(peft_model)
        assert type(merged) is MgteForEmbedding
        assert not any("lora" in n for n, _ in merged.named_parameters())
        got_dense, got_sparse = _embed(merged, ids, mask)
    torch.testing.assert_close(got_dense, want_dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_sparse, want_sparse, atol=1e-5, rtol=1e-5)

    merged.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "mgte"
    reloaded = MgteForEmbedding.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        dense, sparse = _embed(reloaded, ids, mask)
    torch.testing.assert_close(dense, want_dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sparse, want_sparse, atol=1e-5, rtol=1e-5)


def test_adapter_saves_as_safetensors_and_reloads_onto_a_fresh_base(tmp_path):
    peft_model = apply_lora(make_model(MgteForSequenceClassification, num_labels=1), r=4)
    _perturb_lora(peft_model, seed=7)
    peft_model.eval()
    ids, mask = random_batch([7, 4], seed=5)
    with torch.no_grad():
        want = peft_model(input_ids=ids, attention_mask=mask).logits
    peft_model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    base = make_model(MgteForSequenceClassification, num_labels=1)  # same seed: the same frozen base weights
    with torch.no_grad():
        assert not torch.allclose(base(input_ids=ids, attention_mask=mask).logits, want)
        got = load_lora(base, tmp_path).eval()(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_bad_input_is_refused_without_touching_the_model():
    model = make_model(MgteForMaskedLM)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    with pytest.raises(ValueError, match="rank"):
        apply_lora(model, r=0)
    with pytest.raises(ValueError, match="None of the target modules"):
        apply_lora(model, target_modules=["query", "value"])
    with pytest.raises(TypeError, match="mGTE model"):
        apply_lora(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="PEFT-wrapped"):
        merge_and_unload(model)
    assert not any("lora" in n for n in model.state_dict())
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())


def test_load_lora_names_the_missing_adapter(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_lora(make_model(MgteForEmbedding), tmp_path)
