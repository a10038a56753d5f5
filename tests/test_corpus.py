"""Readers of id'd corpora (`mgte_hf.corpus`): JSON lines and `datasets` objects or folders."""

import json

import datasets
import pytest

from mgte_hf.corpus import DatasetCorpus, JsonlCorpus, open_corpus


def test_jsonl_and_dataset_corpora_yield_string_ids(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"_id": 7, "body": "x"}, {"_id": "b", "body": "y"}])
                    + "\n", encoding="utf-8")  # a blank line is skipped
    assert list(JsonlCorpus(path, "_id", "body")) == [("7", "x"), ("b", "y")]
    assert list(open_corpus(path, "_id", "body")) == [("7", "x"), ("b", "y")]
    dataset = datasets.Dataset.from_dict({"_id": [7, 8], "body": ["x", "y"]})
    assert list(DatasetCorpus(dataset, "_id", "body")) == [("7", "x"), ("8", "y")]
    dataset.save_to_disk(str(tmp_path / "saved"))
    assert list(open_corpus(tmp_path / "saved", "_id", "body")) == [("7", "x"), ("8", "y")]


@pytest.mark.parametrize(("line", "message"), [
    ("not json", ":2: not valid JSON"),
    ('["a list"]', ":2: expected a JSON object"),
    ('{"text": "no id"}', ":2: no 'id' field"),
    ('{"id": "x", "text": 3}', ":2: the text is a int"),
    ('{"id": true, "text": "t"}', ":2: the id is a bool"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "fine"}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"bad.jsonl{message}"):
        list(JsonlCorpus(path))


def test_corpus_readers_refuse_bad_sources(tmp_path):
    dataset = datasets.Dataset.from_dict({"_id": ["a"], "body": ["x"]})
    with pytest.raises(ValueError, match="no column 'id'"):
        DatasetCorpus(dataset)
    with pytest.raises(ValueError, match=r"splits \[.train.\]; choose one"):
        DatasetCorpus(datasets.DatasetDict({"train": dataset}))
    with pytest.raises(ValueError, match="no split 'test'"):
        open_corpus(datasets.DatasetDict({"train": dataset}), split="test")
    assert list(open_corpus(datasets.DatasetDict({"train": dataset}), "_id", "body", split="train")) == [("a", "x")]
    with pytest.raises(FileNotFoundError):
        open_corpus(tmp_path / "missing.jsonl")
    (tmp_path / "corpus.csv").write_text("x")
    with pytest.raises(ValueError, match="expected a .jsonl, .tsv, .txt file"):
        open_corpus(tmp_path / "corpus.csv")

