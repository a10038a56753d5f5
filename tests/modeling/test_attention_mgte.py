import pytest
import torch

from mgte_hf.modeling import ATTENTION_BACKENDS, PackedSeqs, select_backend


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


def test_no_padding_needs_no_gather():
    seqs = PackedSeqs.from_mask(torch.ones(2, 3, dtype=torch.long))
    assert seqs.indices is None and seqs.uniform
    x = torch.randn(2, 3, 5)
    assert seqs.pack(x).data_ptr() == x.data_ptr()


def test_right_padded_views_round_trip():
    seqs = PackedSeqs.from_lengths([2, 4, 1])
    x = torch.randn(7, 3, 2)
    padded = seqs.to_right_padded(x)
    assert padded.shape == (3, 4, 3, 2) and padded[0, 2:].abs().sum() == 0
    assert torch.equal(seqs.from_right_padded(padded), x)


@pytest.mark.parametrize("lengths", [[5, 1, 3], [4, 4], [700, 3]])  # 700 exercises the SDPA branch of packed
def test_backends_agree(lengths):
    torch.manual_seed(0)
    seqs = PackedSeqs.from_lengths(lengths)
    q, k, v = (torch.randn(sum(lengths), 2, 8) for _ in range(3))
    ref, probs = ATTENTION_BACKENDS["eager"](q, k, v, seqs, scaling=8**-0.5)
    assert probs.shape == (len(lengths), 2, max(lengths), max(lengths))
    for name in ("sdpa", "packed"):
        out, _ = ATTENTION_BACKENDS[name](q, k, v, seqs, scaling=8**-0.5)
        assert (out - ref).abs().max().item() <= 1e-5, name


def test_select_backend_on_cpu():
    cpu = torch.device("cpu")
    assert select_backend("auto", cpu, torch.float32) == "packed"
    assert select_backend("sdpa", cpu, torch.float32) == "sdpa"
    assert select_backend("auto", cpu, torch.float32, need_weights=True) == "eager"
    with pytest.warns(UserWarning, match="flash_attn"):
        assert select_backend("flash_attn", cpu, torch.bfloat16) == "packed"
