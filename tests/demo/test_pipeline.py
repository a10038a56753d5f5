"""The demo end to end on the tiny cache (real XLM-R tokenizer, real trainers, real sentence-transformers in a fresh
process): every stage runs all its steps, every figure comes from the evaluator, two runs write the same report
(one of them beside a CPU-bound process), and (slow) the real `--quick` run on the real data cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from demo.micro import micro_config, run_micro
from mgte_hf.cli import main as cli_main
from mgte_hf.demo.data import load_eval_sets
from mgte_hf.demo.pipeline import torch_threads
from mgte_hf.demo.report import OPENMP_SETTINGS, RUN_SECTION
from mgte_hf.demo.retrieval import embedder_of, evaluate
from mgte_hf.evaluation import RetrievalEvaluator
from mgte_hf.tokenizer import load_vocab_mapping, xlmr_tokenizer_dir


REPO = Path(__file__).resolve().parents[2]


def test_every_stage_runs_all_its_steps(demo_run):
    result, out = demo_run
    config = micro_config()
    assert result.output == out  # resolved: every path of the result works from any working directory
    assert {name: s["steps"] for name, s in result.stages.items()} == {
        "mlm": config.mlm.steps, "contrastive": config.contrastive.steps, "trm": config.trm.steps,
        "reranker": config.reranker.steps}
    for name in ("gnome-de-en", "bible-es-en"):
        assert set(result.metrics[name]) == {"bm25", "dense_mlm", "dense_contrastive", "dense", "sparse", "hybrid"}
        assert set(result.rerank_metrics[name]) == {"hybrid", "rerank", "interpolated"}
    assert result.query_counts == {"gnome-de-en": 6, "bible-es-en": 5}
    assert result.rerank_counts == {"gnome-de-en": 4, "bible-es-en": 4}
    for key in ("prepare", "mlm", "eval_mlm", "contrastive", "mine_trm", "trm", "reranker", "ablations", "package",
                "verify"):
        assert key in result.timings and key in result.cpu_seconds
    assert result.timings["total"] >= sum(v for k, v in result.timings.items() if k != "total") - 1.0


def test_the_figures_are_the_evaluators(demo_run, tiny_cache):
    """The report's TRM and BM25 rows equal a direct `RetrievalEvaluator` run on the saved checkpoint."""
    result, out = demo_run
    config = micro_config()
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    dataset = load_eval_sets(tiny_cache, config)["gnome-de-en"]
    trm = embedder_of(out / "checkpoints" / "trm", tokenizer, config.eval_max_length)
    evaluator = RetrievalEvaluator(dataset, systems=["bm25", "dense", "sparse", "hybrid"], tokenizer=tokenizer,
                                   max_lengths=[config.eval_max_length], metrics=["ndcg@10", "recall@100"],
                                   hybrid_weights=[(1.0, result.sparse_weight)], show_progress_bar=False)
    direct = {s.name: s.metrics for s in evaluator.run(trm).systems}
    for method in ("bm25", "dense", "sparse", "hybrid"):
        assert result.metrics["gnome-de-en"][method] == direct[method]
    assert result.sparse_weight in result.dev["hybrid"] and result.rerank_weight in result.dev["rerank"]
    assert evaluate(dataset, config, tokenizer, ["dense"], trm)["dense"] == direct["dense"]


def test_tokenizer_is_trimmed_and_the_model_sized_to_it(demo_run):
    result, out = demo_run
    assert result.vocab["xlmr"] == len(json.loads((xlmr_tokenizer_dir() / "tokenizer.json").read_text(
        encoding="utf-8"))["model"]["vocab"])  # read from the tokenizer, not written down
    assert result.vocab["trimmed"] < 2000 < result.vocab["xlmr"]
    assert result.vocab["model"] % 64 == 0 and result.vocab["model"] >= result.vocab["trimmed"]
    kept = load_vocab_mapping(out / "tokenizer")
    assert kept[:4] == [0, 1, 2, 3] and len(kept) == result.vocab["trimmed"]


def test_report_and_results(demo_run):
    result, out = demo_run
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| set | BM25 | dense (MLM only) | dense (+contrastive) | dense (+TRM) |" in report
    assert "| gnome-de-en (6 q) |" in report and "## Targets" in report and "## Ablations" in report
    assert "gnome-de-en: dense > BM25" in report and "bible-es-en: rerank, interpolated ≥ hybrid (4 queries)" in report
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["metrics"] == json.loads(json.dumps(result.metrics))
    assert saved["digest"] in report.split(RUN_SECTION)[1]


def test_hub_folders_reproduce_the_report_in_a_fresh_process(demo_run):
    result, _ = demo_run
    for key in ("hub_trm", "hub_reranker"):
        names = {p.name for p in result.files[key].iterdir()}
        assert {"config.json", "model.safetensors", "modeling_mgte.py", "README.md", "vocab_mapping.json",
                "tokenizer.json"} <= names
        assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    assert "nDCG@10" in (result.files["hub_trm"] / "README.md").read_text(encoding="utf-8")
    check = result.verification
    assert check["set"] == "gnome-de-en"  # the smaller corpus
    assert check["st_dense_ndcg@10"] == pytest.approx(check["report_dense_ndcg@10"], abs=1e-9)
    assert check["report_dense_ndcg@10"] == result.metrics["gnome-de-en"]["dense"]["ndcg@10"]


def test_two_runs_write_the_same_report_under_load(demo_run, tiny_cache, tmp_path):
    """The second run (no fresh-process check, to save its minute) shares the cores with a CPU-bound process; every
    section of its report but "This run" is the first run's."""
    first, _ = demo_run
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        out = tmp_path / "again"
        out.mkdir()
        second = run_micro(tiny_cache, out, ablations=True, verify=False)
    finally:
        busy.kill()
        busy.wait()
    one, two = (sections(r.files["report"].read_text(encoding="utf-8")) for r in (first, second))
    run_one, run_two = one.pop("This run"), two.pop("This run")
    assert one.pop("Fresh-process check") and run_one != run_two
    assert all(f"{name} " in run_one for name in OPENMP_SETTINGS)  # how threads waited: the speed, not the figures
    assert one == two and "Reranking" in one and "Ablations" in one


def sections(report: str) -> dict[str, str]:
    """`{title: text}` of a Markdown report's `## ` sections (the part before the first one under "")."""
    head, *parts = report.split("\n## ")
    return {"": head, **{part.split("\n", 1)[0]: part for part in parts}}


def test_threads_are_fixed_and_restored():
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ------------------------------------------------------------------------------------------------ the CLI
def test_cli_help_and_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["demo", "--help"])
    help_text = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--quick" in help_text and "--ablations" in help_text
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    assert cli_main(["demo", "--output", str(not_a_folder)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert cli_main(["demo", "--output", str(tmp_path / "out"), "--time-limit", "-1"]) == 2
    assert "--time-limit must be >= 0" in capsys.readouterr().err
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "report.md").write_text("an earlier run")
    assert cli_main(["demo", "--output", str(earlier)]) == 2
    assert "is not empty" in capsys.readouterr().err and (earlier / "report.md").read_text() == "an earlier run"


def test_an_earlier_run_is_replaced_only_with_overwrite(demo_run, tiny_cache):
    _, out = demo_run
    before = (out / "report.md").read_bytes()
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        run_micro(tiny_cache, out, verify=False)
    assert (out / "report.md").read_bytes() == before


def test_cli_time_limit_stops_the_run_with_its_message(tiny_cache, tmp_path, capsys, monkeypatch):
    import mgte_hf.demo as demo

    monkeypatch.setattr(demo.DemoConfig, "full", classmethod(lambda cls: micro_config()))
    code = cli_main(["demo", "--output", str(tmp_path / "out"), "--cache", str(tiny_cache), "--time-limit", "1e-7",
                     "--no-progress"])
    assert code == 2 and "stops rather than train less" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_on_the_real_data(tmp_path):
    """`mgte-hf demo --quick` end to end on the real cache (fetched and built when missing)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "mgte_hf", "demo", "--quick", "--no-progress", "--output",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert saved["verification"]["set"] and set(saved["metrics"]) == {"gnome-de-en", "bible-es-en"}
    assert "## Targets" in proc.stdout and saved["digest"] in proc.stdout
