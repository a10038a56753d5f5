# Copyright 2026 The mgte-hf authors. Licensed under the Apache License, Version 2.0.
"""The mGTE encoder (RoPE, gated FFN, post-LN) with a packed forward, and its heads.

Exact against the released "new-impl" code of gte-multilingual-base / gte-*-en-v1.5 (same state-dict keys, same
numbers), but every layer runs on packed tokens `(total_tokens, hidden)`: the encoder unpads once after the
embeddings and re-pads only for outputs that need the padded layout.

This file ships as Hub remote code: it imports only torch, transformers' public API and its sibling files.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput

from .attention_mgte import ATTENTION_BACKENDS, PackedSeqs, PaddedLayout, select_backend
from .configuration_mgte import MgteConfig


MODELING_FILES = ("configuration_mgte.py", "attention_mgte.py", "modeling_mgte.py")


# ============================================================================================== RoPE (pure)
def rope_inv_freq(config: MgteConfig, device: torch.device | None = None) -> torch.Tensor:
    """`(head_dim / 2,)` fp32 inverse frequencies, with the released static NTK scaling applied at every length.

    NTK factor f: inv_freq_j = (base·f)^(-j/d) / f^(2/d), j = 0, 2, …, d-2. With `mixed_b` = b:
    inv_freq_m = base^(-2(m-1)/d) / exp(ln(f) / (d/2)^b · m^b), m = 1 … d/2.
    """
    d = config.head_dim
    base = config.rope_theta
    j = torch.arange(0, d, 2, dtype=torch.float32, device=device)
    scaling = config.rope_scaling
    if scaling is None:
        return 1.0 / (base ** (j / d))
    factor = float(scaling["factor"])
    mixed_b = scaling.get("mixed_b")
    if mixed_b is None:
        return 1.0 / ((base * factor) ** (j / d)) / factor ** (2 / d)
    a = torch.log(torch.tensor(factor, dtype=torch.float32)) / (d / 2) ** mixed_b
    m = torch.arange(1, d // 2 + 1, dtype=torch.float32, device=device)
    return base ** (-j / d) / torch.exp(a * m**mixed_b)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(T,)` positions → cos, sin of shape `(T, 1, head_dim)` in fp32 (NeoX layout: angles repeated twice)."""
    angles = torch.outer(positions.to(torch.float32), inv_freq)  # (T, d/2)
    emb = torch.cat((angles, angles), dim=-1)[:, None, :]  # (T, 1, d)
    return emb.cos(), emb.sin()


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
    """Multi-head self-attention: projections and RoPE here, the kernel from `attention_mgte`."""

    def __init__(self, config: MgteConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        self.dropout_p = config.attention_probs_dropout_prob
        hidden = config.hidden_size
        if config.pack_qkv:
            self.qkv_proj = nn.Linear(hidden, 3 * hidden)
        else:
            self.q_proj = nn.Linear(hidden, hidden)
            self.k_proj = nn.Linear(hidden, hidden)
            self.v_proj = nn.Linear(hidden, hidden)
        self.o_proj = nn.Linear(hidden, hidden)

    def forward(self, x, cos, sin, seqs: PackedSeqs, backend: str):
        if hasattr(self, "qkv_proj"):
            q, k, v = self.qkv_proj(x).chunk(3, dim=-1)  # each (T, H)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        shape = (x.shape[0], self.num_heads, self.head_dim)
        q = apply_rope(q.view(shape), cos, sin)  # (T, n, d)
        k = apply_rope(k.view(shape), cos, sin)
        v = v.view(shape)
        dropout_p = self.dropout_p if self.training else 0.0
        out, probs = ATTENTION_BACKENDS[backend](q, k, v, seqs, dropout_p=dropout_p, scaling=self.scaling)
        return self.o_proj(out.reshape(x.shape[0], -1)), probs


# Without autograd, the feed-forward runs on at most this many tokens at a time: its (tokens, 2·I) intermediate is the
# largest activation of a layer (192 MiB for 8 192 tokens in fp32), so this caps the memory peak of long inputs.
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
        if torch.is_grad_enabled() or x.shape[0] <= MLP_CHUNK_TOKENS:
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
    """Post-LN block: h = LN(x + drop(attn(x))); out = LN(h + drop(mlp(h)))."""

    def __init__(self, config: MgteConfig):
        super().__init__()
        self.attention = MgteAttention(config)
        self.mlp = MgteGatedMLP(config)
        self.attn_ln = layer_norm(config)
        self.mlp_ln = layer_norm(config)
        self.hidden_dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x, cos, sin, seqs: PackedSeqs, backend: str):
        attn_out, probs = self.attention(x, cos, sin, seqs, backend)
        # The residual sums go into the fresh branch outputs (same numbers as x + branch; no autograd needs them).
        h = self.attn_ln(self.hidden_dropout(attn_out).add_(x))
        return self.mlp_ln(self.hidden_dropout(self.mlp(h)).add_(h)), probs


class MgteEncoder(nn.Module):
    def __init__(self, config: MgteConfig):
        super().__init__()
        self.layer = nn.ModuleList([MgteLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, x, cos, sin, seqs: PackedSeqs, backend: str, output_hidden_states: bool = False,
                output_attentions: bool = False):
        hidden_states, attentions = [x] if output_hidden_states else None, [] if output_attentions else None
        for layer in self.layer:
            x, probs = layer(x, cos, sin, seqs, backend)
            if output_hidden_states:
                hidden_states.append(x)
            if output_attentions:
                attentions.append(probs)
        return x, hidden_states, attentions


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
    seqs: PackedSeqs | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None

    @property
    def cls(self) -> torch.Tensor:
        """`(B, H)` hidden state of each sequence's first token."""
        return self.hidden.index_select(0, self.seqs.first_token_index.to(self.hidden.device))

    def padded(self, packed: torch.Tensor) -> torch.Tensor:
        return self.seqs.unpack(packed)

    def padded_hidden_states(self) -> tuple[torch.Tensor, ...] | None:
        return None if self.hidden_states is None else tuple(self.seqs.unpack(h) for h in self.hidden_states)


@dataclass
class MgteEmbeddingOutput(ModelOutput):
    """Output of `MgteForEmbedding`.

    Args:
        dense: `(B, dimension)` L2-normalised CLS vectors.
        sparse: `(B, L)` lexical weight of every token (0 at padding).
        last_hidden_state: `(B, L, H)` when `output_hidden_states` is set.
        hidden_states: per-layer `(B, L, H)` when `output_hidden_states` is set.
    """

    dense: torch.Tensor | None = None
    sparse: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
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
    _keys_to_ignore_on_load_unexpected = [r"position_ids", r"rotary_emb\.", r"inv_freq"]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, reading safetensors only, with a clear error for a damaged file."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("mgte-hf loads safetensors only (pickle checkpoints can run code when loaded); convert "
                             "the checkpoint with a trusted tool first.")
        kwargs["use_safetensors"] = True
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as err:
            raise ValueError(f"Could not read the weights of {pretrained_model_name_or_path}: {err}. The safetensors "
                             "file is truncated or corrupt; download or save the checkpoint again.") from err

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights (safetensors) and config, with the modeling files copied in as self-contained remote code."""
        kwargs.setdefault("safe_serialization", True)
        if kwargs["safe_serialization"] is False:
            raise ValueError("mgte-hf saves safetensors only (pickle checkpoints can run code when loaded).")
        kwargs.pop("safe_serialization")
        super().save_pretrained(save_directory, *args, **kwargs)
        copy_modeling_files(save_directory)


def copy_modeling_files(save_directory) -> None:
    """Copy the self-contained modeling files next to a saved config (the Hub remote code)."""
    here = Path(__file__).parent
    for name in MODELING_FILES:
        shutil.copyfile(here / name, Path(save_directory) / name)


def _check_inputs(config: MgteConfig, input_ids, attention_mask, token_type_ids, inputs_embeds) -> None:
    """Clear errors for malformed batches, before anything is computed."""
    ref = input_ids if input_ids is not None else inputs_embeds
    if ref is None:
        raise ValueError("Pass input_ids or inputs_embeds.")
    if input_ids is not None and inputs_embeds is not None:
        raise ValueError("Pass either input_ids or inputs_embeds, not both.")
    shape = tuple(ref.shape[:2])
    if ref.dim() != (2 if input_ids is not None else 3):
        raise ValueError(f"input_ids must be (batch, seq_len) [inputs_embeds (batch, seq_len, hidden)], got "
                         f"{tuple(ref.shape)}.")
    if 0 in shape:
        raise ValueError(f"Empty batch: input shape {shape}. Pass at least one sequence with at least one token.")
    if input_ids is not None:
        if input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise ValueError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}.")
        lo, hi = int(input_ids.min()), int(input_ids.max())
        if lo < 0 or hi >= config.vocab_size:
            raise ValueError(f"input_ids must be in [0, {config.vocab_size - 1}] (vocab_size), got values in "
                             f"[{lo}, {hi}]. Is the tokenizer the one of this model?")
    if attention_mask is not None:
        if tuple(attention_mask.shape) != shape:
            raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must have the shape of input_ids {shape}.")
        if bool(((attention_mask != 0) & (attention_mask != 1)).any()):
            raise ValueError("attention_mask must hold only 0 and 1.")
        empty = (attention_mask.sum(1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"Rows {empty} of attention_mask are all zero: every sequence needs at least one token.")
    if token_type_ids is not None:
        if tuple(token_type_ids.shape) != shape:
            raise ValueError(f"token_type_ids {tuple(token_type_ids.shape)} must have the shape of input_ids {shape}.")
        if config.type_vocab_size > 0:
            lo, hi = int(token_type_ids.min()), int(token_type_ids.max())
            if lo < 0 or hi >= config.type_vocab_size:
                raise ValueError(f"token_type_ids must be in [0, {config.type_vocab_size - 1}] (type_vocab_size), "
                                 f"got values in [{lo}, {hi}].")


class MgteModel(MgtePreTrainedModel):
    """The mGTE encoder. Returns padded `last_hidden_state` (zeros at padding) and, with a pooler, `pooler_output`."""

    def __init__(self, config: MgteConfig, add_pooling_layer: bool = False):
        super().__init__(config)
        self.embeddings = MgteEmbeddings(config)
        self.encoder = MgteEncoder(config)
        self.pooler = MgtePooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def attention_backend(self, device: torch.device, dtype: torch.dtype, need_weights: bool = False) -> str:
        """The backend a forward on `device` / `dtype` will use."""
        requested = self.config.attn_backend
        if getattr(self.config, "_attn_implementation", None) == "eager" and requested == "auto":
            requested = "eager"
        return select_backend(requested, device, dtype, training=self.training, need_weights=need_weights)

    def encode_packed(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        seqlens: list[int] | torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> MgtePackedOutput:
        """Run the encoder and keep the result packed (no re-padding).

        `input_ids` is `(B, L)` with an optional `attention_mask`; or, with `seqlens`, already packed tokens `(T,)`
        (or `(1, T)`) holding the sequences one after another.
        """
        if seqlens is not None:
            seqlens = seqlens.tolist() if isinstance(seqlens, torch.Tensor) else list(seqlens)
            input_ids, inputs_embeds, token_type_ids, position_ids = (
                None if t is None else t.reshape(1, -1, *t.shape[(2 if t.dim() > 2 else t.dim()):])
                for t in (input_ids, inputs_embeds, token_type_ids, position_ids))
            if attention_mask is not None:
                raise ValueError("Packed input (seqlens) takes no attention_mask.")
            if any(n < 1 for n in seqlens) or sum(seqlens) != (input_ids if input_ids is not None
                                                                else inputs_embeds).shape[1]:
                raise ValueError(f"seqlens {seqlens} must be positive and sum to the number of packed tokens.")
        _check_inputs(self.config, input_ids, attention_mask, token_type_ids, inputs_embeds)
        output_hidden_states = _flag(output_hidden_states, self.config.output_hidden_states)
        output_attentions = _flag(output_attentions, self.config.output_attentions)
        ref = input_ids if input_ids is not None else inputs_embeds
        device = ref.device
        if seqlens is not None:
            seqs = PackedSeqs.from_lengths(seqlens, device)
        elif attention_mask is not None:
            seqs = PackedSeqs.from_mask(attention_mask.to(device))
        else:
            seqs = PackedSeqs.from_mask(torch.ones(ref.shape[:2], dtype=torch.long, device=device))

        packed_ids = None if input_ids is None else seqs.pack(input_ids)  # (T,)
        packed_embeds = None if inputs_embeds is None else seqs.pack(inputs_embeds)  # (T, H)
        packed_types = None if token_type_ids is None else seqs.pack(token_type_ids)
        positions = seqs.positions(device) if position_ids is None else seqs.pack(position_ids)  # (T,)
        if self.config.position_embedding_type == "absolute" and seqs.max_seqlen > self.config.max_position_embeddings:
            raise ValueError(f"A sequence of {seqs.max_seqlen} tokens exceeds max_position_embeddings "
                             f"({self.config.max_position_embeddings}) of this absolute-position model.")

        dtype = self.embeddings.word_embeddings.weight.dtype if packed_embeds is None else packed_embeds.dtype
        backend = self.attention_backend(device, dtype, need_weights=output_attentions)
        x, hidden_states, attentions = self._run(packed_ids, packed_types, positions, packed_embeds, seqs, backend,
                                                 output_hidden_states, output_attentions)
        return MgtePackedOutput(
            hidden=x,
            seqs=seqs,
            hidden_states=tuple(hidden_states) if hidden_states is not None else None,
            attentions=tuple(attentions) if attentions is not None else None,
        )

    def _run(self, ids, types, positions, embeds, seqs, backend: str, output_hidden_states: bool = False,
             output_attentions: bool = False):
        """Embeddings → RoPE tables → layers on a token axis `(T,)` laid out as `seqs` says."""
        x = self.embeddings(ids, types, positions, embeds)  # (T, H)
        cos, sin = rope_cos_sin(positions, rope_inv_freq(self.config, x.device))  # (T, 1, d)
        return self.encoder(x, cos.to(x.dtype), sin.to(x.dtype), seqs, backend, output_hidden_states,
                            output_attentions)

    def encode_padded(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(B, L)` → `(B, L, H)` without packing: padded SDPA with a key mask, shapes fixed by the input shape.

        For exporters and compilers (ONNX, torch.export), where the packed path's data-dependent shapes cannot be
        traced. Same modules and, on valid positions, the same numbers as `forward`; no input checks (they read
        data), so validate before exporting.
        """
        batch, seq_len = input_ids.shape
        layout = PaddedLayout(attention_mask)
        x, _, _ = self._run(input_ids.reshape(-1), None, layout.positions(), None, layout, "sdpa")  # (B·L, H)
        return x.reshape(batch, seq_len, -1)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        seqlens: list[int] | torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """Encode a padded batch `(B, L)` (or packed tokens with `seqlens`); see `encode_packed`."""
        out = self.encode_packed(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                                 seqlens=seqlens, output_hidden_states=output_hidden_states,
                                 output_attentions=output_attentions)
        result = BaseModelOutputWithPooling(
            last_hidden_state=out.padded(out.hidden),
            pooler_output=self.pooler(out.cls) if self.pooler is not None else None,
            hidden_states=out.padded_hidden_states(),
            attentions=out.attentions,
        )
        return result if _flag(return_dict, self.config.return_dict) else result.to_tuple()


def _flag(value: bool | None, default: bool | None) -> bool:
    return bool(default) if value is None else bool(value)


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
    """MLM head. With labels and `config.sparse_prediction`, logits are `(n_labelled, V)`: only labelled positions."""

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

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None, output_hidden_states=None,
                output_attentions=None, return_dict=None, seqlens=None, **kwargs) -> MaskedLMOutput | tuple:
        out = self.new.encode_packed(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens=seqlens,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        loss = None
        if labels is not None:
            packed_labels = out.seqs.pack(labels.reshape(out.seqs.padded_shape))  # (T,)
            if self.config.sparse_prediction:
                selected = (packed_labels != -100).nonzero().flatten()  # (n_labelled,)
                logits = self.lm_head(out.hidden.index_select(0, selected))  # (n_labelled, V)
                packed_labels = packed_labels.index_select(0, selected)
            else:
                logits = self.lm_head(out.hidden)
            _check_label_range(packed_labels, self.config.vocab_size)
            loss = F.cross_entropy(logits.float(), packed_labels, ignore_index=-100)
            if not self.config.sparse_prediction:
                logits = out.padded(logits)
        else:
            logits = out.padded(self.lm_head(out.hidden))  # (B, L, V)
        result = MaskedLMOutput(loss=loss, logits=logits, hidden_states=out.padded_hidden_states(),
                                attentions=out.attentions)
        return result if _flag(return_dict, self.config.return_dict) else result.to_tuple()


def _check_label_range(labels: torch.Tensor, num_classes: int) -> None:
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
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None, output_hidden_states=None,
                output_attentions=None, return_dict=None, seqlens=None, **kwargs) -> SequenceClassifierOutput | tuple:
        out = self.new.encode_packed(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens=seqlens,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        logits = self.classifier(self.dropout(self.new.pooler(out.cls)))  # (B, num_labels)
        loss = None if labels is None else classification_loss(self.config, logits, labels)
        result = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.padded_hidden_states(),
                                          attentions=out.attentions)
        return result if _flag(return_dict, self.config.return_dict) else result.to_tuple()


def classification_loss(config: MgteConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Regression (one label), single-label or multi-label classification, as `config.problem_type` says."""
    num_labels = logits.shape[-1]
    problem = config.problem_type
    if problem is None:
        if num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "regression":
        return F.mse_loss(logits.squeeze(-1).float(), labels.reshape(-1).float())
    if problem == "single_label_classification":
        labels = labels.reshape(-1)
        _check_label_range(labels, num_labels)
        return F.cross_entropy(logits.float(), labels)
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


class MgteForTokenClassification(MgtePreTrainedModel):
    """dropout → classifier on every token (gte-multilingual-base ships it with one label: the sparse head)."""

    def __init__(self, config: MgteConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.new = MgteModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None, output_hidden_states=None,
                output_attentions=None, return_dict=None, seqlens=None, **kwargs) -> MgteTokenClassifierOutput | tuple:
        out = self.new.encode_packed(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens=seqlens,
            output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        hidden = self.dropout(out.hidden)
        logits = self.classifier(hidden)  # (T, C)
        loss = None
        if labels is not None:
            packed_labels = out.seqs.pack(labels.reshape(out.seqs.padded_shape))
            _check_label_range(packed_labels, self.num_labels)
            loss = F.cross_entropy(logits.float(), packed_labels, ignore_index=-100)
        result = MgteTokenClassifierOutput(loss=loss, logits=out.padded(logits),
                                           hidden_states=out.padded_hidden_states(), attentions=out.attentions,
                                           last_hidden_state=out.padded(hidden))
        return result if _flag(return_dict, self.config.return_dict) else result.to_tuple()


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

    def check_dimension(self, dimension: int | None) -> int:
        """The dense size to return; refuses sizes the model was not trained for."""
        if dimension is None:
            return self.config.hidden_size
        if not self.config.dimension_allowed(dimension):
            raise ValueError(f"dimension={dimension!r} is not allowed for this model: {self.config.describe_dimensions()}.")
        return dimension

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, dimension: int | None = None, return_dense: bool = True,
                return_sparse: bool = True, output_hidden_states=None, output_attentions=None, return_dict=None,
                seqlens=None, **kwargs) -> MgteEmbeddingOutput | tuple:
        dimension = self.check_dimension(dimension)
        want_hidden = _flag(output_hidden_states, self.config.output_hidden_states)
        out = self.new.encode_packed(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, seqlens=seqlens,
            output_hidden_states=want_hidden, output_attentions=output_attentions)
        dense = dense_embedding(out.cls, dimension) if return_dense else None  # (B, dim)
        sparse = out.padded(sparse_token_weights(self.classifier, out.hidden)) if return_sparse else None  # (B, L)
        result = MgteEmbeddingOutput(
            dense=dense, sparse=sparse,
            last_hidden_state=out.padded(out.hidden) if want_hidden else None,
            hidden_states=out.padded_hidden_states(), attentions=out.attentions)
        return result if _flag(return_dict, self.config.return_dict) else result.to_tuple()


__all__ = [
    "MgteEmbeddingOutput",
    "MgteForEmbedding",
    "MgteForMaskedLM",
    "MgteForSequenceClassification",
    "MgteForTokenClassification",
    "MgteModel",
    "MgtePackedOutput",
    "MgtePreTrainedModel",
    "apply_rope",
    "copy_modeling_files",
    "dense_embedding",
    "rope_cos_sin",
    "rope_inv_freq",
    "sparse_token_weights",
    "token_weights_to_dicts",
]
