"""What a retrieval evaluation run produces: per-system metrics, wall time and peak memory, as JSON, Markdown and a
PNG chart, plus the measuring helper (`measure`) that takes the time and memory figures."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..outputs import check_output, write_atomic


@dataclass
class SystemResult:
    """One retrieval system's outcome.

    Attributes:
        name: unique label, e.g. `"dense_d768_L512"`.
        family: `bm25`, `dense`, `sparse`, `hybrid` or `rerank`.
        params: its settings (dimension, max_length, weights, …).
        metrics: metric → mean over the judged queries.
        seconds: wall time of its search (encoding is counted in the report's stages).
        peak_rss_mb: peak resident memory of the process during its search (MiB).
        peak_gpu_mb: peak CUDA memory allocated during its search (MiB), when on a GPU.
    """

    name: str
    family: str
    params: dict
    metrics: dict[str, float]
    seconds: float
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None


@dataclass
class StageResult:
    """A shared step (encoding the corpus at one max length, encoding the queries): time and memory."""

    name: str
    seconds: float
    texts: int
    peak_rss_mb: float | None = None
    peak_gpu_mb: float | None = None


@dataclass
class RetrievalReport:
    """A whole run: the dataset, the model, every system and stage, and the settings."""

    dataset: str
    dataset_stats: dict
    metrics: list[str]
    systems: list[SystemResult] = field(default_factory=list)
    stages: list[StageResult] = field(default_factory=list)
    model: str | None = None
    reranker: str | None = None
    config: dict = field(default_factory=dict)
    environment: dict = field(default_factory=lambda: environment())
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S %Z"))

    def flat_metrics(self) -> dict[str, float]:
        """`{"<system>_<metric>": value}` for every system and metric (the evaluator's return value)."""
        return {f"{s.name}_{m}": v for s in self.systems for m, v in s.metrics.items()}

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        """A Markdown report: dataset line, one table row per system, and the encoding stages."""
        lines = [f"# Retrieval evaluation: {self.dataset}", "",
                 f"- dataset: {_describe_stats(self.dataset_stats)}",
                 f"- model: {self.model or '-'}" + (f"; reranker: {self.reranker}" if self.reranker else ""),
                 f"- created {self.created} on {self.environment.get('device')} "
                 f"({self.environment.get('torch_threads')} torch threads, {self.environment.get('cpus')} CPUs)", "",
                 "| system | " + " | ".join(self.metrics) + " | search s | peak RSS MiB | peak GPU MiB |",
                 "|---" * (len(self.metrics) + 4) + "|"]
        for s in self.systems:
            values = " | ".join(f"{s.metrics[m]:.3f}" for m in self.metrics)
            lines.append(f"| {s.name} | {values} | {s.seconds:.1f} | {_mib(s.peak_rss_mb)} | {_mib(s.peak_gpu_mb)} |")
        if self.stages:
            lines += ["", "| stage | texts | seconds | peak RSS MiB | peak GPU MiB |", "|---|---|---|---|---|"]
            lines += [f"| {st.name} | {st.texts} | {st.seconds:.1f} | {_mib(st.peak_rss_mb)} | "
                      f"{_mib(st.peak_gpu_mb)} |" for st in self.stages]
        lines += ["", "Search time excludes encoding (see the stages); memory is the process peak during each "
                  "step.", ""]
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> Path:
        """A horizontal grouped bar chart (one group per system, one bar per metric) as PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [s.name for s in self.systems]
        height = 0.8 / max(len(self.metrics), 1)
        fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(names) * max(1, len(self.metrics) / 2)))
        for j, metric in enumerate(self.metrics):
            ys = [i + (j - (len(self.metrics) - 1) / 2) * height for i in range(len(names))]
            values = [s.metrics[metric] for s in self.systems]
            bars = ax.barh(ys, values, height=height, label=metric)
            ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.08)
        ax.set_title(f"{self.dataset} ({self.dataset_stats.get('queries', '?')} queries, "
                     f"{self.dataset_stats.get('documents', '?')} documents)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=len(self.metrics), fontsize=8, frameon=False)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

    def save(self, folder: str | os.PathLike, stem: str = "report", *, overwrite: bool = False) -> dict[str, Path]:
        """Write `<stem>.json`, `<stem>.md` and `<stem>.png` into `folder` (created); returns their paths.

        Existing files of that name are replaced only with `overwrite=True` (checked before anything is written);
        each file is written aside and renamed into place.
        """
        folder = Path(folder)
        paths = {"json": folder / f"{stem}.json", "markdown": folder / f"{stem}.md", "chart": folder / f"{stem}.png"}
        for path in paths.values():
            check_output(path, overwrite=overwrite, what="report file")
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(paths["json"], json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        write_atomic(paths["markdown"], self.to_markdown())
        partial = self.plot(folder / f".{stem}.partial.png")
        os.replace(partial, paths["chart"])
        return paths


def _describe_stats(stats: dict) -> str:
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in stats.items())


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def environment() -> dict:
    """Where the run happened: device, threads, versions."""
    return {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-memory high-water mark of this process (Linux); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB (process-lifetime peak)


@contextmanager
def measure(device: torch.device | None = None) -> Iterator[dict]:
    """Time a block and take its peak memory: yields a dict that gets `seconds`, `peak_rss_mb`, `peak_gpu_mb`."""
    cuda = device is not None and device.type == "cuda"
    _reset_peak_rss()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    out: dict = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        if cuda:
            torch.cuda.synchronize(device)
        out["seconds"] = round(time.perf_counter() - start, 3)
        out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else None


__all__ = ["RetrievalReport", "StageResult", "SystemResult", "environment", "measure"]
