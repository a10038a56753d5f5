"""Retrieval evaluation: ranking metrics (also as an `evaluate` module), BM25 and the `RetrievalEvaluator` with its
report; the BEIR sets it reads come from `mgte_hf.data`."""

from pathlib import Path

from ..data.beir import BeirDataset, document_text, load_beir, write_beir  # the BEIR I/O of `mgte_hf.data`
from .bm25 import bm25_search
from .metrics import (
    DEFAULT_METRICS,
    evaluate_run,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    parse_metric,
    per_query_scores,
    recall_at_k,
)
from .report import RetrievalReport, StageResult, SystemResult
from .retrieval import RetrievalEvaluator, hits_to_run


METRIC_PATH = str(Path(__file__).resolve().parent / "retrieval_metrics")  # for evaluate.load(METRIC_PATH)

__all__ = [
    "DEFAULT_METRICS",
    "METRIC_PATH",
    "BeirDataset",
    "RetrievalEvaluator",
    "RetrievalReport",
    "StageResult",
    "SystemResult",
    "bm25_search",
    "document_text",
    "evaluate_run",
    "hits_to_run",
    "load_beir",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "parse_metric",
    "per_query_scores",
    "recall_at_k",
    "write_beir",
]
