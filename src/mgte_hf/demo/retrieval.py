"""The demo's retrieval figures, every one from `mgte_hf.evaluation.RetrievalEvaluator`: a set's systems for a
checkpoint, and the two weights chosen on the held-out dev pairs (the hybrid's sparse weight and the interpolated
reranker's first-stage weight)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from mgte_hf.evaluation import BeirDataset, RetrievalEvaluator
from mgte_hf.inference import MgteEmbedder, MgteReranker
from mgte_hf.modeling import MgteForEmbedding, MgteForSequenceClassification

from .config import DemoConfig
from .data import DemoData
from .report import METRICS, Metrics, Scores


HYBRID_SPARSE_WEIGHTS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # the hybrid's sparse weight (dense weight 1) grid
RERANK_FIRST_STAGE_WEIGHTS = (0.0, 0.5, 0.7, 0.8, 0.9, 1.0)  # the interpolated reranker's first-stage weight grid


def evaluate(dataset: BeirDataset, config: DemoConfig, tokenizer: PreTrainedTokenizerBase, systems: Sequence[str],
             embedder: MgteEmbedder | None = None, reranker: MgteReranker | None = None,
             **settings: Any) -> dict[str, Metrics]:
    """`{system name: metrics}` of `RetrievalEvaluator` on one set (documents cut at `config.eval_max_length`)."""
    settings = {"max_lengths": (config.eval_max_length,), **settings}
    evaluator = RetrievalEvaluator(dataset, systems=systems, tokenizer=tokenizer, metrics=METRICS, seed=config.seed,
                                   show_progress_bar=False, **settings)
    return {system.name: system.metrics for system in evaluator.run(embedder, reranker).systems}


def embedder_of(folder: Path, tokenizer: PreTrainedTokenizerBase, max_length: int) -> MgteEmbedder:
    """The encoder of a stage checkpoint as an embedder; the MLM checkpoint's head is left out (its dense row
    measures the encoder before any retrieval training)."""
    return MgteEmbedder(MgteForEmbedding.from_pretrained(str(folder)), tokenizer, max_length=max_length)


def best_weight(scores: Mapping[float, float]) -> float:
    """The weight with the highest score (the first of equals, i.e. the smallest weight)."""
    return max(scores, key=lambda w: (scores[w], -w))


def choose_sparse_weight(embedder: MgteEmbedder, dev: BeirDataset, config: DemoConfig,
                         tokenizer: PreTrainedTokenizerBase) -> tuple[float, dict[float, float]]:
    """The hybrid's sparse weight with the best nDCG@10 on the dev pairs, and the nDCG@10 of every candidate."""
    grid = [(1.0, w) for w in HYBRID_SPARSE_WEIGHTS]
    found = evaluate(dev, config, tokenizer, ["hybrid"], embedder, hybrid_weights=grid)
    scores = {w: found[f"hybrid_1-{w:g}"]["ndcg@10"] for _, w in grid}
    return best_weight(scores), scores


def choose_rerank_weight(embedder: MgteEmbedder, reranker_folder: Path, dev: BeirDataset, sparse_weight: float,
                         config: DemoConfig, tokenizer: PreTrainedTokenizerBase) -> tuple[float, dict[float, float]]:
    """The interpolated reranker's first-stage weight with the best nDCG@10 on the dev pairs (hybrid top
    `rerank_depth`, the pairs scored once for every candidate weight), and the nDCG@10 of every candidate."""
    found = evaluate(dev, config, tokenizer, ["rerank"], embedder, reranker_of(reranker_folder, tokenizer, config),
                     rerank_top_k=config.rerank_depth, hybrid_weights=[(1.0, sparse_weight)],
                     rerank_first_stage_weights=RERANK_FIRST_STAGE_WEIGHTS)
    scores = {w: found[f"rerank_a{w:g}"]["ndcg@10"] for w in RERANK_FIRST_STAGE_WEIGHTS}
    return best_weight(scores), scores


def reranker_of(folder: Path, tokenizer: PreTrainedTokenizerBase, config: DemoConfig) -> MgteReranker:
    model = MgteForSequenceClassification.from_pretrained(str(folder))
    return MgteReranker(model, tokenizer, max_length=config.reranker_length)


def add_dense(metrics: dict[str, Scores], data: DemoData, embedder: MgteEmbedder, config: DemoConfig,
               tokenizer: PreTrainedTokenizerBase, method: str) -> None:
    for name, dataset in data.eval_sets.items():
        metrics[name][method] = evaluate(dataset, config, tokenizer, ["dense"], embedder)["dense"]


def reranked_metrics(dataset: BeirDataset, trm: MgteEmbedder, reranker_folder: Path, sparse_weight: float,
                     rerank_weight: float, config: DemoConfig, tokenizer: PreTrainedTokenizerBase) -> Scores:
    """Hybrid, reranked and interpolated metrics on the same query sample and the same hybrid candidates (the
    reranker scores each pair once)."""
    weights = list(dict.fromkeys((0.0, rerank_weight)))  # the reranker alone, and interpolated
    found = evaluate(dataset, config, tokenizer, ["hybrid", "rerank"], trm,
                     reranker_of(reranker_folder, tokenizer, config), max_queries=config.rerank_queries,
                     rerank_top_k=config.rerank_depth, hybrid_weights=[(1.0, sparse_weight)],
                     rerank_first_stage_weights=weights)
    return {"hybrid": found["hybrid"], "rerank": found["rerank_a0"], "interpolated": found[f"rerank_a{rerank_weight:g}"]}


__all__ = ["HYBRID_SPARSE_WEIGHTS", "RERANK_FIRST_STAGE_WEIGHTS", "add_dense", "best_weight", "choose_rerank_weight",
           "choose_sparse_weight", "embedder_of", "evaluate", "reranked_metrics", "reranker_of"]
