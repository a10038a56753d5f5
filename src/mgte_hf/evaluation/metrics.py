"""Ranking metrics for retrieval: nDCG@k, Recall@k, MRR@k and MAP@k as pure functions (trec_eval definitions).

A *run* maps each query id to `{doc_id: score}`; *qrels* map each query id to `{doc_id: relevance grade}`
(grade > 0 is relevant). Rankings sort by score, highest first, ties broken by doc id (ascending) so results are
deterministic. Gains are linear in the grade (trec_eval's `ndcg_cut`, as BEIR reports). Queries of the qrels with
no relevant document are skipped; a query missing from the run scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence


Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]

DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10")


def rank(scores: Mapping[str, float], k: int | None = None) -> list[str]:
    """Doc ids by decreasing score (ties by doc id), the first `k` of them (all when `k` is None)."""
    ranking = sorted(scores, key=lambda doc: (-scores[doc], doc))
    return ranking if k is None else ranking[:k]


def ndcg_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Σ_{i≤k} rel_i / log2(i + 1), normalised by the same sum over the ideal ordering of the judged documents."""
    dcg = sum(max(relevance.get(doc, 0), 0) / math.log2(i + 2) for i, doc in enumerate(ranking[:k]))
    ideal = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top `k`."""
    relevant = {doc for doc, g in relevance.items() if g > 0}
    return len(relevant.intersection(ranking[:k])) / len(relevant) if relevant else 0.0


def mrr_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document in the top `k` (0 when there is none)."""
    for i, doc in enumerate(ranking[:k]):
        if relevance.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def map_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Average precision cut at `k`: Σ precision@i over relevant hits i ≤ k, divided by the number of relevant docs."""
    n_relevant = sum(1 for g in relevance.values() if g > 0)
    hits, total = 0, 0.0
    for i, doc in enumerate(ranking[:k]):
        if relevance.get(doc, 0) > 0:
            hits += 1
            total += hits / (i + 1)
    return total / n_relevant if n_relevant else 0.0


METRIC_FUNCTIONS: dict[str, Callable[[Sequence[str], Mapping[str, int], int], float]] = {
    "ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k, "map": map_at_k,
}


def parse_metric(name: str) -> tuple[str, int]:
    """`"ndcg@10"` → `("ndcg", 10)`; raises a ValueError naming the accepted forms."""
    base, _, cut = name.lower().partition("@")
    if base not in METRIC_FUNCTIONS or not cut.isdigit() or int(cut) < 1:
        raise ValueError(f"unknown metric {name!r}: use NAME@K with NAME in {sorted(METRIC_FUNCTIONS)} and K >= 1, "
                         "e.g. 'ndcg@10'.")
    return base, int(cut)


def per_query_scores(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """`{query_id: {metric: value}}` for every query of `qrels` with at least one relevant document."""
    parsed = [(m, *parse_metric(m)) for m in metrics]
    deepest = max(k for _, _, k in parsed)
    out = {}
    for qid, relevance in qrels.items():
        if not any(g > 0 for g in relevance.values()):
            continue
        ranking = rank(run.get(qid, {}), deepest)
        out[qid] = {m: METRIC_FUNCTIONS[base](ranking, relevance, k) for m, base, k in parsed}
    return out


def evaluate_run(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries (see `per_query_scores`)."""
    scores = per_query_scores(run, qrels, metrics)
    if not scores:
        raise ValueError("the qrels hold no query with a relevant document (grade > 0); nothing to evaluate.")
    return {m: sum(s[m] for s in scores.values()) / len(scores) for m in metrics}


__all__ = [
    "DEFAULT_METRICS",
    "METRIC_FUNCTIONS",
    "Qrels",
    "Run",
    "evaluate_run",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "parse_metric",
    "per_query_scores",
    "rank",
    "recall_at_k",
]
