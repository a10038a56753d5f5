"""Reliability: the command line answers bad arguments with one line that says what to do, exit status 2 and no
traceback (issue: --device cuda without CUDA, search --index-dir missing, evaluate --systems bm25,colbert,
export --opset 5)."""

from __future__ import annotations

import pytest
import torch

from mgte_hf.cli import main
from mgte_hf.data import BeirDataset, write_beir
from mgte_hf.modeling import MgteForEmbedding
from tiny import make_model


def error_line(capsys, *argv: str) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and not captured.out, captured.err
    return lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
@pytest.mark.parametrize("command", ["encode", "search", "rerank", "encode-corpus", "search-shards"])
def test_device_cuda_without_cuda(command, embedder_dir, tmp_path, capsys):
    (tmp_path / "c.txt").write_text("a\nb\n")
    tail = {"encode": ["--text", "x", "--output-sparse", "-"],
            "search": ["--corpus", str(tmp_path / "c.txt"), "--query", "q"],
            "rerank": ["--documents", str(tmp_path / "c.txt"), "--query", "q"],
            "encode-corpus": ["--input", str(tmp_path / "c.txt"), "--output-dir", str(tmp_path / "out")],
            "search-shards": ["--index-dir", str(tmp_path), "--query", "q"]}[command]
    line = error_line(capsys, command, "--model", str(embedder_dir), "--device", "cuda", *tail)
    assert "CUDA is not available here" in line and "cpu" in line


def test_search_names_a_missing_index_dir(embedder_dir, tmp_path, capsys):
    line = error_line(capsys, "search", "--model", str(embedder_dir), "--index-dir", str(tmp_path / "missing"),
                      "--query", "q")
    assert f"--index-dir {tmp_path / 'missing'} does not exist" in line and "--corpus" in line
    line = error_line(capsys, "search", "--model", str(embedder_dir), "--index-dir", str(tmp_path), "--query", "q")
    assert "holds no saved index (no index.json)" in line


def test_evaluate_names_an_unknown_system(tmp_path, capsys):
    write_beir(BeirDataset({"d1": {"title": "", "text": "a"}}, {"q1": "a"}, {"q1": {"d1": 1}}), tmp_path / "set")
    line = error_line(capsys, "evaluate", "--dataset", str(tmp_path / "set"), "--output", str(tmp_path / "out"),
                      "--systems", "bm25,colbert")
    assert "unknown system 'colbert'" in line and "bm25, dense, sparse, hybrid, rerank" in line
    line = error_line(capsys, "evaluate", "--dataset", str(tmp_path / "set"), "--output", str(tmp_path / "out"),
                      "--systems", "dense")
    assert "need --model" in line


def test_export_refuses_an_opset_it_cannot_write(tmp_path, capsys):
    make_model(MgteForEmbedding, num_hidden_layers=1).save_pretrained(tmp_path / "m")
    capsys.readouterr()  # transformers' saving bar
    line = error_line(capsys, "export", str(tmp_path / "m"), str(tmp_path / "m.onnx"), "--opset", "5")
    assert "--opset 5" in line and "18 or newer" in line and not (tmp_path / "m.onnx").exists()


def test_missing_model_folder_and_bad_numbers(tmp_path, capsys):
    line = error_line(capsys, "encode", "--model", str(tmp_path / "none"), "--text", "x", "--output-sparse", "-")
    assert "does not exist" in line
    (tmp_path / "c.txt").write_text("a\n")
    line = error_line(capsys, "encode-corpus", "--model", str(tmp_path / "none"), "--input", str(tmp_path / "c.txt"),
                      "--output-dir", str(tmp_path / "c.txt"), "--device", "cpu")
    assert "is the --input" in line
