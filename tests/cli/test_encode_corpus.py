"""`mgte-hf encode-corpus` in process (the torchrun and SIGKILL runs are in tests/test_shards*.py)."""

from __future__ import annotations

import argparse

import pytest

from mgte_hf.cli import encode_corpus
from mgte_hf.cli import main as cli_main
from mgte_hf.shards import DEFAULT_CHUNK_SIZE, ShardReader
from tiny import SENTENCES, write_jsonl


@pytest.fixture
def corpus(tmp_path):
    return write_jsonl(tmp_path / "corpus.jsonl", [{"_id": f"d{i}", "body": s} for i, s in enumerate(SENTENCES[:10])])


def test_add_parser_registers_the_command():
    sub = argparse.ArgumentParser().add_subparsers(dest="command")
    encode_corpus.add_parser(sub)
    args = sub.choices["encode-corpus"].parse_args(["--model", "m", "--input", "c.jsonl", "--output-dir", "out"])
    assert (args.func, args.chunk_size, args.id_field, args.text_field) == (encode_corpus.run, DEFAULT_CHUNK_SIZE,
                                                                          "id", "text")


def test_encodes_then_resumes(embedder_dir, corpus, tmp_path, capsys):
    args = ["--model", str(embedder_dir), "--input", str(corpus), "--output-dir", str(tmp_path / "out"),
            "--id-field", "_id", "--text-field", "body", "--chunk-size", "4", "--dimension", "16", "--device", "cpu"]
    assert cli_main(["encode-corpus", *args]) == 0
    assert "rank 0/1: encoded 3 chunks (10 texts" in capsys.readouterr().err
    reader = ShardReader(tmp_path / "out", verify=True)
    assert (len(reader), reader.dimension, [c.count for c in reader]) == (10, 16, [4, 4, 2])
    assert reader.embeddings()[0] == [f"d{i}" for i in range(10)]
    assert cli_main(["encode-corpus", *args]) == 0
    assert "encoded 0 chunks (0 texts, 0.0 texts/s), 3 already done" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    ({"--input": "missing.jsonl"}, "--input: corpus missing.jsonl does not exist"),
    ({"--model": "no-such-model"}, "model folder 'no-such-model' does not exist"),
    ({"--chunk-size": "0"}, "--chunk-size must be a positive integer"),
    ({"--dimension": "5"}, "dimension=5 is not allowed"),
    ({"--id-field": "missing"}, "no 'missing' field"),
])
def test_user_errors_exit_2_and_write_nothing(embedder_dir, corpus, tmp_path, capsys, change, message):
    options = {"--model": str(embedder_dir), "--input": str(corpus), "--output-dir": str(tmp_path / "out"),
               "--text-field": "body", "--id-field": "_id", "--device": "cpu", **change}
    assert cli_main(["encode-corpus", *[part for pair in options.items() for part in pair]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mgte-hf encode-corpus: error: ") and message in err, err
    assert not (tmp_path / "out").exists()
