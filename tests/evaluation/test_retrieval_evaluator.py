"""`RetrievalEvaluator` end to end with a tiny model, tokenizer and reranker on the committed tiny Bible set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import tiny
from mgte_hf import MgteForEmbedding, MgteForSequenceClassification
from mgte_hf.evaluation import load_beir
from mgte_hf.evaluation.retrieval import RetrievalEvaluator, _at_dimension
from mgte_hf.inference import MgteEmbedder, MgteReranker


TINY = Path(__file__).resolve().parents[1] / "data" / "beir_tiny"


@pytest.fixture(scope="module")
def dataset():
    return load_beir(TINY / "bible-en")


@pytest.fixture(scope="module")
def embedder(tiny_tokenizer):
    return MgteEmbedder(tiny.make_model(MgteForEmbedding), tiny_tokenizer)


@pytest.fixture(scope="module")
def reranker(tiny_tokenizer):
    return MgteReranker(tiny.make_model(MgteForSequenceClassification, num_labels=1), tiny_tokenizer, max_length=64)


@pytest.fixture(scope="module")
def report(dataset, embedder, reranker, tiny_tokenizer):
    evaluator = RetrievalEvaluator(
        dataset, systems=["bm25", "dense", "sparse", "hybrid", "rerank"], dims=[8, 16], max_lengths=[16, 48],
        hybrid_weights=[(1.0, 0.1), (1.0, 0.5)], reranker=reranker, rerank_top_k=3, tokenizer=tiny_tokenizer,
        max_queries=8, metrics=["ndcg@10", "recall@100", "mrr@10"], show_progress_bar=False)
    return evaluator.run(embedder)


def test_every_system_runs_with_metrics_time_and_memory(report):
    assert [s.name for s in report.systems] == [
        "bm25", "dense_d8_L16", "dense_d16_L16", "sparse_L16", "hybrid_1-0.1_L16", "hybrid_1-0.5_L16",
        "dense_d8_L48", "dense_d16_L48", "sparse_L48", "hybrid_1-0.1_L48", "hybrid_1-0.5_L48", "rerank_L48"]
    assert report.dataset_stats["queries"] == 8 and report.reranker == "MgteForSequenceClassification"
    for system in report.systems:
        assert set(system.metrics) == {"ndcg@10", "recall@100", "mrr@10"}
        assert all(0.0 <= v <= 1.0 for v in system.metrics.values())
        assert system.seconds >= 0 and system.peak_rss_mb > 0
    assert [s.name for s in report.stages] == ["encode queries L48", "encode corpus L16", "encode corpus L48"]
    by_name = {s.name: s for s in report.systems}
    assert by_name["bm25"].metrics["recall@100"] == 1.0  # 12 documents: everything is retrieved
    assert by_name["rerank_L48"].params["rerank_top_k"] == 3
    # reranking reorders the same top-100 candidates: the recall of the hybrid it reranks is kept
    assert by_name["rerank_L48"].metrics["recall@100"] == by_name["hybrid_1-0.1_L48"].metrics["recall@100"]


def test_matryoshka_view_equals_the_model_at_that_dimension(embedder, dataset):
    texts = dataset.doc_texts()[:4]
    full = embedder.encode(texts, dimension=16, max_length=48, convert_to="torch")
    direct = embedder.encode(texts, dimension=8, max_length=48, convert_to="torch")
    torch.testing.assert_close(_at_dimension(full, 8).dense, direct.dense, atol=1e-6, rtol=1e-5)


def test_longer_max_length_reencodes_only_long_documents(embedder, dataset):
    evaluator = RetrievalEvaluator(dataset, systems=["dense"], show_progress_bar=False)
    texts = dataset.doc_texts()[:6]
    lengths = [len(embedder.tokenizer(t)["input_ids"]) for t in texts]
    cut = sorted(lengths)[len(lengths) // 2]
    short = embedder.encode(texts, max_length=cut, convert_to="torch")
    redo = [i for i, n in enumerate(lengths) if n > cut]
    assert 0 < len(redo) < len(texts)
    merged = evaluator._encode_docs(embedder, texts, redo, max(lengths), 32, short)
    fresh = embedder.encode(texts, max_length=max(lengths), convert_to="torch")
    torch.testing.assert_close(torch.as_tensor(merged.dense), fresh.dense, atol=1e-5, rtol=1e-4)
    assert [sorted(d) for d in merged.sparse] == [sorted(d) for d in fresh.sparse]


def test_as_training_evaluator(dataset, tiny_tokenizer, tmp_path):
    model = tiny.make_model(MgteForEmbedding).train()
    evaluator = RetrievalEvaluator(dataset, systems=["dense", "hybrid"], dims=[8], tokenizer=tiny_tokenizer,
                                   max_queries=5, show_progress_bar=False)
    assert evaluator.primary_metric == "dense_d8_ndcg@10" and evaluator.greater_is_better
    scores = evaluator(model, output_path=tmp_path, epoch=1, steps=20)
    assert model.training  # restored
    assert set(scores) == {"dense_d8_ndcg@10", "dense_d8_recall@100", "dense_d8_mrr@10", "hybrid_ndcg@10",
                           "hybrid_recall@100", "hybrid_mrr@10"}
    assert evaluator.primary_metric in scores
    assert {p.name for p in tmp_path.iterdir()} == {f"retrieval-bible-en-e1-s20.{x}" for x in ("json", "md", "png")}
    assert evaluator.get_config_dict()["queries"] == 5


def test_bad_settings_are_refused(dataset, embedder):
    with pytest.raises(ValueError, match="unknown or no retrieval systems"):
        RetrievalEvaluator(dataset, systems=["dense", "colbert"])
    with pytest.raises(ValueError, match="top_k=10 is below the deepest metric cut-off"):
        RetrievalEvaluator(dataset, top_k=10)
    with pytest.raises(ValueError, match="max_lengths must be a positive integer"):
        RetrievalEvaluator(dataset, max_lengths=[0])
    with pytest.raises(ValueError, match="need a model"):
        RetrievalEvaluator(dataset, systems=["dense"]).run()
    with pytest.raises(ValueError, match="rerank system needs a reranker"):
        RetrievalEvaluator(dataset, systems=["rerank"]).run(embedder)
    with pytest.raises(ValueError, match="dimension=12 is not allowed"):
        RetrievalEvaluator(dataset, systems=["dense"], dims=[12], show_progress_bar=False).run(embedder)
    with pytest.raises(TypeError, match="an MgteEmbedder, an MgteReranker or their models"):
        RetrievalEvaluator(dataset, systems=["dense"])(torch.nn.Linear(2, 2))


def test_rerank_reorders_the_hybrid_head_and_keeps_its_tail(dataset, embedder, reranker):
    from mgte_hf.evaluation.retrieval import _index

    evaluator = RetrievalEvaluator(dataset, systems=["rerank"], reranker=reranker, rerank_top_k=4, top_k=100,
                                   show_progress_bar=False)
    queries = list(dataset.queries.values())[:3]
    docs = embedder.encode(dataset.doc_texts(), dimension=16, max_length=48, convert_to="torch")
    q = embedder.encode(queries, dimension=16, max_length=48, convert_to="torch")
    index = _index(dataset.doc_ids(), dataset.doc_texts(), docs, 16)
    weights = {"dense_weight": 1.0, "sparse_weight": 0.1}
    hybrid = index.search(queries, top_k=100, mode="hybrid", query_embeddings=q, **weights)
    (reranked,) = evaluator._rerank(index, q, queries, reranker, weights)  # one weight: the reranker's own
    for query, first, final in zip(queries, hybrid, reranked):
        assert len(final) == len(first) == 12
        assert {h.id for h in final[:4]} == {h.id for h in first[:4]}
        assert [h.id for h in final[4:]] == [h.id for h in first[4:]]
        scores = reranker.compute_score([(query, h.document) for h in final[:4]])
        assert list(scores) == sorted(scores, reverse=True)


def test_several_interpolation_weights_from_one_scoring_pass(dataset, embedder, reranker, monkeypatch):
    """`rerank_first_stage_weights`: one `rerank_a<α>` system per weight, the pairs scored once; α = 0 is the
    reranker alone, α = 1 keeps the hybrid's order, and any α equals an evaluator run with a reranker of that α."""
    settings = dict(rerank_top_k=5, max_lengths=[48], hybrid_weights=[(1.0, 0.1)], show_progress_bar=False)
    calls = []
    score = reranker.compute_score
    monkeypatch.setattr(reranker, "compute_score", lambda *a, **k: calls.append(len(a[0])) or score(*a, **k))
    report = RetrievalEvaluator(dataset, systems=["hybrid", "rerank"], rerank_first_stage_weights=[0.0, 0.4, 1.0],
                                **settings).run(embedder, reranker)
    assert len(calls) == 1 and calls[0] == 5 * len(dataset.queries)  # every query's head, once
    by_name = {s.name: s for s in report.systems}
    assert list(by_name) == ["hybrid", "rerank_a0", "rerank_a0.4", "rerank_a1"]
    assert [by_name[f"rerank_a{w}"].params["first_stage_weight"] for w in ("0", "0.4", "1")] == [0.0, 0.4, 1.0]
    assert by_name["rerank_a1"].metrics == by_name["hybrid"].metrics
    monkeypatch.undo()
    for weight in (0.0, 0.4):
        alone = MgteReranker(reranker.model, reranker.tokenizer, first_stage_weight=weight, max_length=64)
        single = RetrievalEvaluator(dataset, systems=["rerank"], **settings).run(embedder, alone)
        assert single.systems[0].name == "rerank" and single.systems[0].params["first_stage_weight"] == weight
        assert single.systems[0].metrics == by_name[f"rerank_a{weight:g}"].metrics
    evaluator = RetrievalEvaluator(dataset, systems=["rerank"], rerank_first_stage_weights=[0.4, 1.0], **settings)
    assert evaluator.primary_metric == "rerank_a0.4_ndcg@10"
    one = RetrievalEvaluator(dataset, systems=["rerank"], rerank_first_stage_weights=[0.4], **settings)
    assert [s.name for s in one.run(embedder, reranker).systems] == ["rerank_a0.4"]  # a weight asked for is named
    for bad in ([], [0.5, 0.5], [1.5], [True]):
        with pytest.raises(ValueError, match="first_stage_weight|distinct weights"):
            RetrievalEvaluator(dataset, systems=["rerank"], rerank_first_stage_weights=bad)


def test_a_reranker_alone_reranks_the_bm25_head(dataset, reranker, tiny_tokenizer, tmp_path):
    """`rerank_first_stage="bm25"`: no embedder; the BM25 top `rerank_top_k` reordered, then the BM25 order."""
    from mgte_hf.evaluation.bm25 import bm25_search

    evaluator = RetrievalEvaluator(dataset, systems=["bm25", "rerank"], rerank_first_stage="bm25", rerank_top_k=4,
                                   max_lengths=[64], tokenizer=tiny_tokenizer, max_queries=4, show_progress_bar=False)
    report = evaluator.run(reranker=reranker)
    assert [s.name for s in report.systems] == ["bm25", "rerank"] and report.model is None
    assert report.systems[1].params == {"first_stage": "bm25", "max_length": 64, "rerank_top_k": 4,
                                        "first_stage_weight": 0.0}
    # the same run by hand: BM25 candidates, the first 4 sorted by the reranker's logits
    queries = list(evaluator.dataset.queries.values())
    indices, _ = bm25_search(dataset.doc_texts(), queries, tiny_tokenizer, top_k=100)
    texts, ids = dataset.doc_texts(), dataset.doc_ids()
    by_hand = {}
    for qid, query, rows in zip(evaluator.dataset.queries, queries, indices.tolist()):
        logits = reranker.compute_score([(query, texts[j]) for j in rows[:4]]).tolist()
        head = [j for _, j in sorted(zip(logits, rows[:4]), key=lambda p: (-p[0], p[1]))]
        order = head + rows[4:]
        by_hand[qid] = {ids[j]: float(len(order) - r) for r, j in enumerate(order)}
    from mgte_hf.evaluation import evaluate_run

    assert report.systems[1].metrics == evaluate_run(by_hand, evaluator.dataset.qrels, evaluator.metrics)
    # as a training evaluator, a bare (or wrapped) reranker model is evaluated the same way, at the evaluator's length
    model = reranker.model.train()
    scores = evaluator(model)
    assert model.training and scores["rerank_ndcg@10"] == report.systems[1].metrics["ndcg@10"]
    with pytest.raises(ValueError, match=r"the systems \['dense'\] need a model"):
        RetrievalEvaluator(dataset, systems=["dense", "rerank"], rerank_first_stage="bm25", tokenizer=tiny_tokenizer)(model)
    with pytest.raises(ValueError, match="rerank_first_stage must be one of"):
        RetrievalEvaluator(dataset, rerank_first_stage="dense")
