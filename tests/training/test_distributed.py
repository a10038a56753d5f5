"""Collectives: single-process behaviour, and a real 2-process torchrun (gloo, CPU) run of the cross-device losses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgte_hf.training.distributed import (
    all_gather_rows,
    all_gather_with_grad,
    gather_with_grad,
    get_rank,
    get_world_size,
    is_distributed,
    max_across_ranks,
    pad_to_width,
)


WORKER = Path(__file__).with_name("dist_infonce_worker.py")
TOLERANCE = 1e-6


def test_helpers_without_process_group():
    assert (is_distributed(), get_rank(), get_world_size()) == (False, 0, 1)
    x = torch.randn(3, 4, requires_grad=True)
    assert all_gather_with_grad(x) is x
    assert gather_with_grad(x) == (x, 0)
    assert max_across_ranks(7, x.device) == 7
    gathered, offset = all_gather_rows(x)
    assert torch.equal(gathered, x) and offset == 0 and not gathered.requires_grad


def test_pad_to_width_keeps_gradient_and_input():
    w = torch.rand(2, 3, requires_grad=True)
    padded = pad_to_width(w, 5, pad_value=0.0)
    assert padded.shape == (2, 5) and bool((padded[:, 3:] == 0).all())
    padded.sum().backward()
    assert torch.equal(w.grad, torch.ones(2, 3))
    with pytest.raises(ValueError, match="smaller width"):
        pad_to_width(w, 2)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cross_device_losses_match_single_process(tmp_path):
    """torchrun --nproc_per_node 2: cross-device InfoNCE, sparse InfoNCE and TRM (also through GradCache) under DDP
    give the loss and gradients of one process on the concatenated batch (float64)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for result in results:
        assert result["world"] == 2
        assert result["gather_variable_rows"] == 0.0  # 1 and 3 rows: values and summed gradients exact
        for name in ("infonce", "sparse"):
            assert result[name]["loss_diff"] < TOLERANCE, (name, result[name])
            # absolute, and relative to the gradient scale where gradients are small (the dense tiny-model case)
            assert result[name]["grad_diff"] < TOLERANCE * min(1.0, result[name]["grad_max"]), (name, result[name])
        for name in ("trm", "trm_grad_cache"):
            assert result[name]["loss_diff"] < TOLERANCE, (name, result[name])
            assert result[name]["grad_diff"] < TOLERANCE, (name, result[name])
