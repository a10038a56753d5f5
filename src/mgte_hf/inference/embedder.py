"""`MgteEmbedder`: dense (Matryoshka) vectors and sparse lexical weights of texts, from one packed forward.

    embedder = MgteEmbedder.from_pretrained("path/to/gte-multilingual-base")
    docs = embedder.encode_corpus(["Berlin is the capital of Germany.", "Paris is in France."])
    query = embedder.encode_queries("capital of Germany")
    embedder.hybrid_scores(query, docs)  # (1, 2): dense·1.0 + lexical·0.1, as the released helper

Inputs: a string or a list of strings. An empty list gives an empty result; empty (or blank) strings are encoded
(an empty string gets an empty sparse dict) with one warning that counts them; anything that is not a string raises
`TypeError`.
Texts longer than `max_length` tokens follow the `truncation` policy of `mgte_hf.inference.common`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedTokenizerBase

from .. import scoring
from ..batching import restore_order
from ..modeling import MgteForEmbedding, token_weights_to_dicts
from ..tokenizer import special_token_ids
from .common import (
    CONVERT_TO,
    InferenceModel,
    Tokenized,
    check_choice,
    check_dimension,
    check_texts,
    packed_batches,
    tokenize,
)


logger = logging.getLogger(__name__)

Array = np.ndarray | torch.Tensor


@dataclass
class EmbeddingResult:
    """What `MgteEmbedder.encode` returns for N texts, in input order.

    Attributes:
        dense: `(N, dimension)` float32 L2-normalised vectors (numpy or torch), or `None` when not asked for.
        sparse: one `{token_id: weight}` per text (special tokens and weights <= 0 dropped; a repeated token keeps
            its largest weight), or `None` when not asked for.
        tokenizer: the tokenizer that produced the ids, to read `sparse` as token strings.
    """

    dense: Array | None
    sparse: list[dict[int, float]] | None
    tokenizer: PreTrainedTokenizerBase | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.dense) if self.dense is not None else len(self.sparse or ())

    def sparse_tokens(self) -> list[dict[str, float]]:
        """`sparse` keyed by token string (`tokenizer.convert_ids_to_tokens`: one string per id, e.g. "▁Berlin")."""
        if self.sparse is None:
            raise ValueError("This result has no sparse weights; encode with sparse=True.")
        if self.tokenizer is None:
            raise ValueError("This result carries no tokenizer to read token strings with.")
        return [dict(zip(self.tokenizer.convert_ids_to_tokens(list(row)), row.values(), strict=True))
                for row in self.sparse]

    @classmethod
    def concatenate(cls, results: Sequence[EmbeddingResult]) -> EmbeddingResult:
        """Join results (e.g. of consecutive chunks of one stream) into one, rows in the given order."""
        if not results:
            raise ValueError("concatenate needs at least one EmbeddingResult.")
        has_dense = {r.dense is not None for r in results}
        has_sparse = {r.sparse is not None for r in results}
        if len(has_dense) > 1 or len(has_sparse) > 1:
            raise ValueError("Results to concatenate must all have (or all lack) dense and sparse parts.")
        dense = None
        if results[0].dense is not None:
            parts = [r.dense for r in results]
            dense = torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)
        sparse = [row for r in results for row in r.sparse] if results[0].sparse is not None else None
        return cls(dense, sparse, results[0].tokenizer)


class MgteEmbedder(InferenceModel):
    """Encode texts with an mGTE text representation model (`MgteForEmbedding`) and score them.

    Args:
        model: the embedding model (put in eval mode; it stays on its device).
        tokenizer: its tokenizer.
        dimension: default dense size (`None`: the hidden size); must be one the model allows.
        **kwargs: `max_length`, `batch_tokens`, `truncation`, `compile`, `quantize` (see `InferenceModel`).
    """

    model_class = MgteForEmbedding

    def __init__(self, model: MgteForEmbedding, tokenizer: PreTrainedTokenizerBase, *, dimension: int | None = None,
                 **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self.dimension = check_dimension(model, dimension)

    @property
    def sparse_ignore_token_ids(self) -> list[int]:
        """Ids that never get a sparse weight: `config.sparse_ignore_token_ids`, else the tokenizer's specials."""
        ids = self.model.config.sparse_ignore_token_ids
        return list(ids) if ids is not None else special_token_ids(self.tokenizer)

    # ------------------------------------------------------------------------------------------------ encoding
    def encode(
        self,
        texts: str | Iterable[str],
        *,
        dense: bool = True,
        sparse: bool = True,
        dimension: int | None = None,
        max_length: int | None = None,
        batch_tokens: int | None = None,
        truncation: str | None = None,
        show_progress_bar: bool | None = None,
        convert_to: str = "numpy",
    ) -> EmbeddingResult:
        """Dense vectors and/or sparse weights of `texts`, in input order.

        Texts are tokenized without padding, sorted by length into token-budget batches and run packed through the
        model's own forward (`MgteForEmbedding(input_ids, seqlens=...)`); the same inputs and settings give the
        same bytes on the same device.

        Args:
            texts: a string or a list of strings.
            dense: compute the dense vectors.
            sparse: compute the sparse `{token_id: weight}` dicts.
            dimension: dense size (Matryoshka truncation, then L2 normalisation); default `self.dimension`.
            max_length: token limit per text; default `self.max_length`.
            batch_tokens: padded-token budget per forward; default `self.batch_tokens`.
            truncation: `"warn"` or `"error"`; default `self.truncation`.
            show_progress_bar: `None` shows a tqdm bar for long inputs only.
            convert_to: `"numpy"` or `"torch"` (a CPU tensor) for the dense matrix.

        Returns:
            An `EmbeddingResult`; `dense` is `(N, dimension)` float32.
        """
        texts = check_texts(texts)
        tokenized = tokenize(self.tokenizer, texts, max_length=self.max_length if max_length is None else max_length,
                             truncation=self.truncation if truncation is None else truncation)
        self.warn_beyond_context(tokenized)
        blank = sum(not t.strip() for t in texts)
        if blank:
            logger.warning("%d of %d texts are empty or blank; they are encoded all the same (their vectors carry no "
                           "content).", blank, len(texts))
        return self.encode_tokenized(tokenized, dense=dense, sparse=sparse, dimension=dimension,
                                     batch_tokens=batch_tokens, show_progress_bar=show_progress_bar,
                                     convert_to=convert_to)

    def encode_tokenized(
        self,
        tokenized: Tokenized,
        *,
        dense: bool = True,
        sparse: bool = True,
        dimension: int | None = None,
        batch_tokens: int | None = None,
        show_progress_bar: bool | None = None,
        convert_to: str = "numpy",
    ) -> EmbeddingResult:
        """`encode` for texts already tokenized (`common.tokenize`: special tokens in, max-length policy applied).

        For callers that need the token ids before encoding (a server checks lengths and counts tokens); the same
        ids and settings give the same result as `encode` on the texts. Keyword arguments as `encode`.
        """
        if not (dense or sparse):
            raise ValueError("Nothing to compute: set dense=True and/or sparse=True.")
        dimension = check_dimension(self.model, self.dimension if dimension is None else dimension)
        check_choice(convert_to, CONVERT_TO, "convert_to")
        batches, dense_parts, sparse_parts = [], [], []
        ignore = self.sparse_ignore_token_ids
        for batch in packed_batches(tokenized, self.batch_tokens if batch_tokens is None else batch_tokens,
                                    self.device, show_progress_bar=show_progress_bar, desc="Encoding"):
            with torch.inference_mode():
                out = self.forward(batch, dimension=dimension, return_dense=dense, return_sparse=sparse)
            batches.append(batch.indices)
            if dense:
                dense_parts.append(list(out.dense.float().cpu()))  # B × (dimension,)
            if sparse:
                sparse_parts.append(_sparse_dicts(out.sparse.reshape(-1), batch, ignore))
        dense_out = None
        if dense:
            rows = restore_order(batches, dense_parts)
            matrix = torch.stack(rows) if rows else torch.zeros((0, dimension))  # (N, dimension)
            dense_out = matrix.numpy() if convert_to == "numpy" else matrix
        sparse_out = restore_order(batches, sparse_parts) if sparse else None
        return EmbeddingResult(dense_out, sparse_out, self.tokenizer)

    def encode_queries(self, queries: str | Iterable[str], **kwargs) -> EmbeddingResult:
        """Encode search queries (mGTE uses no instruction prefix); keyword arguments as `encode`."""
        return self.encode(queries, **kwargs)

    def encode_corpus(self, corpus: str | Iterable[str | Mapping[str, str]], **kwargs) -> EmbeddingResult:
        """Encode documents: strings, or `{"title": ..., "text": ...}` records (BEIR style, joined by a space).

        Keyword arguments as `encode`.
        """
        return self.encode(corpus_texts(corpus), **kwargs)

    # ------------------------------------------------------------------------------------------------ scores
    def dense_scores(self, queries: EmbeddingResult | str | Iterable[str], documents: EmbeddingResult | Iterable,
                     *, convert_to: str = "numpy") -> Array:
        """`(Nq, Nd)` cosine scores (`scoring.dense_scores`); texts are encoded first."""
        q, d = self._results(queries, documents, dense=True, sparse=False, convert_to=convert_to)
        return _convert(scoring.dense_scores(_dense(q), _dense(d)), convert_to)

    def lexical_matching_scores(self, queries: EmbeddingResult | str | Iterable[str],
                                documents: EmbeddingResult | Iterable, *, convert_to: str = "numpy") -> Array:
        """`(Nq, Nd)` lexical scores Σ w_q·w_d over shared tokens (`scoring.lexical_matching_scores`)."""
        q, d = self._results(queries, documents, dense=False, sparse=True, convert_to=convert_to)
        return _convert(scoring.lexical_matching_scores(_sparse(q), _sparse(d)), convert_to)

    def hybrid_scores(
        self,
        queries: EmbeddingResult | str | Iterable[str],
        documents: EmbeddingResult | Iterable,
        dense_weight: float = scoring.DEFAULT_DENSE_WEIGHT,
        sparse_weight: float = scoring.DEFAULT_SPARSE_WEIGHT,
        *,
        convert_to: str = "numpy",
    ) -> Array:
        """`(Nq, Nd)` dense_weight·dense + sparse_weight·lexical (`scoring.hybrid_scores`; defaults 1.0 / 0.1)."""
        q, d = self._results(queries, documents, dense=True, sparse=True, convert_to=convert_to)
        dense = scoring.dense_scores(_dense(q), _dense(d))
        lexical = scoring.lexical_matching_scores(_sparse(q), _sparse(d))
        return _convert(scoring.hybrid_scores(dense, lexical, dense_weight, sparse_weight), convert_to)

    def _results(self, queries, documents, *, dense: bool, sparse: bool, convert_to: str
                 ) -> tuple[EmbeddingResult, EmbeddingResult]:
        """Encode whichever side is text (queries with `encode_queries`, documents with `encode_corpus`)."""
        check_choice(convert_to, CONVERT_TO, "convert_to")
        q = queries if isinstance(queries, EmbeddingResult) else self.encode_queries(queries, dense=dense,
                                                                                      sparse=sparse)
        d = documents if isinstance(documents, EmbeddingResult) else self.encode_corpus(documents, dense=dense,
                                                                                         sparse=sparse)
        return q, d


def _sparse_dicts(weights: torch.Tensor, batch, ignore: list[int]) -> list[dict[int, float]]:
    """Packed `(T,)` token weights of one batch → one `{token_id: weight}` per sequence."""
    ids = pad_sequence(batch.input_ids.split(batch.seqlens), batch_first=True, padding_value=0)  # (B, L)
    padded = pad_sequence(weights.split(batch.seqlens), batch_first=True)  # (B, L), 0 at padding
    mask = pad_sequence([torch.ones(n, dtype=torch.long, device=ids.device) for n in batch.seqlens], batch_first=True)
    return token_weights_to_dicts(padded, ids, mask, ignore)


def corpus_texts(corpus: str | Iterable[str | Mapping[str, str]]) -> list[str]:
    """Documents as texts: strings stay, `{"title": ..., "text": ...}` records become `"title text"` (BEIR/MTEB)."""
    if isinstance(corpus, Iterable) and not isinstance(corpus, (str, bytes, Mapping)):
        corpus = [_document_text(doc, i) if isinstance(doc, Mapping) else doc for i, doc in enumerate(corpus)]
    return check_texts(corpus, "corpus")


def _document_text(doc: Mapping[str, str], index: int) -> str:
    if not isinstance(doc.get("text"), str):
        raise TypeError(f"corpus[{index}] has no string 'text' field.")
    title = doc.get("title") or ""
    if not isinstance(title, str):
        raise TypeError(f"corpus[{index}]['title'] is a {type(title).__name__}, not a str.")
    return f"{title} {doc['text']}".strip() if title else doc["text"]


def _dense(result: EmbeddingResult) -> torch.Tensor:
    if result.dense is None:
        raise ValueError("An EmbeddingResult without dense vectors cannot give dense scores; encode with dense=True.")
    return torch.as_tensor(result.dense)


def _sparse(result: EmbeddingResult) -> list[dict[int, float]]:
    if result.sparse is None:
        raise ValueError("An EmbeddingResult without sparse weights cannot give lexical scores; encode with "
                         "sparse=True.")
    return result.sparse


def _convert(scores: torch.Tensor, convert_to: str) -> Array:
    return scores.numpy() if convert_to == "numpy" else scores


__all__ = ["EmbeddingResult", "MgteEmbedder", "corpus_texts"]
