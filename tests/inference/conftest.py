import pytest

from inference.folders import SPREAD, save_embedder, save_reranker
from mgte_hf.inference import MgteEmbedder, MgteReranker


@pytest.fixture(scope="session")
def embedder_dir(tmp_path_factory, tiny_tokenizer):
    return save_embedder(tmp_path_factory.mktemp("embedder"), tiny_tokenizer, **SPREAD)


@pytest.fixture(scope="session")
def reranker_dir(tmp_path_factory, tiny_tokenizer):
    return save_reranker(tmp_path_factory.mktemp("reranker"), tiny_tokenizer, **SPREAD)


@pytest.fixture(scope="session")
def embedder(embedder_dir):
    return MgteEmbedder.from_pretrained(embedder_dir, device="cpu")


@pytest.fixture(scope="session")
def reranker(reranker_dir):
    return MgteReranker.from_pretrained(reranker_dir, device="cpu")
