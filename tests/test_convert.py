"""Checkpoint conversion between our layout, the released "new" layout and transformers' native "gte"."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from mgte_hf import (
    MgteConfig,
    MgteForEmbedding,
    MgteForMaskedLM,
    MgteForSequenceClassification,
    MgteForTokenClassification,
    MgteModel,
)
from mgte_hf.convert import convert_checkpoint, detect_format, read_checkpoint
from tiny import fp32_bound, make_model, random_batch


HEADS = {  # fixture folder → (our class, transformers' class, output compared)
    "backbone": (MgteModel, transformers.GteModel, "last_hidden_state"),
    "mlm": (MgteForMaskedLM, transformers.GteForMaskedLM, "logits"),
    "seq_cls": (MgteForSequenceClassification, transformers.GteForSequenceClassification, "logits"),
    "token_cls": (MgteForTokenClassification, transformers.GteForTokenClassification, "logits"),
}


@pytest.fixture(scope="module")
def fixture_batch(fixture_dir):
    ref = load_file(fixture_dir / "reference_outputs.safetensors")
    return ref["input_ids"], ref["attention_mask"]


def _outputs(model, ids, mask, key):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)[key]
    return out[mask.bool()] if out.dim() == 3 else out  # valid positions only


def _folder_digest(folder) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("head", list(HEADS))
def test_fixture_as_gte_matches_ours(head, fixture_dir, fixture_batch, tmp_path):
    ours_cls, gte_cls, key = HEADS[head]
    ids, mask = fixture_batch
    convert_checkpoint(fixture_dir / head, tmp_path / "gte", to="gte")
    assert detect_format(tmp_path / "gte") == "gte"

    ours = _outputs(ours_cls.from_pretrained(fixture_dir / head).eval(), ids, mask, key)
    gte = _outputs(gte_cls.from_pretrained(tmp_path / "gte").eval(), ids, mask, key)
    # fp32: 1e-5, or 16 ulp of the largest output where that is more (MLM logits reach |16|; see tiny.fp32_bound)
    assert (gte - ours).abs().max().item() <= fp32_bound(ours)

    # float64 shows that the conversion itself is exact (what remains in fp32 is rounding)
    ours64 = _outputs(ours_cls.from_pretrained(fixture_dir / head, dtype=torch.float64).eval(), ids, mask, key)
    gte64 = _outputs(gte_cls.from_pretrained(tmp_path / "gte", dtype=torch.float64).eval(), ids, mask, key)
    assert (gte64 - ours64).abs().max() < 1e-10


@pytest.mark.parametrize("head", list(HEADS))
def test_new_ours_new_round_trip_is_exact(head, fixture_dir, tmp_path):
    src = fixture_dir / head
    before = _folder_digest(src)
    convert_checkpoint(src, tmp_path / "ours", to="mgte")
    convert_checkpoint(tmp_path / "ours", tmp_path / "new", to="new")

    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == "mgte"
    assert (tmp_path / "ours" / "modeling_mgte.py").is_file()  # self-contained remote code
    assert json.loads((tmp_path / "new" / "config.json").read_text()) == json.loads((src / "config.json").read_text())
    original, back = load_file(src / "model.safetensors"), load_file(tmp_path / "new" / "model.safetensors")
    assert original.keys() == back.keys()
    assert all(torch.equal(original[k], back[k]) and original[k].dtype == back[k].dtype for k in original)
    assert _folder_digest(src) == before  # the source is never touched


def test_ours_gte_ours_round_trip(tmp_path):
    model = make_model(MgteForEmbedding, num_labels=1, sparse_ignore_token_ids=[0, 1, 2, 3])
    model.save_pretrained(tmp_path / "ours")
    convert_checkpoint(tmp_path / "ours", tmp_path / "gte", to="gte")
    convert_checkpoint(tmp_path / "gte", tmp_path / "back", to="mgte")

    original, back = load_file(tmp_path / "ours" / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert original.keys() == back.keys()
    assert all(torch.equal(original[k], back[k]) for k in original)
    config = MgteConfig.from_pretrained(tmp_path / "back")
    assert config.architectures == ["MgteForEmbedding"]
    for key in ("rope_scaling", "matryoshka_dimensions", "sparse_ignore_token_ids", "pack_qkv", "hidden_size",
                "num_hidden_layers", "vocab_size", "pad_token_id", "num_labels"):
        assert getattr(config, key) == getattr(model.config, key), key
    assert config.rope_theta == pytest.approx(model.config.rope_theta, rel=1e-12)

    ids, mask = random_batch([9, 4, 13])
    reloaded = MgteForEmbedding.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        a, b = model(input_ids=ids, attention_mask=mask), reloaded(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(b.dense, a.dense, atol=1e-6, rtol=0)
    torch.testing.assert_close(b.sparse, a.sparse, atol=1e-6, rtol=0)


def test_gte_keys_are_transformers_module_keys(tmp_path):
    model = make_model(MgteForSequenceClassification, num_labels=1)
    model.save_pretrained(tmp_path / "ours")
    convert_checkpoint(tmp_path / "ours", tmp_path / "gte", to="gte")
    gte = transformers.GteForSequenceClassification.from_pretrained(tmp_path / "gte")
    assert set(load_file(tmp_path / "gte" / "model.safetensors")) == set(gte.state_dict())
    assert "gte.layers.0.self_attn.q_proj.weight" in gte.state_dict()


def test_separate_qkv_and_type_vocab_survive_gte(tmp_path):
    model = make_model(MgteForTokenClassification, num_labels=1, pack_qkv=False, type_vocab_size=0,
                       rope_scaling=None, pad_token_id=None)
    model.save_pretrained(tmp_path / "ours")
    convert_checkpoint(tmp_path / "ours", tmp_path / "gte", to="gte")
    convert_checkpoint(tmp_path / "gte", tmp_path / "back", to="mgte")
    original, back = load_file(tmp_path / "ours" / "model.safetensors"), load_file(tmp_path / "back" / "model.safetensors")
    assert original.keys() == back.keys() and all(torch.equal(original[k], back[k]) for k in original)
    config = MgteConfig.from_pretrained(tmp_path / "back")
    assert (config.pack_qkv, config.type_vocab_size, config.rope_scaling, config.pad_token_id) == (False, 0, None, None)

    ids, mask = random_batch([7, 12], pad_id=0)
    gte = transformers.GteForTokenClassification.from_pretrained(tmp_path / "gte").eval()
    torch.testing.assert_close(_outputs(gte, ids, mask, "logits"), _outputs(model, ids, mask, "logits"),
                               atol=1e-5, rtol=0)


def test_reads_what_transformers_saves_for_gte(tmp_path):
    """transformers' own save_pretrained of a Gte model writes the released keys under `gte.`; read those too."""
    model = make_model(MgteForMaskedLM)
    model.save_pretrained(tmp_path / "ours")
    convert_checkpoint(tmp_path / "ours", tmp_path / "gte", to="gte")
    gte = transformers.GteForMaskedLM(transformers.GteConfig.from_pretrained(tmp_path / "gte"))
    gte.load_state_dict(load_file(tmp_path / "gte" / "model.safetensors"), strict=False)  # the decoder is tied
    gte.save_pretrained(tmp_path / "gte-saved")
    assert any(".encoder.layer." in k for k in load_file(tmp_path / "gte-saved" / "model.safetensors"))

    checkpoint = read_checkpoint(tmp_path / "gte-saved")
    assert checkpoint.architecture == "MgteForMaskedLM"
    assert checkpoint.state_dict.keys() == load_file(tmp_path / "ours" / "model.safetensors").keys()
    ids, mask = random_batch([5, 11])
    convert_checkpoint(tmp_path / "gte-saved", tmp_path / "back", to="mgte")
    back = MgteForMaskedLM.from_pretrained(tmp_path / "back").eval()
    torch.testing.assert_close(_outputs(back, ids, mask, "logits"), _outputs(model, ids, mask, "logits"),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("to", ["new", "gte", "mgte"])
def test_dtype_is_preserved(to, tmp_path):
    model = make_model(MgteForEmbedding).to(torch.float16)
    model.save_pretrained(tmp_path / "ours")
    convert_checkpoint(tmp_path / "ours", tmp_path / to, to=to)
    tensors = load_file(tmp_path / to / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    config = json.loads((tmp_path / to / "config.json").read_text())
    assert config.get("torch_dtype", config.get("dtype")) == "float16"
    assert read_checkpoint(tmp_path / to).dtype == torch.float16


def test_sharded_weights_and_missing_architectures(fixture_dir, tmp_path):
    """A sharded released checkpoint whose config lists no architectures (the head is read from the weights)."""
    src = tmp_path / "sharded"
    src.mkdir()
    config = json.loads((fixture_dir / "token_cls" / "config.json").read_text())
    del config["architectures"]
    (src / "config.json").write_text(json.dumps(config))
    tensors = load_file(fixture_dir / "token_cls" / "model.safetensors")
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, src / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, shard))
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    checkpoint = convert_checkpoint(src, tmp_path / "ours", to="mgte")
    assert checkpoint.architecture == "MgteForEmbedding"  # one-label token classifier, no pooler: the TRM
    back = load_file(tmp_path / "ours" / "model.safetensors")
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], tensors[k]) for k in tensors)


def test_embedding_model_maps_to_the_released_trm_architectures(tmp_path):
    make_model(MgteForEmbedding).save_pretrained(tmp_path / "ours")
    convert_checkpoint(tmp_path / "ours", tmp_path / "new", to="new")
    assert json.loads((tmp_path / "new" / "config.json").read_text())["architectures"] == [
        "NewModel", "NewForTokenClassification"]  # as gte-multilingual-base lists them
    assert read_checkpoint(tmp_path / "new").architecture == "MgteForEmbedding"


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"rope_scaling": {"type": "ntk", "factor": 2.0, "mixed_b": 1.2}}, "mixed_b"),
    ({"position_embedding_type": "absolute"}, "position_embedding_type"),
    ({"layer_norm_type": "rms_norm"}, "layer_norm_type"),
])
def test_gte_refuses_what_it_cannot_express(overrides, reason, tmp_path):
    make_model(MgteModel, **overrides).save_pretrained(tmp_path / "ours")
    with pytest.raises(ValueError, match=reason):
        convert_checkpoint(tmp_path / "ours", tmp_path / "gte", to="gte")
    assert not (tmp_path / "gte").exists()  # nothing half-written


def test_output_folder_rules(fixture_dir, tmp_path):
    src = fixture_dir / "token_cls"
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_checkpoint(src, dst, to="gte")
    assert [p.name for p in dst.iterdir()] == ["keep.txt"]

    convert_checkpoint(src, dst, to="gte", overwrite=True)
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging folder left

    ours = tmp_path / "ours"
    convert_checkpoint(src, ours, to="mgte")
    with pytest.raises(ValueError, match="is the input"):
        convert_checkpoint(ours, ours, to="new", overwrite=True)
    with pytest.raises(ValueError, match="holds the input"):
        convert_checkpoint(ours, tmp_path, to="new", overwrite=True)


def test_copies_tokenizer_files(tiny_tokenizer, tmp_path):
    model = make_model(MgteForEmbedding)
    model.save_pretrained(tmp_path / "ours")
    tiny_tokenizer.save_pretrained(tmp_path / "ours")
    convert_checkpoint(tmp_path / "ours", tmp_path / "new", to="new")
    assert (tmp_path / "new" / "tokenizer.json").read_bytes() == (tmp_path / "ours" / "tokenizer.json").read_bytes()
    convert_checkpoint(tmp_path / "ours", tmp_path / "bare", to="new", copy_tokenizer=False)
    assert not (tmp_path / "bare" / "tokenizer.json").exists()


def test_bad_sources_give_clear_errors(fixture_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint folder"):
        convert_checkpoint(tmp_path / "nothing", tmp_path / "out", to="new")

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((fixture_dir / "backbone" / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        convert_checkpoint(pickled, tmp_path / "out", to="mgte")

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((fixture_dir / "backbone" / "config.json").read_text())
    (corrupt / "model.safetensors").write_bytes((fixture_dir / "backbone" / "model.safetensors").read_bytes()[:500])
    with pytest.raises(ValueError, match="safetensors"):
        convert_checkpoint(corrupt, tmp_path / "out", to="mgte")

    qa = tmp_path / "qa"
    qa.mkdir()
    config = json.loads((fixture_dir / "backbone" / "config.json").read_text())
    (qa / "config.json").write_text(json.dumps({**config, "architectures": ["NewForQuestionAnswering"]}))
    save_file(load_file(fixture_dir / "backbone" / "model.safetensors"), qa / "model.safetensors")
    with pytest.raises(ValueError, match="NewForQuestionAnswering"):
        convert_checkpoint(qa, tmp_path / "out", to="mgte")

    with pytest.raises(ValueError, match="layout"):
        convert_checkpoint(fixture_dir / "backbone", tmp_path / "out", to="onnx")
    assert not (tmp_path / "out").exists()
