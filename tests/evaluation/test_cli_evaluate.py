"""`mgte-hf evaluate` on the committed tiny set with a tiny checkpoint saved to disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tiny
from mgte_hf import MgteForEmbedding, MgteForSequenceClassification
from mgte_hf.cli import main


TINY = Path(__file__).resolve().parents[1] / "data" / "beir_tiny"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer):
    folder = tmp_path_factory.mktemp("tiny-embedder")
    tiny.make_model(MgteForEmbedding).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_evaluate_writes_report_and_chart(model_dir, tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["evaluate", "--model", str(model_dir), "--dataset", str(TINY / "bible-es-en"), "--dims", "8,16",
               "--max-lengths", "16,32", "--hybrid-weights", "1:0.1,1:0.3", "--max-queries", "6", "--device", "cpu",
               "--output", str(out), "--quiet"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "# Retrieval evaluation: bible-es-en" in stdout and "| hybrid_1-0.3_L32 |" in stdout
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "report.png"}
    data = json.loads((out / "report.json").read_text())
    assert [s["family"] for s in data["systems"]].count("dense") == 4
    assert data["config"]["max_lengths"] == [16, 32] and data["dataset_stats"]["queries"] == 6


def test_rerank_weights_give_one_system_each(model_dir, tmp_path, capsys, tiny_tokenizer):
    reranker_dir = tmp_path / "reranker"
    tiny.make_model(MgteForSequenceClassification, num_labels=1).save_pretrained(reranker_dir)
    tiny_tokenizer.save_pretrained(reranker_dir)
    out = tmp_path / "report"
    rc = main(["evaluate", "--model", str(model_dir), "--dataset", str(TINY / "bible-es-en"), "--reranker",
               str(reranker_dir), "--rerank-top-k", "4", "--rerank-weights", "0,0.5,1", "--max-lengths", "32",
               "--device", "cpu", "--output", str(out), "--quiet"])
    assert rc == 0
    systems = {s["name"]: s for s in json.loads((out / "report.json").read_text())["systems"]}
    assert [n for n in systems if n.startswith("rerank")] == ["rerank_a0", "rerank_a0.5", "rerank_a1"]
    assert systems["rerank_a1"]["metrics"] == systems["hybrid"]["metrics"]  # α = 1: the hybrid's own order
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model_dir), "--dataset", str(TINY / "bible-es-en"), "--reranker",
                 str(reranker_dir), "--rerank-weights", "0,high", "--output", str(tmp_path / "bad")]) == 2
    assert "--rerank-weights takes comma-separated numbers" in capsys.readouterr().err


def test_bm25_alone_needs_no_model(tmp_path, capsys, xlmr_tokenizer_json):
    assert main(["evaluate", "--dataset", str(TINY / "bible-en"), "--output", str(tmp_path), "--quiet"]) == 0
    assert "| bm25 | 1.000 | 1.000 | 1.000 |" in capsys.readouterr().out


def test_user_errors(model_dir, tmp_path, capsys):
    args = ["evaluate", "--dataset", str(TINY / "bible-en"), "--output", str(tmp_path)]
    assert main([*args, "--systems", "dense"]) == 2
    assert "need --model DIR" in capsys.readouterr().err
    assert main([*args, "--model", str(model_dir), "--systems", "rerank"]) == 2
    assert "needs --reranker DIR" in capsys.readouterr().err
    assert main([*args, "--model", str(model_dir), "--hybrid-weights", "1.0"]) == 2
    assert "DENSE:SPARSE pairs" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", "no-such-set", "--cache", str(tmp_path), "--output", str(tmp_path)]) == 2
    assert "no BEIR folder 'no-such-set'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
