"""`MilvusIndex` on the real engine: Milvus Lite in this process (one index folder per module), a `milvus-lite
server` on loopback for the server URI, and the faults of the issue: other model or dimension, bad vectors and ids,
`top_k <= 0`, an unreachable server, a folder held by another process."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import tiny
from inference.folders import SPREAD
from mgte_hf import HybridIndex, MgteEmbedder, MgteForEmbedding
from mgte_hf.data.cache import beir_dir, cache_root
from mgte_hf.inference import EmbeddingResult
from mgte_hf.milvus import MilvusIndex, connect


DENSE_ATOL = 1e-5  # Milvus' float32 inner products against torch's: BLAS rounding


def gnome(name: str) -> tuple[list[str], list[str], list[str]]:
    """(ids, texts, queries) of a GNOME Help set of the data cache."""
    folder = beir_dir(cache_root(), name)
    if not (folder / "corpus.jsonl").is_file():
        tiny.missing_resource(f"{folder} missing; run `mgte-hf data build`")
    records = [json.loads(line) for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    queries = [json.loads(line)["text"] for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    return [f"{name}/{r['_id']}" for r in records], [r["text"] for r in records], queries


@pytest.fixture(scope="module")
def real_embedder(xlmr_tokenizer):
    """A tiny mGTE with the real XLM-R vocabulary (250 002 pieces), so the sparse weights are real token ids."""
    torch.set_num_threads(1)
    model = tiny.make_model(MgteForEmbedding, vocab_size=len(xlmr_tokenizer), **SPREAD)
    with torch.no_grad():
        model.classifier.bias.fill_(3.0)  # most tokens get a (varied) positive weight, as a trained model gives
    return MgteEmbedder(model, xlmr_tokenizer, max_length=128)


@pytest.fixture(scope="module")
def corpus(real_embedder):
    """498 GNOME Help pages (English and German) and 30 queries, encoded once."""
    en, de = gnome("gnome-en"), gnome("gnome-de")
    ids, texts, queries = en[0] + de[0], en[1] + de[1], en[2][:15] + de[2][:15]
    return ids, texts, queries, real_embedder.encode_corpus(texts), real_embedder.encode_queries(queries)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("milvus") / "index.db"


@pytest.fixture(scope="module")
def built(real_embedder, corpus, folder):
    """The corpus in a Milvus Lite collection and in a `HybridIndex`, from the same embeddings."""
    ids, texts, _, documents, _ = corpus
    index = MilvusIndex(real_embedder, uri=str(folder), collection="gnome")
    index.add(texts, ids=ids, embeddings=documents)
    reference = HybridIndex(real_embedder)
    reference.add(texts, ids=ids, embeddings=documents)
    return index, reference


def same_hits(found, expected, atol=DENSE_ATOL):
    assert [[h.id for h in row] for row in found] == [[h.id for h in row] for row in expected]
    for row, ref in zip(found, expected, strict=True):
        np.testing.assert_allclose([h.score for h in row], [h.score for h in ref], atol=atol)
        assert [(h.index, h.document) for h in row] == [(h.index, h.document) for h in ref]


# ============================================================================================== agreement
@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_dense_and_sparse_top10_equal_the_hybrid_index(built, corpus, mode):
    index, reference = built
    queries, query_embeddings = corpus[2], corpus[4]
    assert len(index) == len(reference) == 498
    found = index.search(queries, top_k=10, mode=mode, query_embeddings=query_embeddings)
    same_hits(found, reference.search(queries, top_k=10, mode=mode, query_embeddings=query_embeddings))
    assert np.mean([h.score > 0 for row in found for h in row]) > 0.5, "most hits match the query"


def test_hybrid_is_the_weighted_sum_within_the_candidate_depth(built, corpus, real_embedder):
    """Milvus' WeightedRanker(1.0, 0.1, norm_score=False) gives w_d·dense + w_s·sparse over each search's top
    `hybrid_candidates`, a missing score counting 0; with candidates covering the corpus it is HybridIndex's."""
    index, reference = built
    queries, q = corpus[2], corpus[4]
    dense = real_embedder.dense_scores(q, corpus[3], convert_to="torch")  # (30, 498) exact scores
    sparse = real_embedder.lexical_matching_scores(q, corpus[3], convert_to="torch")
    exact = real_embedder.hybrid_scores(q, corpus[3], convert_to="torch")
    assert torch.allclose(exact, dense + 0.1 * sparse)
    depth = index.hybrid_candidates
    in_dense = torch.zeros_like(dense, dtype=torch.bool).scatter(1, dense.topk(depth).indices, True)
    in_sparse = torch.zeros_like(sparse, dtype=torch.bool).scatter(1, sparse.topk(depth).indices, True) & (sparse > 0)
    fused = torch.where(in_dense, dense, 0) + 0.1 * torch.where(in_sparse, sparse, 0)
    fused[~(in_dense | in_sparse)] = -torch.inf
    found = index.search(queries, top_k=10, query_embeddings=q)
    for row, scores in zip(found, fused, strict=True):
        assert [h.index for h in row] == scores.topk(10).indices.tolist()
        np.testing.assert_allclose([h.score for h in row], scores[[h.index for h in row]], atol=DENSE_ATOL)
    full = MilvusIndex(real_embedder, uri=index.uri, collection="gnome", hybrid_candidates=len(index))
    expected = reference.search(queries, top_k=10, query_embeddings=q)
    same_hits(full.search(queries, top_k=10, query_embeddings=q), expected)
    scaled = full.search(queries, top_k=10, dense_weight=2.0, sparse_weight=0.5, query_embeddings=q)  # weights > 1
    same_hits(scaled, reference.search(queries, top_k=10, dense_weight=2.0, sparse_weight=0.5, query_embeddings=q),
              atol=4 * DENSE_ATOL)


def test_reopening_gives_the_same_results_and_texts_encode_the_same(built, corpus, real_embedder, reranker):
    index, _ = built
    queries = corpus[2][:5]
    reopened = MilvusIndex(real_embedder, uri=index.uri, collection="gnome")
    assert len(reopened) == 498 and reopened.dimension == 32 and reopened.index_type == "FLAT"
    for mode in ("dense", "sparse", "hybrid"):
        assert reopened.search(queries, top_k=7, mode=mode) == index.search(queries, top_k=7, mode=mode)
    # queries encoded by the index itself equal precomputed ones; hits can be reranked (texts are stored)
    assert index.search(queries, top_k=3) == index.search(queries, top_k=3,
                                                          query_embeddings=real_embedder.encode_queries(queries))
    reranked = index.search(queries[0], top_k=3, reranker=reranker, rerank_top_k=8)
    first = index.search(queries[0], top_k=8)
    assert {h.id for h in reranked} <= {h.id for h in first} and len(reranked) == 3
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)


# ============================================================================================== writing
def test_add_encodes_texts_numbers_rows_and_keeps_its_own_copy(embedder, tmp_path):
    index = MilvusIndex(embedder, uri=str(tmp_path / "small.db"))
    assert len(index) == 0 and index.search("anything", top_k=3) == []
    index.add(tiny.SENTENCES[:6])
    index.add([{"title": "Titel", "text": tiny.SENTENCES[6]}], ids=["titled"])
    reference = HybridIndex(embedder)
    reference.add(tiny.SENTENCES[:6])
    reference.add([{"title": "Titel", "text": tiny.SENTENCES[6]}], ids=["titled"])
    for mode in ("dense", "sparse", "hybrid"):
        same_hits(index.search(tiny.SENTENCES[:3], top_k=7, mode=mode),
                  reference.search(tiny.SENTENCES[:3], top_k=7, mode=mode))
    mine = embedder.encode_corpus(["mine"])
    index.add(["mine"], ids=["mine"], embeddings=mine)
    mine.dense[:] = 0.0  # the caller changes its array afterwards: the index keeps its own copy
    assert any(h.id == "mine" and h.score != 0 for h in index.search("mine", top_k=8, mode="dense"))
    # a sparse search matching fewer than top_k documents is filled up with score-0 documents in row order
    row = index.search("Titel", top_k=8, mode="sparse")
    zero = [h.index for h in row if h.score == 0]
    assert zero == sorted(zero) and len(row) == 8


def test_bad_input_is_refused_before_anything_is_written(embedder, tmp_path):
    index = MilvusIndex(embedder, uri=str(tmp_path / "bad.db"), max_id_bytes=16)
    index.add(["a", "b"], ids=["a", "b"])
    before = index.search("a", top_k=2)

    def refused(match, documents, ids, **kwargs):
        with pytest.raises((ValueError, TypeError), match=match):
            index.add(documents, ids=ids, **kwargs)

    refused("ids must be unique; 1 repeat, e.g. 'a'", ["x"], ["a"])
    refused("ids must be unique", ["x", "y"], ["n", "n"])
    refused("longer than 16 bytes", ["x"], ["ä" * 9])
    refused("must be non-empty", ["x"], [""])
    refused("Got 1 ids for 2 documents", ["x", "y"], ["n"])
    good = embedder.encode_corpus(["x", "y"])
    refused("dimension 4; this index holds 32", ["x", "y"], ["x", "y"],
            embeddings=EmbeddingResult(good.dense[:, :4], good.sparse))
    nan = good.dense.copy()
    nan[1, 3] = np.nan
    refused("embeddings.dense row 1 holds NaN or infinite values", ["x", "y"], ["x", "y"],
            embeddings=EmbeddingResult(nan, good.sparse))
    refused("embeddings.dense row 0 has L2 norm 0, not 1", ["x", "y"], ["x", "y"],  # an empty (all-zero) vector
            embeddings=EmbeddingResult(np.zeros_like(good.dense), good.sparse))
    refused("embeddings.dense is empty", ["x", "y"], ["x", "y"],
            embeddings=EmbeddingResult(np.zeros((2, 0), np.float32), good.sparse))
    refused(r"embeddings.sparse\[1\]\[7\] is nan; sparse weights must be finite", ["x", "y"], ["x", "y"],
            embeddings=EmbeddingResult(good.dense, [{5: 1.0}, {7: float("nan")}]))
    refused("document 'x' has a negative weight", ["x", "y"], ["x", "y"],
            embeddings=EmbeddingResult(good.dense, [{5: -1.0}, {7: 1.0}]))
    refused("need both dense and sparse", ["x", "y"], ["x", "y"], embeddings=EmbeddingResult(good.dense, None))
    refused("longer than 65535 bytes", ["ü" * 40000], ["long"])
    assert len(index) == 2 and index.search("a", top_k=2) == before, "a refused add changes nothing"
    # an empty sparse vector (an empty text) is stored, with sparse score 0 as in HybridIndex
    index.add(["", "c"], ids=["empty", "c"], embeddings=EmbeddingResult(good.dense, [{}, {9: 0.0, 11: 2.0}]))
    assert len(index) == 4
    hits = index.search("q", top_k=4, mode="sparse", query_embeddings=EmbeddingResult(good.dense[:1], [{11: 1.0}]))
    assert [(h.id, h.score) for h in hits] == [("c", 2.0), ("a", 0.0), ("b", 0.0), ("empty", 0.0)]
    for top_k in (0, -1):
        with pytest.raises(ValueError, match="top_k must be a positive integer"):
            index.search("a", top_k=top_k)
    with pytest.raises(ValueError, match="sparse_weight must be a finite number >= 0"):
        index.search("a", sparse_weight=-0.1)
    with pytest.raises(ValueError, match="rerank_top_k"):
        index.search("a", top_k=2, rerank_top_k=1)


def test_another_model_dimension_or_index_type_is_refused(built, real_embedder, xlmr_tokenizer, caplog):
    index, _ = built
    other = MgteEmbedder(tiny.make_model(MgteForEmbedding, seed=1, vocab_size=len(xlmr_tokenizer), **SPREAD),
                         xlmr_tokenizer)
    with pytest.raises(ValueError, match="built with another model: weights_sha256: .* allow_other_model=True"):
        MilvusIndex(other, uri=index.uri, collection="gnome")
    with caplog.at_level(logging.WARNING):
        anyway = MilvusIndex(other, uri=index.uri, collection="gnome", allow_other_model=True)
    assert "Used anyway" in caplog.text and len(anyway) == 498
    with pytest.raises(ValueError, match="dimension 32, not 16"):
        MilvusIndex(real_embedder, uri=index.uri, collection="gnome", dimension=16)
    with pytest.raises(ValueError, match="has a FLAT dense index, not HNSW"):
        MilvusIndex(real_embedder, uri=index.uri, collection="gnome", index="HNSW")
    with pytest.raises(ValueError, match=r"The query embeddings have dimension \(16,\); this index holds dimension 32"):
        index.search("q", query_embeddings=real_embedder.encode_queries("q", dimension=16))
    client = connect(index.uri)
    client.create_collection("foreign", dimension=4)
    with pytest.raises(ValueError, match="'foreign' .* was not written by mgte-hf"):
        MilvusIndex(real_embedder, uri=index.uri, collection="foreign")
    with pytest.raises(ValueError, match="collection must be"):
        MilvusIndex(real_embedder, uri=index.uri, collection="no-dashes")
    assert len(index) == 498, "nothing stored is touched"


def test_hnsw_recall_against_flat(built, corpus, real_embedder, tmp_path):
    flat, _ = built
    ids, texts, queries, documents, q = corpus
    hnsw = MilvusIndex(real_embedder, uri=str(tmp_path / "hnsw.db"), index="HNSW")
    hnsw.add(texts, ids=ids, embeddings=documents)
    assert MilvusIndex(real_embedder, uri=str(tmp_path / "hnsw.db")).index_type == "HNSW"
    found = hnsw.search(queries, top_k=10, mode="dense", query_embeddings=q)
    exact = flat.search(queries, top_k=10, mode="dense", query_embeddings=q)
    recall = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(found, exact, strict=True)])
    assert recall >= 0.9


# ============================================================================================== connections
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_milvus_server_by_uri(embedder, tmp_path):
    """`milvus-lite server` on loopback: the same engine behind a real gRPC port, reached by an http:// URI."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "served"),
                               "--host", "127.0.0.1", "--port", str(port)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                index = MilvusIndex(embedder, uri=f"http://127.0.0.1:{port}", collection="served", timeout=2)
                break
            except ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:]
                time.sleep(0.2)
        index.add(tiny.SENTENCES, ids=[f"s{i}" for i in range(20)])
        local = MilvusIndex(embedder, uri=str(tmp_path / "local.db"), collection="served")
        local.add(tiny.SENTENCES, ids=[f"s{i}" for i in range(20)])
        for mode in ("dense", "sparse", "hybrid"):
            same_hits(index.search(tiny.SENTENCES[:4], top_k=5, mode=mode),
                      local.search(tiny.SENTENCES[:4], top_k=5, mode=mode))
        index.close()
    finally:
        server.kill()
        server.wait()


def test_an_unreachable_server_is_a_clear_error_within_seconds(embedder):
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"No Milvus server answers at http://127\.0\.0\.1:\d+ .* Start the "):
        MilvusIndex(embedder, uri=f"http://127.0.0.1:{free_port()}", timeout=2)
    assert time.monotonic() - start < 10


def test_a_folder_held_by_another_process_is_a_clear_error(tmp_path):
    path = tmp_path / "held.db"
    code = ("import numpy as np, time\nfrom mgte_hf.inference import EmbeddingResult\n"
            "from mgte_hf.milvus import MilvusIndex\n"
            f"MilvusIndex(uri={str(path)!r}).add(['kept'], ids=['kept'], "
            "embeddings=EmbeddingResult(np.full((1, 4), 0.5, np.float32), [{5: 1.0}]))\n"
            "print('open', flush=True)\ntime.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"open\n", holder.stderr.read().decode()[-2000:]
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="is open in another process .*`milvus-lite server --data-dir"):
            MilvusIndex(uri=str(path))
        assert time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    query = EmbeddingResult(np.full((1, 4), 0.5, np.float32), [{5: 1.0}])
    assert [h.id for h in MilvusIndex(uri=str(path)).search("q", top_k=1, query_embeddings=query)] == ["kept"]


def test_lite_paths_are_checked(tmp_path):
    with pytest.raises(ValueError, match="ends in .db"):
        MilvusIndex(uri=str(tmp_path / "index"))
    (tmp_path / "file.db").write_text("not a folder")
    with pytest.raises(ValueError, match="is a file, not a Milvus Lite data folder"):
        MilvusIndex(uri=str(tmp_path / "file.db"))
    with pytest.raises(ConnectionError, match="does not exist"):
        MilvusIndex(uri=str(tmp_path / "missing" / "index.db"))
