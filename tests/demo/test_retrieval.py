"""The demo's evaluation goes through `RetrievalEvaluator`: weights chosen on the dev pairs, and the reranker judged
on the hybrid's own queries and candidates."""

from __future__ import annotations

import pytest

from demo.micro import micro_config
from inference.folders import SPREAD, save_embedder, save_reranker
from mgte_hf.demo.config import DemoConfig
from mgte_hf.demo.data import pairs_dataset
from mgte_hf.demo.retrieval import (
    HYBRID_SPARSE_WEIGHTS,
    RERANK_FIRST_STAGE_WEIGHTS,
    best_weight,
    choose_rerank_weight,
    choose_sparse_weight,
    embedder_of,
    evaluate,
    reranked_metrics,
    reranker_of,
)
from mgte_hf.inference import MgteReranker
from tiny import SENTENCES


CONFIG = micro_config(rerank_depth=4, rerank_queries=6)
DEV = pairs_dataset([{"query": SENTENCES[i], "positive": SENTENCES[i + 1]} for i in range(0, len(SENTENCES) - 1, 2)], "dev")


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("demo-retrieval")
    return (save_embedder(root / "embedder", tiny_tokenizer, **SPREAD),
            save_reranker(root / "reranker", tiny_tokenizer, **SPREAD))


@pytest.fixture(scope="module")
def embedder(folders, tiny_tokenizer):
    return embedder_of(folders[0], tiny_tokenizer, CONFIG.eval_max_length)


def test_best_weight_prefers_the_smallest_of_equals():
    assert best_weight({0.1: 0.5, 1.0: 0.7, 3.0: 0.7}) == 1.0
    assert best_weight({0.0: 0.4, 0.5: 0.4}) == 0.0


def test_sparse_weight_is_the_best_single_weight_run(embedder, tiny_tokenizer):
    weight, scores = choose_sparse_weight(embedder, DEV, CONFIG, tiny_tokenizer)
    assert list(scores) == list(HYBRID_SPARSE_WEIGHTS) and weight == best_weight(scores)
    for w in (HYBRID_SPARSE_WEIGHTS[0], weight):
        alone = evaluate(DEV, CONFIG, tiny_tokenizer, ["hybrid"], embedder, hybrid_weights=[(1.0, w)])
        assert alone["hybrid"]["ndcg@10"] == pytest.approx(scores[w], abs=1e-12)


def test_the_reranker_is_judged_on_the_hybrid_candidates(folders, embedder, tiny_tokenizer):
    found = reranked_metrics(DEV, embedder, folders[1], 0.3, 1.0, CONFIG, tiny_tokenizer)
    # all of the first-stage weight: the interpolation reorders nothing, so the same queries and candidates give
    # the hybrid's figures exactly; reranking only permutes the top, so Recall@100 never moves
    assert found["interpolated"] == found["hybrid"]
    assert found["rerank"]["recall@100"] == found["hybrid"]["recall@100"]
    alone = reranked_metrics(DEV, embedder, folders[1], 0.3, 0.0, CONFIG, tiny_tokenizer)
    assert alone["interpolated"] == alone["rerank"] == found["rerank"]
    assert found["rerank"] != found["hybrid"]  # the reranker does reorder (else this test could not fail)


def test_rerank_weight_is_chosen_on_the_dev_pairs(folders, embedder, tiny_tokenizer):
    weight, scores = choose_rerank_weight(embedder, folders[1], DEV, 0.3, CONFIG, tiny_tokenizer)
    assert list(scores) == list(RERANK_FIRST_STAGE_WEIGHTS) and weight == best_weight(scores)
    reranker = reranker_of(folders[1], tiny_tokenizer, CONFIG)
    assert reranker.first_stage_weight == 0.0 and reranker.max_length == CONFIG.reranker_length
    for w in (weight, 0.0, 1.0):  # one pass for every weight equals a reranker of each weight on its own
        blend = MgteReranker(reranker.model, tiny_tokenizer, first_stage_weight=w, max_length=CONFIG.reranker_length)
        alone = evaluate(DEV, CONFIG, tiny_tokenizer, ["rerank"], embedder, blend, rerank_top_k=CONFIG.rerank_depth,
                         hybrid_weights=[(1.0, 0.3)])
        assert alone["rerank"]["ndcg@10"] == scores[w]


def test_the_reranker_sees_every_query_unless_told_to_sample(folders, embedder, tiny_tokenizer):
    assert DemoConfig().rerank_queries is None  # the reranking table has the queries of the other tables
    config = micro_config(rerank_depth=4, rerank_queries=None)
    found = reranked_metrics(DEV, embedder, folders[1], 0.3, 0.5, config, tiny_tokenizer)
    full = evaluate(DEV, config, tiny_tokenizer, ["hybrid"], embedder, hybrid_weights=[(1.0, 0.3)])
    assert found["hybrid"] == full["hybrid"]
    sampled = reranked_metrics(DEV, embedder, folders[1], 0.3, 0.5, CONFIG, tiny_tokenizer)
    assert sampled["hybrid"] != full["hybrid"]  # 6 of the queries: a different mean (else this test could not fail)
