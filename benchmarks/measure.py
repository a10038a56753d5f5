"""What the benchmark measures: FLOPs of the encoder, the machine's GEMM rate, wall times and resident memory."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from mgte_hf import MgteConfig


GEMM_SHAPE = (4096, 768, 3072)  # (M, K, N): the feed-forward GEMM of the base model at 4 096 tokens
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def linear_flops_per_token(config: MgteConfig) -> int:
    """FLOPs of one token through the projections of one layer: qkv, o, up|gate, down (2 per multiply-add)."""
    h, i = config.hidden_size, config.intermediate_size
    return 2 * h * (3 * h + h + 2 * i + i)


def encoder_flops(lengths: Sequence[int], config: MgteConfig, num_layers: int | None = None) -> int:
    """Forward FLOPs of the encoder on packed sequences: projections plus QKᵀ and PV of each sequence (no padding).

    Embedding lookups, norms, activations and softmax are not counted: they are not GEMM work.
    """
    layers = config.num_hidden_layers if num_layers is None else num_layers
    attention = sum(4 * n * n * config.hidden_size for n in lengths)  # QKᵀ and PV over all heads
    return layers * (sum(lengths) * linear_flops_per_token(config) + attention)


def gemm_probe(dtype: torch.dtype = torch.float32, products: int = 10,
               device: str | torch.device = "cpu") -> tuple[Callable[[], None], int]:
    """A call doing the (4096×768)·(768×3072) GEMM `products` times in `dtype`, and the FLOPs of one call.

    Timed in turns with the competitors, it gives the machine's GEMM rate under the same load as they ran.
    """
    m, k, n = GEMM_SHAPE
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(m, k, generator=g, device=device).to(dtype)
    b = torch.randn(k, n, generator=g, device=device).to(dtype)

    def run() -> None:
        for _ in range(products):
            torch.mm(a, b)

    return run, 2 * m * k * n * products


def gemm_rate(dtype: torch.dtype = torch.float32, repeats: int = 10, device: str | torch.device = "cpu") -> float:
    """Sustained FLOP/s of the reference GEMM in `dtype` (median of `repeats` products after 3 more)."""
    probe, flops = gemm_probe(dtype, 1, device)
    return flops / statistics.median(wall_times(probe, repeats=repeats, warmup=3, device=device))


def synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def wall_times(fn: Callable[[], object], repeats: int, warmup: int = 1, device: str = "cpu") -> list[float]:
    """Seconds of each of `repeats` calls of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def interleaved_times(fns: Mapping[str, Callable[[], object]], repeats: int,
                      device: str = "cpu") -> dict[str, list[float]]:
    """Wall times of several competitors, run in turns (A B C A B C …) so that a change of machine load during the
    run hits all of them alike. Each competitor's first call must already have happened (warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name] += wall_times(fn, repeats=1, warmup=0, device=device)
    return times


def proc_status_mib(*keys: str) -> dict[str, float]:
    """Fields of /proc/self/status in MiB (e.g. VmRSS, VmHWM: resident now, resident peak)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in keys:
            out[name] = int(value.split()[0]) / 1024  # the kernel reports kB
    missing = set(keys) - set(out)
    if missing:
        raise RuntimeError(f"/proc/self/status lacks {sorted(missing)} (peak memory needs Linux).")
    return out


def reset_peak_rss() -> None:
    """Reset VmHWM to the current resident size (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def extra_peak_rss_mib(fn: Callable[[], object]) -> dict[str, float]:
    """Resident memory before `fn()` and its peak during the call, in MiB (the peak is reset first).

    Only meaningful in a process that has not yet run the same work: memory an allocator keeps from earlier calls is
    reused without raising the resident size.
    """
    gc.collect()
    reset_peak_rss()
    before = proc_status_mib("VmRSS")["VmRSS"]
    fn()
    peak = proc_status_mib("VmHWM")["VmHWM"]
    return {"rss_before_mib": before, "peak_mib": peak, "extra_peak_mib": peak - before}


def keep_freed_memory() -> None:
    """Make glibc keep freed memory for reuse instead of returning it to the OS (process-wide, for this process only).

    By default glibc serves every buffer above 32 MiB with a fresh mmap and unmaps it on free, so each large activation
    of a forward costs page faults and the kernel's zeroing of its pages. Raising the mmap and trim thresholds to their
    maximum removes that cost, as jemalloc or tcmalloc would.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    int_max = 2**31 - 1  # mallopt takes a C int
    if not (hasattr(libc, "mallopt") and libc.mallopt(M_MMAP_THRESHOLD, int_max) and
            libc.mallopt(M_TRIM_THRESHOLD, int_max)):
        raise RuntimeError("keep_freed_memory needs glibc's mallopt (Linux with glibc).")


MATRIX_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def matrix_unit_flags() -> dict[str, bool]:
    """Which of the CPU's vector and matrix units (`MATRIX_FLAGS`) /proc/cpuinfo lists (Linux)."""
    path = Path("/proc/cpuinfo")
    flags: set[str] = set()
    if path.exists():
        line = next((ln for ln in path.read_text().splitlines() if ln.startswith("flags")), "")
        flags = set(line.split(":", 1)[-1].split())
    return {flag: flag in flags for flag in MATRIX_FLAGS}


def load_average() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages (other work on the machine skews every timing)."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return float(one), float(five), float(fifteen)
