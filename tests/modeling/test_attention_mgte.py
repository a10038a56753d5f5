"""Packing layouts and the packed SDPA kernel of `attention_mgte`, against the explicit (eager) reference."""

import pytest
import torch
import torch.nn.functional as F

from mgte_hf.modeling import attention_mgte
from mgte_hf.modeling.attention_mgte import PackedSeqs, PaddedLayout, eager_attention_forward, packed_sdpa_attention


SCALE = 8**-0.5


def test_pack_unpack_round_trip_with_left_and_right_padding():
    mask = torch.tensor([[1, 1, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    seqs = PackedSeqs.from_mask(mask)
    assert seqs.lengths == [3, 2, 4] and seqs.cu_seqlens.tolist() == [0, 3, 5, 9] and seqs.total_tokens == 9
    x = torch.arange(12.0).reshape(3, 4)
    packed = seqs.pack(x)
    assert packed.tolist() == [0, 1, 2, 6, 7, 8, 9, 10, 11]
    assert torch.equal(seqs.unpack(packed), x * mask)
    assert seqs.positions(torch.device("cpu")).tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert seqs.first_token_index.tolist() == [0, 3, 5]


def test_a_hole_in_the_mask_keeps_the_positions_of_the_columns():
    """[1, 0, 1, 1] and a left-padded row with a hole: each token keeps its column, counted from the row's first."""
    seqs = PackedSeqs.from_mask(torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]]))
    assert seqs.lengths == [3, 3]
    assert seqs.positions(torch.device("cpu")).tolist() == [0, 2, 3, 0, 1, 3]
    layout = PaddedLayout(torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]]))
    assert layout.positions(torch.device("cpu")).reshape(2, 5)[torch.tensor([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]]).bool()
                                                                ].tolist() == [0, 2, 3, 0, 1, 3]


@pytest.mark.parametrize("lengths,uniform", [([4, 6, 2], False), ([200, 300, 100], False), ([3, 3, 3], True),
                                             ([5], True), ([1, 2, 3], False), ([2, 1, 3], False)])
def test_uniform_means_every_length_equal(lengths, uniform):
    """The mean equal to the first length is not uniformity (the shortcut that reshaped such batches)."""
    assert PackedSeqs.from_lengths(lengths).uniform is uniform
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    assert PackedSeqs.from_mask(mask).uniform is uniform


def test_no_padding_needs_no_gather():
    seqs = PackedSeqs.from_mask(torch.ones(2, 3, dtype=torch.long))
    assert seqs.indices is None and seqs.uniform and seqs.mask is None
    x = torch.randn(2, 3, 5)
    assert seqs.pack(x).data_ptr() == x.data_ptr()


def test_packed_input_keeps_its_layout_and_pads_right_for_padded_kernels():
    seqs = PackedSeqs.from_lengths([2, 4, 1])
    x = torch.randn(7, 3, 2)
    assert torch.equal(seqs.from_input_layout(seqs.to_input_layout(x)), x)
    assert seqs.to_input_layout(x).shape == (1, 7, 3, 2)
    padded = seqs.unpack(x)
    assert padded.shape == (3, 4, 3, 2) and padded[0, 2:].abs().sum() == 0
    assert torch.equal(seqs.pack(padded), x)
    assert seqs.mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert seqs.varlen_kwargs(torch.device("cpu"))["cu_seq_lens_q"].tolist() == [0, 2, 6, 7]


def eager_reference(q, k, v, seqs: PackedSeqs):
    """Each sequence alone through the explicit eager math."""
    outs = []
    for start, n in zip(seqs.cu_seqlens[:-1].tolist(), seqs.lengths):
        qs, ks, vs = (t[None, start:start + n].transpose(1, 2) for t in (q, k, v))
        outs.append(eager_attention_forward(None, qs, ks, vs, None, scaling=SCALE)[0][0])
    return torch.cat(outs)


@pytest.mark.parametrize("lengths", [[5, 1, 3], [4, 4], [700, 3], [4, 6, 2], [200, 300, 100], [129, 129], [128, 1]])
def test_packed_sdpa_equals_each_sequence_alone(lengths):
    torch.manual_seed(0)
    seqs = PackedSeqs.from_lengths(lengths)
    q, k, v = (torch.randn(sum(lengths), 2, 8) for _ in range(3))
    got = packed_sdpa_attention(q, k, v, lengths, 0.0, SCALE)
    torch.testing.assert_close(got, eager_reference(q, k, v, seqs), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("lengths", [[3, 12, 9, 1], [12, 12], [5, 5, 5], [12, 4, 8]])
def test_packed_sdpa_on_both_sides_of_the_explicit_limit(monkeypatch, lengths):
    """Short sequences take the explicit path, longer ones the fused SDPA kernel, always with 4-D inputs (3-D inputs
    would make torch fall back to its slow unfused math path)."""
    monkeypatch.setattr(attention_mgte, "EXPLICIT_ATTENTION_MAX_LEN", 8)
    dims = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        dims.append(q.dim())
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    seqs = PackedSeqs.from_lengths(lengths)
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(sum(lengths), 4, 8, generator=g) for _ in range(3))
    got = packed_sdpa_attention(q, k, v, lengths, 0.0, SCALE)
    torch.testing.assert_close(got, eager_reference(q, k, v, seqs), atol=1e-6, rtol=1e-5)
    fused = [n for n in lengths if n > 8]
    assert dims == ([4] if seqs.uniform and fused else [4] * len(fused))


def test_eager_kernel_takes_additive_and_boolean_masks():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    keep = torch.tensor([[True] * 5, [True, True, False, True, False]])[:, None, None, :]
    additive = torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)
    out_bool, probs = eager_attention_forward(None, q, k, v, keep, scaling=0.5)
    out_add, _ = eager_attention_forward(None, q, k, v, additive, scaling=0.5)
    assert torch.equal(out_bool, out_add) and out_bool.shape == (2, 5, 3, 4)
    assert probs[1, :, :, [2, 4]].abs().max() == 0 and torch.allclose(probs.sum(-1), torch.ones(2, 3, 5))
