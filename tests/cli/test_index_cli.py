"""`mgte-hf index` (texts or shards into a Milvus Lite folder) and `mgte-hf search --uri`."""

import json

import pytest

from mgte_hf.cli import main
from mgte_hf.milvus import MilvusIndex
from tiny import SENTENCES


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": t}) + "\n" for i, t in enumerate(SENTENCES)))
    return path


def test_index_texts_then_search_the_collection(embedder, embedder_dir, reranker_dir, corpus, tmp_path, capsys):
    uri = str(tmp_path / "index.db")
    assert main(["index", "--model", str(embedder_dir), "--corpus", str(corpus), "--uri", uri, "--collection",
                 "sentences", "--dimension", "16", "--index", "HNSW"]) == 0
    assert f"added 20 documents → {uri} (sentences), now 20" in capsys.readouterr().err
    assert main(["search", "--model", str(embedder_dir), "--uri", uri, "--collection", "sentences", "--query",
                 SENTENCES[3], "--top-k", "3", "--mode", "sparse", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    index = MilvusIndex(embedder, uri=uri, collection="sentences")
    assert index.dimension == 16 and index.index_type == "HNSW"
    expected = index.search(SENTENCES[3], top_k=3, mode="sparse")
    assert [(h["id"], h["text"]) for h in printed["hits"]] == [(h.id, h.document) for h in expected]
    assert main(["search", "--model", str(embedder_dir), "--uri", uri, "--collection", "sentences", "--query", "fox",
                 "--reranker", str(reranker_dir), "--rerank-top-k", "5", "--top-k", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_index_and_search_errors(embedder_dir, corpus, tmp_path, capsys):
    uri = str(tmp_path / "errors.db")
    cases = [
        (["index", "--model", str(embedder_dir), "--uri", uri], "give --shards DIR"),
        (["index", "--model", str(embedder_dir), "--uri", uri, "--shards", str(tmp_path)], "--shards: No finished"),
        (["index", "--model", str(embedder_dir), "--uri", uri, "--corpus", str(corpus), "--index", "IVF"],
         "index must be one of 'FLAT', 'HNSW'"),
        (["index", "--model", str(embedder_dir), "--uri", "http://127.0.0.1:9", "--corpus", str(corpus),
          "--timeout", "1"], "No Milvus server answers at http://127.0.0.1:9"),
        (["search", "--model", str(embedder_dir), "--uri", uri, "--corpus", str(corpus), "--query", "q"],
         "build or extend it with `mgte-hf index`"),
        (["index", "--model", str(embedder_dir), "--uri", str(tmp_path), "--corpus", str(corpus)],
         f"--uri {tmp_path} holds the input {corpus}"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
