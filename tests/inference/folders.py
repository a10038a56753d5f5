"""Tiny embedding and reranker checkpoint folders (model + tokenizer) for the inference, index and CLI tests.

Ranking tests pass `**SPREAD` (weights drawn with std 0.2, not 0.02): a tiny model initialised like a real one gives
nearly the same CLS vector and logit for every text (cosines 0.99999), so its rankings hinge on float rounding.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerBase

import tiny
from mgte_hf import MgteForEmbedding, MgteForSequenceClassification


SPREAD = {"initializer_range": 0.2}


def save_embedder(folder: Path, tokenizer: PreTrainedTokenizerBase, seed: int = 0, **overrides) -> Path:
    """A tiny `MgteForEmbedding` (dimensions 8, 16, 32) and its tokenizer, saved as a checkpoint folder."""
    tiny.make_model(MgteForEmbedding, seed=seed, vocab_size=len(tokenizer), **overrides).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_reranker(folder: Path, tokenizer: PreTrainedTokenizerBase, seed: int = 1, **overrides) -> Path:
    """A tiny one-label `MgteForSequenceClassification` (the reranker head) and its tokenizer, saved."""
    model = tiny.make_model(MgteForSequenceClassification, seed=seed, vocab_size=len(tokenizer), num_labels=1,
                            **overrides)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
