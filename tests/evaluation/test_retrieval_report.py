"""The report: flat metrics, Markdown, JSON and PNG files, and the time/memory measurement."""

from __future__ import annotations

import json
import mmap

from mgte_hf.evaluation.report import RetrievalReport, StageResult, SystemResult, measure


def report() -> RetrievalReport:
    return RetrievalReport(
        "gnome-de-en", {"documents": 249, "queries": 248}, ["ndcg@10", "recall@100"],
        systems=[SystemResult("bm25", "bm25", {"k1": 0.9}, {"ndcg@10": 0.146, "recall@100": 0.532}, 0.8, 310.0),
                 SystemResult("dense_d768", "dense", {"dimension": 768}, {"ndcg@10": 0.61, "recall@100": 0.97}, 0.2,
                              900.5, 120.0)],
        stages=[StageResult("encode corpus L512", 12.5, 249, 880.0)], model="gte-multilingual-base")


def test_flat_metrics_and_markdown():
    r = report()
    assert r.flat_metrics() == {"bm25_ndcg@10": 0.146, "bm25_recall@100": 0.532, "dense_d768_ndcg@10": 0.61,
                                "dense_d768_recall@100": 0.97}
    md = r.to_markdown()
    assert md.startswith("# Retrieval evaluation: gnome-de-en")
    assert "| system | ndcg@10 | recall@100 | search s | peak RSS MiB | peak GPU MiB |" in md
    assert "| bm25 | 0.146 | 0.532 | 0.8 | 310 | - |" in md
    assert "| dense_d768 | 0.610 | 0.970 | 0.2 | 900 | 120 |" in md
    assert "| encode corpus L512 | 249 | 12.5 | 880 | - |" in md
    assert "249 documents, 248 queries" in md and "model: gte-multilingual-base" in md


def test_save_writes_json_markdown_and_png(tmp_path):
    paths = report().save(tmp_path / "out", stem="run1")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"run1.json", "run1.md", "run1.png"}
    data = json.loads(paths["json"].read_text())
    assert data["systems"][1]["metrics"]["ndcg@10"] == 0.61 and data["environment"]["cpus"] >= 1
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["chart"].stat().st_size > 5000


def test_measure_reports_time_and_peak_memory():
    with measure() as small:
        pass
    with measure() as big:
        block = mmap.mmap(-1, 64 * 2**20)  # fresh pages (a malloc could reuse resident memory)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        block.close()
    assert big["seconds"] >= 0 and big["peak_gpu_mb"] is None
    assert big["peak_rss_mb"] >= small["peak_rss_mb"] + 40  # the high-water mark is reset per block (Linux)
