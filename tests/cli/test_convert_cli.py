"""`mgte-hf convert`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mgte_hf.cli import build_parser, main


def test_convert_to_each_layout_and_back(fixture_dir, tmp_path, capsys):
    src = fixture_dir / "seq_cls"
    assert main(["convert", str(src), str(tmp_path / "gte"), "--to", "gte"]) == 0
    assert "(new, MgteForSequenceClassification, float32)" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "gte"), str(tmp_path / "ours"), "--to", "mgte"]) == 0
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "new"), "--to", "new"]) == 0
    back, original = (json.loads((d / "config.json").read_text()) for d in (tmp_path / "new", src))
    # gte stores RoPE as linear scaling by f^(2/d) at theta·f, so the base comes back up to float rounding
    assert back.pop("rope_theta") == pytest.approx(original.pop("rope_theta"), rel=1e-12)
    assert back == original
    assert json.loads((tmp_path / "gte" / "config.json").read_text())["model_type"] == "gte"


def test_refuses_a_non_empty_output_without_overwrite(fixture_dir, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep")
    assert main(["convert", str(fixture_dir / "backbone"), str(tmp_path / "out"), "--to", "gte"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "notes.txt").read_text() == "keep"
    assert main(["convert", str(fixture_dir / "backbone"), str(tmp_path / "out"), "--to", "gte", "--overwrite"]) == 0
    assert not (tmp_path / "out" / "notes.txt").exists()


def test_clear_errors(fixture_dir, tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "out"), "--to", "new"]) == 2
    assert "checkpoint folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["convert", str(fixture_dir / "backbone"), str(tmp_path / "out"), "--to", "onnx"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow  # two fresh interpreters importing torch: 20-40 s on a loaded 2-core machine
def test_console_script_help_and_run(fixture_dir, tmp_path):
    """The installed entry point, in a fresh process."""
    exe = os.path.join(os.path.dirname(sys.executable), "mgte-hf")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    helped = subprocess.run([exe, "convert", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert helped.returncode == 0 and "text-embeddings-inference" in helped.stdout
    run = subprocess.run([exe, "convert", str(fixture_dir / "token_cls"), str(tmp_path / "gte"), "--to", "gte"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "gte" / "model.safetensors").is_file()
