"""Reliability: bad input to the embedder, reranker, index and scoring API gets a clear error, and integer-like or
JSON-shaped input that means the right thing works (issue: numpy dimensions refused, lone surrogates crashing the
tokenizer, string-keyed sparse dicts crashing scoring, NaN and non-normalised vectors accepted, loading errors)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import tiny
from mgte_hf import MgteForMaskedLM, scoring
from mgte_hf.data import BeirDataset, load_beir, write_beir
from mgte_hf.index import HybridIndex
from mgte_hf.inference import EmbeddingResult, MgteEmbedder, MgteReranker
from mgte_hf.inference.common import check_positive_int, resolve_device
from tiny import SENTENCES


def test_numpy_integers_are_integers(embedder):
    for dimension in (np.int64(8), np.int32(16)):
        result = embedder.encode(SENTENCES[:2], dimension=dimension)
        assert result.dense.shape == (2, int(dimension))
    assert MgteEmbedder(embedder.model, embedder.tokenizer, dimension=np.int64(8)).dimension == 8
    assert HybridIndex(embedder, dimension=np.int64(16)).dimension == 16
    assert check_positive_int(np.uint8(3), "n") == 3 and type(check_positive_int(np.int64(3), "n")) is int
    for bad in (8.0, True, "8", np.float32(8)):
        with pytest.raises(ValueError, match="dimension must be a positive integer"):
            embedder.encode("x", dimension=bad)
    with pytest.raises(ValueError, match="dimension=12 is not allowed"):
        embedder.encode("x", dimension=np.int64(12))


def test_lone_surrogates_are_refused_by_position(embedder, reranker):
    with pytest.raises(ValueError, match=r"texts\[1\] holds a lone surrogate \(U\+D83D at character 3\)"):
        embedder.encode(["fine", "ab \ud83d"])
    with pytest.raises(ValueError, match=r"pairs\[0\]\[1\] holds a lone surrogate"):
        reranker.compute_score([("q", "\udc00")])
    assert embedder.encode("emoji 😀 fine").dense.shape[0] == 1  # a real astral character is text


def test_sparse_dicts_with_string_keys_mean_token_ids(embedder):
    result = embedder.encode(SENTENCES[:3])
    as_json = [{str(t): w for t, w in row.items()} for row in result.sparse]  # what `mgte-hf encode` writes
    expected = scoring.lexical_matching_scores(result.sparse, result.sparse)
    torch.testing.assert_close(scoring.lexical_matching_scores(as_json, as_json), expected)
    assert scoring.lexical_matching_score(as_json[0], result.sparse[0]) == pytest.approx(float(expected[0, 0]))
    index = HybridIndex(embedder)
    index.add(SENTENCES[:3], embeddings=EmbeddingResult(result.dense, as_json))
    hits = index.search(SENTENCES[0], top_k=1, mode="sparse", query_embeddings=EmbeddingResult(None, as_json[:1]))
    assert hits[0].index == 0
    caller = [dict(row) for row in as_json]
    scoring.sparse_rows(caller)
    assert caller == as_json  # the caller's dicts are not changed
    with pytest.raises(TypeError, match=r"sparse\[0\] has the key '▁Berlin': token ids are integers"):
        scoring.sparse_rows([{"▁Berlin": 1.0}])
    with pytest.raises(ValueError, match=r"documents\[1\]\[5\] is nan; sparse weights must be finite"):
        scoring.lexical_matching_scores([{5: 1.0}], [{5: 1.0}, {5: float("nan")}])
    with pytest.raises(ValueError, match="negative token id"):
        scoring.sparse_rows([{-3: 1.0}])


def test_index_refuses_nan_and_unnormalised_vectors(embedder):
    result = embedder.encode(SENTENCES[:3], convert_to="torch")
    index = HybridIndex(embedder)
    for dense, message in ((result.dense * 2, "row 0 has L2 norm 2"),
                           (torch.cat([result.dense[:2], torch.full((1, 32), float("nan"))]), "row 2 holds NaN")):
        with pytest.raises(ValueError, match=message):
            index.add(SENTENCES[:3], embeddings=EmbeddingResult(dense, result.sparse))
    assert len(index) == 0  # nothing half-added
    with pytest.raises(ValueError, match=r"embeddings.sparse\[1\]\[.*\] is inf"):
        index.add(SENTENCES[:3], embeddings=EmbeddingResult(result.dense, [result.sparse[0], {7: float("inf")},
                                                                           result.sparse[2]]))
    index.add(SENTENCES[:3], embeddings=result)
    with pytest.raises(ValueError, match="query_embeddings.dense row 0 holds NaN"):
        index.search("q", query_embeddings=EmbeddingResult(torch.full((1, 32), float("nan")), [{}]))
    with pytest.raises(ValueError, match="query_embeddings.dense row 0 has L2 norm 0"):
        index.search("q", mode="dense", query_embeddings=EmbeddingResult(torch.zeros(1, 32), None))


def test_devices_that_do_not_exist_here(embedder_dir):
    with pytest.raises(ValueError, match="device='gpu' is not a torch device"):
        resolve_device("gpu")
    if torch.cuda.is_available():
        pytest.skip("checks the behaviour without CUDA")
    with pytest.raises(ValueError, match="device='cuda', but CUDA is not available here"):
        MgteEmbedder.from_pretrained(embedder_dir, device="cuda")


def test_loading_names_missing_folders_tokenizers_and_wrong_heads(embedder_dir, reranker_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder /missing does not exist"):
        MgteEmbedder.from_pretrained("/missing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MgteReranker.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="is a file, not a folder"):
        MgteEmbedder.from_pretrained(tmp_path / "file")
    bare = shutil.copytree(embedder_dir, tmp_path / "bare", ignore=shutil.ignore_patterns("tokenizer*",
                                                                                          "special_tokens*"))
    with pytest.raises(FileNotFoundError, match="holds no tokenizer .* pass tokenizer="):
        MgteEmbedder.from_pretrained(bare)
    assert MgteEmbedder.from_pretrained(bare, tokenizer=embedder_dir, device="cpu").dimension == 32
    with pytest.raises(ValueError, match=r"holds a MgteForSequenceClassification checkpoint, not an MgteForEmbedding"):
        MgteEmbedder.from_pretrained(reranker_dir)
    with pytest.raises(ValueError, match=r"holds a MgteForEmbedding checkpoint, not an MgteForSequenceClassification"):
        MgteReranker.from_pretrained(embedder_dir)
    mlm = tmp_path / "mlm"
    tiny.make_model(MgteForMaskedLM, vocab_size=320).save_pretrained(mlm)
    shutil.copy(embedder_dir / "tokenizer.json", mlm)
    (mlm / "config.json").write_text((mlm / "config.json").read_text().replace('"MgteForMaskedLM"', '"MgteModel"'))
    with pytest.raises(ValueError, match=r"is not an MgteForEmbedding checkpoint .*weights missing .*left unused"):
        MgteEmbedder.from_pretrained(mlm)  # a config that lies about its head: the weights tell


def test_qrels_naming_unknown_documents(tmp_path, caplog):
    dataset = BeirDataset({"d1": {"title": "", "text": "a"}}, {"q1": "a"}, {"q1": {"d1": 1, "ghost": 1}})
    write_beir(dataset, tmp_path)
    kept = load_beir(tmp_path)
    assert kept.qrels == {"q1": {"d1": 1, "ghost": 1}} and kept.stats()["qrels_absent_from_corpus"] == 1
    assert "1 judged doc ids are absent from corpus.jsonl (e.g. 'ghost')" in caplog.text
    assert load_beir(tmp_path, unknown_docs="drop").qrels == {"q1": {"d1": 1}}
    assert "qrels_absent_from_corpus" not in load_beir(tmp_path, unknown_docs="drop").stats()
    with pytest.raises(ValueError, match=r"test.tsv:3: the judged document 'ghost' is not in corpus.jsonl"):
        load_beir(tmp_path, unknown_docs="error")
