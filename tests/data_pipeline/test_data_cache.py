"""The cache helpers: root, manifest, file records and verification, token statistics, JSONL, the lock."""

from __future__ import annotations

import fcntl
import json

import pytest

from mgte_hf.data.cache import (
    MANIFEST_NAME,
    cache_root,
    changed_files,
    length_stats,
    load_manifest,
    locked,
    read_jsonl,
    record_files,
    save_manifest,
    write_jsonl,
)


def test_cache_root_follows_mgte_data(monkeypatch, tmp_path):
    monkeypatch.setenv("MGTE_DATA", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "explicit") == tmp_path / "explicit"


def test_manifest_round_trip_and_format_check(tmp_path):
    assert load_manifest(tmp_path) == {"format": 1, "sources": {}}
    save_manifest(tmp_path, {"format": 1, "sources": {"x": {"counts": {"n": 1}}}})
    assert load_manifest(tmp_path)["sources"]["x"] == {"counts": {"n": 1}}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": 99, "sources": {}}))
    with pytest.raises(ValueError, match="--force"):
        load_manifest(tmp_path)


def test_file_records_detect_changes(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    b.parent.mkdir()
    a.write_text("alpha")
    b.write_text("beta")
    records = record_files(tmp_path, [b, a])
    assert list(records) == ["a.txt", "sub/b.txt"] and records["a.txt"]["bytes"] == 5
    assert changed_files(tmp_path, records) == []
    a.write_text("alphA")  # same size, other content
    b.unlink()
    assert changed_files(tmp_path, records) == ["a.txt", "sub/b.txt"]


def test_length_stats_exact_and_sampled(tiny_tokenizer):
    texts = ["a b c", "hello world", "the cat sat on the mat", "x"] * 3
    exact = length_stats(tiny_tokenizer, texts)
    lengths = [len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert exact["texts"] == 12 and exact["tokens"] == sum(lengths) and exact["max"] == max(lengths)
    assert "estimated" not in exact
    sampled = length_stats(tiny_tokenizer, texts, max_texts=5)
    assert sampled["texts"] == 12 and sampled["sampled"] == 5 and sampled["estimated"] is True
    assert sampled == length_stats(tiny_tokenizer, texts, max_texts=5)  # seeded
    assert length_stats(tiny_tokenizer, []) == {"texts": 0, "tokens": 0}


def test_jsonl_round_trip_is_atomic(tmp_path):
    rows = [{"text": "Grüße", "n": 1}, {"text": "日本語", "n": 2}]
    path = write_jsonl(tmp_path / "out" / "rows.jsonl", iter(rows))
    assert list(read_jsonl(path)) == rows and "Grüße" in path.read_text(encoding="utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl"]


def test_lock_is_exclusive(tmp_path):
    with locked(tmp_path), open(tmp_path / ".lock") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / ".lock") as other:  # released afterwards
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
