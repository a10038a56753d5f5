import json

import pytest

from mgte_hf.cli import main
from tiny import SENTENCES, write_jsonl


QUERY = "Which fox is quick?"


@pytest.fixture
def documents(tmp_path):
    return write_jsonl(tmp_path / "docs.jsonl", [{"doc": f"d{i}", "text": t} for i, t in enumerate(SENTENCES[:6])])


def test_rerank_prints_documents_best_first(reranker, reranker_dir, documents, capsys):
    code = main(["rerank", "--model", str(reranker_dir), "--query", QUERY, "--documents", str(documents),
                 "--id-field", "doc", "--top-k", "3"])
    lines = capsys.readouterr().out.splitlines()
    expected = reranker.rank(QUERY, SENTENCES[:6], top_k=3)
    assert code == 0 and len(lines) == 3
    for rank, (line, result) in enumerate(zip(lines, expected, strict=True), 1):
        fields = line.split("\t")
        assert fields[0] == str(rank) and fields[2] == f"d{result.index}" and fields[3] == result.document
        assert float(fields[1]) == pytest.approx(result.score, abs=1e-4)


def test_rerank_json_normalized(reranker, reranker_dir, documents, capsys):
    code = main(["rerank", "--model", str(reranker_dir), "--query", QUERY, "--documents", str(documents),
                 "--normalize", "--json", "--line-ids"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = reranker.rank(QUERY, SENTENCES[:6], normalize=True)
    assert code == 0 and [r["rank"] for r in rows] == list(range(1, 7))
    assert [r["text"] for r in rows] == [e.document for e in expected]
    assert [r["score"] for r in rows] == pytest.approx([e.score for e in expected], abs=1e-6)
    assert [r["id"] for r in rows] == [str(e.index + 1) for e in expected], "--line-ids: the line number"


def test_rerank_errors(reranker_dir, documents, capsys):
    code = main(["rerank", "--model", str(reranker_dir), "--query", QUERY, "--documents", str(documents),
                 "--id-field", "doc", "--top-k", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "mgte-hf rerank: error: top_k must be a positive integer, got 0."
    empty = documents.with_name("empty.txt")
    empty.write_text("\n\n")
    code = main(["rerank", "--model", str(reranker_dir), "--query", QUERY, "--documents", str(empty)])
    assert code == 2 and "holds no documents" in capsys.readouterr().err
    code = main(["rerank", "--model", str(reranker_dir), "--query", QUERY, "--documents", str(documents)])
    assert code == 2 and "docs.jsonl:1: no 'id' field" in capsys.readouterr().err  # ids are never invented
