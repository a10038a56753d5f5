"""Reliability: every command reads id'd corpora through one reader that refuses missing and duplicate ids and bad
lines, naming the file and the line (issue: missing ids became line numbers)."""

from __future__ import annotations

import datasets
import pytest

from mgte_hf.cli import main
from mgte_hf.corpus import open_corpus, read_corpus
from tiny import SENTENCES
from tiny import write_jsonl as jsonl


def write(path, lines: list[str]):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["encode", "search", "rerank"])
def test_missing_and_duplicate_ids_are_refused_by_every_command(command, embedder_dir, reranker_dir, tmp_path,
                                                                capsys):
    def call(path, *extra):
        model = reranker_dir if command == "rerank" else embedder_dir
        source = {"encode": "--input", "search": "--corpus", "rerank": "--documents"}[command]
        tail = {"encode": ["--output-sparse", "-"], "search": ["--query", "q"], "rerank": ["--query", "q"]}[command]
        code = main([command, "--model", str(model), source, str(path), *tail, *extra])
        return code, capsys.readouterr()

    none = jsonl(tmp_path / "noid.jsonl", [{"text": t} for t in SENTENCES[:5]])
    code, out = call(none, "--id-field", "_id")
    assert code == 2 and "noid.jsonl:1: no '_id' field" in out.err and not out.out
    one = jsonl(tmp_path / "one.jsonl", [{"_id": "doc0", "text": "a"}, {"_id": "doc1", "text": "b"}, {"text": "c"}])
    code, out = call(one, "--id-field", "_id")
    assert code == 2 and "one.jsonl:3: no '_id' field" in out.err
    dup = jsonl(tmp_path / "dup.jsonl", [{"id": 7, "text": "a"}, {"id": "x", "text": "b"}, {"id": "7", "text": "c"}])
    code, out = call(dup)
    assert code == 2 and "dup.jsonl:3: the id '7' repeats the one at" in out.err and "dup.jsonl:1" in out.err
    code, out = call(none, "--line-ids")  # numbering by line is asked for, never assumed
    assert code == 0


def test_tsv_txt_and_datasets_sources(tmp_path):
    header = write(tmp_path / "h.tsv", ["text\tdoc", "alpha\td1", "beta\td2"])
    assert read_corpus(header, "doc") == (["d1", "d2"], ["alpha", "beta"])
    bare = write(tmp_path / "b.tsv", ["d1\talpha", "", "d2\tbeta"])
    assert read_corpus(bare) == (["d1", "d2"], ["alpha", "beta"])
    bad = write(tmp_path / "bad.tsv", ["d1\talpha", "d2\tbeta\twith a tab"])
    with pytest.raises(ValueError, match=r"bad.tsv:2: 3 tab-separated fields where 2 are expected"):
        read_corpus(bad)
    assert read_corpus(write(tmp_path / "t.txt", ["one", "", "two"])) == (["1", "3"], ["one", "two"])
    dataset = datasets.Dataset.from_dict({"text": ["x", "y"]})
    assert read_corpus(dataset, None) == (["0", "1"], ["x", "y"])
    with pytest.raises(ValueError, match="The dataset has no column .id."):
        read_corpus(dataset)
    with pytest.raises(ValueError, match="holds no documents"):
        read_corpus(write(tmp_path / "e.txt", ["", " "]))


def test_bad_bytes_and_lone_surrogates_name_their_line(tmp_path):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b'{"id": "a", "text": "ok"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bytes.jsonl:2: not valid UTF-8"):
        read_corpus(path)
    surrogate = write(tmp_path / "s.jsonl", ['{"id": "a", "text": "ok"}', '{"id": "b", "text": "x \\ud83d y"}'])
    with pytest.raises(ValueError, match=r"s.jsonl:2: the text holds a lone surrogate \(U\+D83D\)"):
        read_corpus(surrogate)


def test_split_is_for_datasets_folders_only(embedder_dir, tmp_path, capsys):
    corpus = jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}])
    with pytest.raises(ValueError, match="has no splits; --split"):
        open_corpus(corpus, split="train")
    code = main(["encode-corpus", "--model", str(embedder_dir), "--input", str(corpus), "--output-dir",
                 str(tmp_path / "out"), "--split", "train", "--device", "cpu"])
    assert code == 2 and "has no splits" in capsys.readouterr().err and not (tmp_path / "out").exists()
