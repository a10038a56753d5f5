"""`mgte-hf demo --ablations`: the paper's long-context and Matryoshka checks on the demo's models.

- revNTK: contrastive pre-training again without it (from the same MLM encoder, same steps and data), both models'
  dense retrieval on the queries of the longest documents, the documents cut at 512 and at 2 048 tokens
  (`DemoConfig.ablation_lengths`);
- the TRM's dense and sparse retrieval on those queries at the same lengths;
- the TRM's Matryoshka dense retrieval at each trained dimension against the index size.

Every figure comes from `RetrievalEvaluator`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from mgte_hf.evaluation import BeirDataset
from mgte_hf.tokenizer import token_counts

from .config import DemoConfig
from .data import DemoData
from .retrieval import embedder_of, evaluate
from .stages import Guard, train_contrastive


logger = logging.getLogger(__name__)

def long_document_queries(dataset: BeirDataset, tokenizer: PreTrainedTokenizerBase, min_tokens: int) -> BeirDataset:
    """A copy keeping only the queries whose relevant documents all have more than `min_tokens` tokens (the
    corpus is unchanged, so the competition for the top ranks is the same)."""
    lengths = dict(zip(dataset.doc_ids(), token_counts(tokenizer, dataset.doc_texts()), strict=True))
    keep = [q for q in dataset.queries if dataset.qrels.get(q) and all(lengths[d] > min_tokens
                                                                      for d in dataset.qrels[q])]
    return BeirDataset(corpus=dataset.corpus, queries={q: dataset.queries[q] for q in keep},
                       qrels={q: dict(dataset.qrels[q]) for q in keep}, name=dataset.name,
                       query_metadata={q: dataset.query_metadata[q] for q in keep if q in dataset.query_metadata})


def run_ablations(data: DemoData, tokenizer: PreTrainedTokenizerBase, ckpt: Mapping[str, Path], config: DemoConfig,
                  guard: Guard, quiet: bool = True) -> dict[str, Any]:
    """The three studies' figures (the report's "Ablations" tables)."""
    lengths = list(config.ablation_lengths)
    long_sets = {name: long_document_queries(dataset, tokenizer, lengths[0]) for name, dataset in data.eval_sets.items()}
    long_sets = {name: dataset for name, dataset in long_sets.items() if dataset.queries}
    queries = {name: len(dataset.queries) for name, dataset in long_sets.items()}
    common = {"min_tokens": lengths[0], "lengths": lengths, "queries": queries}

    no_rev_ntk = ckpt["contrastive"].parent / "contrastive-no-revntk"
    logger.info("ablation: contrastive pre-training without revNTK")
    train_contrastive(ckpt["mlm"], tokenizer, data.contrastive, no_rev_ntk, config, guard, quiet, rev_ntk_factor=1.0)
    models = {f"revNTK ×{config.rev_ntk_factor:g}": ckpt["contrastive"], "no revNTK": no_rev_ntk}
    rev_ntk = {label: {name: _by_length(evaluate(dataset, config, tokenizer, ["dense"],
                                                 embedder_of(folder, tokenizer, max(lengths)), max_lengths=lengths),
                                        "dense", lengths, "ndcg@10")
                       for name, dataset in long_sets.items()} for label, folder in models.items()}

    trm = embedder_of(ckpt["trm"], tokenizer, max(lengths))
    long_documents = {}
    for name, dataset in long_sets.items():
        found = evaluate(dataset, config, tokenizer, ["dense", "sparse"], trm, max_lengths=lengths)
        long_documents[name] = {kind: _by_length(found, kind, lengths) for kind in ("dense", "sparse")}

    dims = list(config.matryoshka_dimensions)
    matryoshka: dict[str, dict[str, float]] = {str(d): {} for d in dims}
    trm = embedder_of(ckpt["trm"], tokenizer, config.eval_max_length)
    for name, dataset in data.eval_sets.items():
        found = evaluate(dataset, config, tokenizer, ["dense"], trm, dims=dims)
        for d in dims:
            matryoshka[str(d)][name] = found[f"dense_d{d}"]["ndcg@10"]
    return {"rev_ntk": {**common, "models": list(models), "ndcg": rev_ntk},
            "long_documents": {**common, "metrics": long_documents},
            "matryoshka": {"dimensions": dims, "ndcg": matryoshka}}


def _by_length(found: Mapping[str, Mapping[str, float]], kind: str, lengths: list[int],
               metric: str | None = None) -> dict[str, Any]:
    """`{"512": metrics, "2048": metrics}` (or one metric's values) of the evaluator's `<kind>_L<n>` systems."""
    return {str(n): found[f"{kind}_L{n}"] if metric is None else found[f"{kind}_L{n}"][metric] for n in lengths}


__all__ = ["long_document_queries", "run_ablations"]
