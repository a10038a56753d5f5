# Copyright 2026 The mgte-hf authors. Licensed under the Apache License, Version 2.0.
"""The mGTE encoder (RoPE, gated FFN, post-LN) with a packed forward, and its heads.

Exact against the released "new-impl" code of gte-multilingual-base / gte-*-en-v1.5 (same state-dict keys, same
numbers), but every layer runs on packed tokens `(total_tokens, hidden)`: the encoder unpads once after the
embeddings and re-pads only for outputs that need the padded layout. The attention kernel is transformers'
`attn_implementation` (`attention_mgte.py` lists them); hidden states and attention weights are recorded by
transformers' output hooks, in the input's layout, as tensors the forward itself goes through (gradients reach them).

This file ships as Hub remote code: it imports only torch, safetensors, transformers' public API and its sibling files.
"""

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, logging
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .attention_mgte import (
    MGTE_ATTENTION_FUNCTIONS,
    PackedSeqs,
    PaddedLayout,
    check_implementation,
    eager_attention_forward,
    is_packed_implementation,
    packed_sdpa_attention,
    padded_sdpa_attention,
)
from .configuration_mgte import MgteConfig


logger = logging.get_logger(__name__)

MODELING_FILES = ("configuration_mgte.py", "attention_mgte.py", "modeling_mgte.py")


# ============================================================================================== RoPE (pure)
# RoPE types whose frequencies depend on the length of the input (transformers computes them per call).
LENGTH_DEPENDENT_ROPE_TYPES = ("dynamic", "longrope")


def rope_type(config: MgteConfig) -> str:
    params = config.rope_parameters
    return params.get("rope_type", params.get("type", "default"))


def rope_inv_freq(config: MgteConfig, device: torch.device | None = None) -> torch.Tensor:
    """`(head_dim / 2,)` fp32 inverse frequencies of mGTE's own RoPE types ("default", "ntk"), applied at every length.

    NTK factor f: inv_freq_j = (base·f)^(-j/d) / f^(2/d), j = 0, 2, …, d-2. With `mixed_b` = b:
    inv_freq_m = base^(-2(m-1)/d) / exp(ln(f) / (d/2)^b · m^b), m = 1 … d/2.
    """
    d = config.head_dim
    base = config.rope_theta
    j = torch.arange(0, d, 2, dtype=torch.float32, device=device)
    params = config.rope_parameters
    if rope_type(config) == "default":
        return 1.0 / (base ** (j / d))
    factor = float(params["factor"])
    mixed_b = params.get("mixed_b")
    if mixed_b is None:
        return 1.0 / ((base * factor) ** (j / d)) / factor ** (2 / d)
    a = torch.log(torch.tensor(factor, dtype=torch.float32)) / (d / 2) ** mixed_b
    m = torch.arange(1, d // 2 + 1, dtype=torch.float32, device=device)
    return base ** (-j / d) / torch.exp(a * m**mixed_b)


def rope_frequencies(config: MgteConfig, device: torch.device | None = None,
                     seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """`(inv_freq (head_dim / 2,), attention_scaling)` for any supported RoPE type.

    mGTE's types are computed by `rope_inv_freq`; transformers' scaled types by its own `ROPE_INIT_FUNCTIONS` (the
    length-dependent ones need `seq_len`, the longest position + 1).
    """
    kind = rope_type(config)
    if kind in ("default", "ntk"):
        return rope_inv_freq(config, device), 1.0
    if kind not in LENGTH_DEPENDENT_ROPE_TYPES:
        seq_len = None
    inv_freq, attention_scaling = ROPE_INIT_FUNCTIONS[kind](config, device, seq_len=seq_len)
    return inv_freq.to(torch.float32), float(attention_scaling)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(...)` positions → cos, sin of shape `(..., head_dim)` in fp32 (NeoX layout: angles repeated twice)."""
    angles = positions[..., None].to(torch.float32) * inv_freq  # (..., d/2)
    emb = torch.cat((angles, angles), dim=-1)  # (..., d)
    return emb.cos(), emb.sin()


class MgteRotaryEmbedding(nn.Module):
    """cos and sin of the rotary embedding at given positions, computed from the config at every call.

    Nothing is cached in buffers: changing `config.rope_parameters` on a live model changes the next forward, and
    loading can never leave stale or uninitialised tables. For the length-dependent types the frequencies follow the
    longest position of each call, as transformers' `dynamic_rope_update` does.
    """

    def __init__(self, config: MgteConfig):
        super().__init__()
        self.config = config
        self.seq_len: int | None = None  # longest position + 1 of the last call, for length-dependent types

    @property
    def inv_freq(self) -> torch.Tensor:
        """The inverse frequencies in use (for length-dependent types: those of the last call)."""
        return rope_frequencies(self.config, seq_len=self.seq_len)[0]

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`position_ids` `(...)` → cos, sin `(..., head_dim)` in the dtype of `x`."""
        if rope_type(self.config) in LENGTH_DEPENDENT_ROPE_TYPES:
            self.seq_len = int(position_ids.max()) + 1
        inv_freq, attention_scaling = rope_frequencies(self.config, x.device, self.seq_len)
        cos, sin = rope_cos_sin(position_ids, inv_freq)
        if attention_scaling != 1.0:
            cos, sin = cos * attention_scaling, sin * attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on `(T, n, d)`: x·cos + rot(x)·sin with rot([x1, x2]) = [-x2, x1]."""
    x1, x2 = x.chunk(2, dim=-1)
    if torch.is_grad_enabled():
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin
    # Without autograd, the same products and sums go into one buffer (no rotated copy, no temporary sum):
    # x1·c1 - x2·s1 and x2·c2 + x1·s2 round exactly as x·cos + rot(x)·sin.
    half = x.shape[-1] // 2
    out = x * cos  # (T, n, d)
    out[..., :half].sub_(x2 * sin[..., :half])
    out[..., half:].add_(x1 * sin[..., half:])
    return out


# ============================================================================================== pooling (pure)
def dense_embedding(cls_hidden: torch.Tensor, dimension: int | None = None) -> torch.Tensor:
    """`(B, H)` CLS states → `(B, dimension)` L2-normalised dense vectors (truncate first, then normalise)."""
    if dimension is not None:
        cls_hidden = cls_hidden[:, :dimension]
    compute_dtype = torch.promote_types(cls_hidden.dtype, torch.float32)  # fp16/bf16 normalise in fp32, fp64 stays
    return F.normalize(cls_hidden.to(compute_dtype), p=2, dim=-1).to(cls_hidden.dtype)


def sparse_token_weights(classifier: nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    """`(..., H)` → `(...)` lexical weight of each token: ReLU of the one-unit classifier."""
    return torch.relu(classifier(hidden)).squeeze(-1)


def token_weights_to_dicts(
    weights: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    ignore_token_ids: list[int] | tuple[int, ...] = (),
) -> list[dict[int, float]]:
    """`(B, L)` token weights → one `{token_id: weight}` per row.

    Drops padding, the ignored (special) ids and weights ≤ 0; a token id seen several times keeps its maximum.
    """
    if weights.shape != input_ids.shape:
        raise ValueError(f"weights {tuple(weights.shape)} and input_ids {tuple(input_ids.shape)} must match.")
    keep = weights > 0
    if attention_mask is not None:
        keep &= attention_mask.bool()
    if len(ignore_token_ids):
        keep &= ~torch.isin(input_ids, torch.as_tensor(list(ignore_token_ids), device=input_ids.device))
    out = []
    for row_w, row_ids, row_keep in zip(weights.float().cpu(), input_ids.cpu(), keep.cpu()):
        ids, w = row_ids[row_keep], row_w[row_keep]
        uniq, inverse = torch.unique(ids, return_inverse=True)
        best = torch.zeros(len(uniq)).scatter_reduce(0, inverse, w, reduce="amax", include_self=False)
        out.append(dict(zip(uniq.tolist(), best.tolist())))
    return out


# ============================================================================================== modules
class MgteRMSNorm(nn.Module):
    """RMSNorm computed in fp32, weight only (the released `rms_norm` variant)."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight.float() * x32).to(x.dtype)


def layer_norm(config: MgteConfig) -> nn.Module:
    if config.layer_norm_type == "rms_norm":
        return MgteRMSNorm(config.hidden_size, config.layer_norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class MgteEmbeddings(nn.Module):
    """Word (+ token type) (+ absolute position) embeddings → LayerNorm → dropout, on packed tokens."""

    def __init__(self, config: MgteConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        if config.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        if config.position_embedding_type == "absolute":
            self.position_embeddings = nn.Embedding(
                config.max_position_embeddings, config.hidden_size, padding_idx=config.pad_token_id)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids, position_ids, inputs_embeds=None) -> torch.Tensor:
        x = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (T, H)
        if hasattr(self, "token_type_embeddings"):
            if token_type_ids is None:
                x = x + self.token_type_embeddings.weight[0]
            else:
                x = x + self.token_type_embeddings(token_type_ids)
        if hasattr(self, "position_embeddings"):
            x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class MgteAttention(nn.Module):
    """Multi-head self-attention: projections and RoPE here, the kernel from `config._attn_implementation`."""

    def __init__(self, config: MgteConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.dropout_p = config.attention_probs_dropout_prob
        self.is_causal = False
        hidden = config.hidden_size
        if config.pack_qkv:
            self.qkv_proj = nn.Linear(hidden, 3 * hidden)
        else:
            self.q_proj = nn.Linear(hidden, hidden)
            self.k_proj = nn.Linear(hidden, hidden)
            self.v_proj = nn.Linear(hidden, hidden)
        self.o_proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: PackedSeqs | PaddedLayout):
        """`(T, H)` packed tokens → `(T, H)`, and the attention weights `(B, n, L, L)` of the padded kernels."""
        if hasattr(self, "qkv_proj"):
            q, k, v = self.qkv_proj(x).chunk(3, dim=-1)  # each (T, H)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        shape = (x.shape[0], self.num_heads, self.head_dim)
        q = apply_rope(q.view(shape), cos, sin)  # (T, n, d)
        k = apply_rope(k.view(shape), cos, sin)
        v = v.view(shape)
        dropout = self.dropout_p if self.training else 0.0
        implementation = self.config._attn_implementation
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        out, weights = self._attend(attention, implementation, q, k, v, layout, dropout)
        return self.o_proj(out.reshape(x.shape[0], -1)), weights

    def _attend(self, attention, implementation, q, k, v, layout, dropout: float):
        """Run `attention` where it is exact: on the packed tokens, or on the padded layout with its mask."""
        if implementation in (None, "sdpa"):
            if isinstance(layout, PaddedLayout):  # the traceable padded forward
                qp, kp, vp = (layout.unpack(t).transpose(1, 2) for t in (q, k, v))  # (B, n, L, d)
                return layout.pack(padded_sdpa_attention(qp, kp, vp, layout.mask, dropout, self.scaling)), None
            if layout.lengths is None:  # traced by torch.compile: one opaque operator, no lengths in the graph
                if dropout:
                    raise ValueError("Compiled packed attention has no dropout: set attention_probs_dropout_prob to "
                                     "0, or compile padded batches.")
                return torch.ops.mgte.packed_attention(q, k, v, layout.cu_seqlens, self.scaling), None
            return packed_sdpa_attention(q, k, v, layout.lengths, dropout, self.scaling), None
        if is_packed_implementation(implementation):
            qp, kp, vp = (t.transpose(0, 1)[None] for t in (q, k, v))  # (1, n, T, d)
            out, weights = attention(self, qp, kp, vp, None, dropout=dropout, scaling=self.scaling,
                                     **layout.varlen_kwargs(q.device))
            return out.reshape(q.shape), weights
        qp, kp, vp = (layout.unpack(t).transpose(1, 2) for t in (q, k, v))  # (B, n, L, d)
        out, weights = attention(self, qp, kp, vp, layout.attn_mask, dropout=dropout, scaling=self.scaling)
        return layout.pack(out), weights  # (B, L, n, d) → (T, n, d)


# Without autograd, the feed-forward runs on at most this many tokens at a time: its (tokens, 2·I) intermediate is the
# largest activation of a layer (192 MiB for 8 192 tokens in fp32), so this caps the memory peak of long inputs.
# (Not while torch.compile traces: a chunk count would tie the graph to the token count.)
MLP_CHUNK_TOKENS = 2048


class MgteGatedMLP(nn.Module):
    """GLU feed-forward: [up | gate] = x·W (no bias); down(dropout(act(gate) · up))."""

    def __init__(self, config: MgteConfig):
        super().__init__()
        self.up_gate_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act_fn = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or x.shape[0] <= MLP_CHUNK_TOKENS:
            return self._feed_forward(x)
        out = torch.empty_like(x)  # (T, H)
        for rows, dest in zip(x.split(MLP_CHUNK_TOKENS), out.split(MLP_CHUNK_TOKENS)):
            dest.copy_(self._feed_forward(rows))
        return out

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        up, gate = self.up_gate_proj(x).chunk(2, dim=-1)  # (T, I) each
        hidden = self.act_fn(gate)
        # Without autograd the product goes in place: one (T, I) buffer less, and less time on CPU (fresh buffers
        # cost page zeroing). Under autograd an in-place product would make it save a copy.
        hidden = hidden * up if torch.is_grad_enabled() else hidden.mul_(up)
        return self.down_proj(self.dropout(hidden))


class MgteLayer(GradientCheckpointingLayer):
    """Post-LN block: h = LN(x + drop(attn(x))); out = LN(h + drop(mlp(h))).

    Takes and returns packed tokens `(T, H)`. While hidden states are recorded it takes and returns the input's layout
    instead (`(B, L, H)`, zeros at padding), packing on entry: each recorded state is then the very tensor the next
    layer reads, so gradients reach it.
    """

    def __init__(self, config: MgteConfig):
        super().__init__()
        self.attention = MgteAttention(config)
        self.mlp = MgteGatedMLP(config)
        self.attn_ln = layer_norm(config)
        self.mlp_ln = layer_norm(config)
        self.hidden_dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: PackedSeqs) -> torch.Tensor:
        recording = hidden.dim() == 3
        x = layout.from_input_layout(hidden) if recording else hidden  # (T, H)
        attn_out, _ = self.attention(x, cos, sin, layout)
        # The residual sums go into the fresh branch outputs (same numbers as x + branch; no autograd needs them).
        h = self.attn_ln(self.hidden_dropout(attn_out).add_(x))
        out = self.mlp_ln(self.hidden_dropout(self.mlp(h)).add_(h))
        return layout.to_input_layout(out) if recording else out


class MgteEncoder(nn.Module):
    def __init__(self, config: MgteConfig):
        super().__init__()
        self.layer = nn.ModuleList([MgteLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: PackedSeqs,
                record_hidden_states: bool = False) -> torch.Tensor:
        """`(T, H)` → `(T, H)`; with `record_hidden_states` the layers run on the input's layout (see `MgteLayer`)."""
        if record_hidden_states:
            x = layout.to_input_layout(x)
        for layer in self.layer:
            x = layer(x, cos, sin, layout)
        return layout.from_input_layout(x) if record_hidden_states else x


class MgtePooler(nn.Module):
    """tanh(W · h_cls + b), for the reranker."""

    def __init__(self, config: MgteConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, cls_hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(cls_hidden))


# ============================================================================================== outputs
@dataclass
class MgtePackedOutput(ModelOutput):
    """What the encoder computed, still packed: `hidden` is `(total_tokens, H)`; `seqs` tells where rows are."""

    hidden: torch.Tensor | None = None
    seqs: PackedSeqs | PaddedLayout | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    @property
    def cls(self) -> torch.Tensor:
        """`(B, H)` hidden state of each sequence's first token."""
        return self.hidden.index_select(0, self.seqs.first_token_index.to(self.hidden.device))

    def padded(self, packed: torch.Tensor) -> torch.Tensor:
        """`(T, ...)` → the input's layout: `(B, L, ...)` with zeros at padding, or `(1, T, ...)` for packed input."""
        return self.seqs.to_input_layout(packed)

    def pack_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Per-token labels in the input's layout → `(T,)`, refusing any other shape."""
        return self.seqs.pack_labels(labels)


@dataclass
class MgteEmbeddingOutput(ModelOutput):
    """Output of `MgteForEmbedding`.

    Args:
        dense: `(B, dimension)` L2-normalised CLS vectors.
        sparse: `(B, L)` lexical weight of every token (0 at padding).
        hidden_states: the embeddings and each layer's output `(B, L, H)` with `output_hidden_states` (the last one
            is the encoder's output).
        attentions: per-layer `(B, n, L, L)` with `output_attentions` (eager attention).
    """

    dense: torch.Tensor | None = None
    sparse: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MgteTokenClassifierOutput(TokenClassifierOutput):
    last_hidden_state: torch.Tensor | None = None


# ============================================================================================== models
class MgtePreTrainedModel(PreTrainedModel):
    config_class = MgteConfig
    config: MgteConfig
    base_model_prefix = "new"  # the released checkpoints' prefix: their weights load without renaming
    supports_gradient_checkpointing = True
    _no_split_modules = ["MgteEmbeddings", "MgteLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": MgteLayer, "attentions": MgteAttention}
    _keys_to_ignore_on_load_unexpected = [r"position_ids", r"rotary_emb\.", r"inv_freq"]

    def get_correct_attn_implementation(self, requested_attention: str | None, is_init_check: bool = False) -> str:
        """transformers' choice (`None` → `"sdpa"`, mGTE's exact packed attention), plus mGTE's own kernels."""
        if requested_attention in MGTE_ATTENTION_FUNCTIONS:
            check_implementation(requested_attention)
            return requested_attention
        return super().get_correct_attn_implementation(requested_attention, is_init_check)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, reading safetensors only, refusing weights that do not fit the config,
        damaged files and non-finite weights, with errors that name the folder."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("mgte-hf loads safetensors only (pickle checkpoints can run code when loaded); convert "
                             "the checkpoint with a trusted tool first.")
        kwargs["use_safetensors"] = True
        source = str(pretrained_model_name_or_path)
        _check_local_folder(source)
        try:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as err:
            raise ValueError(f"Could not read the weights of {source}: {err}. The safetensors file is truncated or "
                             "corrupt; download or save the checkpoint again.") from err
        except RuntimeError as err:
            if "ignore_mismatched_sizes" not in str(err):
                raise
            raise CheckpointMismatchError(f"The weights in {source} do not fit its config.json: "
                             f"{'; '.join(cls._shape_mismatches(source, kwargs.get('config')))}. The config and the "
                             "weights come from different models: save them together again, or pass "
                             "ignore_mismatched_sizes=True to re-initialise those tensors on purpose.") from err
        _check_finite_weights(loaded[0] if isinstance(loaded, tuple) else loaded, source)  # (model, loading info)
        return loaded

    @classmethod
    def _shape_mismatches(cls, source: str, config: MgteConfig | None = None) -> list[str]:
        """`key: (file shape) in the file, (model shape) for the config` for every tensor that differs."""
        folder = Path(source).expanduser()
        config = config or cls.config_class.from_pretrained(folder)
        with torch.device("meta"):
            expected = {key: tuple(t.shape) for key, t in cls(config).state_dict().items()}
        prefix = f"{cls.base_model_prefix}."
        out = []
        for key, shape in _checkpoint_shapes(folder).items():
            ours = next((k for k in (key, prefix + key, key.removeprefix(prefix)) if k in expected), None)
            if ours is not None and expected[ours] != shape:
                out.append(f"{ours} is {shape} in the file but {expected[ours]} for the config")
        return out or ["a tensor has another shape than the config implies"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights (safetensors) and config, with the modeling files copied in as self-contained remote code."""
        kwargs.setdefault("safe_serialization", True)
        if kwargs["safe_serialization"] is False:
            raise ValueError("mgte-hf saves safetensors only (pickle checkpoints can run code when loaded).")
        kwargs.pop("safe_serialization")
        super().save_pretrained(save_directory, *args, **kwargs)
        copy_modeling_files(save_directory)


class CheckpointMismatchError(ValueError, RuntimeError):
    """Weights whose shapes do not fit the config: a ValueError that names them, and the RuntimeError transformers
    raises there."""


def _check_local_folder(source: str) -> None:
    """A path that can only be a local folder (absolute, ./, ../, ~, or more than one `/`) must exist."""
    local = os.path.isabs(source) or source.startswith((".", "~")) or source.count("/") > 1
    if local and not Path(source).expanduser().is_dir():
        raise FileNotFoundError(f"No model folder at {source}: the folder does not exist. Pass the folder that holds "
                                "config.json and model.safetensors (or a Hub id, 'organisation/name').")


def _checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of every safetensors file in `folder`, read from the headers only."""
    from safetensors import safe_open

    shapes = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            shapes.update({key: tuple(f.get_slice(key).get_shape()) for key in f.keys()})  # noqa: SIM118 (no dict)
    return shapes


def _check_finite_weights(model: nn.Module, source: str) -> None:
    """Refuse weights holding NaN or inf (what overwritten or damaged bytes inside a safetensors file load as)."""
    for name, param in model.named_parameters():
        if param.is_floating_point() and param.device.type != "meta" and not bool(torch.isfinite(param).all()):
            raise ValueError(f"The weights in {source} hold NaN or inf values (tensor {name!r}): the checkpoint file is "
                             "damaged. Download or save it again.")


def copy_modeling_files(save_directory) -> None:
    """Copy the self-contained modeling files next to a saved config (the Hub remote code)."""
    here = Path(__file__).parent
    for name in MODELING_FILES:
        shutil.copyfile(here / name, Path(save_directory) / name)


# ============================================================================================== input checks
# The keyword arguments a forward takes beyond its named ones: transformers' own (`TransformersKwargs`), and
# `use_cache`, which transformers passes to every model (an encoder keeps no cache).
ACCEPTED_KWARGS = frozenset(TransformersKwargs.__annotations__) | {"use_cache"}


def _check_kwargs(kwargs: dict) -> None:
    unknown = sorted(set(kwargs) - ACCEPTED_KWARGS)
    if unknown:
        raise TypeError(f"Unexpected keyword argument(s) {unknown}: the mGTE forward takes input_ids, attention_mask, "
                        "token_type_ids, position_ids, inputs_embeds, seqlens, the head's own arguments and "
                        f"transformers' {sorted(ACCEPTED_KWARGS)}.")
    if kwargs.get("is_causal") or kwargs.get("use_cache"):
        raise ValueError("mGTE is a bidirectional encoder: is_causal and use_cache are not supported.")


def _check_inputs(config: MgteConfig, dtype: torch.dtype, input_ids, attention_mask, token_type_ids, position_ids,
                  inputs_embeds) -> None:
    """Clear errors for malformed batches, before anything is computed (skipped while torch.compile traces)."""
    ref = input_ids if input_ids is not None else inputs_embeds
    if ref is None:
        raise ValueError("Pass input_ids or inputs_embeds.")
    if input_ids is not None and inputs_embeds is not None:
        raise ValueError("Pass either input_ids or inputs_embeds, not both.")
    if ref.dim() != (2 if input_ids is not None else 3):
        raise ValueError(f"input_ids must be (batch, seq_len) [inputs_embeds (batch, seq_len, hidden)], got "
                         f"{tuple(ref.shape)}.")
    shape = tuple(ref.shape[:2])
    if 0 in shape:
        raise ValueError(f"Empty batch: input shape {shape}. Pass at least one sequence with at least one token.")
    if input_ids is not None:
        _check_ids("input_ids", input_ids, config.vocab_size, "vocab_size",
                   " Is the tokenizer the one of this model?")
    else:
        _check_embeds(config, dtype, inputs_embeds)
    if attention_mask is not None:
        if tuple(attention_mask.shape) != shape:
            raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must have the shape of input_ids {shape}.")
        if attention_mask.dtype.is_complex or bool(((attention_mask != 0) & (attention_mask != 1)).any()):
            raise ValueError("attention_mask must hold only 0 and 1.")
        empty = (attention_mask.sum(1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"Rows {empty} of attention_mask are all zero: every sequence needs at least one token.")
    if token_type_ids is not None:
        if tuple(token_type_ids.shape) != shape:
            raise ValueError(f"token_type_ids {tuple(token_type_ids.shape)} must have the shape of input_ids {shape}.")
        if config.type_vocab_size > 0:
            _check_ids("token_type_ids", token_type_ids, config.type_vocab_size, "type_vocab_size")
    if position_ids is not None:
        if tuple(position_ids.shape) != shape:
            raise ValueError(f"position_ids {tuple(position_ids.shape)} must have the shape of input_ids {shape}.")
        _check_ids("position_ids", position_ids, None, None)


def _check_ids(name: str, ids: torch.Tensor, limit: int | None, limit_name: str | None, hint: str = "") -> None:
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be integer ids of dtype torch.long (or int32), got {ids.dtype}; "
                         f"convert with {name}.long().")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or (limit is not None and hi >= limit):
        bound = f"[0, {limit - 1}] ({limit_name})" if limit is not None else ">= 0"
        raise ValueError(f"{name} must be in {bound}, got values in [{lo}, {hi}].{hint}")


def _check_embeds(config: MgteConfig, dtype: torch.dtype, inputs_embeds: torch.Tensor) -> None:
    if inputs_embeds.shape[-1] != config.hidden_size:
        raise ValueError(f"inputs_embeds must be (batch, seq_len, hidden_size={config.hidden_size}), got "
                         f"{tuple(inputs_embeds.shape)}.")
    if inputs_embeds.dtype != dtype:
        raise ValueError(f"inputs_embeds are {inputs_embeds.dtype} but the model computes in {dtype}; cast them "
                         f"with inputs_embeds.to({dtype}).")
    if not bool(torch.isfinite(inputs_embeds).all()):
        raise ValueError("inputs_embeds hold NaN or inf values.")


def ref_device(*tensors: torch.Tensor | None) -> torch.device:
    """The device of the first tensor given."""
    return next(t.device for t in tensors if t is not None)


def _packed_lengths(input_ids, inputs_embeds, attention_mask, position_ids, seqlens,
                    kwargs) -> list[int] | torch.Tensor | None:
    """The sequence lengths of packed input, or None for a padded batch.

    Packed input comes as `seqlens`, as transformers' flash-attention offsets `cu_seq_lens_q` (what
    `DataCollatorWithFlattening(return_flash_attn_kwargs=True)` gives), or as one row whose `position_ids` restart at
    0 (its default output). While torch.compile traces, a tensor of lengths stays a tensor (and is not checked).
    """
    if seqlens is None and kwargs.get("cu_seq_lens_q") is not None:
        seqlens = kwargs["cu_seq_lens_q"].diff()
    if torch.compiler.is_compiling():
        return seqlens
    ref = input_ids if input_ids is not None else inputs_embeds
    if (seqlens is None and position_ids is not None and attention_mask is None and ref is not None
            and ref.dim() >= 2 and ref.shape[0] == 1 and position_ids.dim() == 2 and position_ids.shape[0] == 1
            and bool((position_ids[0, 1:] == 0).any())):
        starts = torch.nonzero(position_ids[0] == 0).flatten().tolist()
        seqlens = torch.tensor([*starts[1:], position_ids.shape[1]]).diff(prepend=torch.tensor(starts[:1]))
    if seqlens is None:
        return None
    lengths = seqlens.tolist() if isinstance(seqlens, torch.Tensor) else list(seqlens)
    if attention_mask is not None:
        raise ValueError("Packed input (seqlens) takes no attention_mask.")
    total = ref.shape[1] if ref is not None and ref.dim() >= 2 else (ref.shape[0] if ref is not None else None)
    if not lengths or any(int(n) < 1 for n in lengths) or sum(lengths) != total:
        raise ValueError(f"seqlens {lengths} must be positive and sum to the number of packed tokens ({total}).")
    return [int(n) for n in lengths]


class MgteModel(MgtePreTrainedModel):
    """The mGTE encoder. Returns `last_hidden_state` in the input's layout (zeros at padding) and, with a pooler,
    `pooler_output`."""

    def __init__(self, config: MgteConfig, add_pooling_layer: bool = False):
        super().__init__(config)
        self.embeddings = MgteEmbeddings(config)
        self.rotary_emb = MgteRotaryEmbedding(config)
        self.encoder = MgteEncoder(config)
        self.pooler = MgtePooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def encode_packed(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        seqlens: list[int] | torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MgtePackedOutput:
        """Run the encoder and keep the result packed (no re-padding).

        `input_ids` is `(B, L)` with an optional `attention_mask`; or already packed tokens `(1, T)` (or `(T,)`)
        holding the sequences one after another, with their `seqlens` (or transformers' `cu_seq_lens_q`, or
        `position_ids` restarting at 0). `output_hidden_states` / `output_attentions` record per-layer outputs.
        """
        return self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens,
                            return_dict=True, **kwargs)

    @capture_outputs
    def _encode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens,
                **kwargs) -> MgtePackedOutput:
        _check_kwargs(kwargs)
        lengths = _packed_lengths(input_ids, inputs_embeds, attention_mask, position_ids, seqlens, kwargs)
        if lengths is not None:  # packed input: every tensor becomes (1, T, ...)
            input_ids, inputs_embeds, token_type_ids, position_ids = (
                None if t is None else t.reshape(1, -1, *t.shape[(2 if t.dim() > 2 else t.dim()):])
                for t in (input_ids, inputs_embeds, token_type_ids, position_ids))
        if not torch.compiler.is_compiling():
            _check_inputs(self.config, self.embeddings.word_embeddings.weight.dtype, input_ids, attention_mask,
                          token_type_ids, position_ids, inputs_embeds)
        ref = input_ids if input_ids is not None else inputs_embeds
        layout = self._layout(ref, attention_mask, lengths)
        inputs = [None if t is None else layout.from_input_layout(t)
                  for t in (input_ids, token_type_ids, position_ids, inputs_embeds)]
        record = bool(kwargs.get("output_hidden_states", self.config.output_hidden_states))
        if kwargs.get("output_attentions", self.config.output_attentions):
            self._check_weights_available()
        return MgtePackedOutput(hidden=self._run(layout, *inputs, record_hidden_states=record), seqs=layout)

    def _layout(self, ref: torch.Tensor, attention_mask: torch.Tensor | None,
                lengths: list[int] | torch.Tensor | None) -> PackedSeqs | PaddedLayout:
        """Packed input keeps its packing; a padded batch is packed, or, while torch.compile traces, stays padded
        (its packing has data-dependent shapes; padding positions are computed, and zeroed in the outputs)."""
        device = ref.device
        implementation = self.config._attn_implementation
        if lengths is not None:
            return PackedSeqs.from_lengths(lengths, device, total=ref.shape[1])
        mask = attention_mask.to(device) if attention_mask is not None else torch.ones(ref.shape[:2], device=device)
        if not torch.compiler.is_compiling():
            return PackedSeqs.from_mask(mask)
        if implementation not in (None, "sdpa") and is_packed_implementation(implementation):
            raise ValueError(f"A compiled padded batch runs padded attention (sdpa, eager or flex_attention), not "
                             f"{implementation!r}: pass packed input (seqlens) or set another implementation.")
        return PaddedLayout(mask)

    def _run(self, layout: PackedSeqs | PaddedLayout, ids, types, positions, embeds,
             record_hidden_states: bool = False) -> torch.Tensor:
        """Embeddings → RoPE → layers on the token axis of `layout`; returns `(T, H)`."""
        if positions is None:
            positions = layout.positions(ref_device(ids, embeds))  # (T,)
        self._check_positions(positions)
        x = self.embeddings(ids, types, positions, embeds)  # (T, H)
        cos, sin = self.rotary_emb(x, positions)  # (T, d)
        layout.attn_mask = self._padded_attention_mask(layout, x)
        return self.encoder(x, cos[:, None], sin[:, None], layout, record_hidden_states=record_hidden_states)

    def _check_positions(self, positions: torch.Tensor) -> None:
        """Absolute tables end at max_position_embeddings; RoPE goes past it, with one warning."""
        implementation = self.config._attn_implementation
        if implementation in MGTE_ATTENTION_FUNCTIONS:
            check_implementation(implementation, positions.device, self.dtype, self.training)
        if torch.compiler.is_compiling():
            return
        longest = int(positions.max()) + 1
        limit = self.config.max_position_embeddings
        if self.config.position_embedding_type == "absolute" and longest > limit:
            raise ValueError(f"A sequence of {longest} positions exceeds max_position_embeddings ({limit}) of this "
                             "absolute-position model.")
        if longest > limit:
            logger.warning_once(f"Sequences longer than the {limit} positions this model was trained for "
                                "(max_position_embeddings): RoPE extrapolates, but quality may drop. Truncate the input "
                                "(the tokenizer's max_length) to stay within it.")

    def _padded_attention_mask(self, layout: PackedSeqs | PaddedLayout, x: torch.Tensor):
        """The mask a padded attention kernel takes (transformers' `create_bidirectional_mask`), once per forward."""
        if is_packed_implementation(self.config._attn_implementation) or layout.mask is None:
            return None
        metadata = x.new_empty(*layout.padded_shape, 0)  # batch, length, dtype and device of the padded layout
        return create_bidirectional_mask(config=self.config, inputs_embeds=metadata, attention_mask=layout.mask)

    def _check_weights_available(self) -> None:
        if self.config._attn_implementation != "eager":
            logger.warning_once(f"output_attentions needs attn_implementation='eager' (this model uses "
                                f"{self.config._attn_implementation!r}, which returns no weights): load it with "
                                "attn_implementation='eager' or call model.set_attn_implementation('eager').")

    def encode_padded(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(B, L)` → `(B, L, H)` without packing: padded SDPA with a key mask, shapes fixed by the input shape.

        For exporters and compilers (ONNX, torch.export), where the packed path's data-dependent shapes cannot be
        traced. Same modules and, on valid positions, the same numbers as `forward`; no input checks (they read
        data), so validate before exporting.
        """
        implementation = self.config._attn_implementation
        if implementation not in (None, "sdpa") and is_packed_implementation(implementation):
            raise ValueError(f"encode_padded runs padded attention (sdpa or eager), not {implementation!r}; call "
                             "model.set_attn_implementation('sdpa') first.")
        layout = PaddedLayout(attention_mask)
        return layout.unpack(self._run(layout, layout.pack(input_ids), None, None, None))  # (B, L, H)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        seqlens: list[int] | torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """Encode a padded batch `(B, L)` (or packed tokens with `seqlens`); see `encode_packed`."""
        out = self.encode_packed(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens,
                                 **kwargs)
        return BaseModelOutputWithPooling(
            last_hidden_state=out.padded(out.hidden),
            pooler_output=self.pooler(out.cls) if self.pooler is not None else None,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )


class MgteLMHead(nn.Module):
    """dense → act → LayerNorm → decoder (weight tied to the word embeddings, own bias)."""

    def __init__(self, config: MgteConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act_fn = ACT2FN[config.hidden_act]
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act_fn(self.dense(hidden))))


class MgteForMaskedLM(MgtePreTrainedModel):
    """MLM head: logits `(B, L, V)`. With `config.sparse_prediction` and labels, only the labelled positions go
    through the head and `logits` is `(n_labelled, V)` (see `MgteConfig`)."""

    _tied_weights_keys = {"lm_head.decoder.weight": "new.embeddings.word_embeddings.weight"}

    def __init__(self, config: MgteConfig):
        super().__init__(config)
        self.new = MgteModel(config)
        self.lm_head = MgteLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head.decoder = value

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None, seqlens=None,
                **kwargs: Unpack[TransformersKwargs]) -> MaskedLMOutput:
        num_items = kwargs.pop("num_items_in_batch", None)
        out = self.new.encode_packed(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens,
                                     **kwargs)
        hidden = out.hidden  # (T, H)
        packed_labels = None if labels is None else out.pack_labels(labels)  # (T,)
        sparse = packed_labels is not None and self.config.sparse_prediction
        if sparse:
            selected = (packed_labels != -100).nonzero().flatten()  # (n_labelled,)
            hidden, packed_labels = hidden.index_select(0, selected), packed_labels.index_select(0, selected)
        logits = self.lm_head(hidden)  # (T or n_labelled, V)
        loss = None if packed_labels is None else token_loss(logits, packed_labels, self.config.vocab_size, num_items)
        return MaskedLMOutput(loss=loss, logits=logits if sparse else out.padded(logits),
                              hidden_states=out.hidden_states, attentions=out.attentions)


def token_loss(logits: torch.Tensor, labels: torch.Tensor, num_classes: int,
               num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over `(T, C)` logits, -100 ignored; a sum over `num_items_in_batch` when the Trainer gives it
    (gradient accumulation), else the mean."""
    _check_label_range(labels, num_classes)
    if num_items_in_batch is None:
        return F.cross_entropy(logits.float(), labels, ignore_index=-100)
    return F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum") / num_items_in_batch


def _check_label_range(labels: torch.Tensor, num_classes: int) -> None:
    if labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"labels must be integer class ids (torch.long), got {labels.dtype}.")
    if torch.compiler.is_compiling():  # the values are data: checked in eager runs only
        return
    valid = labels[labels != -100]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes - 1}] or -100 (ignored), got values in "
                         f"[{int(valid.min())}, {int(valid.max())}].")


class MgteForSequenceClassification(MgtePreTrainedModel):
    """The reranker head: tanh pooler on CLS → dropout → classifier. One label = a raw relevance logit."""

    def __init__(self, config: MgteConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.new = MgteModel(config, add_pooling_layer=True)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None, seqlens=None,
                **kwargs: Unpack[TransformersKwargs]) -> SequenceClassifierOutput:
        num_items = kwargs.pop("num_items_in_batch", None)
        out = self.new.encode_packed(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens,
                                     **kwargs)
        logits = self.classifier(self.dropout(self.new.pooler(out.cls)))  # (B, num_labels)
        loss = None if labels is None else classification_loss(self.config, logits, labels, num_items)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                        attentions=out.attentions)


def _classifier_dropout(config: MgteConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


def classification_loss(config: MgteConfig, logits: torch.Tensor, labels: torch.Tensor,
                         num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """Regression, single-label or multi-label classification of `(B, C)` logits, as `config.problem_type` says.

    Labels are `(B,)` (or `(B, C)` for multi-label and multi-output regression); any other shape is refused rather
    than broadcast.
    """
    batch, num_labels = logits.shape
    problem = config.problem_type
    if problem is None:
        if num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    per_row = problem == "single_label_classification" or (problem == "regression" and num_labels == 1)
    expected = (batch,) if per_row else (batch, num_labels)
    if labels.numel() != math.prod(expected) or (labels.dim() > 1 and tuple(labels.shape) not in (expected, (batch, 1))):
        raise ValueError(f"labels {tuple(labels.shape)} do not fit the logits {tuple(logits.shape)} of "
                         f"{problem}: expected {expected}.")
    reduction = "mean" if num_items_in_batch is None else "sum"
    if problem == "regression":
        loss = F.mse_loss(logits.float().reshape(expected), labels.float().reshape(expected), reduction=reduction)
    elif problem == "single_label_classification":
        labels = labels.reshape(-1)
        _check_label_range(labels, num_labels)
        loss = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction=reduction)
    else:
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction=reduction)
    return loss if num_items_in_batch is None else loss / num_items_in_batch


class MgteForTokenClassification(MgtePreTrainedModel):
    """dropout → classifier on every token (gte-multilingual-base ships it with one label: the sparse head)."""

    def __init__(self, config: MgteConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.new = MgteModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None, seqlens=None,
                **kwargs: Unpack[TransformersKwargs]) -> MgteTokenClassifierOutput:
        num_items = kwargs.pop("num_items_in_batch", None)
        out = self.new.encode_packed(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens,
                                     **kwargs)
        hidden = self.dropout(out.hidden)
        logits = self.classifier(hidden)  # (T, C)
        loss = None if labels is None else token_loss(logits, out.pack_labels(labels), self.num_labels, num_items)
        return MgteTokenClassifierOutput(loss=loss, logits=out.padded(logits), hidden_states=out.hidden_states,
                                         attentions=out.attentions, last_hidden_state=out.padded(hidden))


class MgteForEmbedding(MgtePreTrainedModel):
    """The text representation model (TRM): one forward gives the dense vector and the sparse token weights.

    dense = normalize(h_cls[:dimension]) for a `dimension` in `config.matryoshka_dimensions` (default: all of H);
    sparse = ReLU(classifier(h_t)) per token — the `classifier.{weight,bias}` of gte-multilingual-base.
    """

    def __init__(self, config: MgteConfig):
        super().__init__(config)
        self.new = MgteModel(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load an embedding model; a reranker's folder is refused (its classifier is no sparse head)."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        architectures = (loaded[0] if isinstance(loaded, tuple) else loaded).config.architectures or []
        if any(name.endswith("ForSequenceClassification") for name in architectures):
            raise ValueError(f"{pretrained_model_name_or_path} holds a reranker ({', '.join(architectures)}): its "
                             "classifier scores query-document pairs and is no sparse head. Load it with "
                             "MgteForSequenceClassification (or MgteReranker).")
        return loaded

    def check_dimension(self, dimension: int | None) -> int:
        """The dense size to return; refuses sizes the model was not trained for."""
        if dimension is None:
            return self.config.hidden_size
        if not self.config.dimension_allowed(dimension):
            raise ValueError(f"dimension={dimension!r} is not allowed for this model: {self.config.describe_dimensions()}.")
        return int(dimension)

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, dimension: int | None = None, return_dense: bool = True,
                return_sparse: bool = True, seqlens=None,
                **kwargs: Unpack[TransformersKwargs]) -> MgteEmbeddingOutput:
        dimension = self.check_dimension(dimension)
        out = self.new.encode_packed(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens,
                                     **kwargs)
        dense = dense_embedding(out.cls, dimension) if return_dense else None  # (B, dim)
        sparse = out.padded(sparse_token_weights(self.classifier, out.hidden)) if return_sparse else None  # (B, L)
        return MgteEmbeddingOutput(dense=dense, sparse=sparse, hidden_states=out.hidden_states,
                                   attentions=out.attentions)


__all__ = [
    "MgteEmbeddingOutput",
    "MgteForEmbedding",
    "MgteForMaskedLM",
    "MgteForSequenceClassification",
    "MgteForTokenClassification",
    "MgteModel",
    "MgtePackedOutput",
    "MgtePreTrainedModel",
    "MgteRotaryEmbedding",
    "apply_rope",
    "copy_modeling_files",
    "dense_embedding",
    "rope_cos_sin",
    "rope_frequencies",
    "rope_inv_freq",
    "sparse_token_weights",
    "token_weights_to_dicts",
]
