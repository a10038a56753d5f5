"""Peak memory of one competitor's forward, measured in a fresh process: `python -m benchmarks.memory ...`.

CPU tensors come from the C allocator, which neither tracemalloc nor torch's own counters see, and an allocator that
keeps freed blocks makes a second measurement in the same process look smaller. So each measurement runs in its own
process: build the model, warm up on a tiny input, reset the kernel's resident-set peak (VmHWM, via
/proc/self/clear_refs), run one forward, and report the peak minus the resident size just before it. That extra peak
is everything the forward needs beyond the weights: activations, attention scratch, and the allocator's fragmentation,
which grows with depth (so the model measured has the benchmark's depth; live tensors alone peak inside one layer).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from .competitors import FORWARD_COMPETITORS, base_config, build_encoder, make_forward
from .gte import gte_from_mgte
from .measure import extra_peak_rss_mib, keep_freed_memory
from .workloads import WORKLOADS, make_workload, token_ids


REPO = Path(__file__).resolve().parents[1]


def forward_peak_mib(competitor: str, workload: str, layers: int, dtype: torch.dtype, seed: int = 0,
                   sorted_batch: int = 8) -> dict[str, float]:
    """Run one forward in this process and return its resident-memory figures in MiB."""
    model = build_encoder(base_config(layers), seed, dtype)
    if competitor != "ours":
        model = gte_from_mgte(model)
    lengths = make_workload(workload, seed).lengths
    warm = make_forward(competitor, model, token_ids([16, 8], model.config.vocab_size, seed), sorted_batch)
    run = make_forward(competitor, model, token_ids(lengths, model.config.vocab_size, seed), sorted_batch)
    warm()
    return extra_peak_rss_mib(run)


def measure_in_subprocess(competitor: str, workload: str, layers: int, dtype: torch.dtype, threads: int,
                          seed: int = 0, sorted_batch: int = 8, keep_freed: bool = False) -> dict[str, float]:
    """`forward_peak_mib` in a fresh Python process with `threads` intra-op threads."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "--competitor", competitor, "--workload", workload,
           "--layers", str(layers), "--dtype", str(dtype).removeprefix("torch."), "--threads", str(threads),
           "--seed", str(seed), "--sorted-batch", str(sorted_batch), *(["--keep-freed-memory"] if keep_freed else [])]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"memory measurement failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competitor", choices=FORWARD_COMPETITORS, required=True)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sorted-batch", type=int, default=8)
    parser.add_argument("--keep-freed-memory", action="store_true", help="see measure.keep_freed_memory")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    figures = forward_peak_mib(args.competitor, args.workload, args.layers, getattr(torch, args.dtype), args.seed,
                             args.sorted_batch)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
