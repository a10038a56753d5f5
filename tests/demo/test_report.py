"""The report: targets computed from the figures, the reproducible part and its digest, the files."""

from __future__ import annotations

import json
from pathlib import Path

from demo.micro import micro_config
from mgte_hf.demo.report import (
    RUN_SECTION,
    DemoResult,
    crosslingual,
    digest,
    markdown_report,
    reproducible_report,
    write_report,
)
from mgte_hf.demo.report import targets as targets_of


def _m(ndcg: float) -> dict[str, float]:
    return {"ndcg@10": ndcg, "recall@100": 1.0}


def result(tmp_path: Path, **overrides) -> DemoResult:
    base = dict(
        metrics={"gnome-de-en": {"bm25": _m(0.15), "dense_contrastive": _m(0.09), "dense": _m(0.10),
                                 "sparse": _m(0.13), "hybrid": _m(0.14)},
                 "bible-en": {"bm25": _m(0.99), "dense_contrastive": _m(0.20), "dense": _m(0.12), "sparse": _m(0.6),
                              "hybrid": _m(0.55)}},
        rerank_metrics={"gnome-de-en": {"hybrid": _m(0.14), "rerank": _m(0.16), "interpolated": _m(0.15)},
                        "bible-en": {"hybrid": _m(0.55), "rerank": _m(0.40), "interpolated": _m(0.56)}},
        stages={"mlm": {"steps": 2, "first_loss": 5.0, "last_loss": 4.0}}, vocab={"xlmr": 250002, "trimmed": 300,
                                                                                 "model": 320},
        sparse_weight=3.0, rerank_weight=0.5, dev={"hybrid": {1.0: 0.5, 3.0: 0.6}, "rerank": {0.0: 0.4, 0.5: 0.7}},
        query_counts={"gnome-de-en": 248, "bible-en": 200}, rerank_counts={"gnome-de-en": 50, "bible-en": 50},
        output=tmp_path, timings={"mlm": 12.5, "total": 20.0}, cpu_seconds={"mlm": 24.0, "total": 39.0},
        load={"start": [0.1, 0.2, 0.3], "end": [2.0, 1.0, 0.5]})
    base.update(overrides)
    return DemoResult(**base)


def test_targets_follow_the_figures(tmp_path):
    met = {what: ok for what, ok, _ in targets_of(result(tmp_path))}
    assert met == {
        "gnome-de-en: hybrid ≥ max(dense, sparse)": True,
        "gnome-de-en: dense after TRM ≥ after contrastive": True,
        "gnome-de-en: rerank ≥ hybrid (50 queries)": True,
        "gnome-de-en: rerank, interpolated ≥ hybrid (50 queries)": True,
        "gnome-de-en: dense > BM25": False,
        "bible-en: hybrid ≥ max(dense, sparse)": False,
        "bible-en: dense after TRM ≥ after contrastive": False,
        "bible-en: rerank ≥ hybrid (50 queries)": False,
        "bible-en: rerank, interpolated ≥ hybrid (50 queries)": True,
    }
    assert crosslingual("gnome-de-en") and crosslingual("bible-es-en") and not crosslingual("gnome-en")


def test_the_digest_covers_the_figures_and_not_the_run(tmp_path):
    config = micro_config()
    one = result(tmp_path)
    busier = result(tmp_path, timings={"mlm": 99.0, "total": 300.0}, load={"start": [8.0] * 3, "end": [7.0] * 3})
    assert reproducible_report(one, config) == reproducible_report(busier, config)
    assert markdown_report(one, config) != markdown_report(busier, config)
    changed = result(tmp_path, sparse_weight=10.0)
    assert digest(reproducible_report(changed, config)) != digest(reproducible_report(one, config))
    text = markdown_report(one, config)
    body, run = text.split(RUN_SECTION)
    assert digest(body.rstrip("\n") + "\n") in run and "12.5" in run and "12.5" not in body


def test_report_tables(tmp_path):
    text = reproducible_report(result(tmp_path), micro_config())
    assert "| set | BM25 | dense (+contrastive) | dense (+TRM) | sparse (TRM) | hybrid (TRM) |" in text
    assert "| gnome-de-en (248 q) | 0.150 / 1.000 | 0.090 / 1.000 | 0.100 / 1.000 |" in text
    assert "| bible-en | 0.550 / 1.000 | 0.400 / 1.000 | 0.560 / 1.000 |" in text
    assert "Hybrid = dense + 3 × sparse" in text and "0.5 × reranker + 0.5 × hybrid" in text
    assert "| mlm | 2 | 256 | 0.001 | 5.000 → 4.000 |" in text


def test_files_are_written(tmp_path):
    files = write_report(result(tmp_path), micro_config())
    saved = json.loads(files["results"].read_text(encoding="utf-8"))
    assert saved["metrics"]["bible-en"]["hybrid"]["ndcg@10"] == 0.55
    assert saved["digest"] in files["report"].read_text(encoding="utf-8")
    assert saved["config"]["hidden_size"] == 32 and saved["dev"]["rerank"] == {"0.0": 0.4, "0.5": 0.7}
    assert files["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
