"""Data collators for the mGTE stages: MLM (packed, no padding waste), contrastive groups and reranker groups.

Each collator checks its examples and raises a `ValueError` that names the offending example (its index in the
batch) before anything reaches the model; the caller's examples are never modified.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import get_worker_info
from transformers import PreTrainedTokenizerBase


IGNORE_INDEX = -100  # label of positions without an MLM target (ignored by cross-entropy)
MLM_PROBABILITY = 0.3  # paper: 30% masking
MASK_REPLACE_PROB = 0.8  # of the selected tokens: 80% <mask>, 10% random token, 10% unchanged (BERT)
RANDOM_REPLACE_PROB = 0.1


class _SeededGenerator:
    """A `torch.Generator` seeded with `seed` (+ the DataLoader worker id); `None` means torch's global RNG."""

    def __init__(self, seed: int | None):
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._worker: int | None = None

    def get(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if self._generator is None or self._worker != worker:
            # Each DataLoader worker gets its own stream, or all workers would mask identically.
            self._generator = torch.Generator().manual_seed(self.seed + worker)
            self._worker = worker
        return self._generator


class MLMCollator:
    """Masked-language-model batches: 80/10/10 masking at rate `mlm_probability`, labels only at masked positions.

    Exactly `round(mlm_probability · n)` of the n maskable tokens of each sequence are selected (at least one when it
    has any), so no batch is left without a target; special tokens and padding are never selected. Random
    replacements are drawn from the non-special vocabulary.

    Args:
        tokenizer: the model's tokenizer (its mask token, special ids and vocabulary size are used).
        mlm_probability: share of maskable tokens to predict (the paper: 0.3).
        max_length: longest sequence; longer ones are truncated (keeping a final special token such as `</s>`).
        pack: return packed batches for the unpadded forward, else padded ones.
        mask_replace_prob, random_replace_prob: shares of selected tokens replaced by `<mask>` and by a random token
            (the rest stay unchanged).
        seed: seed of a private generator (each DataLoader worker adds its id); `None` uses torch's global RNG.

    Inputs:
        features: dicts with `"input_ids"` (token ids including special tokens) or `"text"`.

    Returns:
        With `pack`: `{"input_ids": (1, T), "labels": (1, T), "seqlens": (B,)}`; else
        `{"input_ids": (B, L), "attention_mask": (B, L), "labels": (B, L)}`.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, mlm_probability: float = MLM_PROBABILITY,
                 max_length: int = 2048, pack: bool = True, mask_replace_prob: float = MASK_REPLACE_PROB,
                 random_replace_prob: float = RANDOM_REPLACE_PROB, seed: int | None = None):
        if tokenizer.mask_token_id is None:
            raise ValueError("MLMCollator needs a tokenizer with a mask token.")
        if tokenizer.pad_token_id is None and not pack:
            raise ValueError("MLMCollator(pack=False) needs a tokenizer with a pad token (or use pack=True).")
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability!r}.")
        if not (mask_replace_prob >= 0 and random_replace_prob >= 0 and mask_replace_prob + random_replace_prob <= 1):
            raise ValueError("mask_replace_prob and random_replace_prob must be >= 0 and sum to at most 1, got "
                             f"{mask_replace_prob!r} and {random_replace_prob!r}.")
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.max_length = _check_max_length(max_length, "max_length")
        self.pack = pack
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        vocab = torch.arange(self.vocab_size)
        self.random_ids = vocab[~torch.isin(vocab, self.special_ids)]  # (V - n_special,)
        self._rng = _SeededGenerator(seed)

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        rows = self._token_rows(features)
        lengths = torch.tensor([len(r) for r in rows])
        valid = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]  # (B, L)
        ids = torch.full(valid.shape, self.tokenizer.pad_token_id or 0, dtype=torch.long)  # packing drops padding
        ids[valid] = torch.tensor([t for r in rows for t in r], dtype=torch.long)
        input_ids, labels = self.mask_tokens(ids, valid)
        if self.pack:
            return {"input_ids": input_ids[valid][None, :], "labels": labels[valid][None, :], "seqlens": lengths}
        return {"input_ids": input_ids, "attention_mask": valid.long(), "labels": labels}

    def mask_tokens(self, ids: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, L)` ids and validity → masked input ids and labels (`IGNORE_INDEX` where not selected); a copy."""
        generator = self._rng.get()
        maskable = valid & ~torch.isin(ids, self.special_ids)  # (B, L)
        count = maskable.sum(1)  # (B,)
        n_select = torch.where(count > 0, torch.clamp((count * self.mlm_probability).round().long(), min=1), 0)
        # Rank the maskable positions of each row in a random order and select the first n_select of them.
        keys = torch.rand(ids.shape, generator=generator).masked_fill(~maskable, 2.0)
        ranks = keys.argsort(dim=1).argsort(dim=1)  # (B, L) rank of each position
        selected = ranks < n_select[:, None]
        labels = torch.where(selected, ids, IGNORE_INDEX)
        action = torch.rand(ids.shape, generator=generator)
        to_mask = selected & (action < self.mask_replace_prob)
        to_random = selected & ~to_mask & (action < self.mask_replace_prob + self.random_replace_prob)
        input_ids = ids.masked_fill(to_mask, self.tokenizer.mask_token_id)
        picks = torch.randint(len(self.random_ids), (int(to_random.sum()),), generator=generator)
        input_ids[to_random] = self.random_ids[picks]
        return input_ids, labels

    def _token_rows(self, features: Sequence[Mapping[str, Any]]) -> list[list[int]]:
        if not features:
            raise ValueError("MLMCollator got an empty batch.")
        rows: list[list[int] | None] = []
        texts: dict[int, str] = {}
        for index, feature in enumerate(features):
            if isinstance(feature, Mapping) and "input_ids" in feature:
                rows.append(self._checked_ids(feature["input_ids"], index))
            elif isinstance(feature, Mapping) and isinstance(feature.get("text"), str):
                rows.append(None)
                texts[index] = feature["text"]
            else:
                raise ValueError(f"MLM example {index} needs 'input_ids' or a 'text' string, got "
                                 f"{sorted(feature) if isinstance(feature, Mapping) else type(feature).__name__}.")
        if texts:
            encoded = self.tokenizer(list(texts.values()), truncation=True, max_length=self.max_length)["input_ids"]
            for index, ids in zip(texts, encoded, strict=True):
                rows[index] = list(ids)
        return rows  # type: ignore[return-value]

    def _checked_ids(self, raw: Any, index: int) -> list[int]:
        ids = raw.tolist() if isinstance(raw, torch.Tensor) else list(raw)
        if not ids:
            raise ValueError(f"MLM example {index} has no tokens.")
        if any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < self.vocab_size for t in ids):
            bad = next(t for t in ids if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < self.vocab_size)
            raise ValueError(f"MLM example {index} holds the token id {bad!r}, outside the tokenizer's vocabulary "
                             f"(0..{self.vocab_size - 1}). Was it tokenised with this tokenizer?")
        if len(ids) > self.max_length:
            keep_last = ids[-1] in set(self.special_ids.tolist())
            ids = ids[: self.max_length - 1] + [ids[-1]] if keep_last else ids[: self.max_length]
        return ids


def _check_max_length(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"{name} must be an integer >= 2 (room for the special tokens), got {value!r}.")
    return value


def example_group(feature: Any, index: int, num_negatives: int | None) -> tuple[str, list[str], list[float] | None]:
    """Check one retrieval example and return its query, `[positive, *negatives]` and aligned teacher scores.

    An example is `{"query", "positive", "negatives"?, "teacher_scores"?}` (scores: positive first, then negatives),
    or `{"query", "passages", "label", "teacher_scores"?}` with `label` the index of the positive in `passages` (and
    scores aligned with `passages`). With `num_negatives`, the first `num_negatives` negatives are kept (shuffle
    upstream for random ones).
    """
    where = f"example {index}"
    if not isinstance(feature, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(feature).__name__}.")
    query = feature.get("query")
    if not isinstance(query, str) or not query:
        raise ValueError(f"{where} needs a non-empty 'query' string, got {query!r}.")
    if "passages" in feature:
        passages, positive = _text_list(feature["passages"], f"{where} 'passages'"), feature.get("label")
        if isinstance(positive, bool) or not isinstance(positive, int) or not 0 <= positive < len(passages):
            raise ValueError(f"{where}: label {positive!r} is out of range for its {len(passages)} passages (it must "
                             "be the index of the positive passage).")
    else:
        if not isinstance(feature.get("positive"), str) or not feature["positive"]:
            raise ValueError(f"{where} (query {query[:60]!r}) has no positive: give a non-empty 'positive' string.")
        passages = [feature["positive"], *_text_list(feature.get("negatives", []), f"{where} 'negatives'")]
        positive = 0
    scores = feature.get("teacher_scores")
    if scores is not None:
        scores = [float(s) for s in scores]
        if len(scores) != len(passages) or not all(math.isfinite(s) for s in scores):
            raise ValueError(f"{where}: teacher_scores must hold one finite score per passage (positive first), got "
                             f"{len(scores)} for {len(passages)} passages.")
    order = [positive, *(i for i in range(len(passages)) if i != positive)]
    if num_negatives is not None:
        if len(order) - 1 < num_negatives:
            raise ValueError(f"{where} has {len(order) - 1} negatives, fewer than num_negatives={num_negatives}.")
        order = order[: 1 + num_negatives]
    return query, [passages[i] for i in order], None if scores is None else [scores[i] for i in order]


def _text_list(value: Any, name: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a list of strings, got {type(value).__name__}.")
    if any(not isinstance(text, str) or not text for text in value):
        raise ValueError(f"{name} must hold only non-empty strings.")
    return list(value)


def collect_groups(features: Sequence[Any], num_negatives: int | None
                   ) -> tuple[list[str], list[list[str]], list[list[float]] | None]:
    """Queries, equal-size passage groups and (all or none) teacher scores of a batch; clear errors otherwise."""
    if not features:
        raise ValueError("got an empty batch.")
    if num_negatives is not None and (isinstance(num_negatives, bool) or not isinstance(num_negatives, int)
                                      or num_negatives < 0):
        raise ValueError(f"num_negatives must be an integer >= 0, got {num_negatives!r}.")
    queries, groups, scores = zip(*(example_group(f, i, num_negatives) for i, f in enumerate(features)), strict=True)
    for index, group in enumerate(groups):
        if len(group) != len(groups[0]):
            raise ValueError(f"groups of unequal size: example {index} has {len(group) - 1} negatives, example 0 has "
                             f"{len(groups[0]) - 1}. Pass num_negatives=k to keep the first k of each.")
    with_scores = [s is not None for s in scores]
    if any(with_scores) and not all(with_scores):
        raise ValueError(f"example {with_scores.index(not with_scores[0])} differs from example 0 in having "
                         "teacher_scores: give them for every example of the batch or for none.")
    return list(queries), [list(g) for g in groups], [list(s) for s in scores] if all(with_scores) else None


class ContrastiveCollator:
    """Batches of (query, positive, k hard negatives) for the dense/sparse contrastive losses.

    Args:
        tokenizer: the model's tokenizer.
        query_max_length, passage_max_length: truncation lengths (the paper: 512 and 1024).
        num_negatives: keep the first k negatives of each example; `None` requires equal counts in the batch.

    Inputs:
        features: `{"query", "positive", "negatives"?, "teacher_scores"?, "source"?}` (or `"passages"` + `"label"`,
        see `example_group`); `"source"` is for the batch sampler and ignored here.

    Returns:
        `{"query": {input_ids, attention_mask} (B, Lq), "passages": {input_ids, attention_mask} (B·(1+k), Lp)}` with
        passages ordered per query (positive, then its negatives), and `"teacher_scores": (B, 1+k)` when given.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, query_max_length: int = 512,
                 passage_max_length: int = 1024, num_negatives: int | None = None):
        self.tokenizer = tokenizer
        self.query_max_length = _check_max_length(query_max_length, "query_max_length")
        self.passage_max_length = _check_max_length(passage_max_length, "passage_max_length")
        self.num_negatives = num_negatives

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        queries, groups, scores = collect_groups(features, self.num_negatives)
        batch: dict[str, Any] = {
            "query": self._encode(queries, self.query_max_length),
            "passages": self._encode([p for group in groups for p in group], self.passage_max_length),
        }
        if scores is not None:
            batch["teacher_scores"] = torch.tensor(scores, dtype=torch.float32)  # (B, 1+k)
        return batch

    def _encode(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                                 return_token_type_ids=False, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


class RerankerCollator:
    """Groups of (query, document) pairs for listwise reranker training: 1 positive + n negatives per query.

    Pairs go through the tokenizer's pair template (XLM-R: `<s> q </s></s> d </s>`), truncated longest-first to
    `max_length` as the released reranker is used.

    Args:
        tokenizer: the model's tokenizer.
        max_length: length of a pair (query and document share it; the paper: 8192).
        group_size: pairs per query G (1 + G-1 negatives, the first ones kept); `None` requires equal groups.

    Inputs:
        features: `{"query", "positive", "negatives"}` (or `"passages"` + `"label"`, see `example_group`).

    Returns:
        `{"input_ids": (B·G, L), "attention_mask": (B·G, L), "group_size": G}`, positive first in every group.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int = 8192, group_size: int | None = None):
        if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                       or group_size < 1):
            raise ValueError(f"group_size must be an integer >= 1 (the positive plus negatives), got {group_size!r}.")
        self.tokenizer = tokenizer
        self.max_length = _check_max_length(max_length, "max_length")
        self.group_size = group_size

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        num_negatives = None if self.group_size is None else self.group_size - 1
        queries, groups, _ = collect_groups(features, num_negatives)
        firsts = [q for q, group in zip(queries, groups, strict=True) for _ in group]
        seconds = [doc for group in groups for doc in group]
        encoded = self.tokenizer(firsts, seconds, padding=True, truncation=True, max_length=self.max_length,
                                 return_token_type_ids=False, return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                "group_size": len(groups[0])}


__all__ = [
    "IGNORE_INDEX",
    "MASK_REPLACE_PROB",
    "MLM_PROBABILITY",
    "RANDOM_REPLACE_PROB",
    "ContrastiveCollator",
    "MLMCollator",
    "RerankerCollator",
    "collect_groups",
    "example_group",
]
