"""Ranking metrics: hand-computed cases, the cross-check against trec_eval (pytrec_eval) and ranx on random runs,
and the shipped `evaluate` module."""

from __future__ import annotations

import math
import random

import pytest

from mgte_hf.evaluation import METRIC_PATH
from mgte_hf.evaluation.metrics import (
    evaluate_run,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    parse_metric,
    per_query_scores,
    rank,
    recall_at_k,
)


METRICS = ["ndcg@10", "recall@100", "mrr@10", "map@10", "ndcg@3", "recall@5"]


def random_case(seed: int, n_queries: int = 30, n_docs: int = 60) -> tuple[dict, dict]:
    """Random graded qrels (some judged non-relevant) and random runs with distinct scores."""
    rng = random.Random(seed)
    qrels, run = {}, {}
    for q in range(n_queries):
        judged = rng.sample(range(n_docs), rng.randint(1, 8))
        qrels[f"q{q}"] = {f"d{d}": rng.choice([0, 1, 1, 2, 3]) for d in judged}
        qrels[f"q{q}"][f"d{judged[0]}"] = rng.randint(1, 3)  # at least one relevant
        run[f"q{q}"] = {f"d{d}": rng.random() for d in rng.sample(range(n_docs), rng.randint(5, n_docs))}
    return qrels, run


def test_hand_computed_values():
    relevance = {"a": 1, "b": 2, "c": 0}
    ranking = ["x", "b", "a", "c"]
    assert mrr_at_k(ranking, relevance, 10) == pytest.approx(0.5)
    assert mrr_at_k(ranking, relevance, 1) == 0.0
    assert recall_at_k(ranking, relevance, 2) == pytest.approx(0.5)
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(ranking, relevance, 10) == pytest.approx(dcg / idcg)
    assert map_at_k(ranking, relevance, 10) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert map_at_k(ranking, relevance, 2) == pytest.approx((1 / 2) / 2)  # divided by all relevant, not by hits


def test_ties_break_by_doc_id_and_missing_queries_score_zero():
    assert rank({"b": 1.0, "a": 1.0, "c": 2.0}) == ["c", "a", "b"]
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"z": 0}}  # q3 has nothing relevant: skipped
    scores = per_query_scores({"q1": {"a": 1.0}}, qrels, ["mrr@10"])
    assert scores == {"q1": {"mrr@10": 1.0}, "q2": {"mrr@10": 0.0}}
    assert evaluate_run({"q1": {"a": 1.0}}, qrels, ["mrr@10"]) == {"mrr@10": 0.5}


def test_bad_metric_names_and_empty_qrels_are_refused():
    assert parse_metric("NDCG@10") == ("ndcg", 10)
    for bad in ("ndcg", "ndcg@0", "precision@5", "mrr@x"):
        with pytest.raises(ValueError, match="NAME@K"):
            parse_metric(bad)
    with pytest.raises(ValueError, match="no query with a relevant document"):
        evaluate_run({}, {"q": {"d": 0}})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_trec_eval_on_random_runs(seed):
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) is not installed")
    qrels, run = random_case(seed)
    ours = per_query_scores(run, qrels, METRICS)
    cut_run = {q: {d: s for d, s in docs.items() if d in rank(docs, 10)} for q, docs in run.items()}
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.3,10", "recall.5,100", "map_cut.10"}).evaluate(run)
    trec_mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut_run)  # MRR@10 = RR of the top 10
    for q, values in ours.items():
        assert values["ndcg@10"] == pytest.approx(trec[q]["ndcg_cut_10"], abs=1e-9)
        assert values["ndcg@3"] == pytest.approx(trec[q]["ndcg_cut_3"], abs=1e-9)
        assert values["recall@100"] == pytest.approx(trec[q]["recall_100"], abs=1e-9)
        assert values["recall@5"] == pytest.approx(trec[q]["recall_5"], abs=1e-9)
        assert values["map@10"] == pytest.approx(trec[q]["map_cut_10"], abs=1e-9)
        assert values["mrr@10"] == pytest.approx(trec_mrr[q]["recip_rank"], abs=1e-9)


@pytest.mark.slow  # ranx compiles its numba kernels on first use (~50 s on 2 cores)
def test_matches_ranx_on_random_runs():
    ranx = pytest.importorskip("ranx")
    qrels, run = random_case(3)
    expected = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), ["ndcg@10", "recall@100", "mrr@10", "map@10"])
    ours = evaluate_run(run, qrels, ["ndcg@10", "recall@100", "mrr@10", "map@10"])
    for metric, value in expected.items():
        assert ours[metric] == pytest.approx(float(value), abs=1e-9)


def test_evaluate_module_loads_offline_and_agrees(monkeypatch, tmp_path):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = evaluate.load(METRIC_PATH)
    qrels, run = random_case(4, n_queries=10)
    predictions = [rank(run[q]) for q in qrels]
    graded = [{"ids": list(rel), "grades": list(rel.values())} for rel in qrels.values()]
    result = metric.compute(predictions=predictions, references=graded, metrics=["ndcg@10", "map@10"])
    expected = evaluate_run(run, qrels, ["ndcg@10", "map@10"])
    assert result == pytest.approx(expected, abs=1e-9)
    binary = metric.compute(predictions=[["d2", "d1"], ["a", "b"]], references=[["d1"], ["b", "c"]],
                            metrics=["mrr@10", "recall@100"])
    assert binary == pytest.approx({"mrr@10": 0.5, "recall@100": 0.75})
