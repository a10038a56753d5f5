"""The GPU attention kernels (xformers, flash attention's varlen path, torch varlen) on the CPU, with stand-ins.

Each stand-in computes what the real kernel computes — xformers: attention over all packed tokens under the
materialised block-diagonal mask; the varlen kernels: attention within each `cu_seqlens` segment — and records how it
was called. The tests check the wiring (shapes, mask, offsets, scale, dropout) through a whole model, which must
equal the packed SDPA default. The real kernels are exercised by `python -m benchmarks.gpu_check` on a CUDA machine.
The last test covers the chunked in-place feed-forward of CPU inference.
"""

from types import SimpleNamespace

import pytest
import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from mgte_hf import MgteModel
from mgte_hf.modeling import attention_mgte, modeling_mgte
from mgte_hf.modeling.attention_mgte import PackedSeqs
from tiny import make_model, random_batch, valid_rows


LENGTHS = [5, 1, 9, 3]
HEADS, HEAD_DIM = 4, 8
SCALE = HEAD_DIM**-0.5


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
    """Install the stand-ins (xformers, transformers' flash_attention_2 entry, torch varlen); CUDA checks pass."""
    calls = []

    def memory_efficient_attention(query, key, value, attn_bias=None, p=0.0, scale=None):
        calls.append(("mgte_xformers", tuple(query.shape), attn_bias.seqlens, p, scale))
        total = query.shape[1]
        return reference_attention(query, key, value, attn_bias.materialize((total, total), query.dtype), scale)

    def flash_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, cu_seq_lens_q=None,
                        cu_seq_lens_k=None, max_length_q=None, max_length_k=None, **kwargs):
        """transformers' `flash_attention_forward` contract: `(1, n, T, d)` in, `(1, T, n, d)` out, varlen offsets."""
        calls.append(("flash_attention_2", tuple(query.shape), cu_seq_lens_q.tolist(), max_length_q, dropout, scaling))
        assert attention_mask is None and max_length_q == max_length_k and not module.is_causal
        q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
        return varlen_reference(q, k, v, cu_seq_lens_q, cu_seq_lens_k, scaling)[None], None

    def varlen_attn(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None):
        calls.append(("mgte_varlen", cu_seq_q.dtype, cu_seq_q.tolist(), max_q, None, scale))
        return varlen_reference(query, key, value, cu_seq_q, cu_seq_k, scale)

    xops = SimpleNamespace(memory_efficient_attention=memory_efficient_attention,
                           fmha=SimpleNamespace(attn_bias=SimpleNamespace(BlockDiagonalMask=FakeBlockDiagonalMask)))
    monkeypatch.setattr(attention_mgte, "xops", xops)
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "flash_attention_2", flash_attention)
    monkeypatch.setattr("torch.nn.attention.varlen.varlen_attn", varlen_attn)  # imported by the kernel on use
    monkeypatch.setattr(modeling_mgte, "check_implementation", lambda *args, **kwargs: None)  # no CUDA here
    return calls


def run(model, ids, mask, implementation):
    model.config._attn_implementation = implementation
    return model(input_ids=ids, attention_mask=mask).last_hidden_state


@pytest.mark.parametrize("implementation", ["mgte_xformers", "flash_attention_2", "mgte_varlen"])
@pytest.mark.parametrize("lengths", [[9, 1, 14, 4], [4, 6, 2], [6, 6]])
def test_model_runs_through_each_gpu_kernel(kernels, implementation, lengths):
    """A whole encoder on each packed GPU kernel equals the packed SDPA default, with the kernel called as its
    contract says: one call per layer over the packed tokens, int32 offsets of every sequence, the scale."""
    model = make_model(MgteModel)
    ids, mask = random_batch(lengths)
    with torch.no_grad():
        expected = run(model, ids, mask, "sdpa")
        got = run(model, ids, mask, implementation)
    for g, e in zip(valid_rows(got, mask), valid_rows(expected, mask)):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)
    assert len(kernels) == model.config.num_hidden_layers and {c[0] for c in kernels} == {implementation}
    total, offsets = sum(lengths), [0, *torch.tensor(lengths).cumsum(0).tolist()]
    call = kernels[0]
    if implementation == "mgte_xformers":  # the packed tokens as a batch of one, block-diagonal mask
        assert call == ("mgte_xformers", (1, total, HEADS, HEAD_DIM), lengths, 0.0, SCALE)
    elif implementation == "flash_attention_2":
        assert call == ("flash_attention_2", (1, HEADS, total, HEAD_DIM), offsets, max(lengths), 0.0, SCALE)
    else:
        assert call == ("mgte_varlen", torch.int32, offsets, max(lengths), None, SCALE)


def test_block_diagonal_mask_keeps_sequences_apart(kernels):
    """Changing one sequence's keys and values changes only that sequence's outputs under the xformers wiring."""
    seqs = PackedSeqs.from_lengths(LENGTHS)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, seqs.total_tokens, HEAD_DIM, generator=g) for _ in range(3))
    kw = seqs.varlen_kwargs(torch.device("cpu"))
    before, _ = attention_mgte.xformers_attention(None, q, k, v, None, scaling=SCALE, **kw)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6:15] *= 2.0  # the third sequence
    v2[:, :, 6:15] += 1.0
    after, _ = attention_mgte.xformers_attention(None, q, k2, v2, None, scaling=SCALE, **kw)
    changed = (after - before)[0].abs().amax(dim=(1, 2)) > 1e-6
    assert changed[6:15].all() and not changed[:6].any() and not changed[15:].any()


@pytest.mark.parametrize("implementation", ["mgte_xformers", "flash_attention_2"])
def test_attention_dropout_reaches_the_kernel_in_training(kernels, implementation):
    model = make_model(MgteModel, attention_probs_dropout_prob=0.1).train()
    ids, mask = random_batch([6, 3])
    run(model, ids, mask, implementation).sum().backward()
    dropout = [call[3] if implementation == "mgte_xformers" else call[4] for call in kernels]
    assert dropout == [0.1] * model.config.num_hidden_layers
    assert model.encoder.layer[0].attention.qkv_proj.weight.grad.abs().sum() > 0


def test_mgte_kernels_refuse_to_run_where_they_cannot():
    model = make_model(MgteModel)
    ids, mask = random_batch([3, 2])
    for implementation, match in (("mgte_xformers", "CUDA|xformers"), ("mgte_varlen", "CUDA")):
        model.config._attn_implementation = implementation
        with pytest.raises(ValueError, match=match):
            model(input_ids=ids, attention_mask=mask)
    with pytest.raises(ImportError, match="FlashAttention2"):  # transformers' own check: no flash_attn package here
        make_model(MgteModel).set_attn_implementation("flash_attention_2")


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
