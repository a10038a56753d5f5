"""nDCG@k, Recall@k, MRR@k and MAP@k for ranked retrieval, as an `evaluate` metric (offline, no Hub).

Load it with `evaluate.load(path_to_this_folder)`; the numbers come from `mgte_hf.evaluation.metrics` (trec_eval
definitions, linear gains), so this module and the library never disagree.
"""

from __future__ import annotations

import datasets
import evaluate

from mgte_hf.evaluation.metrics import DEFAULT_METRICS, evaluate_run


_DESCRIPTION = """Ranking metrics for retrieval: nDCG@k, Recall@k, MRR@k and MAP@k (trec_eval definitions, linear
gains, ties broken by document id). Each prediction is the ranked list of document ids returned for one query, best
first; each reference lists that query's relevant document ids, optionally with graded relevance."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[str]]`): per query, the retrieved document ids, best first.
    references (`list[list[str]]` or `list[dict]`): per query, the relevant document ids, or
        `{"ids": [...], "grades": [...]}` for graded relevance (grade > 0 is relevant).
    metrics (`list[str]`, *optional*, defaults to `["ndcg@10", "recall@100", "mrr@10"]`): NAME@K with NAME in
        ndcg, recall, mrr, map.
Returns:
    `dict[str, float]`: the mean of each metric over the queries that have a relevant document.
Examples:
    >>> metric = evaluate.load("path/to/retrieval_metrics")
    >>> metric.compute(predictions=[["d2", "d1"]], references=[["d1"]], metrics=["mrr@10"])
    {'mrr@10': 0.5}
"""

_CITATION = """@inproceedings{jarvelin2002cumulated,
  title={Cumulated gain-based evaluation of IR techniques},
  author={J{\\"a}rvelin, Kalervo and Kek{\\"a}l{\\"a}inen, Jaana},
  booktitle={ACM Transactions on Information Systems},
  year={2002}
}"""

_RANKED = datasets.Sequence(datasets.Value("string"))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RetrievalMetrics(evaluate.Metric):
    """Ranking metrics over per-query ranked lists."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[  # graded first: evaluate takes the first format that encodes, and a dict encodes as its keys
                datasets.Features({"predictions": _RANKED, "references": {
                    "ids": datasets.Sequence(datasets.Value("string")),
                    "grades": datasets.Sequence(datasets.Value("int32"))}}),
                datasets.Features({"predictions": _RANKED, "references": _RANKED}),
            ],
            reference_urls=["https://github.com/usnistgov/trec_eval"],
        )

    def _compute(self, predictions, references, metrics=DEFAULT_METRICS) -> dict[str, float]:
        run = {str(i): {doc: float(len(ranked) - r) for r, doc in enumerate(ranked)}
               for i, ranked in enumerate(predictions)}
        qrels = {str(i): _grades(ref) for i, ref in enumerate(references)}
        return evaluate_run(run, qrels, list(metrics))


def _grades(reference) -> dict[str, int]:
    if isinstance(reference, dict):
        if len(reference["ids"]) != len(reference["grades"]):
            raise ValueError("each graded reference needs as many 'grades' as 'ids'.")
        return dict(zip(reference["ids"], (int(g) for g in reference["grades"])))
    return dict.fromkeys(reference, 1)
