"""Where the time of the packed forward goes: `python -m benchmarks.profile_forward [--workload skewed]`.

Runs our encoder once under torch.profiler (after a warm-up call) and prints the operators with the most self CPU
time, then the same time grouped into GEMMs, attention, element-wise work, norms and data movement.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from .competitors import base_config, build_encoder, make_forward
from .workloads import WORKLOADS, make_workload, token_ids


CATEGORIES = {  # operator name → category; anything else is "other"
    "aten::mm": "GEMM", "aten::addmm": "GEMM", "aten::bmm": "attention", "aten::baddbmm": "attention",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention", "aten::_softmax": "attention",
    "aten::_scaled_dot_product_attention_math": "attention",
    "aten::mul": "element-wise", "aten::add": "element-wise", "aten::gelu": "element-wise",
    "aten::neg": "element-wise", "aten::addcmul": "element-wise", "aten::cos": "element-wise",
    "aten::sin": "element-wise", "aten::mul_": "element-wise", "aten::add_": "element-wise",
    "aten::sub_": "element-wise", "aten::sub": "element-wise", "aten::relu": "element-wise",
    "aten::native_layer_norm": "norm", "aten::copy_": "data movement", "aten::cat": "data movement",
    "aten::index_select": "data movement", "aten::embedding": "data movement", "aten::clone": "data movement",
}


def profile_call(fn: Callable[[], object]) -> profile:
    """Profile one call of `fn` (after an untimed warm-up call)."""
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return prof


def category_shares(prof: profile) -> dict[str, float]:
    """Share of the total self CPU time of each category in `CATEGORIES` (plus "other")."""
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        totals[CATEGORIES.get(event.key, "other")] += event.self_cpu_time_total
    grand = sum(totals.values())
    return {name: value / grand for name, value in sorted(totals.items(), key=lambda kv: -kv[1])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="uniform")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rows", type=int, default=15, help="operators to list")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = build_encoder(base_config(args.layers), dtype=getattr(torch, args.dtype))
    lengths = make_workload(args.workload).lengths
    prof = profile_call(make_forward("ours", model, token_ids(lengths, model.config.vocab_size)))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print("\n".join(f"{name:<15}{100 * share:6.1f} %" for name, share in category_shares(prof).items()))


if __name__ == "__main__":
    main()
