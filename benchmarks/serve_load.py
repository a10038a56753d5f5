"""Load test of `mgte-hf serve` on loopback: `python -m benchmarks.serve_load [--layers 12]`.

The model is the base shape (hidden 768, 12 heads, vocab 250 048; `--layers` deep) with random weights and the real
XLM-R tokenizer, saved to a temporary folder and served by the real command (`mgte-hf serve`, its own process).
The texts are real: GNOME Help pages and Debian package descriptions from the data cache (`mgte-hf data build
--only gnome,ddtp`), half of each, drawn with a fixed seed. Each client (asyncio + httpx) posts one text to
`/embed`, waits for the answer, and posts the next; a level runs a bounded number of requests.

For 1, 8, 32 and 128 clients: texts/s, tokens/s, p50/p99 latency, the mean batch size (from the server's
`/metrics`) and the server's peak resident memory. Then the 32-client load against a server that runs one text per
forward (`--max-batch-requests 1`: batch-1 serving), and the packed forward alone (`MgteEmbedder.encode_tokenized`
on the same texts, in this process, before and after the load tests, with the server idle) as the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import torch

from mgte_hf import MgteForEmbedding
from mgte_hf.data import beir_dir, cache_root
from mgte_hf.inference import MgteEmbedder
from mgte_hf.inference.common import tokenize
from mgte_hf.inference.embedder import corpus_texts
from mgte_hf.tokenizer import load_xlmr_tokenizer

from .competitors import base_config
from .measure import load_average


REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
GNOME_SETS = ("gnome-en", "gnome-de", "gnome-es", "gnome-fr", "gnome-ja", "gnome-ru", "gnome-zh_CN")
DEBIAN_SETS = ("ddtp-de", "ddtp-ja", "ddtp-de-en")  # the -en set's corpus holds the English descriptions
CLIENTS = (1, 8, 32, 128)
BATCH1_CLIENTS = 32
WARMUP_REQUESTS = 8


# ============================================================================================== texts and model
def sample_texts(n: int, seed: int = 0, cache: str | os.PathLike | None = None) -> list[str]:
    """`n` real texts, half GNOME Help pages and half Debian package descriptions (all languages pooled)."""
    root = cache_root(cache)
    pools = []
    for names in (GNOME_SETS, DEBIAN_SETS):
        texts = []
        for name in names:
            corpus = beir_dir(root, name) / "corpus.jsonl"
            if not corpus.is_file():
                raise FileNotFoundError(f"{corpus} is missing: run `mgte-hf data build --only gnome,ddtp` first.")
            with open(corpus, encoding="utf-8") as f:
                texts += corpus_texts([json.loads(line) for line in f if line.strip()])
        pools.append(sorted(set(texts)))
    rng = random.Random(seed)
    half = n // 2
    drawn = rng.sample(pools[0], half) + rng.sample(pools[1], n - half)
    rng.shuffle(drawn)
    return drawn


def save_model(folder: Path, layers: int, seed: int = 0) -> Path:
    """A random-weight `MgteForEmbedding` of the base shape with `layers` layers and the real XLM-R tokenizer."""
    torch.manual_seed(seed)
    MgteForEmbedding(base_config(layers)).save_pretrained(folder)
    load_xlmr_tokenizer(fetch=False).save_pretrained(folder)
    return folder


# ============================================================================================== server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, port: int, *extra: str) -> subprocess.Popen:
    """`mgte-hf serve` in its own process, once `/health` answers."""
    cmd = [sys.executable, "-m", "mgte_hf", "serve", "--model", str(folder), "--port", str(port), *extra]
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the server did not start in 10 min")
        time.sleep(0.5)


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()


def batch_counts(url: str) -> tuple[float, float]:
    """(batches run, sequences run) so far, from the server's `te_batch_next_size` histogram."""
    values = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("te_batch_next_size_count", "te_batch_next_size_sum"):
            values[name] = float(value)
    return values["te_batch_next_size_count"], values["te_batch_next_size_sum"]


def peak_rss_mib(pid: int, reset: bool = False) -> float:
    """A process's peak resident memory (VmHWM) in MiB; `reset` sets the peak to the current size first."""
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/<pid>/status has no VmHWM (peak memory needs Linux).")


# ============================================================================================== load
async def _clients(url: str, texts: Sequence[str], clients: int, requests: int) -> tuple[float, list[float]]:
    """`clients` concurrent loops posting texts[i % len] to /embed until `requests` are done: (wall s, latencies)."""
    queue = iter(range(requests))
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        async def loop() -> None:
            for i in queue:
                start = time.perf_counter()
                response = await client.post("/embed", json={"inputs": texts[i % len(texts)]})
                response.raise_for_status()
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        return time.perf_counter() - start, latencies


def run_level(url: str, texts: Sequence[str], lengths: Sequence[int], clients: int, requests: int,
              pid: int | None = None) -> dict:
    """One load level: throughput, latency percentiles, mean batch size and (with `pid`) the server's peak memory."""
    warm = min(clients, WARMUP_REQUESTS)
    asyncio.run(_clients(url, texts[:warm], warm, warm))  # warm-up: the first forwards
    if pid is not None:
        peak_rss_mib(pid, reset=True)
    batches, sequences = batch_counts(url)
    seconds, latencies = asyncio.run(_clients(url, texts, clients, requests))
    batches_after, sequences_after = batch_counts(url)
    tokens = sum(lengths[i % len(lengths)] for i in range(requests))
    return {"clients": clients, "requests": requests, "seconds": seconds, "texts_per_s": requests / seconds,
            "tokens_per_s": tokens / seconds, **latency_summary(latencies),
            "mean_batch_size": (sequences_after - sequences) / max(1.0, batches_after - batches),
            "peak_rss_mib": None if pid is None else peak_rss_mib(pid)}


def latency_summary(latencies: Sequence[float]) -> dict:
    """p50 and p99 latency in milliseconds (nearest-rank percentiles) and the mean."""
    ordered = sorted(latencies)

    def rank(p: float) -> float:
        return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1] * 1000

    return {"p50_ms": rank(50), "p99_ms": rank(99), "mean_ms": statistics.fmean(ordered) * 1000}


def packed_throughput(folder: Path, texts: Sequence[str], batch_tokens: int, repeats: int = 1) -> dict:
    """Texts/s and tokens/s of `MgteEmbedder.encode_tokenized` (dense, packed) on `texts`: the server's ceiling."""
    embedder = MgteEmbedder.from_pretrained(folder, device="cpu")
    tokenized = tokenize(embedder.tokenizer, list(texts), max_length=embedder.max_length, truncation="error")
    embedder.encode_tokenized(tokenize(embedder.tokenizer, list(texts[:4]), max_length=embedder.max_length,
                                       truncation="error"),
                              sparse=False, batch_tokens=batch_tokens)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.encode_tokenized(tokenized, sparse=False, batch_tokens=batch_tokens, show_progress_bar=False)
        times.append(time.perf_counter() - start)
    seconds = min(times)
    tokens = sum(len(ids) for ids in tokenized.input_ids)
    return {"texts": len(texts), "tokens": tokens, "seconds": times, "texts_per_s": len(texts) / seconds,
            "tokens_per_s": tokens / seconds}


# ============================================================================================== report
def markdown_table(report: dict) -> str:
    """The load table as Markdown (the README's)."""
    rows = ["| clients | texts/s | tokens/s | p50 ms | p99 ms | mean batch | peak RSS MiB |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["levels"]:
        rows.append(f"| {r['clients']} | {r['texts_per_s']:.2f} | {r['tokens_per_s']:.0f} | {r['p50_ms']:.0f} | "
                    f"{r['p99_ms']:.0f} | {r['mean_batch_size']:.1f} | {r['peak_rss_mib']:.0f} |")
    b = report["batch1"]
    rows.append(f"| {b['clients']} (batch-1) | {b['texts_per_s']:.2f} | {b['tokens_per_s']:.0f} | "
                f"{b['p50_ms']:.0f} | {b['p99_ms']:.0f} | {b['mean_batch_size']:.1f} | {b['peak_rss_mib']:.0f} |")
    p = report["packed"]
    rows.append(f"| packed forward alone | {p['texts_per_s']:.2f} | {p['tokens_per_s']:.0f} | | | | |")
    return "\n".join(rows)


def chart(report: dict, path: Path) -> None:
    """Throughput and latency against the number of clients, with batch-1 serving and the packed forward."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = report["levels"]
    clients = [r["clients"] for r in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(clients, [r["texts_per_s"] for r in levels], "o-", label="dynamic batching")
    left.plot([report["batch1"]["clients"]], [report["batch1"]["texts_per_s"]], "s", color="tab:red",
              label="batch-1 serving")
    left.axhline(report["packed"]["texts_per_s"], color="gray", ls="--", label="packed forward alone")
    left.set(xscale="log", xlabel="concurrent clients", ylabel="texts/s", title="throughput", xticks=clients,
             xticklabels=[str(c) for c in clients], ylim=(0, None))
    left.legend()
    right.plot(clients, [r["p50_ms"] for r in levels], "o-", label="p50")
    right.plot(clients, [r["p99_ms"] for r in levels], "o--", label="p99")
    right.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="latency, ms", title="latency",
              xticks=clients, xticklabels=[str(c) for c in clients])
    right.legend()
    fig.suptitle(f"mgte-hf serve, {report['layers']}-layer base shape, {report['threads']} CPU threads, "
                 f"load {report['load_before'][0]:.1f}→{report['load_after'][0]:.1f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ============================================================================================== main
def run(layers: int, texts: Sequence[str], clients: Sequence[int], min_requests: int, batch_tokens: int,
        max_wait_ms: float, workdir: Path) -> dict:
    folder = save_model(workdir / "model", layers)
    tokenizer = load_xlmr_tokenizer(fetch=False)
    lengths = [len(ids) for ids in tokenizer(list(texts))["input_ids"]]
    report = {"layers": layers, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "texts": len(texts),
              "mean_tokens": statistics.fmean(lengths), "median_tokens": statistics.median(lengths),
              "max_batch_tokens": batch_tokens, "max_wait_ms": max_wait_ms, "load_before": load_average()}
    packed_before = packed_throughput(folder, texts, batch_tokens)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(folder, port, "--max-batch-tokens", str(batch_tokens), "--max-wait-ms", str(max_wait_ms))
    try:
        report["levels"] = [run_level(url, texts, lengths, c, max(min_requests, c), server.pid) for c in clients]
    finally:
        stop_server(server)
    server = start_server(folder, port, "--max-batch-tokens", str(batch_tokens), "--max-batch-requests", "1")
    try:
        report["batch1"] = run_level(url, texts, lengths, BATCH1_CLIENTS, max(min_requests, BATCH1_CLIENTS),
                                     server.pid)
    finally:
        stop_server(server)
    packed_after = packed_throughput(folder, texts, batch_tokens)
    report["load_after"] = load_average()
    report["packed_runs"] = [packed_before, packed_after]
    report["packed"] = {key: statistics.fmean([packed_before[key], packed_after[key]])
                        for key in ("texts_per_s", "tokens_per_s")}
    dynamic32 = next(r for r in report["levels"] if r["clients"] == BATCH1_CLIENTS)
    best = max(report["levels"], key=lambda r: r["tokens_per_s"])
    report["dynamic_over_batch1_at_32"] = dynamic32["tokens_per_s"] / report["batch1"]["tokens_per_s"]
    report["best_share_of_packed"] = best["tokens_per_s"] / report["packed"]["tokens_per_s"]  # levels send subsets
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12, help="encoder depth of the base shape (default 12)")
    parser.add_argument("--texts", type=int, default=256, help="distinct real texts drawn (default 256)")
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)), help="concurrency levels")
    parser.add_argument("--requests", type=int, default=96,
                        help="requests per level, at least one per client (default 96)")
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path,
                        help="JSON report, chart beside it (default benchmarks/results/serve-load-<L>-layers.json)")
    args = parser.parse_args(argv)
    if BATCH1_CLIENTS not in (clients := [int(c) for c in args.clients.split(",")]):
        parser.error(f"--clients must include {BATCH1_CLIENTS} (the batch-1 comparison's level).")
    texts = sample_texts(args.texts, args.seed)
    with tempfile.TemporaryDirectory(prefix="serve-load-") as workdir:
        report = run(args.layers, texts, clients, args.requests, args.max_batch_tokens, args.max_wait_ms,
                     Path(workdir))
    output = args.output or RESULTS / f"serve-load-{args.layers}-layers.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    chart(report, output.with_suffix(".png"))
    print(markdown_table(report))
    print(f"dynamic batching / batch-1 at {BATCH1_CLIENTS} clients: {report['dynamic_over_batch1_at_32']:.2f}x; "
          f"best tokens/s / packed forward: {report['best_share_of_packed']:.1%}; load "
          f"{report['load_before']} -> {report['load_after']}; report {output}")


if __name__ == "__main__":
    main()
