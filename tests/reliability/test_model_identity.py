"""Reliability: an artifact built with one model refuses another of the same shape (index, shards, ONNX export), with
`allow_other_model` / --allow-other-model warning instead (issue: an index answers a different model's queries)."""

from __future__ import annotations

import json
import logging

import pytest

from inference.folders import SPREAD, save_embedder
from mgte_hf.cli import main
from mgte_hf.corpus import JsonlCorpus
from mgte_hf.index import HybridIndex
from mgte_hf.inference import MgteEmbedder
from mgte_hf.shards import ShardedIndex, encode_to_shards
from tiny import SENTENCES


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory, tiny_tokenizer):
    """A model of exactly the embedder's shape (hidden size, vocabulary) with other weights."""
    return save_embedder(tmp_path_factory.mktemp("other"), tiny_tokenizer, seed=7, **SPREAD)


@pytest.fixture(scope="module")
def other(other_dir):
    return MgteEmbedder.from_pretrained(other_dir, device="cpu")


def test_index_load_refuses_a_same_shape_model(embedder, other, tmp_path, caplog):
    index = HybridIndex(embedder)
    index.add(SENTENCES[:6])
    folder = index.save(tmp_path / "idx")
    assert other.model.config.hidden_size == embedder.model.config.hidden_size
    with pytest.raises(ValueError, match=r"built with another model: weights_sha256: .*allow_other_model=True"):
        HybridIndex.load(folder, other)
    with caplog.at_level(logging.WARNING):
        HybridIndex.load(folder, other, allow_other_model=True)
    assert "built with another model" in caplog.text
    assert HybridIndex.load(folder, embedder).search(SENTENCES[0], top_k=1)[0].id == "0"


def test_index_built_without_a_model_warns_that_it_cannot_check(embedder, tmp_path, caplog):
    index = HybridIndex()
    index.add(SENTENCES[:3], embeddings=embedder.encode(SENTENCES[:3], convert_to="torch"))
    folder = index.save(tmp_path / "idx")
    with caplog.at_level(logging.WARNING):
        HybridIndex.load(folder, embedder)
    assert "records no model identity" in caplog.text


def test_cli_search_refuses_another_model(embedder_dir, other_dir, tmp_path, capsys):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n".join(SENTENCES[:6]), encoding="utf-8")
    assert main(["search", "--model", str(embedder_dir), "--corpus", str(corpus), "--index-dir",
                 str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["search", "--model", str(other_dir), "--index-dir", str(tmp_path / "idx"), "--query", "q"]) == 2
    err = capsys.readouterr().err
    assert "built with another model: weights_sha256" in err and "--allow-other-model" in err
    assert main(["search", "--model", str(other_dir), "--index-dir", str(tmp_path / "idx"), "--query", "q",
                 "--allow-other-model", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 6


def test_shards_refuse_a_same_shape_model(embedder, other, tmp_path, caplog):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(SENTENCES[:8])))
    encode_to_shards(embedder, JsonlCorpus(corpus), tmp_path / "shards", chunk_size=3)
    with pytest.raises(ValueError, match="The shard folder .* built with another model: weights_sha256"):
        ShardedIndex(tmp_path / "shards", other)
    with caplog.at_level(logging.WARNING):
        assert len(ShardedIndex(tmp_path / "shards", other, allow_other_model=True).search("q", top_k=3)) == 3
    assert "Used anyway" in caplog.text
    with pytest.raises(ValueError, match="another run.*weights_sha256"):
        encode_to_shards(other, JsonlCorpus(corpus), tmp_path / "shards", chunk_size=3)  # no mixed shards
