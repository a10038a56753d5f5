"""Atomic files and staged folders (`mgte_hf.outputs`)."""

import os

import pytest

from mgte_hf.outputs import PARTIAL_SUFFIX, staged_folder, write_atomic, write_synced


def test_write_atomic_replaces_in_one_rename(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    write_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    write_atomic(path, (f"line {i}\n" for i in range(3)), sync=True)
    assert path.read_text() == "line 0\nline 1\nline 2\n"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no partial file left


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def lines():
        yield "half"
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomic(path, lines())
    assert path.read_text() == "old" and (tmp_path / f"out.txt{PARTIAL_SUFFIX}").exists()


def test_write_synced_records_the_bytes(tmp_path):
    record = write_synced(tmp_path / "f", b"abc")
    assert record == {"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "bytes": 3}


def test_staged_folder(tmp_path):
    with staged_folder(tmp_path / "out") as tmp:
        (tmp / "a").write_text("1")
    assert os.listdir(tmp_path / "out") == ["a"]
    with pytest.raises(FileExistsError, match="not empty"), staged_folder(tmp_path / "out"):
        pass
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "out", overwrite=True) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError("failed half way")
    assert os.listdir(tmp_path / "out") == ["a"] and sorted(os.listdir(tmp_path)) == ["out"]  # untouched, no debris
    with staged_folder(tmp_path / "out", overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    assert os.listdir(tmp_path / "out") == ["b"]
    with pytest.raises(ValueError, match="holds the input"), staged_folder(tmp_path, inputs=[tmp_path / "out"]):
        pass
