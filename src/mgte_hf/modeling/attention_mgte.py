# Copyright 2026 The mgte-hf authors. Licensed under the Apache License, Version 2.0.
"""Packing (unpadding) and the attention kernels of the mGTE encoder.

Every layer of the encoder works on packed tokens `(total_tokens, hidden)`; the only places that know where one
sequence ends and the next begins are the layouts here (`PackedSeqs`, and `PaddedLayout` for the traceable padded
forward). The attention kernel is transformers' `attn_implementation`, and each kind runs where it is exact:

| `attn_implementation` | layout | what runs |
|---|---|---|
| `"sdpa"` (default) | packed | torch SDPA per sequence (one call for a batch of equal lengths), no padding computed; in fp32 on CPU, sequences of at most `EXPLICIT_ATTENTION_MAX_LEN` tokens take SDPA's math written out |
| `"flash_attention_2"`, `"flash_attention_3"`, hub flash kernels | packed | transformers' flash attention with the varlen offsets (`cu_seq_lens_q/k`, `max_length_q/k`) |
| `"mgte_xformers"` (CUDA) | packed | xformers `memory_efficient_attention` with a block-diagonal mask over the packed tokens |
| `"mgte_varlen"` (CUDA, fp16/bf16, inference) | packed | torch's own varlen attention |
| `"eager"`, `"flex_attention"`, any other registered function | padded | transformers' convention: `(batch, heads, seq, head_dim)` and the mask of `create_bidirectional_mask`; `eager` returns the attention weights |

`mgte_xformers` and `mgte_varlen` are registered in transformers' `AttentionInterface` when this file is imported.
This file ships as Hub remote code: it imports only torch and transformers' public API (xformers inside try/except).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.utils.generic import is_flash_attention_requested


try:  # optional GPU kernel; absent or kernel-less installs leave it unavailable
    import xformers.ops as xops
except Exception:  # noqa: BLE001 - xformers raises various errors when its build does not match torch
    xops = None

# torch's own varlen attention (torch >= 2.9) is imported on first use: importing it loads the compiler stack,
# seconds that every CPU process would pay for a CUDA-only kernel.
HAS_TORCH_VARLEN = importlib.util.find_spec("torch.nn.attention.varlen") is not None

# In fp32 on CPU, up to this length the explicit matmul-softmax-matmul is as fast as SDPA's fused kernel and rounds
# like the released (eager) code; longer sequences take the fused kernel, which is faster and never holds the
# (n, len, len) scores (measured per sequence, 12 heads of 64, one thread: equal up to 128 tokens, fused 1.3x faster
# at 512 and 2.8x at 2048). In bf16/fp16 the fused kernel is faster at every length (1.3-2.1x from 8 to 256 tokens,
# one thread, CPU time, Intel Xeon with AMX), so half precision always takes it.
EXPLICIT_ATTENTION_MAX_LEN = 128


@dataclass
class PackedSeqs:
    """Where each sequence lives inside the packed token axis.

    Attributes:
        cu_seqlens: `(batch + 1,)` int32 offsets of each sequence in the packed axis.
        lengths: python list of the `batch` sequence lengths; `None` while torch.compile traces packed input, where
            the lengths stay a tensor (a graph then holds no lengths and serves every batch composition).
        indices: `(total_tokens,)` positions of the valid tokens in the flattened `(batch * L)` padded layout, or
            `None` when that layout has no padding (the packed axis is then the flattened padded tensor itself).
        padded_shape: `(batch, L)` of the padded layout: the input's own for a padded batch, right-padded to the
            longest sequence for packed input.
        mask: `(batch, L)` 0/1 mask of the padded layout (`None` without padding).
        packed_input: the input came packed (`seqlens`); outputs keep its `(1, total_tokens)` layout.
        total: the number of packed tokens, when known without reading `cu_seqlens` (packed input).
        attn_mask: the mask of a padded attention kernel, prepared once per forward by the model.
    """

    cu_seqlens: torch.Tensor
    lengths: list[int] | None
    indices: torch.Tensor | None
    padded_shape: tuple[int, int]
    mask: torch.Tensor | None = None
    packed_input: bool = False
    total: int | None = None
    attn_mask: object = None

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    @property
    def max_seqlen(self) -> int:
        return max(self.lengths)

    @property
    def total_tokens(self) -> int:
        return self.total if self.total is not None else int(self.cu_seqlens[-1])

    @property
    def uniform(self) -> bool:
        """All sequences have the same length: the packed axis reshapes to `(batch, length)` without copies."""
        return min(self.lengths) == max(self.lengths)

    @property
    def first_token_index(self) -> torch.Tensor:
        """`(batch,)` packed index of each sequence's first token (the CLS token)."""
        return self.cu_seqlens[:-1].long()

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor) -> PackedSeqs:
        """Build from a `(batch, L)` 0/1 mask; valid tokens may sit anywhere (left or right padding, holes)."""
        lengths_t = attention_mask.sum(dim=1, dtype=torch.int32)  # (batch,)
        cu_seqlens = F.pad(torch.cumsum(lengths_t, 0, dtype=torch.int32), (1, 0))
        lengths = lengths_t.tolist()
        batch, seq_len = attention_mask.shape
        if sum(lengths) == batch * seq_len:
            return cls(cu_seqlens, lengths, None, (batch, seq_len))
        indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten()
        return cls(cu_seqlens, lengths, indices, (batch, seq_len), mask=attention_mask)

    @classmethod
    def from_lengths(cls, lengths: list[int] | torch.Tensor, device: torch.device | None = None,
                     total: int | None = None) -> PackedSeqs:
        """Build for input that is already packed, sequence after sequence (padded layout: right padding).

        A tensor of lengths stays a tensor while torch.compile traces (no padded layout then: packed kernels only).
        """
        if isinstance(lengths, torch.Tensor) and torch.compiler.is_compiling():
            cu_seqlens = F.pad(torch.cumsum(lengths.to(device), 0, dtype=torch.int32), (1, 0))
            return cls(cu_seqlens, None, None, (1, total), packed_input=True, total=total)
        lengths = lengths.tolist() if isinstance(lengths, torch.Tensor) else list(lengths)
        cu_seqlens = torch.tensor([0, *lengths], dtype=torch.int32, device=device).cumsum(0, dtype=torch.int32)
        width = max(lengths)
        if min(lengths) == width:
            return cls(cu_seqlens, lengths, None, (len(lengths), width), packed_input=True, total=total)
        mask = (torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]).long()
        indices = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
        return cls(cu_seqlens, lengths, indices, (len(lengths), width), mask=mask, packed_input=True, total=total)

    # -------------------------------------------------------------------------------------- layouts
    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """`(batch, L, ...)` → `(total_tokens, ...)` (valid tokens only)."""
        flat = padded.reshape(-1, *padded.shape[2:])
        return flat if self.indices is None else flat.index_select(0, self.indices)

    def unpack(self, packed: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """`(total_tokens, ...)` → `(batch, L, ...)` with `fill` at padding positions."""
        batch, seq_len = self.padded_shape
        if self.indices is None:
            return packed.reshape(batch, seq_len, *packed.shape[1:])
        out = packed.new_full((batch * seq_len, *packed.shape[1:]), fill)
        out = out.index_copy(0, self.indices, packed)
        return out.reshape(batch, seq_len, *packed.shape[1:])

    def to_input_layout(self, packed: torch.Tensor) -> torch.Tensor:
        """`(total_tokens, ...)` → the layout of the input: `(batch, L, ...)`, or `(1, total_tokens, ...)` if packed."""
        return packed[None] if self.packed_input else self.unpack(packed)

    def from_input_layout(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_input_layout`."""
        return x[0] if self.packed_input else self.pack(x)

    def input_shape(self) -> tuple[int, int]:
        """The `(batch, L)` shape of per-token tensors in the input's layout."""
        return (1, self.total_tokens) if self.packed_input else tuple(self.padded_shape)

    def pack_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Per-token labels in the input's layout (packed input: `(1, T)` or `(T,)`) → `(T,)`."""
        expected = self.input_shape()
        if self.packed_input and labels.dim() == 1:
            labels = labels[None]
        if not torch.compiler.is_compiling() and tuple(labels.shape) != expected:
            raise ValueError(f"labels {tuple(labels.shape)} must have the shape of input_ids {expected}.")
        return self.from_input_layout(labels)

    def positions(self, device: torch.device) -> torch.Tensor:
        """`(total_tokens,)` position of each token: its column counted from its row's first valid token.

        Left or right padding give 0, 1, … for every sequence; a masked-out column inside a row (a hole) keeps its
        place, as in transformers' padded encoders.
        """
        if self.mask is None or self.packed_input:
            cu = self.cu_seqlens.to(device).long()
            starts = torch.repeat_interleave(cu[:-1], cu.diff(), output_size=self.total_tokens)
            return torch.arange(self.total_tokens, device=device) - starts
        return self.pack(padded_positions(self.mask.to(device)))

    def varlen_kwargs(self, device: torch.device) -> dict:
        """The packed-sequence arguments of transformers' attention functions (flash attention's varlen path)."""
        cu = self.cu_seqlens.to(device)
        return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": self.max_seqlen,
                "max_length_k": self.max_seqlen, "seq_lengths": self.lengths}


class PaddedLayout:
    """Stands in for `PackedSeqs` when the token axis is the flattened padded batch `(B·L)` (no packing).

    Used for padded batches while torch.compile traces, and by `MgteModel.encode_padded` (export): reshaping to
    `(B, L)` is all the padded kernels need and the key-padding mask is the attention mask itself — no Python-side
    lengths and no data-dependent shapes, so a compiled or exported graph keeps the batch and sequence sizes
    symbolic. Padding positions are computed, then zeroed in the outputs (as the packed forward leaves them).
    """

    packed_input = False

    def __init__(self, attention_mask: torch.Tensor):
        self.mask = attention_mask  # (B, L)
        self.padded_shape = tuple(attention_mask.shape)
        self.attn_mask = None

    def positions(self, device: torch.device) -> torch.Tensor:
        """`(B·L,)` position of each token in its sequence, as `PackedSeqs.positions` counts it (0 at padding)."""
        return padded_positions(self.mask.to(device)).clamp(min=0).reshape(-1)

    @property
    def first_token_index(self) -> torch.Tensor:
        """`(B,)` flattened index of each row's first valid token (the CLS token)."""
        batch, seq_len = self.mask.shape
        return torch.arange(batch, device=self.mask.device) * seq_len + self.mask.argmax(dim=1)

    def pack(self, padded: torch.Tensor) -> torch.Tensor:
        """`(B, L, ...)` → `(B·L, ...)`."""
        return padded.reshape(-1, *padded.shape[2:])

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """`(B·L, ...)` → `(B, L, ...)`."""
        return packed.reshape(*self.mask.shape, *packed.shape[1:])

    def to_input_layout(self, flat: torch.Tensor) -> torch.Tensor:
        """`(B·L, ...)` → `(B, L, ...)` with zeros at padding."""
        padded = self.unpack(flat)
        keep = self.mask.bool().reshape(*self.mask.shape, *([1] * (padded.dim() - 2)))
        return padded.masked_fill(~keep, 0)

    def from_input_layout(self, x: torch.Tensor) -> torch.Tensor:
        return self.pack(x)

    def input_shape(self) -> tuple[int, int]:
        return tuple(self.padded_shape)

    def pack_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """`(B, L)` labels → `(B·L,)`, -100 (ignored) at padding."""
        if not torch.compiler.is_compiling() and tuple(labels.shape) != self.padded_shape:
            raise ValueError(f"labels {tuple(labels.shape)} must have the shape of input_ids {self.padded_shape}.")
        return labels.masked_fill(self.mask == 0, -100).reshape(-1)


def padded_positions(mask: torch.Tensor) -> torch.Tensor:
    """`(B, L)` mask → `(B, L)` column index minus the column of the row's first valid token."""
    first = mask.argmax(dim=1, keepdim=True)  # (B, 1) first 1 of each row
    return torch.arange(mask.shape[1], device=mask.device)[None, :] - first


# ---------------------------------------------------------------------------------------------- kernels
def eager_attention_forward(module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0,
                            **kwargs):
    """Explicit matmul-softmax-matmul on `(B, n, L, d)` with an additive mask; the released math, with the weights."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling  # (B, n, L, L)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            attention_mask = torch.zeros_like(attention_mask, dtype=scores.dtype).masked_fill(
                ~attention_mask, torch.finfo(scores.dtype).min)
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    probs = F.dropout(probs, p=dropout, training=dropout > 0)
    return torch.matmul(probs, value).transpose(1, 2), probs  # (B, L, n, d), (B, n, L, L)


def packed_sdpa_attention(q, k, v, lengths: list[int], dropout: float, scaling: float) -> torch.Tensor:
    """Exact packed attention on `(T, n, d)` holding sequences of `lengths`: one SDPA call per sequence, no padding.

    Sequences of one length go in a single call on a `(B, n, L, d)` view, except short ones on CPU: the explicit path
    on that view copies q, k, v (its batch dims do not fold), so they go sequence by sequence. Every call is 4-D,
    because torch's fused CPU attention kernel takes only 4-D inputs (3-D falls back to the unfused math path).
    """
    if min(lengths) == max(lengths) and not _explicit(q, lengths[0]):
        shape = (len(lengths), lengths[0], *q.shape[1:])
        qp, kp, vp = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))  # (B, n, L, d)
        out = _single_length_attention(qp, kp, vp, dropout, scaling).transpose(1, 2)  # (B, L, n, d)
        return out.reshape(q.shape)
    outs, start = [], 0
    for length in lengths:
        qs, ks, vs = (t[None, start:start + length].transpose(1, 2) for t in (q, k, v))  # (1, n, len, d)
        outs.append(_single_length_attention(qs, ks, vs, dropout, scaling)[0].transpose(0, 1))  # (len, n, d)
        start += length
    return torch.cat(outs, dim=0)


def _explicit(q: torch.Tensor, length: int) -> bool:
    """Whether sequences of `length` take the explicit path: fp32/fp64 on CPU, up to `EXPLICIT_ATTENTION_MAX_LEN`."""
    return q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64) and length <= EXPLICIT_ATTENTION_MAX_LEN


def _single_length_attention(q, k, v, dropout: float, scaling: float) -> torch.Tensor:
    """Unmasked attention of sequences of one length, `(..., n, len, d)` → `(..., n, len, d)`."""
    if not _explicit(q, q.shape[-2]):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling)
    probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scaling, dim=-1)  # (n, len, len)
    probs = F.dropout(probs, p=dropout, training=dropout > 0)
    return torch.matmul(probs, v)


# ---------------------------------------------------------------------------------------------- compiled packed attention
# Under torch.compile the per-sequence loop runs inside one opaque operator, so a graph holds no sequence lengths:
# packed batches of any composition reuse it. Its backward recomputes the attention (what activation checkpointing
# does for a layer) and returns the gradients of q, k and v. Registered once, whichever copy of this file (the package
# or a checkpoint's remote code) is imported first.
if not hasattr(torch.ops.mgte, "packed_attention"):

    @torch.library.custom_op("mgte::packed_attention", mutates_args=())
    def _packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                          scaling: float) -> torch.Tensor:
        return packed_sdpa_attention(q, k, v, cu_seqlens.diff().tolist(), 0.0, scaling)

    @_packed_attention.register_fake
    def _(q, k, v, cu_seqlens, scaling):
        return torch.empty_like(q)

    @torch.library.custom_op("mgte::packed_attention_backward", mutates_args=())
    def _packed_attention_backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                   cu_seqlens: torch.Tensor, scaling: float) -> tuple[torch.Tensor, torch.Tensor,
                                                                                        torch.Tensor]:
        lengths = cu_seqlens.diff().tolist()
        _, vjp = torch.func.vjp(lambda *qkv: packed_sdpa_attention(*qkv, lengths, 0.0, scaling), q, k, v)
        return tuple(g.contiguous() for g in vjp(grad))

    @_packed_attention_backward.register_fake
    def _(grad, q, k, v, cu_seqlens, scaling):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def _setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:4])
        ctx.scaling = inputs[4]

    def _backward(ctx, grad):
        q, k, v, cu_seqlens = ctx.saved_tensors
        return (*torch.ops.mgte.packed_attention_backward(grad, q, k, v, cu_seqlens, ctx.scaling), None, None)

    _packed_attention.register_autograd(_backward, setup_context=_setup_context)


def padded_sdpa_attention(query, key, value, key_mask: torch.Tensor, dropout: float, scaling: float):
    """torch SDPA on `(B, n, L, d)` with a `(B, L)` key-padding mask (what a padded encoder does; traceable)."""
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask.bool()[:, None, None, :],
                                         dropout_p=dropout, scale=scaling)
    return out.transpose(1, 2)  # (B, L, n, d)


def xformers_attention(module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0,
                       seq_lengths: list[int] | None = None, **kwargs):
    """xformers memory-efficient attention over packed tokens `(1, n, T, d)` with a block-diagonal mask (CUDA)."""
    bias = xops.fmha.attn_bias.BlockDiagonalMask.from_seqlens(seq_lengths)
    q, k, v = (t.transpose(1, 2) for t in (query, key, value))  # (1, T, n, d)
    return xops.memory_efficient_attention(q, k, v, attn_bias=bias, p=dropout, scale=scaling), None


def varlen_attention(module, query, key, value, attention_mask, scaling: float, dropout: float = 0.0,
                     cu_seq_lens_q=None, cu_seq_lens_k=None, max_length_q=None, max_length_k=None, **kwargs):
    """torch's own varlen attention over packed tokens `(1, n, T, d)` (CUDA, fp16/bf16, torch >= 2.9, no dropout)."""
    from torch.nn.attention.varlen import varlen_attn

    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (T, n, d)
    out = varlen_attn(q, k, v, cu_seq_lens_q, cu_seq_lens_k, max_length_q, max_length_k, scale=scaling)
    return out[None], None


# mGTE's packed kernels, under names of their own in transformers' attention registry.
MGTE_ATTENTION_FUNCTIONS = {"mgte_xformers": xformers_attention, "mgte_varlen": varlen_attention}
for _name, _function in MGTE_ATTENTION_FUNCTIONS.items():
    AttentionInterface.register(_name, _function)


def is_packed_implementation(name: str | None) -> bool:
    """Whether attention implementation `name` runs on the packed tokens (else on the padded layout)."""
    return name in (None, "sdpa", *MGTE_ATTENTION_FUNCTIONS) or is_flash_attention_requested(
        requested_attention_implementation=name)


def check_implementation(name: str, device: torch.device | None = None, dtype: torch.dtype | None = None,
                         training: bool = False) -> None:
    """Raise a clear error when mGTE's own kernel `name` cannot run (here, or on `device` / `dtype` when given)."""
    if name == "mgte_xformers":
        if xops is None:
            raise ValueError('attn_implementation="mgte_xformers" needs xformers (pip install xformers); it is not '
                             'importable here. Use attn_implementation="sdpa", the exact packed default.')
        if device is not None and device.type != "cuda":
            raise ValueError(f'attn_implementation="mgte_xformers" runs on CUDA only and this model is on {device}. '
                             'Use model.set_attn_implementation("sdpa") on the CPU.')
    elif name == "mgte_varlen":
        if not HAS_TORCH_VARLEN:
            raise ValueError('attn_implementation="mgte_varlen" needs torch >= 2.9 (torch.nn.attention.varlen).')
        if device is not None and (device.type != "cuda" or dtype not in (torch.float16, torch.bfloat16)):
            raise ValueError(f'attn_implementation="mgte_varlen" runs on CUDA in float16/bfloat16 only; this model is '
                             f'{dtype} on {device}. Use model.set_attn_implementation("sdpa").')
        if training:
            raise ValueError('attn_implementation="mgte_varlen" has no dropout, so it runs in eval mode only; train '
                             'with "sdpa", "flash_attention_2" or "mgte_xformers".')


def available_implementations(device: torch.device, dtype: torch.dtype = torch.float32) -> list[str]:
    """The attention implementations that run for a model of `dtype` on `device` with the installed packages."""
    names = ["sdpa", "eager", "flex_attention"]
    half = dtype in (torch.float16, torch.bfloat16)
    if device.type == "cuda" and half and importlib.util.find_spec("flash_attn") is not None:
        names.append("flash_attention_2")
    for name in MGTE_ATTENTION_FUNCTIONS:
        try:
            check_implementation(name, device, dtype)
        except ValueError:
            continue
        names.append(name)
    return names


__all__ = [
    "EXPLICIT_ATTENTION_MAX_LEN",
    "MGTE_ATTENTION_FUNCTIONS",
    "PackedSeqs",
    "PaddedLayout",
    "available_implementations",
    "check_implementation",
    "eager_attention_forward",
    "is_packed_implementation",
    "packed_sdpa_attention",
    "padded_positions",
    "padded_sdpa_attention",
]
