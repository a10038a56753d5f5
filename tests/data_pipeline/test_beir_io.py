"""BEIR reader and writer: round trip, the committed tiny sets, sampling and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mgte_hf.data.beir import BeirDataset, document_text, load_beir, write_beir


TINY = Path(__file__).resolve().parents[1] / "data" / "beir_tiny"


def small() -> BeirDataset:
    return BeirDataset(
        corpus={"d1": {"title": "Über", "text": "Straße ünd „quotes“"}, "d2": {"title": "", "text": "two",
                                                                             "metadata": {"lang": "en"}}},
        queries={"q1": "one?", "q2": "two", "q3": "unjudged"},
        qrels={"q1": {"d1": 2, "d2": 0}, "q2": {"d2": 1}}, name="small", query_metadata={"q2": {"lang": "de"}})


def test_round_trip_keeps_everything(tmp_path):
    original = small()
    folder = write_beir(original, tmp_path / "set", split="dev")
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["corpus.jsonl", "dev.tsv", "queries.jsonl"]
    back = load_beir(folder, split="dev")
    assert (back.corpus, back.queries, back.qrels, back.query_metadata) == (
        original.corpus, original.queries, original.qrels, original.query_metadata)
    assert back.name == "set"
    assert (folder / "qrels" / "dev.tsv").read_text().splitlines()[0] == "query-id\tcorpus-id\tscore"
    assert "Straße" in (folder / "corpus.jsonl").read_text(encoding="utf-8")  # UTF-8, not \u escapes


def test_helpers():
    data = small()
    assert data.doc_texts() == ["Über Straße ünd „quotes“", "two"]
    assert document_text({"text": "body"}) == "body"
    assert data.judged_query_ids() == ["q1", "q2"]
    assert data.stats() == {"documents": 2, "queries": 3, "judged_queries": 2, "qrels": 3}


def test_sample_queries_is_seeded_and_does_not_touch_the_original():
    data = load_beir(TINY / "bible-en")
    a, b = data.sample_queries(10, seed=1), data.sample_queries(10, seed=1)
    assert list(a.queries) == list(b.queries) and len(a.queries) == 10
    assert list(a.queries) != list(data.sample_queries(10, seed=2).queries)
    assert list(a.queries) == [q for q in data.queries if q in a.queries]  # original order kept
    assert len(data.queries) == 54 and data.sample_queries(None).queries == data.queries
    with pytest.raises(ValueError, match="max_queries"):
        data.sample_queries(0)


def test_committed_tiny_sets_load():
    for name in ("bible-en", "bible-es-en"):
        data = load_beir(TINY / name)
        assert data.stats() == {"documents": 12, "queries": 54, "judged_queries": 54, "qrels": 54}
        assert all(next(iter(rel)) in data.corpus for rel in data.qrels.values())


def test_missing_files_and_bad_rows_give_clear_errors(tmp_path, caplog):
    folder = write_beir(small(), tmp_path / "set")
    with pytest.raises(FileNotFoundError, match="splits found here: test"):
        load_beir(folder, split="dev")
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n')
    with pytest.raises(ValueError, match="appears twice"):
        load_beir(folder)
    (folder / "queries.jsonl").write_text('{"text": "no id"}\n')
    with pytest.raises(ValueError, match="'_id'"):
        load_beir(folder)
    (folder / "queries.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="queries.jsonl:1 is not valid JSON"):
        load_beir(folder)
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "a"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(ValueError, match="3 tab-separated fields"):
        load_beir(folder)
    (folder / "qrels" / "test.tsv").write_text("q1\td1\t1\nq9\td1\t1\nq1\tzz\t1\n")
    data = load_beir(folder)
    assert data.qrels == {"q1": {"d1": 1, "zz": 1}}
    assert "absent from queries.jsonl" in caplog.text and "absent from corpus.jsonl" in caplog.text
