import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inference.folders import SPREAD, save_embedder, save_reranker
from mgte_hf import scoring
from mgte_hf.index import HybridIndex, SearchHit, rerank_hits, rerank_hits_weighted
from mgte_hf.inference import EmbeddingResult, MgteEmbedder, MgteReranker
from tiny import SENTENCES


def synthetic(n: int, dimension: int = 8, vocab: int = 40, seed: int = 0) -> EmbeddingResult:
    """Random normalised dense vectors and random sparse dicts (a few of ~40 terms each)."""
    g = torch.Generator().manual_seed(seed)
    dense = F.normalize(torch.randn(n, dimension, generator=g), dim=-1)
    sparse = []
    for _ in range(n):
        terms = torch.randperm(vocab, generator=g)[: int(torch.randint(0, 6, (1,), generator=g))]
        sparse.append({int(t) + 5: float(w) for t, w in zip(terms, torch.rand(len(terms), generator=g), strict=True)})
    return EmbeddingResult(dense.numpy(), sparse)


DOCS = synthetic(60)
QUERIES = synthetic(7, seed=1)
TEXTS = [f"document {i}" for i in range(60)]


def expected_top(scores: torch.Tensor, k: int) -> list[list[int]]:
    return [sorted(range(len(row)), key=lambda j: (-float(row[j]), j))[:k] for row in scores]


@pytest.fixture
def index():
    index = HybridIndex()
    index.add(TEXTS, embeddings=DOCS)
    return index


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_search_ranks_by_mgte_hf_scoring(index, mode):
    dense = scoring.dense_scores(torch.as_tensor(QUERIES.dense), torch.as_tensor(DOCS.dense))
    lexical = scoring.lexical_matching_scores(QUERIES.sparse, DOCS.sparse)
    expected = {"dense": dense, "sparse": lexical, "hybrid": scoring.hybrid_scores(dense, lexical, 0.7, 0.3)}[mode]
    hits = index.search(["q"] * len(QUERIES), top_k=5, mode=mode, query_embeddings=QUERIES, dense_weight=0.7,
                        sparse_weight=0.3)
    assert [[h.index for h in row] for row in hits] == expected_top(expected, 5)
    for q, row in enumerate(hits):
        np.testing.assert_allclose([h.score for h in row], [float(expected[q, h.index]) for h in row], atol=1e-6)
        assert all(h.id == str(h.index) and h.document == TEXTS[h.index] for h in row)


def test_adding_in_chunks_equals_one_add_and_ids_are_checked(index):
    chunked = HybridIndex(dimension=8)
    chunked.add(TEXTS[:25], embeddings=EmbeddingResult(DOCS.dense[:25], DOCS.sparse[:25]))
    chunked.search("q", query_embeddings=EmbeddingResult(QUERIES.dense[:1], QUERIES.sparse[:1]))  # compiles
    chunked.add(TEXTS[25:], embeddings=EmbeddingResult(DOCS.dense[25:], DOCS.sparse[25:]))
    assert chunked.ids == index.ids == [str(i) for i in range(60)]
    kwargs = {"top_k": 60, "query_embeddings": QUERIES}
    assert chunked.search(["q"] * 7, **kwargs) == index.search(["q"] * 7, **kwargs)
    with pytest.raises(ValueError, match="ids must be unique; 1 repeat, e.g. '3'"):
        index.add(["x"], ids=["3"], embeddings=synthetic(1))
    with pytest.raises(ValueError, match="ids must be unique"):
        HybridIndex().add(["x", "y"], ids=["a", "a"], embeddings=synthetic(2))
    with pytest.raises(ValueError, match="Got 1 ids for 2 documents"):
        HybridIndex().add(["x", "y"], ids=["a"], embeddings=synthetic(2))
    with pytest.raises(ValueError, match="dimension 4; this index holds 8"):
        index.add(["x"], ids=["new"], embeddings=synthetic(1, dimension=4))
    with pytest.raises(ValueError, match="need both dense and sparse"):
        index.add(["x"], ids=["new"], embeddings=EmbeddingResult(DOCS.dense[:1], None))
    assert len(index) == 60, "a refused add changes nothing"
    mine = synthetic(1, seed=5)
    before = index.search("q", top_k=60, query_embeddings=QUERIES.__class__(QUERIES.dense[:1], QUERIES.sparse[:1]))
    index.add(["mine"], ids=["mine"], embeddings=mine)
    mine.dense[:] = 0.0  # the caller changes its array afterwards: the index keeps its own copy
    after = index.search("q", top_k=61, query_embeddings=QUERIES.__class__(QUERIES.dense[:1], QUERIES.sparse[:1]))
    assert [h for h in after if h.id != "mine"] == before and any(h.id == "mine" and h.score != 0 for h in after)


def test_ties_rank_the_earlier_document_first():
    twins = EmbeddingResult(np.repeat(DOCS.dense[:1], 3, axis=0), [DOCS.sparse[0]] * 3)
    index = HybridIndex()
    index.add(["a", "b", "c"], ids=["z", "y", "x"], embeddings=twins)
    hits = index.search("q", top_k=3, query_embeddings=EmbeddingResult(DOCS.dense[:1], DOCS.sparse[:1]))
    assert [h.id for h in hits] == ["z", "y", "x"] and len({h.score for h in hits}) == 1


def test_save_and_load_round_trip(index, tmp_path):
    folder = index.save(tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == ["documents.jsonl", "index.json", "index.safetensors"]
    meta = json.loads((folder / "index.json").read_text())
    assert meta["size"] == 60 and meta["dimension"] == 8 and meta["model"] is None
    loaded = HybridIndex.load(folder)
    for mode in ("dense", "sparse", "hybrid"):
        kwargs = {"top_k": 10, "mode": mode, "query_embeddings": QUERIES}
        assert loaded.search(["q"] * 7, **kwargs) == index.search(["q"] * 7, **kwargs)
    loaded.add(["late"], ids=["late"], embeddings=EmbeddingResult(QUERIES.dense[:1], QUERIES.sparse[:1]))
    best = loaded.search("q", top_k=1, query_embeddings=EmbeddingResult(QUERIES.dense[:1], QUERIES.sparse[:1]))
    assert best[0].id == "late"
    empty = HybridIndex(dimension=8).save(tmp_path / "empty")
    assert len(HybridIndex.load(empty)) == 0
    with pytest.raises(ValueError, match="Nothing to save"):
        HybridIndex().save(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="No index folder .*nowhere"):
        HybridIndex.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="index.json is missing"):
        HybridIndex.load(tmp_path)
    assert meta["files"]["documents.jsonl"]["bytes"] == (folder / "documents.jsonl").stat().st_size
    (folder / "documents.jsonl").write_text('{"id": "0", "text": "only one"}\n')
    with pytest.raises(ValueError, match=r"is damaged: .*documents.jsonl has \d+ bytes, not the"):
        HybridIndex.load(folder)
    (folder / "index.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(ValueError, match="index.json is not an mgte-hf-hybrid-index file"):
        HybridIndex.load(folder)
    with pytest.raises(FileExistsError, match="is not empty; choose another one, or pass --overwrite"):
        index.save(folder)
    assert HybridIndex.load(index.save(folder, overwrite=True)).ids == index.ids


def test_bad_search_input(index):
    one = EmbeddingResult(QUERIES.dense[:1], QUERIES.sparse[:1])
    with pytest.raises(ValueError, match="mode must be one of"):
        index.search("q", mode="bm25", query_embeddings=one)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        index.search("q", top_k=0, query_embeddings=one)
    with pytest.raises(ValueError, match="no embedder to search with query texts"):
        index.search("q")
    with pytest.raises(ValueError, match="Got 1 query embeddings for 2 queries"):
        index.search(["q", "r"], query_embeddings=one)
    with pytest.raises(ValueError, match="needs sparse query embeddings"):
        index.search("q", mode="sparse", query_embeddings=EmbeddingResult(QUERIES.dense[:1], None))
    with pytest.raises(ValueError, match="rerank_top_k has no effect without a reranker"):
        index.search("q", rerank_top_k=20, query_embeddings=one)
    with pytest.raises(TypeError, match="queries must be a string or a list of strings"):
        index.search(None, query_embeddings=one)
    assert len(index.search("q", top_k=100, query_embeddings=one)) == 60
    assert HybridIndex(dimension=8).search("q", query_embeddings=one) == []


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_tokenizer):
    embedder = MgteEmbedder.from_pretrained(save_embedder(tmp_path_factory.mktemp("emb"), tiny_tokenizer, **SPREAD),
                                            device="cpu", dimension=16)
    reranker = MgteReranker.from_pretrained(save_reranker(tmp_path_factory.mktemp("rr"), tiny_tokenizer, **SPREAD),
                                            device="cpu")
    return embedder, reranker


def test_with_embedder_and_reranker(models, tmp_path, caplog):
    embedder, reranker = models
    index = HybridIndex(embedder)
    index.add(SENTENCES, ids=[f"s{i}" for i in range(len(SENTENCES))])
    queries = [SENTENCES[3], "quick fox"]
    hits = index.search(queries, top_k=3)
    q, d = embedder.encode_queries(queries), embedder.encode_corpus(SENTENCES)
    expected = torch.as_tensor(embedder.hybrid_scores(q, d))
    assert [[h.index for h in row] for row in hits] == expected_top(expected, 3)
    assert hits[0][0] == SearchHit("s3", pytest.approx(float(expected[0, 3]), abs=1e-5), 3, SENTENCES[3])
    reranked = index.search(queries, top_k=2, reranker=reranker, rerank_top_k=5)
    first = index.search(queries, top_k=5)
    for query, row, candidates in zip(queries, reranked, first, strict=True):
        scores = reranker.compute_score([(query, h.document) for h in candidates])
        best = sorted(range(5), key=lambda j: -scores[j])[:2]
        assert [h.index for h in row] == [candidates[j].index for j in best]
        np.testing.assert_allclose([h.score for h in row], scores[best], atol=1e-5)
    with pytest.raises(ValueError, match=r"rerank_top_k \(1\) must be at least top_k \(2\)"):
        index.search("q", top_k=2, reranker=reranker, rerank_top_k=1)
    loaded = HybridIndex.load(index.save(tmp_path / "idx"), embedder)
    assert loaded.search(queries, top_k=3) == hits
    other = MgteEmbedder.from_pretrained(save_embedder(tmp_path / "other", embedder.tokenizer, seed=1, **SPREAD),
                                         device="cpu", dimension=16)  # the same shape, other weights
    with pytest.raises(ValueError, match="built with another model: weights_sha256"):
        HybridIndex.load(tmp_path / "idx", other)
    with caplog.at_level(logging.WARNING, logger="mgte_hf.hashing"):
        assert len(HybridIndex.load(tmp_path / "idx", other, allow_other_model=True)) == len(SENTENCES)
    assert "Used anyway (allow_other_model=True)" in caplog.text


def test_rerank_interpolated_with_the_first_stage(models):
    embedder, reranker = models
    index = HybridIndex(embedder)
    index.add(SENTENCES, ids=[f"s{i}" for i in range(len(SENTENCES))])
    queries = [SENTENCES[3], "quick fox"]
    first = index.search(queries, top_k=5)
    mixed = MgteReranker(reranker.model, reranker.tokenizer, first_stage_weight=0.4)
    reranked = index.search(queries, top_k=3, reranker=mixed, rerank_top_k=5)
    for query, row, candidates in zip(queries, reranked, first, strict=True):
        logits = reranker.compute_score([(query, h.document) for h in candidates], convert_to="torch")
        expected = mixed.interpolate(logits, [h.score for h in candidates])
        best = torch.sort(expected, descending=True, stable=True).indices[:3].tolist()
        assert [h.index for h in row] == [candidates[j].index for j in best]
        np.testing.assert_allclose([h.score for h in row], expected[best].numpy(), atol=1e-6)
    only_first = MgteReranker(reranker.model, reranker.tokenizer, first_stage_weight=1.0)
    assert [[h.id for h in row] for row in index.search(queries, top_k=3, reranker=only_first, rerank_top_k=5)] == [
        [h.id for h in row[:3]] for row in first]


def test_rerank_at_several_weights_equals_one_reranking_per_weight(models):
    embedder, reranker = models
    index = HybridIndex(embedder)
    index.add(SENTENCES, ids=[f"s{i}" for i in range(len(SENTENCES))])
    queries = [SENTENCES[3], "quick fox", SENTENCES[0]]
    first = index.search(queries, top_k=6)
    weights = [0.0, 0.3, 1.0]
    each = rerank_hits_weighted(reranker, queries, first, weights, depth=4)
    assert len(each) == len(weights)
    for weight, hits in zip(weights, each, strict=True):
        alone = MgteReranker(reranker.model, reranker.tokenizer, first_stage_weight=weight)
        assert hits == rerank_hits(alone, queries, first, depth=4)
    with pytest.raises(ValueError, match=r"first_stage_weight must be a number in \[0, 1\]"):
        rerank_hits_weighted(reranker, queries, first, [2.0])
