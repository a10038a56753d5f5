"""How search cost grows with the corpus: `python -m benchmarks.milvus_scale [--sizes 10000 100000 1000000]`.

Competitors, each built and queried in a fresh process (so its peak resident memory is its own): `HybridIndex`
(in memory, exact) and `MilvusIndex` on Milvus Lite with a FLAT and with an HNSW dense index (bulk-loaded from shards
with `load_shards`). `benchmarks/results/milvus_scale.json` also holds a third, the memory-mapped scan over the
shards (`ShardedIndex` and its command `search-shards`, both removed since), measured with this script at commit
a596c82, before `MilvusIndex` replaced it.

Vectors: real encodings of Debian package descriptions (DDTP from the data cache: English, then German, French and
Italian) by the demo model (`demo-output*/hub/mgte-demo-trm`, else `--model`), 128 tokens at most. Sizes above the
real count (`--real`, 100 000) are drawn from
the real vectors' distribution: dense from their empirical mean and covariance (then L2-normalised), sparse by
resampling real (term, weight) postings uniformly, which draws terms by document frequency and each term's weights
from its own observed weights, with the number of terms per document drawn from the real counts. Queries are real
package synopses (of descriptions spread over the real set, all languages), encoded once; every search gets
precomputed query embeddings, so latency is the
index's alone (one query per call, top 10).

Per size and competitor: insert throughput (documents/s from the shards of encode-corpus to an index that has answered
one query of each mode: Lite rows loaded, flushed and indexed; the in-memory matrix and postings built; for the scan,
its per-chunk postings built, the dense part searched in place), query latency p50 and
p99 per mode, peak resident memory (VmHWM) of the process, and recall@10 of HNSW against FLAT. Results:
`benchmarks/results/milvus_scale.json`, a table on stdout and the chart `benchmarks/results/milvus_scale.png`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ENGINES = ("hybrid-index", "milvus-flat", "milvus-hnsw")
CHARTED = ("hybrid-index", "shard-scan", "milvus-flat", "milvus-hnsw")  # the scan's figures come from earlier runs
MODES = ("dense", "sparse", "hybrid")
CHUNK = 50_000  # documents per shard chunk and per insert step
logger = logging.getLogger("benchmarks.milvus_scale")


# ============================================================================================== data
def demo_model() -> Path | None:
    for name in ("demo-output", "demo-output-quick"):
        folder = REPO / name / "hub" / "mgte-demo-trm"
        if (folder / "config.json").is_file():
            return folder
    return None


def ddtp_texts(count: int) -> list[str]:
    """The first `count` DDTP descriptions (synopsis + long description) in file order: English, then German,
    French, Italian, ... (the cache holds about 233 000)."""
    from mgte_hf.data.cache import cache_root

    texts: list[str] = []
    with open(cache_root() / "ddtp" / "descriptions.jsonl", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            texts.append(f"{record['synopsis']}. {record['description']}")
            if len(texts) == count:
                break
    return texts


def encode_real(model: Path, count: int, queries: int, work: Path) -> None:
    """Encode `count` real documents and `queries` real queries into `work/real/`."""
    import torch

    from mgte_hf import MgteEmbedder
    from mgte_hf.shards import sparse_to_csr

    out = work / "real"
    if (out / "done").is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    embedder = MgteEmbedder.from_pretrained(model, device="cpu", max_length=128)
    texts = ddtp_texts(count)
    start = time.perf_counter()
    dense, sparse = [], []
    for i in range(0, len(texts), 10_000):
        result = embedder.encode_corpus(texts[i:i + 10_000], show_progress_bar=False)
        dense.append(result.dense)
        sparse += result.sparse
        logger.info("encoded %d of %d documents (%.0f s)", i + 10_000, len(texts), time.perf_counter() - start)
    save_vectors(out / "docs", np.concatenate(dense), sparse_to_csr(sparse))
    q = embedder.encode_queries([text.split(". ", 1)[0] for text in texts[:: len(texts) // queries][:queries]])
    save_vectors(out / "queries", q.dense, sparse_to_csr(q.sparse))
    from mgte_hf.hashing import model_identity

    (out / "model.json").write_text(json.dumps({"identity": model_identity(embedder.model, embedder.tokenizer),
                                                "path": str(model), "encode_seconds": time.perf_counter() - start}))
    (out / "done").write_text("")


def save_vectors(prefix: Path, dense: np.ndarray, csr: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    np.save(prefix / "dense.npy", np.ascontiguousarray(dense, dtype=np.float32))
    for name, array in zip(("indptr", "indices", "values"), csr, strict=True):
        np.save(prefix / f"{name}.npy", array)


def load_vectors(prefix: Path) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    dense = np.load(prefix / "dense.npy", mmap_mode="r")
    return dense, tuple(np.load(prefix / f"{n}.npy", mmap_mode="r") for n in ("indptr", "indices", "values"))


def corpus_of(size: int, work: Path, seed: int = 0) -> Path:
    """`work/corpus-N/`: the first N real documents, or N drawn from the real vectors' distribution."""
    out = work / f"corpus-{size}"
    if (out / "dense.npy").is_file():
        return out
    dense, (indptr, indices, values) = load_vectors(work / "real" / "docs")
    if size <= len(dense):
        end = int(indptr[size])
        save_vectors(out, dense[:size], (np.asarray(indptr[: size + 1]), indices[:end], values[:end]))
        return out
    rng = np.random.default_rng(seed)
    mean = dense.mean(axis=0, dtype=np.float64)
    cov = np.cov(np.asarray(dense, dtype=np.float64), rowvar=False)
    counts = np.diff(indptr)
    out.mkdir(parents=True, exist_ok=True)
    drawn_dense = np.lib.format.open_memmap(out / "dense.npy", mode="w+", dtype=np.float32, shape=(size, len(mean)))
    parts_ptr, parts_idx, parts_val, nnz = [np.zeros(1, np.int64)], [], [], 0
    for start in range(0, size, CHUNK):
        n = min(CHUNK, size - start)
        block = rng.multivariate_normal(mean, cov, size=n, method="cholesky")
        drawn_dense[start:start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
        want = rng.choice(counts, size=n)  # terms per document, as the real ones
        draws = (want * 1.3).astype(np.int64) + 2  # postings drawn per document (repeated terms are dropped)
        picks = np.split(rng.integers(0, len(indices), size=int(draws.sum())), np.cumsum(draws)[:-1])
        rows_idx, rows_val, lengths = [], [], []
        for k, drawn in zip(want, picks, strict=True):
            _, first = np.unique(indices[drawn], return_index=True)
            chosen = drawn[np.sort(first)][:k]  # distinct terms, at most k
            order = np.argsort(indices[chosen])
            rows_idx.append(indices[chosen][order])
            rows_val.append(values[chosen][order])
            lengths.append(len(chosen))
        parts_idx.append(np.concatenate(rows_idx).astype(np.int32))
        parts_val.append(np.concatenate(rows_val).astype(np.float32))
        parts_ptr.append(nnz + np.cumsum(lengths))
        nnz += int(np.sum(lengths))
        logger.info("drew %d of %d documents", start + n, size)
    drawn_dense.flush()
    del drawn_dense
    for name, parts in (("indptr", parts_ptr), ("indices", parts_idx), ("values", parts_val)):
        np.save(out / f"{name}.npy", np.concatenate(parts))
    return out


def shards_of(size: int, work: Path) -> Path:
    """`work/shards-N/`: the corpus of `size` as `encode_to_shards` writes it (chunk files and manifests)."""
    from mgte_hf.inference import EmbeddingResult
    from mgte_hf.shards import csr_to_sparse
    from mgte_hf.shards.storage import MANIFEST, write_chunk, write_manifest

    folder = work / f"shards-{size}"
    if (folder / MANIFEST).is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    dense, (indptr, indices, values) = load_vectors(corpus_of(size, work))
    model = json.loads((work / "real" / "model.json").read_text())["identity"]
    run = {"model": model, "dimension": dense.shape[1], "max_length": 128, "truncation": "warn", "chunk_size": CHUNK,
           "corpus": {"count": size, "sha256": f"benchmark-{size}"}}
    for index, first in enumerate(range(0, size, CHUNK)):
        stop = min(first + CHUNK, size)
        a, b = int(indptr[first]), int(indptr[stop])
        rows = csr_to_sparse(np.asarray(indptr[first:stop + 1]) - a, indices[a:b], values[a:b])
        write_chunk(folder, index, first, [f"doc-{i}" for i in range(first, stop)],
                    EmbeddingResult(np.asarray(dense[first:stop]), rows), run)
    write_manifest(folder, run, dense.shape[1], -(-size // CHUNK))
    return folder


# ============================================================================================== one competitor
def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(engine: str, size: int, work: Path, queries: int) -> dict:
    """Build one competitor over the corpus of `size` and time its searches (in this process)."""
    import torch

    from mgte_hf import HybridIndex
    from mgte_hf.inference import EmbeddingResult
    from mgte_hf.shards import csr_to_sparse

    torch.set_num_threads(1)
    folder = shards_of(size, work)
    q_dense, q_csr = load_vectors(work / "real" / "queries")
    q_sparse = csr_to_sparse(*q_csr)
    q_count = min(queries, len(q_dense))
    queries_of = [EmbeddingResult(np.array(q_dense[i:i + 1]), [q_sparse[i]]) for i in range(q_count)]
    start = time.perf_counter()
    if engine == "hybrid-index":
        index = HybridIndex()
        dense, (indptr, indices, values) = load_vectors(corpus_of(size, work))
        for first in range(0, size, CHUNK):
            stop = min(first + CHUNK, size)
            a, b = int(indptr[first]), int(indptr[stop])
            rows = csr_to_sparse(np.asarray(indptr[first:stop + 1]) - a, indices[a:b], values[a:b])
            index.add([""] * (stop - first), ids=[f"doc-{i}" for i in range(first, stop)],
                      embeddings=EmbeddingResult(np.array(dense[first:stop]), rows))
    else:
        from mgte_hf.milvus import MilvusIndex, load_shards

        path = work / f"{engine}-{size}.db"
        shutil.rmtree(path, ignore_errors=True)
        index = MilvusIndex(uri=str(path), collection="bench", index=engine.removeprefix("milvus-").upper())
        load_shards(index, folder)  # each chunk file's sha256 is checked as it is read
    for mode in MODES:  # what the first search of each mode builds (matrix, postings, engine indexes) is building
        index.search("q", top_k=10, mode=mode, query_embeddings=queries_of[0])
    build_seconds = time.perf_counter() - start
    latencies: dict[str, list[float]] = {}
    hits: dict[str, list[list[str]]] = {}
    for mode in MODES:
        latencies[mode], hits[mode] = [], []
        for one in queries_of:
            t = time.perf_counter()
            found = index.search("q", top_k=10, mode=mode, query_embeddings=one)
            latencies[mode].append(time.perf_counter() - t)
            hits[mode].append([h.id for h in found])
    return {"engine": engine, "size": size, "build_seconds": build_seconds, "insert_docs_per_s": size / build_seconds,
            "latency_ms": {m: {"p50": 1e3 * float(np.percentile(v, 50)), "p99": 1e3 * float(np.percentile(v, 99))}
                           for m, v in latencies.items()},
            "peak_rss_mib": peak_rss_mib(), "queries": q_count, "hits": hits}


def run_in_subprocess(engine: str, size: int, work: Path, queries: int, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.milvus_scale", "--one", engine, "--sizes", str(size), "--work",
           str(work), "--queries", str(queries)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"engine": engine, "size": size, "error": f"stopped after {timeout:.0f} s"}
    if done.returncode:
        return {"engine": engine, "size": size, "error": done.stderr[-1500:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    return result


# ============================================================================================== report
def recall(found: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(found, exact, strict=True)]))


def load_average() -> float:
    return os.getloadavg()[0]


def table(results: list[dict]) -> str:
    lines = ["| documents | competitor | insert docs/s | dense p50 / p99 ms | sparse p50 / p99 ms | "
             "hybrid p50 / p99 ms | peak RSS MiB | recall@10 dense / hybrid |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['size']:,} | {r['engine']} | {r['error'].splitlines()[-1][:80]} | | | | | |")
            continue
        lat = " | ".join(f"{r['latency_ms'][m]['p50']:.1f} / {r['latency_ms'][m]['p99']:.1f}" for m in MODES)
        rec = (f"{r['recall']['dense']:.3f} / {r['recall']['hybrid']:.3f}" if "recall" in r else "1 (exact)"
               if r["engine"] != "milvus-hnsw" else "")
        lines.append(f"| {r['size']:,} | {r['engine']} | {r['insert_docs_per_s']:,.0f} | {lat} | "
                     f"{r['peak_rss_mib']:,.0f} | {rec} |")
    return "\n".join(lines)


def chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ok = [r for r in results if "error" not in r]
    for engine in CHARTED:
        rows = sorted((r for r in ok if r["engine"] == engine), key=lambda r: r["size"])
        if not rows:
            continue
        sizes = [r["size"] for r in rows]
        axes[0].plot(sizes, [r["latency_ms"]["hybrid"]["p50"] for r in rows], marker="o", label=engine)
        axes[1].plot(sizes, [r["insert_docs_per_s"] for r in rows], marker="o", label=engine)
        axes[2].plot(sizes, [r["peak_rss_mib"] for r in rows], marker="o", label=engine)
    for ax, title in zip(axes, ("hybrid query latency p50 (ms)", "insert (documents/s)", "peak RSS (MiB)"),
                         strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("documents")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--queries", type=int, default=50, help="queries timed per mode (default 50)")
    parser.add_argument("--real", type=int, default=100_000, help="real documents encoded (default 100 000)")
    parser.add_argument("--model", type=Path, help="embedding model folder (default: the demo's)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mgte-milvus-scale"), help="vectors and indexes")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per competitor and size")
    parser.add_argument("--output", type=Path, default=RESULTS / "milvus_scale.json")
    parser.add_argument("--one", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from mgte_hf.outputs import write_atomic

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.one:
        print(json.dumps(measure(args.one, args.sizes[0], args.work, args.queries)))
        return
    model = args.model or demo_model()
    if model is None:
        raise SystemExit("No demo model (run `make demo` or `mgte-hf demo --quick`), and no --model given.")
    args.work.mkdir(parents=True, exist_ok=True)
    encode_real(model, args.real, args.queries, args.work)
    results = []
    for size in args.sizes:
        corpus_of(size, args.work)
        for engine in args.engines:
            load = load_average()
            result = run_in_subprocess(engine, size, args.work, args.queries, args.timeout)
            result["load_average_before"] = load
            results.append(result)
            logger.info("%s at %d: %s", engine, size, {k: v for k, v in result.items() if k != "hits"})
        flat = next((r for r in results if r["size"] == size and r["engine"] == "milvus-flat" and "hits" in r), None)
        for r in results:
            if r["size"] == size and r["engine"] == "milvus-hnsw" and "hits" in r and flat:
                r["recall"] = {m: recall(r["hits"][m], flat["hits"][m]) for m in MODES}
        for engine in ("milvus-flat", "milvus-hnsw"):
            shutil.rmtree(args.work / f"{engine}-{size}.db", ignore_errors=True)
        report = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                              "note": "2 cores shared with other engineers; see load_average_before per row"},
                  "model": json.loads((args.work / "real" / "model.json").read_text()),
                  "results": [{k: v for k, v in r.items() if k != "hits"} for r in results]}
        args.output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.output, json.dumps(report, indent=1) + "\n")
        chart(results, args.output.with_suffix(".png"))
    print(table(results))


if __name__ == "__main__":
    main()
