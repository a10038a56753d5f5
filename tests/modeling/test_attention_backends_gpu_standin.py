"""The GPU attention backends (xformers, flash-attn varlen, torch varlen) on the CPU, with stand-ins for the kernels.

Each stand-in computes what the real kernel computes — xformers: attention over all packed tokens under the
materialised block-diagonal mask; the varlen kernels: attention within each `cu_seqlens` segment — and records how
it was called. The tests check the wiring (shapes, mask, offsets, scale, dropout) and the results against the packed
backend, the automatic choice, and a whole model running through each backend. The real kernels are exercised by
`python -m benchmarks.gpu_check` on a CUDA machine. The last tests cover the CPU paths tuned for speed and memory (the
packed backend around its explicit-attention limit, the chunked in-place feed-forward of inference).
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mgte_hf import MgteModel
from mgte_hf.modeling import attention_mgte, modeling_mgte
from mgte_hf.modeling.attention_mgte import PackedSeqs, select_backend
from tiny import make_model, random_batch, valid_rows


LENGTHS = [5, 1, 9, 3]
HEADS, HEAD_DIM = 4, 8
SCALE = HEAD_DIM**-0.5
CUDA = torch.device("cuda")  # only a name here: nothing is allocated on it


def reference_attention(q, k, v, bias, scale):
    """`(B, T, n, d)` inputs, additive `(T, T)` bias → `(B, T, n, d)`, computed explicitly."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, n, T, d)
    probs = torch.softmax(q @ k.transpose(-1, -2) * scale + bias, dim=-1)
    return (probs @ v).transpose(1, 2)


class FakeBlockDiagonalMask:
    """xformers' `BlockDiagonalMask`: `from_seqlens` and `materialize` (0 inside a sequence, -inf across)."""

    def __init__(self, seqlens):
        self.seqlens = list(seqlens)

    @classmethod
    def from_seqlens(cls, q_seqlen, kv_seqlen=None):
        assert kv_seqlen is None
        return cls(q_seqlen)

    def materialize(self, shape, dtype=torch.float32, device="cpu"):
        total = sum(self.seqlens)
        mask = torch.full((total, total), float("-inf"), dtype=dtype, device=device)
        start = 0
        for n in self.seqlens:
            mask[start:start + n, start:start + n] = 0
            start += n
        return mask.expand(shape)


def varlen_reference(q, k, v, cu_q, cu_k, scale):
    """`(T, n, d)` attention within each segment of `cu_seqlens`."""
    assert torch.equal(cu_q, cu_k)
    bounds = cu_q.tolist()
    return torch.cat([reference_attention(q[None, a:b], k[None, a:b], v[None, a:b], 0.0, scale)[0]
                      for a, b in zip(bounds[:-1], bounds[1:])])


@pytest.fixture
def kernels(monkeypatch):
    """Install the three stand-ins into `attention_mgte`; returns the list of recorded calls."""
    calls = []

    def memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None):
        calls.append(("xformers", query.shape, attn_bias.seqlens, p, scale))
        total = query.shape[1]
        return reference_attention(query, key, value, attn_bias.materialize((total, total), query.dtype), scale)

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                               softmax_scale=None, causal=False):
        calls.append(("flash_attn", cu_seqlens_q.dtype, cu_seqlens_q.tolist(), max_seqlen_q, dropout_p, softmax_scale))
        assert not causal and max_seqlen_q == max_seqlen_k
        return varlen_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, softmax_scale)

    def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None):
        calls.append(("varlen", cu_seq_q.dtype, cu_seq_q.tolist(), max_q, None, scale))
        return varlen_reference(query, key, value, cu_seq_q, cu_seq_k, scale)

    xops = SimpleNamespace(memory_efficient_attention=memory_efficient_attention,
                           fmha=SimpleNamespace(attn_bias=SimpleNamespace(BlockDiagonalMask=FakeBlockDiagonalMask)))
    monkeypatch.setattr(attention_mgte, "xops", xops)
    monkeypatch.setattr(attention_mgte, "flash_attn_varlen_func", flash_attn_varlen_func)
    monkeypatch.setattr("torch.nn.attention.varlen.varlen_attn", varlen_attn)  # imported by the backend on use
    return calls


def random_qkv(total: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(total, HEADS, HEAD_DIM, generator=g) for _ in range(3)]


@pytest.mark.parametrize("backend", ["xformers", "flash_attn", "varlen"])
def test_gpu_backend_matches_packed(kernels, backend):
    seqs = PackedSeqs.from_lengths(LENGTHS)
    q, k, v = random_qkv(seqs.total_tokens)
    expected, _ = attention_mgte.packed_attention(q, k, v, seqs, scaling=SCALE)
    got, probs = attention_mgte.ATTENTION_BACKENDS[backend](q, k, v, seqs, scaling=SCALE)
    assert probs is None and got.shape == (sum(LENGTHS), HEADS, HEAD_DIM)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    (call,) = kernels
    if backend == "xformers":  # one call over the packed tokens as a batch of one, block-diagonal mask
        assert call == ("xformers", (1, sum(LENGTHS), HEADS, HEAD_DIM), LENGTHS, 0.0, SCALE)
    else:  # int32 offsets of every sequence, the longest length, the scale
        assert call[1:] == (torch.int32, [0, 5, 6, 15, 18], 9, 0.0 if backend == "flash_attn" else None, SCALE)


def test_block_diagonal_mask_keeps_sequences_apart(kernels):
    """Changing one sequence's keys and values changes only that sequence's outputs under the xformers wiring."""
    seqs = PackedSeqs.from_lengths(LENGTHS)
    q, k, v = random_qkv(seqs.total_tokens)
    before, _ = attention_mgte.xformers_attention(q, k, v, seqs, scaling=SCALE)
    k2, v2 = k.clone(), v.clone()
    k2[6:15] *= 2.0  # the third sequence
    v2[6:15] += 1.0
    after, _ = attention_mgte.xformers_attention(q, k2, v2, seqs, scaling=SCALE)
    changed = (after - before).abs().amax(dim=(1, 2)) > 1e-6
    assert changed[6:15].all() and not changed[:6].any() and not changed[15:].any()


def test_automatic_choice_on_cuda(kernels, monkeypatch):
    bf16 = torch.bfloat16
    assert select_backend("auto", CUDA, bf16) == "xformers"
    assert select_backend("auto", torch.device("cpu"), bf16) == "packed"  # the kernels are CUDA-only
    assert select_backend("auto", CUDA, bf16, need_weights=True) == "eager"
    monkeypatch.setattr(attention_mgte, "xops", None)
    assert select_backend("auto", CUDA, bf16) == "flash_attn"
    assert select_backend("auto", CUDA, torch.float32) == "packed"  # the varlen kernels need fp16/bf16
    monkeypatch.setattr(attention_mgte, "flash_attn_varlen_func", None)
    assert select_backend("auto", CUDA, torch.float16) == "varlen"
    assert select_backend("auto", CUDA, bf16, training=True) == "packed"  # torch varlen: no dropout, inference only
    assert select_backend("varlen", CUDA, bf16) == "varlen"


@pytest.mark.parametrize("backend", ["xformers", "flash_attn", "varlen"])
def test_model_runs_through_each_gpu_backend(kernels, monkeypatch, backend):
    """A whole encoder with `attn_backend=<gpu backend>` (availability forced on the CPU) equals the packed one."""
    monkeypatch.setattr(attention_mgte, "backend_available", lambda *args, **kwargs: True)
    model = make_model(MgteModel, attn_backend="packed")
    ids, mask = random_batch([9, 1, 14, 4])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
        model.config.attn_backend = backend
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
    for g, e in zip(valid_rows(got, mask), valid_rows(expected, mask)):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)
    assert len(kernels) == model.config.num_hidden_layers and kernels[0][0] == backend


def test_attention_dropout_reaches_the_kernel_in_training(kernels, monkeypatch):
    monkeypatch.setattr(attention_mgte, "backend_available", lambda *args, **kwargs: True)
    model = make_model(MgteModel, attn_backend="xformers", attention_probs_dropout_prob=0.1).train()
    ids, mask = random_batch([6, 3])
    model(input_ids=ids, attention_mask=mask).last_hidden_state.sum().backward()
    assert [call[3] for call in kernels] == [0.1] * model.config.num_hidden_layers
    assert model.encoder.layer[0].attention.qkv_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("lengths", [[3, 12, 9, 1], [12, 12], [5, 5, 5]])
def test_packed_backend_on_both_sides_of_the_explicit_limit(monkeypatch, lengths):
    """Short sequences take the explicit path, longer ones the fused SDPA kernel, always with 4-D inputs (3-D inputs
    would make torch fall back to its slow unfused math path); all equal the eager reference."""
    monkeypatch.setattr(attention_mgte, "EXPLICIT_ATTENTION_MAX_LEN", 8)
    dims = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        dims.append(q.dim())
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    seqs = PackedSeqs.from_lengths(lengths)
    q, k, v = random_qkv(seqs.total_tokens, seed=1)
    expected, _ = attention_mgte.eager_attention(q, k, v, seqs, scaling=SCALE)
    got, _ = attention_mgte.packed_attention(q, k, v, seqs, scaling=SCALE)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    fused = [n for n in lengths if n > 8]
    assert dims == ([4] if seqs.uniform and fused else [4] * len(fused))


def test_inference_feed_forward_in_chunks_equals_the_autograd_path(monkeypatch):
    """Without autograd the feed-forward runs on token chunks with an in-place product (the CPU memory and speed
    path); it must compute what the plain path computes under autograd, and leave its input alone."""
    monkeypatch.setattr(modeling_mgte, "MLP_CHUNK_TOKENS", 5)
    model = make_model(MgteModel)
    ids, mask = random_batch([9, 1, 14, 4])
    with torch.no_grad():
        chunked = model(input_ids=ids, attention_mask=mask).last_hidden_state
    plain = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert plain.requires_grad
    torch.testing.assert_close(chunked, plain.detach(), atol=1e-6, rtol=1e-5)
    mlp = model.encoder.layer[0].mlp
    x = torch.randn(13, model.config.hidden_size)
    before = x.clone()
    with torch.no_grad():
        out = mlp(x)
    assert torch.equal(x, before) and out.shape == x.shape
    torch.testing.assert_close(out, mlp(x).detach(), atol=1e-6, rtol=1e-5)
