import json

import pytest

from mgte_hf.cli import main
from mgte_hf.index import HybridIndex
from mgte_hf.inference import MgteReranker
from tiny import SENTENCES


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return path


def run_search(capsys, *argv):
    code = main(["search", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_search_a_corpus(embedder, embedder_dir, corpus, capsys):
    code, out, _ = run_search(capsys, "--model", str(embedder_dir), "--corpus", str(corpus), "--query",
                              SENTENCES[2], "--query", "Hund", "--top-k", "3", "--mode", "dense")
    index = HybridIndex(embedder)
    index.add(SENTENCES, ids=[str(i) for i in range(1, len(SENTENCES) + 1)])
    expected = index.search([SENTENCES[2], "Hund"], top_k=3, mode="dense")
    lines = out.splitlines()
    assert code == 0 and lines[0] == f"query: {SENTENCES[2]}" and lines[4] == "query: Hund"
    for line, hit in zip(lines[1:4] + lines[5:8], expected[0] + expected[1], strict=True):
        rank, score, doc_id, text = line.split("\t")
        assert doc_id == hit.id and text == hit.document and float(score) == pytest.approx(hit.score, abs=1e-4)


def test_build_save_then_query_with_reranker(embedder_dir, reranker, reranker_dir, corpus, tmp_path, capsys):
    index_dir = tmp_path / "idx"
    code, out, err = run_search(capsys, "--model", str(embedder_dir), "--corpus", str(corpus), "--index-dir",
                                str(index_dir), "--dimension", "16")
    assert code == 0 and not out and f"saved an index of {len(SENTENCES)} documents" in err
    assert HybridIndex.load(index_dir).dimension == 16
    code, out, _ = run_search(capsys, "--model", str(embedder_dir), "--index-dir", str(index_dir), "--query",
                              "quick fox", "--reranker", str(reranker_dir), "--top-k", "2", "--rerank-top-k", "6",
                              "--json")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and row["query"] == "quick fox" and [h["rank"] for h in row["hits"]] == [1, 2]
    scores = reranker.compute_score([("quick fox", h["text"]) for h in row["hits"]])
    assert [h["score"] for h in row["hits"]] == pytest.approx(scores.tolist(), abs=1e-5)
    assert row["hits"][0]["score"] >= row["hits"][1]["score"]


def test_a_reranker_blended_with_the_first_stage(embedder, embedder_dir, reranker, reranker_dir, corpus, capsys):
    argv = ["--model", str(embedder_dir), "--corpus", str(corpus), "--query", "quick fox", "--top-k", "3",
            "--rerank-top-k", "6", "--reranker", str(reranker_dir), "--first-stage-weight", "0.4", "--json"]
    code, out, _ = run_search(capsys, *argv)
    index = HybridIndex(embedder)
    index.add(SENTENCES, ids=[str(i) for i in range(1, len(SENTENCES) + 1)])
    blend = MgteReranker(reranker.model, reranker.tokenizer, first_stage_weight=0.4)
    expected = index.search("quick fox", top_k=3, reranker=blend, rerank_top_k=6)
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [h["id"] for h in row["hits"]] == [h.id for h in expected]
    assert [h["score"] for h in row["hits"]] == pytest.approx([h.score for h in expected], abs=1e-5)
    code, out, err = run_search(capsys, *argv[:-3], "--first-stage-weight", "1.5")
    assert code == 2 and "first_stage_weight must be a number in [0, 1]" in err and not out
    code, out, err = run_search(capsys, "--model", str(embedder_dir), "--corpus", str(corpus), "--query", "q",
                                "--first-stage-weight", "0.3")
    assert code == 2 and "give --reranker DIR too" in err and not out


def test_search_errors(embedder_dir, corpus, tmp_path, capsys):
    index_dir = tmp_path / "idx"
    assert run_search(capsys, "--model", str(embedder_dir), "--corpus", str(corpus), "--index-dir",
                      str(index_dir))[0] == 0
    cases = [
        (["--corpus", str(corpus), "--index-dir", str(index_dir)], "already holds an index"),
        (["--query", "q"], "give --corpus FILE to index, or --index-dir"),
        (["--corpus", str(corpus)], "nothing to do"),
        (["--index-dir", str(index_dir), "--query", "q", "--dimension", "8"], "--dimension 8 differs"),
        (["--corpus", str(corpus), "--query", "q", "--rerank-top-k", "1", "--reranker", str(tmp_path / "no")],
         "model folder"),
    ]
    for extra, message in cases:
        code, out, err = run_search(capsys, "--model", str(embedder_dir), *extra)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out
