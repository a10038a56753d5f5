"""The serve load test's helpers (benchmarks/serve_load.py) on a tiny model: real texts drawn from a cache, one load
level against a real server, the report's table and chart. The figures themselves come from running it."""

from __future__ import annotations

import json
import os

import pytest
from benchmarks import serve_load

from inference.folders import SPREAD, save_embedder
from mgte_hf.inference import MgteEmbedder
from serving.conftest import serve
from tiny import SENTENCES


def write_corpus(root, name: str, texts: list[str]) -> None:
    folder = root / "beir" / name
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"{name}-{i}", "title": "", "text": t}) + "\n"
                                                 for i, t in enumerate(texts)), encoding="utf-8")


def test_texts_are_half_gnome_half_debian_and_reproducible(tmp_path):
    for name in serve_load.GNOME_SETS:
        write_corpus(tmp_path, name, [f"gnome page {name} {i}" for i in range(5)])
    for name in serve_load.DEBIAN_SETS:
        write_corpus(tmp_path, name, [f"debian package {name} {i}" for i in range(5)])
    texts = serve_load.sample_texts(10, seed=1, cache=tmp_path)
    assert len(texts) == len(set(texts)) == 10
    assert sum(t.startswith("gnome") for t in texts) == 5
    assert texts == serve_load.sample_texts(10, seed=1, cache=tmp_path) != serve_load.sample_texts(10, 2, tmp_path)
    with pytest.raises(FileNotFoundError, match="mgte-hf data build --only gnome,ddtp"):
        serve_load.sample_texts(4, cache=tmp_path / "empty")


def test_latency_percentiles_are_nearest_rank():
    summary = serve_load.latency_summary([i / 1000 for i in range(1, 101)])  # 1 … 100 ms
    assert summary["p50_ms"] == pytest.approx(50) and summary["p99_ms"] == pytest.approx(99)
    assert serve_load.latency_summary([0.2])["p99_ms"] == pytest.approx(200)


def test_a_load_level_against_a_real_server(tmp_path, tiny_tokenizer):
    embedder = MgteEmbedder.from_pretrained(save_embedder(tmp_path / "model", tiny_tokenizer, **SPREAD), device="cpu")
    lengths = [len(ids) for ids in tiny_tokenizer(SENTENCES)["input_ids"]]
    with serve(embedder, max_wait_ms=20) as running:
        level = serve_load.run_level(running.url, SENTENCES, lengths, clients=8, requests=40, pid=os.getpid())
    assert level["requests"] == 40 and level["texts_per_s"] > 0
    assert level["tokens_per_s"] == pytest.approx(level["texts_per_s"] * sum(lengths * 2) / 40)
    assert 1 < level["mean_batch_size"] <= 8, "eight clients share batches"
    assert level["p50_ms"] <= level["p99_ms"] and level["peak_rss_mib"] > 0


def test_report_table_and_chart(tmp_path):
    level = {"texts_per_s": 10.0, "tokens_per_s": 1500.0, "p50_ms": 90.0, "p99_ms": 200.0, "mean_batch_size": 3.5,
             "peak_rss_mib": 1800.0}
    report = {"layers": 12, "threads": 2, "load_before": (1.0, 1.0, 1.0), "load_after": (1.2, 1.0, 1.0),
              "levels": [{**level, "clients": c} for c in serve_load.CLIENTS],
              "batch1": {**level, "clients": 32, "texts_per_s": 2.0, "mean_batch_size": 1.0},
              "packed": {"texts_per_s": 11.0, "tokens_per_s": 1650.0}}
    table = serve_load.markdown_table(report).splitlines()
    assert len(table) == 2 + len(serve_load.CLIENTS) + 2
    assert table[2] == "| 1 | 10.00 | 1500 | 90 | 200 | 3.5 | 1800 |"
    assert table[-2].startswith("| 32 (batch-1) | 2.00 |") and table[-1].startswith("| packed forward alone | 11.00")
    serve_load.chart(report, tmp_path / "load.png")
    assert (tmp_path / "load.png").stat().st_size > 10_000
