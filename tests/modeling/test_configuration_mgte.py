import json

import pytest

from mgte_hf import MgteConfig
from mgte_hf.modeling import convert_config_dict


RELEASED = ["gte-multilingual-base", "gte-base-en-v1.5", "gte-large-en-v1.5"]


def test_defaults_describe_gte_multilingual_base():
    c = MgteConfig()
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (250048, 768, 12, 12)
    assert c.rope_theta == 20000.0 and c.rope_scaling == {"type": "ntk", "factor": 8.0}
    assert c.max_position_embeddings == 8192 and c.pad_token_id == 1 and c.head_dim == 64


@pytest.mark.parametrize("name", RELEASED)
def test_released_configs_read_with_every_key(name, tmp_path):
    from tiny import SHARED, missing_resource

    path = SHARED / "reference" / "released-configs" / f"{name}.config.json"
    if not path.exists():
        missing_resource(f"released config not found at {path} (shared/ must sit beside the repository)")
    raw = json.loads(path.read_text())
    (tmp_path / "config.json").write_text(json.dumps(raw))
    c = MgteConfig.from_pretrained(tmp_path)
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size", "pad_token_id", "layer_norm_type", "pack_qkv",
                "position_embedding_type", "hidden_act", "layer_norm_eps"):
        assert getattr(c, key) == raw[key], key
    assert c.rope_theta == float(raw["rope_theta"])
    assert c.rope_scaling == raw["rope_scaling"]
    assert c.tie_word_embeddings is True


def test_new_config_missing_keys_take_released_defaults():
    c = MgteConfig.from_dict({"model_type": "new", "hidden_size": 64, "num_attention_heads": 4})
    assert c.vocab_size == 30528 and c.max_position_embeddings == 2048 and c.rope_theta == 10000.0
    assert c.rope_scaling is None and c.pad_token_id is None and c.type_vocab_size == 1


def test_legacy_attn_backend_becomes_attn_implementation():
    """Configs saved by mgte-hf 0.1 carry `attn_backend`; it maps onto transformers' one knob."""
    assert MgteConfig(attn_backend="eager")._attn_implementation == "eager"
    assert MgteConfig(attn_backend="xformers")._attn_implementation == "mgte_xformers"
    assert MgteConfig(attn_backend="auto")._attn_implementation is None  # the model then takes "sdpa"
    released = MgteConfig.from_dict({"model_type": "new", "use_memory_efficient_attention": True,
                                     "unpad_inputs": True})
    assert released._attn_implementation is None  # a runtime key of the released code: chosen at load instead


def test_save_reload_keeps_everything(tmp_path):
    c = MgteConfig(hidden_size=64, num_attention_heads=4, rope_scaling={"type": "ntk", "factor": 2.0, "mixed_b": 0.75},
                   matryoshka_dimensions=[32, 16], sparse_ignore_token_ids=[0, 1, 2, 3], type_vocab_size=0,
                   pack_qkv=False, num_labels=1, sparse_prediction=True)
    c.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "mgte"
    assert saved["rope_parameters"] == {"rope_type": "ntk", "rope_theta": 20000.0, "factor": 2.0, "mixed_b": 0.75}
    assert "rope_scaling" not in saved and "rope_theta" not in saved  # one source: rope_parameters
    assert saved["auto_map"]["AutoModel"] == "modeling_mgte.MgteModel"
    r = MgteConfig.from_pretrained(tmp_path)
    for key in ("rope_parameters", "rope_scaling", "rope_theta", "matryoshka_dimensions", "sparse_ignore_token_ids",
                "type_vocab_size", "pack_qkv", "num_labels", "hidden_size", "sparse_prediction"):
        assert getattr(r, key) == getattr(c, key), key
    assert r.matryoshka_dimensions == [16, 32]


def test_configs_saved_with_the_released_keys_still_read(tmp_path):
    """mgte-hf 0.1 wrote rope_theta + rope_scaling (and attn_backend): the same model comes back."""
    legacy = {"model_type": "mgte", "hidden_size": 64, "num_attention_heads": 4, "rope_theta": 160000.0,
              "rope_scaling": {"type": "ntk", "factor": 2.0}, "attn_backend": "auto"}
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    c = MgteConfig.from_pretrained(tmp_path)
    assert c.rope_parameters == {"rope_type": "ntk", "rope_theta": 160000.0, "factor": 2.0}


def test_an_mgte_config_without_rope_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mgte", "hidden_size": 64,
                                                      "num_attention_heads": 4}))
    with pytest.raises(ValueError, match="states no RoPE"):
        MgteConfig.from_pretrained(tmp_path)


def test_rope_views_follow_rope_parameters():
    c = MgteConfig(hidden_size=64, num_attention_heads=4)
    c.rope_theta = 160000.0
    assert c.rope_parameters == {"rope_type": "ntk", "rope_theta": 160000.0, "factor": 8.0}
    c.rope_scaling = None
    assert c.rope_parameters == {"rope_type": "default", "rope_theta": 160000.0} and c.rope_scaling is None
    yarn = MgteConfig(hidden_size=64, num_attention_heads=4,
                      rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0})
    assert yarn.rope_scaling["rope_type"] == "yarn" and yarn.rope_theta == 1e4


def test_caller_dicts_are_not_mutated():
    scaling = {"type": "ntk", "factor": 8.0}
    raw = {"model_type": "new", "rope_scaling": scaling, "hidden_size": 64, "num_attention_heads": 4}
    before = json.dumps(raw, sort_keys=True)
    c = MgteConfig.from_dict(raw)
    MgteConfig(rope_scaling=scaling)
    assert json.dumps(raw, sort_keys=True) == before
    assert c.rope_scaling == scaling and c.rope_scaling is not scaling


def test_gte_config_maps_linear_rope_back_to_ntk():
    d = 64
    out = convert_config_dict({"model_type": "gte", "hidden_size": 768, "num_attention_heads": 12,
                               "rope_parameters": {"rope_type": "linear", "factor": 8.0 ** (2 / d),
                                                   "rope_theta": 20000.0 * 8}})
    assert out["rope_scaling"] == {"type": "ntk", "factor": 8.0}
    assert abs(out["rope_theta"] - 20000.0) < 1e-6
    plain = convert_config_dict({"model_type": "gte", "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}})
    assert plain["rope_scaling"] is None and plain["rope_theta"] == 5e5


@pytest.mark.parametrize("kwargs,match", [
    ({"hidden_size": 30, "num_attention_heads": 4}, "divisible"),
    ({"hidden_size": 36, "num_attention_heads": 4}, "even"),
    ({"rope_scaling": {"type": "alibi", "factor": 2.0}}, "unknown rope type"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": -5.0}}, "rope_theta"),
    ({"rope_parameters": {"rope_type": "ntk", "rope_theta": 1e4, "factor": 2.0, "partial_rotary_factor": 0.5}},
     "partial_rotary_factor"),
    ({"rope_scaling": {"type": "ntk", "factor": -1}}, "factor"),
    ({"rope_scaling": {"type": "ntk", "factor": 2.0, "mixed_b": 0}}, "mixed_b"),
    ({"rope_scaling": {"type": "ntk", "factor": 2.0, "alpha": 1}}, "unknown rope_scaling keys"),
    ({"layer_norm_type": "batch_norm"}, "layer_norm_type"),
    ({"position_embedding_type": "alibi"}, "position_embedding_type"),
    ({"type_vocab_size": -1}, "type_vocab_size"),
    ({"matryoshka_dimensions": [64, 1024]}, "matryoshka_dimensions"),
    ({"matryoshka_dimensions": [0]}, "matryoshka_dimensions"),
    ({"attn_backend": "flash3"}, "attn_backend"),
    ({"pad_token_id": 250048}, "pad_token_id"),
    ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
    ({"num_hidden_layers": 0}, "num_hidden_layers"),
])
def test_invalid_settings_raise_with_reason(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MgteConfig(**kwargs)


def test_unknown_model_type_is_refused():
    with pytest.raises(ValueError, match="model_type"):
        MgteConfig.from_dict({"model_type": "bert"})


def test_dimension_rules():
    import numpy as np

    free = MgteConfig(hidden_size=64, num_attention_heads=4)
    assert free.dimension_allowed(1) and free.dimension_allowed(64) and free.dimension_allowed(np.int64(8))
    assert not free.dimension_allowed(65) and not free.dimension_allowed(0) and not free.dimension_allowed(True)
    fixed = MgteConfig(hidden_size=64, num_attention_heads=4, matryoshka_dimensions=[16, 32])
    assert fixed.dimension_allowed(16) and fixed.dimension_allowed(64) and not fixed.dimension_allowed(24)
