"""RoPE settings of the training stages: curriculum stages, revNTK training/inference pairs, scoped changes."""

from __future__ import annotations

import pytest
import torch

from mgte_hf import MgteForEmbedding
from mgte_hf.modeling import rope_inv_freq
from mgte_hf.training.rope import RopeSetting, curriculum_setting, rev_ntk_settings, rope_setting
from tiny import make_config, make_model, random_batch


def test_setting_round_trips_and_never_shares_the_scaling_dict():
    config = make_config()
    setting = RopeSetting.of(config)
    assert setting == RopeSetting(10000.0, {"type": "ntk", "factor": 2.0}, 16)
    setting.rope_scaling["factor"] = 99.0  # a copy: the config is untouched
    assert config.rope_scaling["factor"] == 2.0
    curriculum_setting(64, 160000).apply(config)
    assert (config.rope_theta, config.rope_scaling, config.max_position_embeddings) == (160000.0, None, 64)


def test_scoped_setting_is_restored_even_after_an_error():
    config = make_config()
    with pytest.raises(RuntimeError), rope_setting(config, curriculum_setting(32, 500.0)):
        assert config.rope_theta == 500.0 and config.rope_scaling is None
        raise RuntimeError("boom")
    assert RopeSetting.of(config) == RopeSetting(10000.0, {"type": "ntk", "factor": 2.0}, 16)


def test_rev_ntk_from_plain_rope_is_the_released_configuration():
    config = make_config(rope_theta=160000.0, rope_scaling=None, max_position_embeddings=8192)
    train, infer = rev_ntk_settings(config, 8)
    assert train == RopeSetting(20000.0, None, 8192)
    assert infer == RopeSetting(20000.0, {"type": "ntk", "factor": 8.0}, 8192)
    with rope_setting(config, infer):
        d = config.head_dim
        j = torch.arange(0, d, 2, dtype=torch.float32)
        torch.testing.assert_close(rope_inv_freq(config), 160000.0 ** (-j / d) * 8.0 ** (-2 / d))
    with rope_setting(config, train):
        torch.testing.assert_close(rope_inv_freq(config), 20000.0 ** (-j / d))


def test_rev_ntk_from_an_inference_config_trains_at_its_own_base():
    config = make_config(rope_theta=20000.0, rope_scaling={"type": "ntk", "factor": 8.0})
    train, infer = rev_ntk_settings(config, 8)
    assert (train.rope_theta, train.rope_scaling) == (20000.0, None)
    assert infer == RopeSetting.of(config)


def test_rev_ntk_refuses_what_it_cannot_express():
    with pytest.raises(ValueError, match="revNTK by 8 needs"):
        rev_ntk_settings(make_config(), 8)  # NTK factor 2
    with pytest.raises(ValueError, match="revNTK by 8 needs"):
        rev_ntk_settings(make_config(rope_scaling={"type": "ntk", "factor": 8.0, "mixed_b": 1.0}), 8)
    with pytest.raises(ValueError, match=">= 1"):
        rev_ntk_settings(make_config(), 0.5)
    config = make_config()
    assert rev_ntk_settings(config, 1) == (RopeSetting.of(config), RopeSetting.of(config))


def test_a_live_model_follows_its_config_at_the_next_forward():
    model = make_model(MgteForEmbedding, rope_scaling=None)
    ids, mask = random_batch([12, 7])
    with torch.no_grad():
        for layer in model.new.encoder.layer:  # sharp attention, so that positions matter
            layer.attention.qkv_proj.weight.mul_(20)
        before = model(input_ids=ids, attention_mask=mask).dense
        with rope_setting(model.config, curriculum_setting(16, 50.0)):
            during = model(input_ids=ids, attention_mask=mask).dense
        after = model(input_ids=ids, attention_mask=mask).dense
    assert (during - before).abs().max() > 1e-3
    torch.testing.assert_close(after, before)
