"""The demo's report: `report.md` (tables, targets, stages, fresh-process check, ablations), `results.json` and the
`ndcg.png` chart.

Everything above the report's last section ("This run") follows from the config alone, so two runs give the same
text there; its sha256 (`results.json["digest"]`, printed in "This run") compares runs at a glance. "This run"
holds what depends on the machine: seconds per stage, CPU seconds and the load average.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mgte_hf.outputs import write_atomic

from .config import DemoConfig


Metrics = dict[str, float]  # metric → value
Scores = dict[str, Metrics]  # method → metrics

METRICS = ("ndcg@10", "recall@100")
METHODS = ("bm25", "dense_mlm", "dense_contrastive", "dense", "sparse", "hybrid")
METHOD_LABELS = {"bm25": "BM25", "dense_mlm": "dense (MLM only)", "dense_contrastive": "dense (+contrastive)",
                 "dense": "dense (+TRM)", "sparse": "sparse (TRM)", "hybrid": "hybrid (TRM)",
                 "rerank": "hybrid → rerank", "interpolated": "hybrid → rerank, interpolated"}
RUN_SECTION = "## This run"


@dataclass
class DemoResult:
    """What `run_demo` produced.

    Attributes:
        metrics: set → method → metric → value (every query of the set).
        rerank_metrics: set → {"hybrid", "rerank", "interpolated"} → metrics, on the reranked query sample.
        stages: stage → {"steps", "train_loss", "first_loss", "last_loss"}.
        vocab: sizes of the XLM-R vocabulary, the trimmed one and the model's embedding matrix.
        sparse_weight: the hybrid's sparse weight (dense weight 1), chosen on the dev pairs.
        rerank_weight: the first-stage weight of the interpolated reranker, chosen on the dev pairs.
        dev: the dev-pair figures the two weights were chosen from (`{"hybrid": {w: nDCG@10}, "rerank": {...}}`).
        query_counts, rerank_counts: queries per set, in all and reranked.
        ablations: the `--ablations` tables (`{}` without them).
        timings, cpu_seconds, load: this run's seconds and CPU seconds per stage, and the load average at start and
            end (not part of the digest).
        output: the output folder; files: what was written there.
        verification: the fresh-process check of the Hub folders.
    """

    metrics: dict[str, Scores]
    rerank_metrics: dict[str, Scores]
    stages: dict[str, dict[str, Any]]
    vocab: dict[str, int]
    sparse_weight: float
    rerank_weight: float
    dev: dict[str, dict[float, float]]
    query_counts: dict[str, int]
    rerank_counts: dict[str, int]
    output: Path
    ablations: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    load: dict[str, list[float]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)


# ================================================================================================== targets
def targets(result: DemoResult) -> list[tuple[str, bool, str]]:
    """The demo's quality targets, each with whether it is met and the figures (nDCG@10)."""
    out = []
    for name, scores in result.metrics.items():
        n = {m: s["ndcg@10"] for m, s in scores.items()}
        if {"hybrid", "dense", "sparse"} <= set(n):
            out.append((f"{name}: hybrid ≥ max(dense, sparse)", n["hybrid"] >= max(n["dense"], n["sparse"]),
                        f"{n['hybrid']:.3f} vs {max(n['dense'], n['sparse']):.3f}"))
        if {"dense", "dense_contrastive"} <= set(n):
            out.append((f"{name}: dense after TRM ≥ after contrastive", n["dense"] >= n["dense_contrastive"],
                        f"{n['dense']:.3f} vs {n['dense_contrastive']:.3f}"))
        rr = result.rerank_metrics.get(name)
        if rr:
            for method in ("rerank", "interpolated"):
                if method in rr:
                    out.append((f"{name}: {METHOD_LABELS[method].removeprefix('hybrid → ')} ≥ hybrid "
                                f"({result.rerank_counts[name]} queries)",
                                rr[method]["ndcg@10"] >= rr["hybrid"]["ndcg@10"],
                                f"{rr[method]['ndcg@10']:.3f} vs {rr['hybrid']['ndcg@10']:.3f}"))
        if crosslingual(name) and "dense" in n:
            out.append((f"{name}: dense > BM25", n["dense"] > n["bm25"], f"{n['dense']:.3f} vs {n['bm25']:.3f}"))
    return out


def crosslingual(name: str) -> bool:
    """`gnome-de-en` is cross-lingual (queries in one language, documents in another); `gnome-en` is not."""
    parts = name.split("-")
    return len(parts) == 3 and parts[1] != parts[2]


# ================================================================================================== Markdown
def markdown_report(result: DemoResult, config: DemoConfig) -> str:
    """The whole report: the reproducible part, then "This run" (timings and load)."""
    body = reproducible_report(result, config)
    return body + "\n" + run_section(result, digest(body))


def reproducible_report(result: DemoResult, config: DemoConfig) -> str:
    """Tables, targets, stages, the fresh-process check and the ablations: a function of the config alone."""
    sets = list(result.metrics)
    methods = [m for m in METHODS if any(m in result.metrics[s] for s in sets)]
    lines = ["# mgte-hf demo report", "",
             f"Trimmed vocabulary: {result.vocab['trimmed']} of {result.vocab['xlmr']} XLM-R pieces; model "
             f"{config.num_layers} layers × {config.hidden_size} hidden; {config.threads} threads, seed {config.seed}.",
             "", "## Retrieval (nDCG@10 / Recall@100)", ""]
    lines += table(["set", *(METHOD_LABELS[m] for m in methods)],
                   [[f"{name} ({result.query_counts.get(name, 0)} q)", *(cell(result.metrics[name].get(m))
                                                                         for m in methods)] for name in sets])
    lines += ["", f"Hybrid = dense + {result.sparse_weight:g} × sparse (the weight with the best nDCG@10 on "
              f"{config.dev_count} held-out DDTP pairs: {weights_line(result.dev.get('hybrid', {}))}). The dense "
              "columns are the ablation: each stage's model, same sets, same queries."]
    if result.rerank_metrics:
        lines += ["", "## Reranking", "",
                  f"The reranker reorders the hybrid top {config.rerank_depth} of "
                  + ("every query" if config.rerank_queries is None else f"{config.rerank_queries} sampled queries")
                  + f" per set (same queries, same candidates; pairs cut at {config.reranker_length} tokens). "
                  f"Interpolated: {1 - result.rerank_weight:g} × reranker + {result.rerank_weight:g} × hybrid, each "
                  "min-max normalised over a query's candidates (`MgteReranker(first_stage_weight=...)`), the weight "
                  f"chosen on the dev pairs ({weights_line(result.dev.get('rerank', {}))}). nDCG@10 / Recall@100:",
                  ""]
        kinds = [k for k in ("hybrid", "rerank", "interpolated") if any(k in r for r in result.rerank_metrics.values())]
        lines += table(["set", *(METHOD_LABELS[k] for k in kinds)],
                       [[name, *(cell(rr.get(k)) for k in kinds)] for name, rr in result.rerank_metrics.items()])
    lines += ["", "## Targets", ""]
    lines += table(["target", "met", "figures (nDCG@10)"],
                   [[what, "yes" if ok else "**no**", figures] for what, ok, figures in targets(result)])
    lines += ["", "## Stages", ""]
    lines += table(["stage", "steps", "batch", "learning rate", "loss first → last"],
                   [[name, str(s["steps"]), str(getattr(config, name).batch_size),
                     f"{getattr(config, name).learning_rate:g}", loss_cell(s)] for name, s in result.stages.items()])
    if result.verification:
        v = result.verification
        lines += ["", "## Fresh-process check", "",
                  f"SentenceTransformer dense nDCG@10 on {v['set']}: {v['st_dense_ndcg@10']:.4f} (report "
                  f"{v['report_dense_ndcg@10']:.4f}); max |Δ| dense scores {v['max_abs_diff_st_dense']:.1e}, "
                  f"AutoModel CLS {v['max_abs_diff_auto_cls']:.1e}, CrossEncoder {v['max_abs_diff_cross_encoder']:.1e}, "
                  f"AutoModelForSequenceClassification {v['max_abs_diff_auto_logits']:.1e}."]
    if result.ablations:
        lines += ["", *ablation_lines(result.ablations)]
    return "\n".join(lines) + "\n"


OPENMP_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # how OpenMP threads wait: the run's speed, never its figures


def run_section(result: DemoResult, body_digest: str) -> str:
    """Seconds and CPU seconds per stage, the load average, and the digest of the reproducible part."""
    lines = [RUN_SECTION, "",
             f"Digest of everything above (sha256): `{body_digest}`. Two runs of the same config on the same "
             "machine give the same digest, whatever the load.", ""]
    lines += table(["stage", "seconds", "CPU seconds"],
                   [[name, f"{seconds:.1f}", f"{result.cpu_seconds.get(name, 0.0):.1f}"]
                    for name, seconds in result.timings.items()])
    if result.load:
        lines += ["", "Load average (1, 5, 15 min) at the start: " + ", ".join(f"{x:.2f}" for x in result.load["start"])
                  + "; at the end: " + ", ".join(f"{x:.2f}" for x in result.load["end"])
                  + f"; {os.cpu_count()} CPU cores; " + "; ".join(
                      f"{name} {os.environ.get(name, 'unset')}" for name in OPENMP_SETTINGS) + "."]
    return "\n".join(lines) + "\n"


def ablation_lines(ablations: Mapping[str, Any]) -> list[str]:
    """The `--ablations` section: one table per study."""
    lines = ["## Ablations", ""]
    if "rev_ntk" in ablations:
        a = ablations["rev_ntk"]
        lines += [f"### Contrastive pre-training with and without revNTK (dense nDCG@10 on the queries of documents "
                  f"over {a['min_tokens']} tokens, documents cut at each length)", ""]
        lengths = a["lengths"]
        lines += table(["set (queries)", *(f"{model} L{n}" for model in a["models"] for n in lengths)],
                       [[f"{s} ({a['queries'][s]} q)", *(f"{a['ndcg'][model][s][str(n)]:.3f}" for model in a["models"]
                                                         for n in lengths)] for s in a["queries"]])
    if "long_documents" in ablations:
        a = ablations["long_documents"]
        lines += ["", f"### TRM on the longest documents (queries of documents over {a['min_tokens']} tokens; "
                  "nDCG@10 / Recall@100)", ""]
        lengths = a["lengths"]
        lines += table(["set (queries)", *(f"{kind} L{n}" for kind in ("dense", "sparse") for n in lengths)],
                       [[f"{s} ({a['queries'][s]} q)", *(cell(a["metrics"][s][kind][str(n)]) for kind in ("dense", "sparse")
                                                         for n in lengths)] for s in a["queries"]])
    if "matryoshka" in ablations:
        a = ablations["matryoshka"]
        lines += ["", "### Matryoshka dense: nDCG@10 against the index size (float32 vectors)", ""]
        sets = list(a["ndcg"][str(a["dimensions"][0])])
        lines += table(["dimension", "bytes per document", "MiB per million documents", *sets],
                       [[str(d), str(4 * d), f"{4 * d * 1e6 / 2**20:.0f}", *(f"{a['ndcg'][str(d)][s]:.3f}" for s in sets)]
                        for d in a["dimensions"]])
    return lines


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Markdown table lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def cell(scores: Mapping[str, float] | None) -> str:
    return "–" if scores is None else f"{scores['ndcg@10']:.3f} / {scores['recall@100']:.3f}"


def loss_cell(stage: Mapping[str, Any]) -> str:
    first, last = stage.get("first_loss"), stage.get("last_loss")
    return "" if first is None else f"{first:.3f} → {last:.3f}"


def weights_line(scores: Mapping[float, float]) -> str:
    return ", ".join(f"{w:g}: {v:.3f}" for w, v in scores.items())


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ================================================================================================== files
def plot_chart(result: DemoResult, path: Path) -> Path:
    """A grouped bar chart of nDCG@10: one group per set, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(result.metrics)
    methods = [m for m in METHODS if any(m in result.metrics[s] for s in sets)]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.6 * len(sets) + 3, 4))
    for i, method in enumerate(methods):
        values = [result.metrics[s].get(method, {}).get("ndcg@10", 0.0) for s in sets]
        ax.bar([x + i * width for x in range(len(sets))], values, width, label=METHOD_LABELS[method])
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(sets))], sets)
    ax.set_ylabel("nDCG@10")
    ax.set_title("mgte-hf demo: retrieval after each stage")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
    return path


def write_report(result: DemoResult, config: DemoConfig) -> dict[str, Path]:
    """`report.md`, `results.json` and `ndcg.png` in the output folder, each written aside and renamed into place."""
    out = result.output
    body = reproducible_report(result, config)
    report = out / "report.md"
    write_atomic(report, body + "\n" + run_section(result, digest(body)))
    payload = {key: value for key, value in asdict(result).items() if key not in ("output", "files")}
    payload.update(digest=digest(body), config=asdict(config),
                   targets=[{"target": t, "met": ok, "figures": f} for t, ok, f in targets(result)])
    results = out / "results.json"
    write_atomic(results, json.dumps(payload, indent=1, ensure_ascii=False, default=str) + "\n")
    chart = out / "ndcg.png"
    os.replace(plot_chart(result, out / ".ndcg.partial.png"), chart)
    return {"report": report, "results": results, "chart": chart}


__all__ = ["METHODS", "METHOD_LABELS", "METRICS", "OPENMP_SETTINGS", "RUN_SECTION", "DemoResult", "crosslingual", "digest",
           "markdown_report", "plot_chart", "reproducible_report", "targets", "write_report"]
