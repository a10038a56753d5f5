"""Tiny models, tokenizers and inputs shared by the tests (importable as `tiny`; tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from mgte_hf import MgteConfig


REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SHARED = REPO.parent / "shared"
FIXTURE = SHARED / "reference" / "fixtures" / "tiny-seed0"
SENTENCES = (DATA / "sentences.txt").read_text(encoding="utf-8").splitlines()


def missing_resource(reason: str) -> None:
    """Skip a test whose shared resource is absent on a user's clone; under CI (`CI=true`) that is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must provide it (CI=true)", pytrace=False)
    pytest.skip(reason)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """One JSON object per line (a corpus file)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def make_config(**overrides) -> MgteConfig:
    """A 2-layer, 32-wide mGTE with NTK RoPE, XLM-R ids (pad 1) and a short trained context (16 positions)."""
    base = dict(
        vocab_size=320, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        max_position_embeddings=16, rope_theta=10000.0, rope_scaling={"type": "ntk", "factor": 2.0},
        pad_token_id=1, hidden_dropout_prob=0.0, classifier_dropout=0.0, matryoshka_dimensions=[8, 16],
    )
    base.update(overrides)
    return MgteConfig(**base)


def make_model(cls, seed: int = 0, **overrides):
    """A randomly initialised model of class `cls` in eval mode, with non-trivial LayerNorm parameters."""
    torch.manual_seed(seed)
    model = cls(make_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("LayerNorm.weight", "_ln.weight", "norm.weight")):
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.add_(0.02 * torch.randn_like(p))
    return model


def random_batch(lengths: list[int], vocab_size: int = 320, pad_id: int = 1, left: bool = False, seed: int = 0):
    """`(input_ids, attention_mask)` for sequences of the given lengths, padded right (or left)."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        tokens = torch.randint(5, vocab_size, (n,), generator=g)
        tokens[0] = 0  # <s>
        cols = slice(width - n, width) if left else slice(0, n)
        ids[row, cols] = tokens
        mask[row, cols] = 1
    return ids, mask


# fp32 agreement between two correct computations: 1e-5 absolute, or 16 units in the last place of the output's largest
# magnitude where that is more (MLM logits reach |16|: their rounding alone is ~1e-5, and which GEMM kernel a CPU picks
# moves it). float64 runs show that what remains is rounding: there the same math agrees to 1e-10.
FP32_ULPS = 16


def fp32_bound(reference: torch.Tensor) -> float:
    """The fp32 tolerance for outputs like `reference`: max(1e-5, 16 ulp of its largest magnitude)."""
    return max(1e-5, FP32_ULPS * torch.finfo(torch.float32).eps * reference.abs().max().item())


def skip_without_inductor(implementation: str) -> None:
    """Skip a flex-attention case where torch inductor (which compiles it) breaks: under a forced
    ATEN_CPU_CAPABILITY, torch 2.13's flex kernels fail to build (`default`: `at::vec` used without a vector ISA) or
    index out of bounds (`avx2`)."""
    import os

    import pytest

    if implementation == "flex_attention" and os.environ.get("ATEN_CPU_CAPABILITY"):
        pytest.skip("torch inductor's flex-attention kernels break under a forced ATEN_CPU_CAPABILITY (torch 2.13)")


def valid_rows(padded: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Per row, the values at valid positions, in order."""
    return [padded[i][mask[i].bool()] for i in range(padded.shape[0])]
