# Copyright 2026 The mgte-hf authors. Licensed under the Apache License, Version 2.0.
"""Configuration of the mGTE encoder family (gte-multilingual-base, gte-*-en-v1.5 and their heads).

This file ships as Hub remote code: it imports only the Python standard library and transformers' public API.
"""

import math
import numbers

from transformers import PretrainedConfig
from transformers.utils import logging


logger = logging.get_logger(__name__)

# RoPE types: mGTE's own static NTK ("ntk", exact as released, optionally "mixed_b") and plain RoPE ("default"),
# computed here; the scaled types of transformers, computed by `transformers.modeling_rope_utils`.
ROPE_TYPES = ("default", "ntk", "linear", "dynamic", "yarn", "longrope", "llama3")
_NTK_KEYS = {"rope_type", "type", "rope_theta", "factor", "mixed_b", "partial_rotary_factor"}
# `attn_backend`, the attention knob of configs saved by mgte-hf 0.1, as an `attn_implementation`.
_LEGACY_ATTN_BACKENDS = {"auto": None, "packed": None, "sdpa": None, "eager": "eager", "xformers": "mgte_xformers",
                         "flash_attn": "flash_attention_2", "varlen": "mgte_varlen"}

# Defaults of the released `NewConfig` (model_type "new"): a released config.json that omits a key means these.
NEW_CONFIG_DEFAULTS = {
    "vocab_size": 30528,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 2048,
    "type_vocab_size": 1,
    "initializer_range": 0.02,
    "layer_norm_type": "layer_norm",
    "layer_norm_eps": 1e-12,
    "position_embedding_type": "rope",
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "classifier_dropout": None,
    "pack_qkv": True,
    "pad_token_id": None,
}

# Auto classes a saved folder maps to its own copy of this code (remote code with trust_remote_code=True).
AUTO_MAP = {
    "AutoConfig": "configuration_mgte.MgteConfig",
    "AutoModel": "modeling_mgte.MgteModel",
    "AutoModelForMaskedLM": "modeling_mgte.MgteForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_mgte.MgteForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_mgte.MgteForTokenClassification",
    "AutoModelForTextEncoding": "modeling_mgte.MgteForEmbedding",
}

# Keys of a released "new" config that describe the runtime of the released code, not the model.
_NEW_RUNTIME_KEYS = ("unpad_inputs", "use_memory_efficient_attention", "auto_map")


class MgteConfig(PretrainedConfig):
    r"""
    Configuration of an mGTE encoder and its heads. The defaults describe gte-multilingual-base.

    Args:
        vocab_size (`int`, *optional*, defaults to 250048): size of the token vocabulary.
        hidden_size (`int`, *optional*, defaults to 768): width of the encoder.
        num_hidden_layers (`int`, *optional*, defaults to 12): number of post-LN encoder layers.
        num_attention_heads (`int`, *optional*, defaults to 12): attention heads; must divide `hidden_size`.
        intermediate_size (`int`, *optional*, defaults to 3072): width of each half of the gated feed-forward.
        hidden_act (`str`, *optional*, defaults to `"gelu"`): activation of the GLU gate and of the MLM head.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.1): embedding, residual and GLU dropout.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0): dropout on attention weights.
        max_position_embeddings (`int`, *optional*, defaults to 8192): trained context length (RoPE works past it,
            with a warning; the absolute position table does not).
        type_vocab_size (`int`, *optional*, defaults to 1): token types; 0 means no token-type embedding at all.
        initializer_range (`float`, *optional*, defaults to 0.02): std of the normal weight initialisation.
        layer_norm_type (`str`, *optional*, defaults to `"layer_norm"`): `"layer_norm"` or `"rms_norm"`, for the
            per-layer norms only (the embedding and MLM-head norms are always LayerNorm, as released).
        layer_norm_eps (`float`, *optional*, defaults to 1e-12): epsilon of every norm.
        position_embedding_type (`str`, *optional*, defaults to `"rope"`): `"rope"` or `"absolute"`.
        rope_parameters (`dict`, *optional*): transformers' RoPE description, `{"rope_type", "rope_theta", ...}`.
            `rope_type` is `"ntk"` (mGTE's static NTK, exact as released: `"factor"` and optional `"mixed_b"`),
            `"default"` (plain RoPE) or one of transformers' scaled types (`linear`, `dynamic`, `yarn`, `longrope`,
            `llama3`). Defaults to `{"rope_type": "ntk", "rope_theta": 20000.0, "factor": 8.0}`.
        rope_theta (`float`, *optional*): the released key for the RoPE base; overrides `rope_parameters`.
        rope_scaling (`dict`, *optional*): the released key for the scaling, `{"type": "ntk", "factor": f}` (optionally
            with `"mixed_b"`) or `None` for plain RoPE; overrides `rope_parameters`.
        classifier_dropout (`float`, *optional*): dropout before classifiers; falls back to `hidden_dropout_prob`.
        pack_qkv (`bool`, *optional*, defaults to `True`): one `qkv_proj` instead of separate `q/k/v_proj`.
        pad_token_id (`int`, *optional*, defaults to 1): padding id (XLM-R layout).
        matryoshka_dimensions (`list[int]`, *optional*): sizes the dense vector may be truncated to; `None` allows
            any size up to `hidden_size`.
        sparse_ignore_token_ids (`list[int]`, *optional*): token ids that never receive a sparse weight
            (cls, eos, pad, unk); `None` leaves the choice to the caller (the tokenizer knows them).
        sparse_prediction (`bool`, *optional*, defaults to `False`): with labels, the MLM head computes logits only at
            labelled positions and returns them as `(n_labelled, vocab_size)`. On a 250k vocabulary at a 30 % masking
            rate this skips about 70 % of the head's work and memory (the largest matmul of an MLM step).
        unpad_inputs, use_memory_efficient_attention, logn_attention_scale, logn_attention_clip1: keys of the released
            config, kept so that no key is lost. Unpadding is always on where it is exact; the attention kernel is
            chosen with `attn_implementation` (`"mgte_xformers"` is the released memory-efficient attention); the logn
            flags are ignored, as by the released code.

    The attention kernel is transformers' `attn_implementation` (`from_pretrained(..., attn_implementation=...)` or
    `model.set_attn_implementation(...)`); see `mgte_hf.modeling.attention_mgte`.
    """

    model_type = "mgte"
    default_theta = 20000.0

    def __init__(
        self,
        vocab_size: int = 250048,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.0,
        max_position_embeddings: int = 8192,
        type_vocab_size: int = 1,
        initializer_range: float = 0.02,
        layer_norm_type: str = "layer_norm",
        layer_norm_eps: float = 1e-12,
        position_embedding_type: str = "rope",
        rope_parameters: dict | None = None,
        rope_theta: float | None = None,
        rope_scaling: dict | None | str = "unset",
        classifier_dropout: float | None = None,
        pack_qkv: bool = True,
        pad_token_id: int | None = 1,
        matryoshka_dimensions: list[int] | None = None,
        sparse_ignore_token_ids: list[int] | None = None,
        sparse_prediction: bool = False,
        unpad_inputs: bool = True,
        use_memory_efficient_attention: bool = False,
        logn_attention_scale: bool = False,
        logn_attention_clip1: bool = False,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        legacy_backend = kwargs.pop("attn_backend", None)
        if legacy_backend is not None:
            kwargs.setdefault("attn_implementation", _legacy_attn_implementation(legacy_backend))
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_type = layer_norm_type
        self.layer_norm_eps = layer_norm_eps
        self.position_embedding_type = position_embedding_type
        # A copy: never the caller's dict. The released keys, where given, override it.
        self.rope_parameters = dict(rope_parameters) if rope_parameters is not None else {
            "rope_type": "ntk", "rope_theta": self.default_theta, "factor": 8.0}
        if rope_theta is not None:
            self.rope_theta = rope_theta
        if rope_scaling != "unset":
            self.rope_scaling = rope_scaling
        self.classifier_dropout = classifier_dropout
        self.pack_qkv = pack_qkv
        self.pad_token_id = pad_token_id
        self.matryoshka_dimensions = sorted(int(d) for d in matryoshka_dimensions) if matryoshka_dimensions else None
        self.sparse_ignore_token_ids = list(sparse_ignore_token_ids) if sparse_ignore_token_ids is not None else None
        self.sparse_prediction = sparse_prediction
        self.unpad_inputs = unpad_inputs
        self.use_memory_efficient_attention = use_memory_efficient_attention
        self.logn_attention_scale = logn_attention_scale
        self.logn_attention_clip1 = logn_attention_clip1
        self.tie_word_embeddings = tie_word_embeddings
        self._validate()  # before transformers' own validators, whose messages say less
        super().__init__(**kwargs)
        if logn_attention_scale:
            logger.warning("logn_attention_scale is ignored, as by the released mGTE code.")

    # ------------------------------------------------------------------------------------------------ RoPE views
    @property
    def rope_theta(self) -> float:
        """The RoPE base (`rope_parameters["rope_theta"]`)."""
        return float(self.rope_parameters.get("rope_theta", self.default_theta))

    @rope_theta.setter
    def rope_theta(self, value: float) -> None:
        self.rope_parameters = {**self.rope_parameters, "rope_theta": float(value)}

    @property
    def rope_scaling(self) -> dict | None:
        """The released view of the RoPE scaling: `{"type": "ntk", "factor": f[, "mixed_b": b]}`, `None` for plain
        RoPE, or the `rope_parameters` of a transformers scaled type (without the base)."""
        params = self.rope_parameters
        kind = params.get("rope_type", params.get("type", "default"))
        if kind == "default":
            return None
        if kind == "ntk":
            out = {"type": "ntk", "factor": params.get("factor")}
            if params.get("mixed_b") is not None:
                out["mixed_b"] = params["mixed_b"]
            return out
        return {k: v for k, v in params.items() if k != "rope_theta"}

    @rope_scaling.setter
    def rope_scaling(self, value: dict | None) -> None:
        theta = self.rope_theta
        if value is None:
            self.rope_parameters = {"rope_type": "default", "rope_theta": theta}
            return
        if not isinstance(value, dict):
            raise ValueError(f"MgteConfig: rope_scaling must be a dict or None, got {value!r}.")
        value = dict(value)
        kind = value.pop("type", value.pop("rope_type", None))
        self.rope_parameters = {"rope_type": kind, "rope_theta": theta, **value}

    # ------------------------------------------------------------------------------------------------ validation
    def _validate(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(f"MgteConfig: {msg}")

        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"{name} must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads:
            fail(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                 f"({self.num_attention_heads}).")
        if (self.hidden_size // self.num_attention_heads) % 2:
            fail("the head dimension (hidden_size / num_attention_heads) must be even for rotary embeddings.")
        if not isinstance(self.type_vocab_size, int) or self.type_vocab_size < 0:
            fail(f"type_vocab_size must be an integer >= 0, got {self.type_vocab_size!r}.")
        if self.layer_norm_type not in ("layer_norm", "rms_norm"):
            fail(f"layer_norm_type must be 'layer_norm' or 'rms_norm', got {self.layer_norm_type!r}.")
        if self.position_embedding_type not in ("rope", "absolute"):
            fail(f"position_embedding_type must be 'rope' or 'absolute', got {self.position_embedding_type!r}.")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                fail(f"{name} must be in [0, 1), got {getattr(self, name)!r}.")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            fail(f"pad_token_id ({self.pad_token_id}) must be inside the vocabulary (0..{self.vocab_size - 1}).")
        self.validate_mgte_rope()
        if self.matryoshka_dimensions is not None:
            dims = self.matryoshka_dimensions
            if len(set(dims)) != len(dims) or dims[0] < 1 or dims[-1] > self.hidden_size:
                fail(f"matryoshka_dimensions must be distinct sizes in 1..hidden_size ({self.hidden_size}), "
                     f"got {dims}.")

    def validate_mgte_rope(self) -> None:
        """Check `rope_parameters`: a known type, a positive base, full rotary dimension, and the type's own keys."""
        params = self.rope_parameters
        if not isinstance(params, dict):
            raise ValueError(f"MgteConfig: rope_parameters must be a dict, got {params!r}.")
        kind = params.get("rope_type", params.get("type", "default"))
        if kind not in ROPE_TYPES:
            raise ValueError(f"MgteConfig: unknown rope type {kind!r}; mGTE supports {list(ROPE_TYPES)} ('ntk' is the "
                             'released static NTK, {"type": "ntk", "factor": f}, optionally with "mixed_b").')
        theta = params.get("rope_theta")
        if not isinstance(theta, (int, float)) or isinstance(theta, bool) or not math.isfinite(theta) or theta <= 0:
            raise ValueError(f"MgteConfig: rope_theta must be a positive number, got {theta!r}.")
        if params.get("partial_rotary_factor", 1.0) != 1.0:
            raise ValueError("MgteConfig: mGTE rotates the whole head (partial_rotary_factor 1.0), got "
                             f"{params['partial_rotary_factor']!r}.")
        if kind == "ntk":  # transformers validates its own types (`validate_rope`, when the config is built)
            self._validate_ntk_rope_parameters(params)

    def _validate_ntk_rope_parameters(self, rope_parameters: dict, ignore_keys: set | None = None) -> None:
        """The released static NTK: a positive `factor`, an optional positive `mixed_b`, nothing else."""
        factor = rope_parameters.get("factor")
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"MgteConfig: rope_scaling factor must be a positive number, got {factor!r}.")
        mixed_b = rope_parameters.get("mixed_b")
        if mixed_b is not None and (not isinstance(mixed_b, (int, float)) or not mixed_b > 0):
            raise ValueError(f"MgteConfig: rope_scaling mixed_b must be a positive number, got {mixed_b!r}.")
        unknown = set(rope_parameters) - _NTK_KEYS - set(ignore_keys or ())
        if unknown:
            raise ValueError(f"MgteConfig: unknown rope_scaling keys {sorted(unknown)} for the ntk type.")

    # ------------------------------------------------------------------------------------------------ derived
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def dimension_allowed(self, dimension) -> bool:
        """Whether the dense vector may be truncated to `dimension` (any integer type, numpy's included).

        With `matryoshka_dimensions` set: one of those or the hidden size. Unset (as in the released configs, whose
        cards allow any elastic size): any size from 1 to the hidden size.
        """
        if isinstance(dimension, bool) or not isinstance(dimension, numbers.Integral):
            return False
        dimension = int(dimension)
        if self.matryoshka_dimensions is None:
            return 1 <= dimension <= self.hidden_size
        return dimension in self.matryoshka_dimensions or dimension == self.hidden_size

    def describe_dimensions(self) -> str:
        if self.matryoshka_dimensions is None:
            return f"any integer from 1 to hidden_size ({self.hidden_size})"
        return f"one of {sorted(set(self.matryoshka_dimensions) | {self.hidden_size})}"

    # ------------------------------------------------------------------------------------------------ reading
    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        return convert_config_dict(config_dict, source=str(pretrained_model_name_or_path)), kwargs

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """Read our configs and also the released `"new"` and transformers-native `"gte"` layouts."""
        config_dict = convert_config_dict(config_dict)
        return super().from_dict(config_dict, **kwargs)

    def to_dict(self) -> dict:
        output = super().to_dict()
        output["rope_parameters"] = dict(self.rope_parameters)
        output["auto_map"] = dict(AUTO_MAP)
        return output


def _legacy_attn_implementation(backend: str) -> str | None:
    if backend not in _LEGACY_ATTN_BACKENDS:
        raise ValueError(f"MgteConfig: attn_backend must be one of {sorted(_LEGACY_ATTN_BACKENDS)}, got {backend!r}; "
                         "it is replaced by transformers' attn_implementation.")
    return _LEGACY_ATTN_BACKENDS[backend]


def convert_config_dict(config_dict: dict, source: str | None = None) -> dict:
    """Translate a config dict of model_type "new" or "gte" into MgteConfig keys (ours pass through unchanged).

    A config of ours that states no RoPE at all is refused: mGTE checkpoints differ in their RoPE base (10 000 is the
    released default, 20 000 gte-multilingual-base, 160 000 and 500 000 the English v1.5 models), so a guess would
    give another model without a word.
    """
    model_type = config_dict.get("model_type", "mgte")
    out = dict(config_dict)
    if model_type == "new":
        out = {**NEW_CONFIG_DEFAULTS, **out}
        for key in _NEW_RUNTIME_KEYS:
            out.pop(key, None)
        if out.get("architectures"):
            out["architectures"] = [name.replace("New", "Mgte", 1) for name in out["architectures"]]
        out["tie_word_embeddings"] = True  # the released MLM head ties its decoder (transformers 4 default)
    elif model_type == "gte":
        out.pop("architectures", None)
        out.pop("auto_map", None)
        out.update(_rope_from_gte(out.pop("rope_parameters", None), out))
        out.setdefault("pack_qkv", True)
    elif model_type != "mgte":
        raise ValueError(f"MgteConfig cannot read a config of model_type {model_type!r} (expected mgte, new or gte).")
    elif not {"rope_parameters", "rope_theta", "rope_scaling"} & set(out) and out.get("position_embedding_type") != "absolute":
        where = f" in {source}" if source else ""
        raise ValueError(f"The mgte config{where} states no RoPE (rope_parameters, or rope_theta and rope_scaling). "
                         "mGTE checkpoints differ in it (rope_theta 20000 with NTK factor 8 for gte-multilingual-base, "
                         "160000 / 500000 with factor 2 for gte-base/large-en-v1.5); add the one the weights were "
                         "trained with.")
    out["model_type"] = "mgte"
    return out


def _rope_from_gte(rope_parameters: dict | None, config: dict) -> dict:
    """transformers-native RoPE parameters → mGTE's.

    The released static NTK with factor f equals `linear` scaling by f^(2/d) at rope_theta = base·f (d = head dim),
    so a `linear` entry maps back to NTK with f = s^(d/2) and base = theta / f; the other types stay as they are.
    """
    params = dict(rope_parameters or {})
    theta = float(params.get("rope_theta", config.get("rope_theta", 160000.0)))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return {"rope_theta": theta, "rope_scaling": None}
    if kind == "linear":
        head_dim = config.get("hidden_size", 768) // config.get("num_attention_heads", 12)
        factor = round(float(params["factor"]) ** (head_dim / 2), 6)  # f^(2/d) is stored rounded: undo the noise
        return {"rope_theta": theta / factor, "rope_scaling": {"type": "ntk", "factor": factor}}
    if kind in ROPE_TYPES:
        return {"rope_parameters": {**params, "rope_type": kind, "rope_theta": theta}}
    raise ValueError(f"MgteConfig: rope type {kind!r} of a 'gte' config has no mGTE equivalent; mGTE supports "
                     f"{list(ROPE_TYPES)}.")


__all__ = ["AUTO_MAP", "ROPE_TYPES", "MgteConfig", "convert_config_dict"]
