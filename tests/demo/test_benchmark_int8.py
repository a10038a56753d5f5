"""benchmarks/int8.py's quality run on a micro demo's output: the run's own sets and weight, three dtypes."""

from __future__ import annotations

import json

from benchmarks import int8


def test_demo_quality_on_a_demo_output(demo_run, tiny_cache):
    _, out = demo_run
    report = int8.demo_quality(out, cache=str(tiny_cache))
    run = json.loads((out / "results.json").read_text())
    assert report["sparse_weight"] == run["sparse_weight"]
    assert set(report["sets"]) == {spec.split(":")[0] for spec in run["config"]["eval_sets"]}
    for name, entry in report["sets"].items():
        fp32 = entry["ndcg@10"]
        assert set(fp32) == {"dense", "sparse", "hybrid"}
        for kind in fp32:
            assert set(fp32[kind]) == {"fp32", "bf16", "int8"}
            assert fp32[kind]["fp32"] == run["metrics"][name][kind]["ndcg@10"], "the demo's own evaluation"
        for dtype in ("bf16", "int8"):
            assert entry["agreement"][dtype]["min_cosine"] > 0.9
    assert "int8" in int8.format_demo_quality(report)
