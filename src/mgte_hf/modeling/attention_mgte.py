# Copyright 2026 The mgte-hf authors. Licensed under the Apache License, Version 2.0.
"""Packing (unpadding) and the attention backends of the mGTE encoder.

Every layer of the encoder works on packed tokens `(total_tokens, hidden)`; the only place that knows where one
sequence ends and the next begins is this file. All backends share one signature::

    backend(q, k, v, seqs, *, dropout_p, scaling) -> (out, probs)

with `q, k, v` of shape `(total_tokens, num_heads, head_dim)` (RoPE already applied) and `out` of the same shape;
`probs` is the attention matrix `(batch, num_heads, L, L)` for the eager backend and `None` otherwise.

This file ships as Hub remote code: it imports only torch (xformers and flash-attn inside try/except).
"""

import importlib.util
from dataclasses import dataclass

import torch
import torch.nn.functional as F


try:  # optional GPU kernels; absent or kernel-less installs fall back to the exact torch paths
    import xformers.ops as xops
except Exception:  # noqa: BLE001 - xformers raises various errors when its build does not match torch
    xops = None

try:
    from flash_attn import flash_attn_varlen_func
except Exception:  # noqa: BLE001
    flash_attn_varlen_func = None

# torch's own varlen attention (torch >= 2.9) is imported on first use: importing it loads the compiler stack,
# seconds that every CPU process would pay for a CUDA-only kernel.
HAS_TORCH_VARLEN = importlib.util.find_spec("torch.nn.attention.varlen") is not None


@dataclass
class PackedSeqs:
    """Where each sequence lives inside the packed token axis.

    Attributes:
        cu_seqlens: `(batch + 1,)` int32 offsets of each sequence in the packed axis.
        lengths: python list of the `batch` sequence lengths.
        indices: `(total_tokens,)` positions of the valid tokens in the flattened `(batch * L)` padded layout, or
            `None` when the input had no padding (the packed axis is then the flattened input itself).
        padded_shape: `(batch, L)` of the padded input.
    """

    cu_seqlens: torch.Tensor
    lengths: list[int]
    indices: torch.Tensor | None
    padded_shape: tuple[int, int]

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    @property
    def max_seqlen(self) -> int:
        return max(self.lengths)

    @property
    def total_tokens(self) -> int:
        return int(self.cu_seqlens[-1])

    @property
    def uniform(self) -> bool:
        """All sequences have the same length (the packed axis reshapes to `(batch, L)` without copies)."""
        return self.total_tokens == self.batch_size * self.lengths[0]

    @property
    def first_token_index(self) -> torch.Tensor:
        """`(batch,)` packed index of each sequence's first token (the CLS token)."""
        return self.cu_seqlens[:-1].long()

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor) -> "PackedSeqs":
        """Build from a `(batch, L)` 0/1 mask; valid tokens may sit anywhere (left or right padding)."""
        lengths_t = attention_mask.sum(dim=1, dtype=torch.int32)  # (batch,)
        cu_seqlens = F.pad(torch.cumsum(lengths_t, 0, dtype=torch.int32), (1, 0))
        lengths = lengths_t.tolist()
        batch, seq_len = attention_mask.shape
        has_padding = sum(lengths) != batch * seq_len
        indices = torch.nonzero(attention_mask.flatten(), as_tuple=False).flatten() if has_padding else None
        return cls(cu_seqlens, lengths, indices, (batch, seq_len))

    @classmethod
    def from_lengths(cls, lengths: list[int], device: torch.device | None = None) -> "PackedSeqs":
        """Build for input that is already packed, sequence after sequence."""
        cu_seqlens = torch.tensor([0, *lengths], dtype=torch.int32, device=device).cumsum(0, dtype=torch.int32)
        return cls(cu_seqlens, list(lengths), None, (1, sum(lengths)))

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

    def positions(self, device: torch.device) -> torch.Tensor:
        """`(total_tokens,)` position of each token inside its own sequence (0 at its first valid token)."""
        total = self.total_tokens
        starts = torch.repeat_interleave(self.cu_seqlens[:-1].to(device).long(),
                                         torch.tensor(self.lengths, device=device), output_size=total)
        return torch.arange(total, device=device) - starts

    def key_padding_mask(self, device: torch.device) -> torch.Tensor:
        """`(batch, max_seqlen)` bool, True at real keys, for backends that attend on a dense right-padded layout."""
        lengths = torch.tensor(self.lengths, device=device)
        return torch.arange(self.max_seqlen, device=device)[None, :] < lengths[:, None]

    def to_right_padded(self, packed: torch.Tensor) -> torch.Tensor:
        """`(total_tokens, ...)` → `(batch, max_seqlen, ...)`, right padded with zeros."""
        if self.uniform:
            return packed.reshape(self.batch_size, self.lengths[0], *packed.shape[1:])
        mask = self.key_padding_mask(packed.device)
        out = packed.new_zeros((self.batch_size, self.max_seqlen, *packed.shape[1:]))
        out[mask] = packed
        return out

    def from_right_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_right_padded`."""
        if self.uniform:
            return padded.reshape(-1, *padded.shape[2:])
        return padded[self.key_padding_mask(padded.device)]


class PaddedLayout:
    """Stands in for `PackedSeqs` when the token axis is the flattened padded batch `(B·L)` (no packing).

    Used by `MgteModel.encode_padded` with the padded backends (`sdpa`, `eager`): reshaping to `(B, L)` is all they
    need and the key-padding mask is the attention mask itself — no Python-side lengths, so a traced or exported
    graph keeps the batch and sequence sizes symbolic.
    """

    uniform = False

    def __init__(self, attention_mask: torch.Tensor):
        self.mask = attention_mask.bool()  # (B, L)

    def key_padding_mask(self, device: torch.device) -> torch.Tensor:
        return self.mask.to(device)

    def positions(self) -> torch.Tensor:
        """`(B·L,)` position of each token in its sequence, counted from its first valid token (any padding side)."""
        return (self.mask.long().cumsum(1) - 1).clamp(min=0).reshape(-1)

    def to_right_padded(self, packed: torch.Tensor) -> torch.Tensor:
        """`(B·L, ...)` → `(B, L, ...)`."""
        return packed.reshape(self.mask.shape[0], self.mask.shape[1], *packed.shape[1:])

    def from_right_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """`(B, L, ...)` → `(B·L, ...)`."""
        return padded.reshape(-1, *padded.shape[2:])


# ---------------------------------------------------------------------------------------------- backends
def eager_attention(q, k, v, seqs: PackedSeqs, *, dropout_p: float = 0.0, scaling: float):
    """Explicit matmul-softmax-matmul on the right-padded layout; the readable reference, returns the weights."""
    qp, kp, vp = (seqs.to_right_padded(t).transpose(1, 2) for t in (q, k, v))  # (B, n, L, d)
    scores = torch.matmul(qp, kp.transpose(-1, -2)) * scaling  # (B, n, L, L)
    keep = seqs.key_padding_mask(q.device)[:, None, None, :]
    scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1)
    probs = F.dropout(probs, p=dropout_p, training=dropout_p > 0)
    out = torch.matmul(probs, vp).transpose(1, 2)  # (B, L, n, d)
    return seqs.from_right_padded(out), probs


def sdpa_attention(q, k, v, seqs: PackedSeqs, *, dropout_p: float = 0.0, scaling: float):
    """torch SDPA on the right-padded layout with a key-padding mask (what a padded encoder does)."""
    qp, kp, vp = (seqs.to_right_padded(t).transpose(1, 2) for t in (q, k, v))  # (B, n, L, d)
    mask = None if seqs.uniform else seqs.key_padding_mask(q.device)[:, None, None, :]
    out = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=mask, dropout_p=dropout_p, scale=scaling)
    return seqs.from_right_padded(out.transpose(1, 2)), None


def packed_attention(q, k, v, seqs: PackedSeqs, *, dropout_p: float = 0.0, scaling: float):
    """Exact packed attention for any device: one attention call per sequence, no padding computed.

    A uniform batch is a single SDPA call on a `(B, n, L, d)` view, except short ones on CPU: the explicit path on
    that view copies q, k, v (its batch dims do not fold), so they go sequence by sequence. Every call is 4-D,
    because torch's fused CPU attention kernel takes only 4-D inputs (3-D falls back to the unfused math path).
    """
    if seqs.uniform and (seqs.lengths[0] > EXPLICIT_ATTENTION_MAX_LEN or q.device.type != "cpu"):
        qp, kp, vp = (seqs.to_right_padded(t).transpose(1, 2) for t in (q, k, v))  # (B, n, L, d)
        out = _single_sequence_attention(qp, kp, vp, dropout_p, scaling).transpose(1, 2)  # (B, L, n, d)
        return seqs.from_right_padded(out), None
    outs = []
    for start, length in zip(seqs.cu_seqlens[:-1].tolist(), seqs.lengths):
        qs, ks, vs = (t[None, start:start + length].transpose(1, 2) for t in (q, k, v))  # (1, n, len, d)
        outs.append(_single_sequence_attention(qs, ks, vs, dropout_p, scaling)[0].transpose(0, 1))  # (len, n, d)
    return torch.cat(outs, dim=0), None


# Up to this length the explicit matmul-softmax-matmul is as fast as SDPA's fused CPU kernel and rounds like the
# released (eager) code; longer sequences take the fused kernel, which is faster and never holds the (n, len, len)
# scores (measured per sequence, 12 heads of 64, fp32, one thread: equal up to 128 tokens, fused 1.3x faster at
# 512 and 2.8x at 2048; see benchmarks/).
EXPLICIT_ATTENTION_MAX_LEN = 128


def _single_sequence_attention(q, k, v, dropout_p: float, scaling: float) -> torch.Tensor:
    """Unmasked attention of sequences of one length, `(..., n, len, d)` → `(..., n, len, d)`."""
    if q.shape[-2] > EXPLICIT_ATTENTION_MAX_LEN or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scaling)
    probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scaling, dim=-1)  # (n, len, len)
    probs = F.dropout(probs, p=dropout_p, training=dropout_p > 0)
    return torch.matmul(probs, v)


def xformers_attention(q, k, v, seqs: PackedSeqs, *, dropout_p: float = 0.0, scaling: float):
    """xformers memory-efficient attention over the packed tokens with a block-diagonal mask (CUDA)."""
    bias = xops.fmha.attn_bias.BlockDiagonalMask.from_seqlens(seqs.lengths)
    out = xops.memory_efficient_attention(q[None], k[None], v[None], attn_bias=bias, p=dropout_p, scale=scaling)
    return out[0], None


def flash_attention(q, k, v, seqs: PackedSeqs, *, dropout_p: float = 0.0, scaling: float):
    """flash-attn varlen kernel (CUDA, fp16/bf16)."""
    cu = seqs.cu_seqlens.to(q.device)
    out = flash_attn_varlen_func(q, k, v, cu, cu, seqs.max_seqlen, seqs.max_seqlen, dropout_p=dropout_p,
                                 softmax_scale=scaling)
    return out, None


def varlen_attention(q, k, v, seqs: PackedSeqs, *, dropout_p: float = 0.0, scaling: float):
    """torch's own varlen attention (CUDA, fp16/bf16, torch >= 2.9); no dropout support."""
    from torch.nn.attention.varlen import varlen_attn

    cu = seqs.cu_seqlens.to(q.device)
    return varlen_attn(q, k, v, cu, cu, seqs.max_seqlen, seqs.max_seqlen, scale=scaling), None


ATTENTION_BACKENDS = {
    "eager": eager_attention,
    "sdpa": sdpa_attention,
    "packed": packed_attention,
    "xformers": xformers_attention,
    "flash_attn": flash_attention,
    "varlen": varlen_attention,
}

_warned: set[str] = set()


def backend_available(name: str, device: torch.device, dtype: torch.dtype, training: bool = False) -> bool:
    """Whether backend `name` can run here (device, dtype and installed packages)."""
    on_cuda = device.type == "cuda"
    half = dtype in (torch.float16, torch.bfloat16)
    if name in ("eager", "sdpa", "packed"):
        return True
    if name == "xformers":
        return xops is not None and on_cuda
    if name == "flash_attn":
        return flash_attn_varlen_func is not None and on_cuda and half
    if name == "varlen":
        return HAS_TORCH_VARLEN and on_cuda and half and not training
    return False


def select_backend(requested: str, device: torch.device, dtype: torch.dtype, *, training: bool = False,
                   need_weights: bool = False) -> str:
    """Resolve `auto` (or an unavailable request) to a backend that runs on this device.

    Order on CUDA: xformers, flash-attn varlen, torch varlen, packed SDPA; on CPU: packed SDPA (measured fastest and
    exact). A request that cannot run here falls back with one warning instead of crashing.
    """
    if need_weights:
        return "eager"
    if requested != "auto":
        if backend_available(requested, device, dtype, training):
            return requested
        if requested not in _warned:
            _warned.add(requested)
            import warnings

            warnings.warn(f"attention backend {requested!r} cannot run on {device.type} with {dtype} and the installed "
                          f"packages; falling back to the automatic choice.", stacklevel=3)
    for name in ("xformers", "flash_attn", "varlen"):
        if backend_available(name, device, dtype, training):
            return name
    return "packed"


__all__ = ["ATTENTION_BACKENDS", "PackedSeqs", "PaddedLayout", "backend_available", "select_backend"]
