"""The four training examples end to end, each in its own process, on the tiny config and the committed data.

By default each runs a few steps with its YAML config (all four at once: they are single-threaded); the slow tests
run the configs as committed and check that the loss goes down. The paper-scale JSON configs are parsed only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgte_hf import MgteForSequenceClassification
from mgte_hf.training.arguments import (
    MgteContrastiveTrainingArguments,
    MgteEmbeddingTrainingArguments,
    MgteMLMTrainingArguments,
    MgteRerankerTrainingArguments,
)
from tiny import REPO


EXAMPLES = REPO / "examples"
ARGUMENTS = {
    "pretrain_mlm": MgteMLMTrainingArguments,
    "contrastive_pretrain": MgteContrastiveTrainingArguments,
    "finetune_embedding": MgteEmbeddingTrainingArguments,
    "train_reranker": MgteRerankerTrainingArguments,
}
# A few steps of each, through every part of the script (evaluator, saving) and one option each.
QUICK = {
    "pretrain_mlm": ["--max_steps", "6", "--eval_steps", "6", "--logging_steps", "2"],
    "contrastive_pretrain": ["--max_steps", "4", "--eval_steps", "4", "--logging_steps", "2"],
    "finetune_embedding": ["--max_steps", "4", "--eval_steps", "4", "--logging_steps", "2",
                           "--grad_cache_chunk_size", "8"],
    "train_reranker": ["--max_steps", "4", "--eval_steps", "4", "--logging_steps", "2", "--lora_r", "4",
                       "--eval_queries", "4"],
}


def launch(name: str, out: Path, extra: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    argv = [sys.executable, str(EXAMPLES / f"{name}.py"), str(EXAMPLES / "configs" / f"{name}.yaml"),
            "--output_dir", str(out), *extra]
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(proc: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-4000:]
    return output


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Output folders of the four quick runs, started together."""
    root = tmp_path_factory.mktemp("examples")
    procs = {name: launch(name, root / name, extra) for name, extra in QUICK.items()}
    return {name: (root / name, finished(proc)) for name, proc in procs.items()}


def curve(out: Path) -> dict:
    return json.loads((out / "loss_curve.json").read_text())


def saved_config(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())


def test_pretrain_mlm_runs_its_curriculum_and_saves_the_last_stage(quick_runs):
    out, _ = quick_runs["pretrain_mlm"]
    config = saved_config(out)
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 160000.0}
    assert config["max_position_embeddings"] == 256
    assert len(curve(out)["loss"]) == 3 and any("eval_loss" in h for h in curve(out)["eval"])
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_contrastive_pretrain_saves_the_revntk_inference_config(quick_runs):
    out, _ = quick_runs["contrastive_pretrain"]
    config = saved_config(out)
    assert config["rope_parameters"] == {"rope_type": "ntk", "rope_theta": 20000.0, "factor": 8.0}
    assert any("eval_dense_ndcg@10" in h for h in curve(out)["eval"])


def test_finetune_embedding_logs_dense_matryoshka_and_sparse_parts(quick_runs):
    out, output = quick_runs["finetune_embedding"]
    assert all(part in output for part in ("loss_dense", "loss_sparse", "loss_dense_dim_32", "loss_dense_dim_64"))
    assert any("eval_hybrid_ndcg@10" in h for h in curve(out)["eval"])
    assert (out / "model.safetensors").is_file()


def test_train_reranker_with_lora_saves_the_adapter_and_a_merged_checkpoint(quick_runs):
    out, _ = quick_runs["train_reranker"]
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    merged = MgteForSequenceClassification.from_pretrained(out / "merged")
    assert merged.config.num_labels == 1 and not any("lora" in name for name in merged.state_dict())
    assert any("eval_rerank_mrr@10" in h for h in curve(out)["eval"])


@pytest.mark.parametrize("name", list(ARGUMENTS))
def test_configs_parse_from_yaml_and_json_with_command_line_overrides(name, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    example_utils = pytest.importorskip("example_utils")
    script = __import__(name)
    for config in (f"{name}.yaml", f"{name}_paper.json"):
        # the paper configs ask for fp16/bf16, which this CPU-only machine refuses: override them
        monkeypatch.setattr(sys, "argv", [name, str(EXAMPLES / "configs" / config), "--bf16", "false",
                                          "--fp16", "false", "--seed", "7"])
        model_args, data_args, training_args = example_utils.parse_args(
            example_utils.ModelArguments, script.DataArguments, ARGUMENTS[name])
        assert isinstance(training_args, ARGUMENTS[name]) and training_args.seed == 7
        assert training_args.output_dir.startswith("runs/")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ARGUMENTS))
def test_committed_tiny_config_lowers_the_loss(name, tmp_path):
    out = tmp_path / name
    finished(launch(name, out, []), timeout=600)
    losses = curve(out)["loss"]
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["contrastive_pretrain", "finetune_embedding"])
def test_example_runs_under_torchrun_with_two_processes(name, tmp_path):
    """DDP on the CPU (gloo): cross-device negatives, single-source or token-budget batches dealt to 2 processes."""
    out = tmp_path / name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(EXAMPLES / f"{name}.py"),
            str(EXAMPLES / "configs" / f"{name}.yaml"), "--output_dir", str(out), *QUICK[name]]
    finished(subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    assert len(curve(out)["loss"]) == 2 and (out / "model.safetensors").is_file()
