"""Worker of test_distributed.py, run as `torchrun --nproc_per_node 2 dist_infonce_worker.py OUT_DIR` (gloo, CPU).

Every rank builds the same float64 tiny `MgteForEmbedding` and the same global batch, then checks that the
cross-device losses on its share of the batch (through DDP, plain and with GradCache) reproduce the single-process
loss and gradients on the concatenated batch. Each rank writes its largest differences to OUT_DIR/rank<r>.json.
"""

from __future__ import annotations

import copy
import gc
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared `tiny` helpers

import tiny  # noqa: E402
from mgte_hf import MgteForEmbedding  # noqa: E402
from mgte_hf.training import (  # noqa: E402
    GradCache,
    InfoNCELoss,
    SparseInfoNCELoss,
    TRMLoss,
    all_gather_with_grad,
    embedding_features,
    get_rank,
    get_world_size,
)


SPECIAL_IDS = (0, 1, 2, 3)
QUERIES_PER_RANK = 2
NEGATIVES = 2


def global_batch(world: int) -> tuple[dict, dict]:
    """Queries `(world·2, Lq)` and passages `(world·2·3, Lp)`; each rank's rows are padded narrower than the whole."""
    n_queries = world * QUERIES_PER_RANK
    q_lengths = [3 + (5 * i) % 9 for i in range(n_queries)]
    p_lengths = [4 + (7 * i) % 12 for i in range(n_queries * (1 + NEGATIVES))]
    q_ids, q_mask = tiny.random_batch(q_lengths, seed=1)
    p_ids, p_mask = tiny.random_batch(p_lengths, seed=2)
    p_ids[1::3, 1:3] = q_ids[:, 1:3]  # shared tokens give non-zero lexical scores
    return {"input_ids": q_ids, "attention_mask": q_mask}, {"input_ids": p_ids, "attention_mask": p_mask}


def rank_rows(batch: dict, rank: int, rows: int) -> dict:
    """This rank's rows, trimmed to its own longest sequence."""
    part = {k: v[rank * rows : (rank + 1) * rows] for k, v in batch.items()}
    width = int(part["attention_mask"].sum(1).max())
    return {k: v[:, :width] for k, v in part.items()}


def grad_diffs(model: torch.nn.Module, reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """Largest absolute difference to the reference gradients, and the largest reference gradient."""
    diff = max((p.grad - reference[n]).abs().max().item() for n, p in model.named_parameters() if n in reference)
    return {"grad_diff": diff, "grad_max": max(g.abs().max().item() for g in reference.values())}


def reference_step(model: torch.nn.Module, loss_fn, query: dict, passages: dict):
    """Single-process loss parts and parameter gradients on the whole batch."""
    model.zero_grad()
    out = loss_fn(embedding_features(model, query), embedding_features(model, passages))
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in out.items()}, grads


def mean_over_ranks(parts: dict[str, torch.Tensor]) -> dict[str, float]:
    out = {}
    for name, value in parts.items():
        total = value.detach().clone()
        dist.all_reduce(total)
        out[name] = float(total) / get_world_size()
    return out


def check_gather_variable_rows(rank: int, world: int) -> float:
    """all_gather_with_grad with 1 + 2·rank rows per rank: d/dx of Σ_r <c_r, gathered> is Σ_r c_r[my rows]."""
    sizes = [1 + 2 * r for r in range(world)]
    g = torch.Generator().manual_seed(5)
    rows = [torch.randn(n, 3, generator=g, dtype=torch.float64) for n in sizes]
    weights = [torch.randn(sum(sizes), 3, generator=g, dtype=torch.float64) for _ in range(world)]
    x = rows[rank].clone().requires_grad_(True)
    gathered = all_gather_with_grad(x)
    (gathered * weights[rank]).sum().backward()
    start = sum(sizes[:rank])
    expected = sum(weights)[start : start + sizes[rank]]
    return max((gathered.detach() - torch.cat(rows)).abs().max().item(), (x.grad - expected).abs().max().item())


def compare(model, single, cross, batches: tuple[dict, dict, dict, dict], grad_cache: bool = False,
            find_unused_parameters: bool = False) -> dict[str, float]:
    """One DDP step of the cross-device loss on this rank's rows against the single-process step on the whole batch."""
    query, passages, local_query, local_passages = batches
    ref_parts, ref_grads = reference_step(copy.deepcopy(model), single, query, passages)
    ddp = DistributedDataParallel(copy.deepcopy(model), find_unused_parameters=find_unused_parameters)
    if grad_cache:  # one row per chunk
        out = GradCache(ddp, cross, chunk_size=1).step(local_query, local_passages)
    else:
        out = cross(embedding_features(ddp, local_query), embedding_features(ddp, local_passages))
        out["loss"].backward()
    parts = mean_over_ranks(out)
    result = {"loss_diff": max(abs(parts[k] - float(ref_parts[k])) for k in ref_parts),
              "loss": float(ref_parts["loss"]), **grad_diffs(ddp.module, ref_grads)}
    del ddp  # DDP's reducer must go before the process group, or gloo may hang at exit
    return result


def main(out_dir: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = get_rank(), get_world_size()
    model = tiny.make_model(MgteForEmbedding, seed=0).double()
    query, passages = global_batch(world)
    batches = (query, passages, rank_rows(query, rank, QUERIES_PER_RANK),
               rank_rows(passages, rank, QUERIES_PER_RANK * (1 + NEGATIVES)))
    trm = {"matryoshka_dimensions": [8, 16, 32], "ignore_token_ids": SPECIAL_IDS}
    result = {
        "rank": rank,
        "world": world,
        "gather_variable_rows": check_gather_variable_rows(rank, world),
        # A dense-only loss leaves the sparse head unused: DDP must know, or that bucket is never reduced.
        "infonce": compare(model, lambda q, p: InfoNCELoss()(q["dense"], p["dense"]),
                           lambda q, p: InfoNCELoss(cross_device=True)(q["dense"], p["dense"]), batches,
                           find_unused_parameters=True),
        "sparse": compare(model, lambda q, p: _sparse(SparseInfoNCELoss(ignore_token_ids=SPECIAL_IDS), q, p),
                          lambda q, p: _sparse(SparseInfoNCELoss(ignore_token_ids=SPECIAL_IDS, cross_device=True), q, p),
                          batches),
        "trm": compare(model, TRMLoss(**trm), TRMLoss(**trm, cross_device=True), batches),
        "trm_grad_cache": compare(model, TRMLoss(**trm), TRMLoss(**trm, cross_device=True), batches, grad_cache=True),
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result, indent=2))
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def _sparse(loss: SparseInfoNCELoss, q: dict, p: dict) -> dict[str, torch.Tensor]:
    return loss(q["input_ids"], q["sparse"], p["input_ids"], p["sparse"], q["attention_mask"], p["attention_mask"])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
