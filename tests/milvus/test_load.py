"""`load_shards` / `mgte-hf index --shards`: shards of `encode_to_shards` into Milvus Lite, streamed and resumable
(a real SIGKILL of the command mid-load, then the same command again), and its refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from inference.folders import save_embedder
from mgte_hf import HybridIndex, MgteEmbedder
from mgte_hf.cli import main as cli_main
from mgte_hf.milvus import MilvusIndex, load_shards
from mgte_hf.shards import JsonlCorpus, encode_to_shards
from tiny import SENTENCES


TEXTS = [f"{SENTENCES[i % 20]} {SENTENCES[(i * 7 + 3) % 20].lower()} {i}" for i in range(103)]
IDS = [f"doc-{i}" for i in range(len(TEXTS))]
CHUNK = 10  # 103 documents → 10 chunks of 10 and one of 3
QUERIES = ["quick brown fox", "search engines rank documents", "many thousands of tokens 42"]


def same_ranking(found, expected):
    """Equal hit lists, except that two hits whose scores agree within 1e-6 may swap (float32 rounding of the
    engine's inner products against torch's decides such near-ties)."""
    for got, want in zip(found, expected, strict=True):
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
        assert {h.id for h in got} == {h.id for h in want} or abs(got[-1].score - want[-1].score) <= 1e-6
        for a, b in zip(got, want, strict=True):
            assert (a.id, a.index, a.document) == (b.id, b.index, b.document) or abs(a.score - b.score) <= 1e-6


def write_jsonl(path, ids, texts):
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts, strict=True)))
    return path


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", IDS, TEXTS)


@pytest.fixture(scope="module")
def shards(embedder, corpus_file, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards") / "shards"
    encode_to_shards(embedder, JsonlCorpus(corpus_file), folder, chunk_size=CHUNK)
    return folder


def test_loaded_shards_search_like_the_texts_and_a_rerun_changes_nothing(embedder, shards, corpus_file, tmp_path):
    index = MilvusIndex(embedder, uri=str(tmp_path / "index.db"))
    run = load_shards(index, shards, corpus=JsonlCorpus(corpus_file))
    assert (run.count, run.num_chunks, run.loaded, run.skipped) == (103, 11, list(range(11)), 0)
    reference = HybridIndex(embedder)
    reference.add(TEXTS, ids=IDS)
    for mode in ("dense", "sparse", "hybrid"):
        for top_k in (5, 103):  # all 103: the full ranking, the many exact ties included (earlier rows first)
            kwargs = {"top_k": top_k, "mode": mode, "dense_weight": 0.7, "sparse_weight": 0.3}
            same_ranking(index.search(QUERIES, **kwargs), reference.search(QUERIES, **kwargs))
    again = load_shards(MilvusIndex(embedder, uri=str(tmp_path / "index.db")), shards, corpus=JsonlCorpus(corpus_file))
    assert (again.loaded, again.skipped) == ([], 11) and len(index) == 103
    index.add(["one more"], ids=["more"])  # a finished load takes new documents after its rows
    assert [h.index for h in index.search("one more", top_k=1, mode="sparse")] == [103]


def test_without_the_corpus_rows_hold_no_text(embedder, shards, tmp_path):
    index = MilvusIndex(uri=str(tmp_path / "bare.db"))  # no embedder: the model facts come from the shards
    load_shards(index, shards)
    assert not index.holds_texts and len(index) == 103
    query = embedder.encode_queries(QUERIES[:1])
    hits = index.search("q", top_k=3, query_embeddings=query)
    assert all(h.document == "" for h in hits)
    with pytest.raises(ValueError, match="holds no document texts to rerank"):
        MilvusIndex(embedder, uri=str(tmp_path / "bare.db")).search("q", reranker=object())


def test_a_killed_load_resumes_to_exactly_the_corpus_rows(embedder_dir, shards, corpus_file, tmp_path, capsys):
    """A real `kill -9` of `mgte-hf index` after some chunks, then the same command: no row lost or repeated."""
    uri = str(tmp_path / "killed.db")
    args = ["index", "--model", str(embedder_dir), "--shards", str(shards), "--corpus", str(corpus_file),
            "--uri", uri, "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mgte_hf", "-v", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline, seen = time.monotonic() + 120, ""
    while "chunk 3 of 11 loaded" not in seen and time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, seen[-2000:]
        seen += line
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL and "chunk 11 of 11 loaded" not in seen

    assert cli_main(args) == 0  # the same command again
    err = capsys.readouterr().err
    assert "already loaded; 103 documents in 11 chunks" in err and "loaded 0 chunks" not in err
    index = MilvusIndex(uri=uri)
    rows = index.client.query(index.collection, filter="row >= 0", output_fields=["row"], limit=1000)
    assert len(index) == 103 and sorted(r["id"] for r in rows) == sorted(IDS)
    assert sorted(r["row"] for r in rows) == list(range(103)) and all(r["row"] == IDS.index(r["id"]) for r in rows)


def test_refusals_leave_the_collection_as_it_was(embedder, embedder_dir, shards, corpus_file, tiny_tokenizer,
                                                 tmp_path):
    uri = str(tmp_path / "refused.db")
    other_texts = write_jsonl(tmp_path / "other.jsonl", IDS[:20], TEXTS[20:40])
    with pytest.raises(ValueError, match="is not the one the shards in .* were encoded from"):
        load_shards(MilvusIndex(embedder, uri=uri), shards, corpus=JsonlCorpus(other_texts))
    index = MilvusIndex(embedder, uri=uri)
    index.add(["already here"], ids=["here"])
    with pytest.raises(ValueError, match="holds 1 documents that were not loaded from"):
        load_shards(index, shards)
    other_shards = tmp_path / "other-shards"
    encode_to_shards(embedder, JsonlCorpus(other_texts), other_shards, chunk_size=CHUNK)
    loaded = MilvusIndex(embedder, uri=uri, collection="loaded")
    load_shards(loaded, shards)
    with pytest.raises(ValueError, match="holds rows loaded from other shards"):
        load_shards(loaded, other_shards)
    other = MgteEmbedder.from_pretrained(save_embedder(tmp_path / "other-model", tiny_tokenizer, seed=3), device="cpu")
    other_model = MilvusIndex(other, uri=uri, collection="fresh")
    with pytest.raises(ValueError, match="The shard run in .* was built with another model: .*weights_sha256"):
        load_shards(other_model, shards)
    damaged = tmp_path / "damaged"
    encode_to_shards(embedder, JsonlCorpus(corpus_file), damaged, chunk_size=CHUNK)
    dense = damaged / "chunk-000004" / "dense.npy"
    dense.write_bytes(dense.read_bytes()[:-1] + b"\x01")
    partial = MilvusIndex(embedder, uri=uri, collection="partial")
    with pytest.raises(ValueError, match="chunk-000004/dense.npy does not match its recorded sha256.*the 4 chunks "
                                         "before it stay loaded"):
        load_shards(partial, damaged)
    assert len(partial) == 40
    with pytest.raises(ValueError, match="part-way through a bulk load from shards \\(4 of 11 chunks\\)"):
        partial.add(["x"], ids=["x"])
    with pytest.raises(ValueError, match="began without the corpus"):
        load_shards(partial, damaged, corpus=JsonlCorpus(corpus_file))
    assert cli_main(["index", "--model", str(embedder_dir), "--shards", str(shards), "--uri", uri, "--collection",
                     "loaded", "--corpus", str(other_texts)]) == 2
    short = MilvusIndex(embedder, uri=uri, collection="short", max_id_bytes=5)
    with pytest.raises(ValueError, match="10 ids are longer than 5 bytes of UTF-8 .*'doc-10'"):
        load_shards(short, shards)  # doc-0 … doc-9 fit
    assert len(short) == 10
    assert len(index) == 1 and len(loaded) == 103, "nothing stored is lost"
    # --overwrite (overwrite=True) replaces the collection
    assert cli_main(["index", "--model", str(embedder_dir), "--shards", str(other_shards), "--uri", uri,
                     "--collection", "loaded", "--overwrite"]) == 0
    assert len(MilvusIndex(embedder, uri=uri, collection="loaded")) == 20
