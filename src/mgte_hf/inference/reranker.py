"""`MgteReranker`: relevance scores of (query, document) pairs from an mGTE cross-encoder.

    reranker = MgteReranker.from_pretrained("path/to/gte-multilingual-reranker-base")
    reranker.compute_score([("what is mGTE?", "mGTE is a multilingual retrieval model.")])  # raw logits, (1,)
    reranker.rank("what is mGTE?", documents, top_k=3)  # [RankResult(index, score, document), ...] best first

    # a small or out-of-domain reranker: blend with the first stage that found the candidates
    reranker = MgteReranker.from_pretrained(path, first_stage_weight=0.3)
    reranker.rank(query, candidates, first_stage_scores=bm25_scores)

Each pair is tokenized in the XLM-R pair format `<s> query </s></s> document </s>` by the model's tokenizer and run
packed (no padding) in length-sorted token-budget batches. Pairs longer than `max_length` follow the `truncation`
policy of `mgte_hf.inference.common` (the tokenizer cuts the longer side first). An empty list gives an empty
result; an item that is not a pair of strings raises `TypeError`.

Score interpolation (`first_stage_weight` α > 0), the standard remedy when a cross-encoder alone ranks worse than
the retriever that found its candidates: for one query's candidates, score = (1 − α) · minmax(reranker logits)
+ α · minmax(first-stage scores), each min-max normalised over those candidates (a constant list counts as zeros),
so the two scales need no calibration. `rank(..., first_stage_scores=...)` and `HybridIndex.search(reranker=...)`
apply it; `compute_score` always returns the raw logits. Choose α on held-out queries of your own data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ..batching import restore_order
from ..modeling import MgteForSequenceClassification
from .common import (
    CONVERT_TO,
    InferenceModel,
    Tokenized,
    check_choice,
    check_pairs,
    check_positive_int,
    check_texts,
    packed_batches,
    tokenize,
)


@dataclass(frozen=True)
class RankResult:
    """One ranked document: its position in the input list, its score and the text."""

    index: int
    score: float
    document: str


class MgteReranker(InferenceModel):
    """Score (query, document) pairs with an mGTE reranker (`MgteForSequenceClassification`, one label).

    Args:
        model: the reranker (put in eval mode; it stays on its device).
        tokenizer: its tokenizer.
        first_stage_weight: α of the score interpolation with the first stage (see `interpolate`); 0 ranks by the
            reranker alone.
        **kwargs: `max_length`, `batch_tokens`, `truncation`, `compile`, `quantize` (see `InferenceModel`).
    """

    model_class = MgteForSequenceClassification

    def __init__(self, model: MgteForSequenceClassification, tokenizer: PreTrainedTokenizerBase, *,
                 first_stage_weight: float = 0.0, **kwargs):
        if isinstance(model, MgteForSequenceClassification) and model.config.num_labels != 1:
            raise ValueError(f"A reranker has one output (a relevance logit); this model has num_labels="
                             f"{model.config.num_labels}.")
        weight = check_first_stage_weight(first_stage_weight)
        super().__init__(model, tokenizer, **kwargs)
        self.first_stage_weight = weight

    def compute_score(
        self,
        pairs: Iterable[Sequence[str]],
        *,
        normalize: bool = False,
        max_length: int | None = None,
        batch_tokens: int | None = None,
        truncation: str | None = None,
        show_progress_bar: bool | None = None,
        convert_to: str = "numpy",
    ) -> np.ndarray | torch.Tensor:
        """Relevance of each (query, document) pair, in input order.

        Args:
            pairs: a list of `(query, document)` pairs of strings.
            normalize: apply a sigmoid (scores in (0, 1)); default the raw logit.
            max_length: token limit per pair; default `self.max_length`.
            batch_tokens: padded-token budget per forward; default `self.batch_tokens`.
            truncation: `"warn"` or `"error"`; default `self.truncation`.
            show_progress_bar: `None` shows a tqdm bar for long inputs only.
            convert_to: `"numpy"` or `"torch"` (a CPU tensor).

        Returns:
            `(N,)` float32 scores.
        """
        queries, documents = check_pairs(pairs)
        tokenized = tokenize(self.tokenizer, queries, documents,
                             max_length=self.max_length if max_length is None else max_length,
                             truncation=self.truncation if truncation is None else truncation,
                             with_token_types=self.uses_token_types)
        self.warn_beyond_context(tokenized)
        return self.score_tokenized(tokenized, normalize=normalize, batch_tokens=batch_tokens,
                                    show_progress_bar=show_progress_bar, convert_to=convert_to)

    @property
    def uses_token_types(self) -> bool:
        """Whether the model has segment embeddings, so pairs need `token_type_ids` (`common.tokenize`)."""
        return self.model.config.type_vocab_size > 1

    def score_tokenized(
        self,
        tokenized: Tokenized,
        *,
        normalize: bool = False,
        batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
        convert_to: str = "numpy",
    ) -> np.ndarray | torch.Tensor:
        """`compute_score` for pairs already tokenized (`common.tokenize(..., with_token_types=uses_token_types)`).

        For callers that need the token ids before scoring (a server checks lengths and counts tokens); the same
        ids and settings give the same scores as `compute_score`. Keyword arguments as `compute_score`.
        """
        check_choice(convert_to, CONVERT_TO, "convert_to")
        batches, parts = [], []
        for batch in packed_batches(tokenized, self.batch_tokens if batch_tokens is None else batch_tokens,
                                    self.device, show_progress_bar=show_progress_bar, desc="Reranking"):
            with torch.inference_mode():
                logits = self.forward(batch).logits.reshape(-1).float()  # (B,)
            batches.append(batch.indices)
            parts.append(list((torch.sigmoid(logits) if normalize else logits).cpu()))
        scores = restore_order(batches, parts)
        out = torch.stack(scores) if scores else torch.zeros(0)  # (N,)
        return out.numpy() if convert_to == "numpy" else out

    def interpolate(self, scores: Sequence[float] | torch.Tensor, first_stage_scores: Sequence[float] | torch.Tensor,
                    first_stage_weight: float | None = None) -> torch.Tensor:
        """One query's final candidate scores: (1 − α) · minmax(scores) + α · minmax(first_stage_scores).

        Each list is min-max normalised over the query's candidates (a constant list becomes zeros). With α = 0 the
        reranker's `scores` are returned as they are.

        Args:
            scores: `(n,)` reranker scores of the candidates.
            first_stage_scores: `(n,)` the scores the first stage gave the same candidates, in the same order.
            first_stage_weight: α (default: this reranker's `first_stage_weight`); several weights can be tried on
                the same `scores` without scoring the pairs again.

        Returns:
            `(n,)` float64 scores (float64 keeps distinct inputs distinct through the normalisation).
        """
        scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
        first = torch.as_tensor(first_stage_scores, dtype=torch.float64).reshape(-1)
        if first.shape != scores.shape:
            raise ValueError(f"got {len(first)} first-stage scores for {len(scores)} candidates; give one per "
                             "candidate, in the same order.")
        weight = self.first_stage_weight if first_stage_weight is None else check_first_stage_weight(first_stage_weight)
        if weight == 0.0:
            return scores
        return (1.0 - weight) * _min_max(scores) + weight * _min_max(first)

    def rank(
        self,
        query: str,
        documents: Iterable[str],
        top_k: int | None = None,
        *,
        first_stage_scores: Sequence[float] | None = None,
        **kwargs,
    ) -> list[RankResult]:
        """Documents sorted by relevance to `query`, best first (ties keep input order).

        Args:
            query: the query text.
            documents: the candidate texts.
            top_k: keep only the best `top_k` (default: all).
            first_stage_scores: the retriever's score of each document; with `first_stage_weight` > 0 the ranking
                (and `RankResult.score`) uses `interpolate`.
            **kwargs: as `compute_score` (`normalize`, `max_length`, `batch_tokens`, ...).
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}.")
        documents = check_texts(documents, "documents")
        if top_k is not None:
            check_positive_int(top_k, "top_k")
        scores = self.compute_score([(query, doc) for doc in documents], convert_to="torch", **kwargs)
        if first_stage_scores is not None:
            scores = self.interpolate(scores, first_stage_scores)
        order = torch.sort(scores, descending=True, stable=True).indices[:top_k].tolist()
        return [RankResult(i, float(scores[i]), documents[i]) for i in order]


def check_first_stage_weight(weight: float) -> float:
    """`weight` as a float, or a `ValueError` unless it is a number in [0, 1]."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
        raise ValueError(f"first_stage_weight must be a number in [0, 1], got {weight!r}.")
    return float(weight)


def _min_max(x: torch.Tensor) -> torch.Tensor:
    """`(n,)` scaled to [0, 1] (zeros when all equal)."""
    span = x.max() - x.min() if x.numel() else x.new_zeros(())
    return (x - x.min()) / span if span > 0 else torch.zeros_like(x)


__all__ = ["MgteReranker", "RankResult", "check_first_stage_weight"]
