import json
import subprocess
import sys

import numpy as np
import pytest

from mgte_hf.cli import main
from tiny import REPO, SENTENCES


def run_cli(capsys, *argv):
    code = main(["encode", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_txt_input_writes_dense_and_sparse(embedder, embedder_dir, tmp_path, capsys):
    source = tmp_path / "texts.txt"
    source.write_text(f"{SENTENCES[0]}\n\n{SENTENCES[1]}\n{SENTENCES[2]}\n", encoding="utf-8")  # a blank line
    dense_path, sparse_path = tmp_path / "out" / "x.npy", tmp_path / "out" / "x.jsonl"
    code, _, err = run_cli(capsys, "--model", str(embedder_dir), "--input", str(source), "--output-dense",
                           str(dense_path), "--output-sparse", str(sparse_path), "--dimension", "16")
    assert code == 0 and "encoded 3 texts" in err
    expected = embedder.encode(SENTENCES[:3], dimension=16)
    np.testing.assert_allclose(np.load(dense_path), expected.dense, atol=1e-6)
    rows = [json.loads(line) for line in sparse_path.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["1", "3", "4"], "ids are line numbers; blank lines are skipped"
    for row, weights in zip(rows, expected.sparse, strict=True):
        assert {int(t): w for t, w in row["sparse"].items()} == pytest.approx(weights, abs=1e-5)


def test_jsonl_input_ids_and_token_strings(embedder, embedder_dir, tmp_path, capsys):
    source = tmp_path / "corpus.jsonl"
    records = [{"_id": "a", "body": SENTENCES[5]}, {"_id": "b", "body": SENTENCES[6]}]
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    code, out, _ = run_cli(capsys, "--model", str(embedder_dir), "--input", str(source), "--field", "body",
                           "--id-field", "_id", "--output-sparse", "-", "--sparse-tokens")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]
    # one text alone against a batch of two: fp32 rounding of another GEMM shape (1e-5, as every fp32 comparison)
    assert rows[0]["sparse"] == pytest.approx(embedder.encode(SENTENCES[5]).sparse_tokens()[0], abs=1e-5)


def test_text_arguments(embedder, embedder_dir, tmp_path, capsys):
    dense_path = tmp_path / "t.npy"
    code, _, _ = run_cli(capsys, "--model", str(embedder_dir), "--text", "Hund", "--text", SENTENCES[0],
                         "--output-dense", str(dense_path))
    assert code == 0
    np.testing.assert_allclose(np.load(dense_path), embedder.encode(["Hund", SENTENCES[0]]).dense, atol=1e-6)


@pytest.mark.parametrize(("extra", "message"), [
    ([], "nothing to write"),
    (["--output-dense", "x.bin"], "must end in .npy"),
    (["--output-dense", "x.npy", "--dimension", "12"], "dimension=12 is not allowed"),
    (["--output-dense", "x.npy", "--max-length", "1"], "max_length must be an integer >= 3"),
])
def test_errors_are_one_line_with_exit_2(embedder_dir, tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "--model", str(embedder_dir), "--text", "x", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out
    assert not (tmp_path / "x.npy").exists()


def test_bad_files(embedder_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "fine"}\n{"id": 2, "title": "no text"}\n', encoding="utf-8")
    for source, message in ((bad, "bad.jsonl:2: no 'text' field"),
                            (tmp_path / "missing.txt", "does not exist"), (tmp_path / "x.csv", "expected a .jsonl")):
        (tmp_path / "x.csv").write_text("a,b\n")
        code, _, err = run_cli(capsys, "--model", str(embedder_dir), "--input", str(source), "--output-dense",
                               str(tmp_path / "y.npy"))
        assert code == 2 and message in err
    code, _, err = run_cli(capsys, "--model", str(tmp_path / "no-model"), "--text", "x", "--output-dense",
                           str(tmp_path / "y.npy"))
    assert code == 2 and "model folder" in err and "does not exist" in err


def test_help_lists_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["encode", "--help"])
    assert exit_info.value.code == 0 and "--output-sparse" in capsys.readouterr().out


@pytest.mark.slow  # a fresh interpreter imports torch and transformers: ~5-15 s
def test_console_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mgte_hf", "encode", "--model", str(tmp_path / "none"), "--text",
                           "x", "--output-dense", "x.npy"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"mgte-hf encode: error: model folder '{tmp_path / 'none'}' does "
                                                "not exist."]
