"""A real training process killed with SIGKILL mid-run and resumed from its last checkpoint ends with the same
weights as an uninterrupted run (dropout, token-budget batches over several epochs, optimizer and scheduler)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mgte_hf.tokenizer import build_tiny_tokenizer
from tiny import REPO


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


DRIVER = r'''
import json, sys, time
from pathlib import Path

from datasets import Dataset
from transformers import AutoTokenizer, TrainerCallback

from mgte_hf import MgteConfig, MgteForEmbedding, MgteForMaskedLM
from mgte_hf.training.arguments import MgteEmbeddingTrainingArguments, MgteMLMTrainingArguments
from mgte_hf.training.trainers import MgteEmbeddingTrainer, MgteMLMTrainer
from transformers import set_seed

stage, out, pause_at, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume"
data, tokenizer = Path(sys.argv[5]), AutoTokenizer.from_pretrained(sys.argv[6])
texts = (data / "mlm.txt").read_text(encoding="utf-8").splitlines()


class Pause(TrainerCallback):
    """Signal the test and wait to be killed, two steps after a checkpoint."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == pause_at:
            Path(out, "ready").write_text(str(state.global_step))
            time.sleep(600)


set_seed(0)
config = MgteConfig(vocab_size=448, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                    max_position_embeddings=256, rope_theta=10000.0, rope_scaling=None, hidden_dropout_prob=0.1,
                    pad_token_id=1)
common = dict(output_dir=out, report_to="none", use_cpu=True, disable_tqdm=True, seed=3, learning_rate=2e-3,
              max_steps=14, save_strategy="steps", save_steps=5, logging_steps=1)
callbacks = [] if pause_at < 0 else [Pause()]
if stage == "embedding":
    rows = [json.loads(line) for line in (data / "finetune.jsonl").read_text(encoding="utf-8").splitlines()][:40]
    args = MgteEmbeddingTrainingArguments(**common, max_tokens_per_batch=2500, query_max_length=32,
                                          passage_max_length=64, num_negatives=2, matryoshka_dimensions=[16, 32])
    trainer = MgteEmbeddingTrainer(model=MgteForEmbedding(config), args=args, train_dataset=Dataset.from_list(rows),
                                   processing_class=tokenizer, callbacks=callbacks)
else:
    args = MgteMLMTrainingArguments(**common, per_device_train_batch_size=16, curriculum_max_lengths=[32, 64],
                                    curriculum_rope_thetas=[10000.0, 160000.0], curriculum_stage_steps=[6, 8])
    trainer = MgteMLMTrainer(model=MgteForMaskedLM(config), args=args,
                             train_dataset=Dataset.from_dict({"text": texts[:80]}), processing_class=tokenizer,
                             callbacks=callbacks)
trainer.train(resume_from_checkpoint=True if resume else None)
trainer.save_model(str(Path(out, "final")))
'''


def _launch(script: Path, stage: str, out: Path, pause_at: int, mode: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, str(script), stage, str(out), str(pause_at), mode,
                             str(REPO / "examples" / "data"), str(script.parent / "tokenizer")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output[-3000:]
    return output


def _run_killed_and_resumed(tmp_path: Path, stage: str) -> tuple[dict, dict, Path]:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    # one tokenizer for all three runs (training a Unigram tokenizer twice does not give the same vocabulary)
    build_tiny_tokenizer(read_lines(REPO / "examples" / "data" / "mlm.txt"), vocab_size=400,
                         save_dir=tmp_path / "tokenizer")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = _launch(script, stage, straight, -1, "fresh")  # runs beside the killed one (2 cores)
    victim = _launch(script, stage, killed, 12, "fresh")  # checkpoints at 5 and 10, paused at 12
    deadline = time.monotonic() + 240
    while not (killed / "ready").exists():
        assert victim.poll() is None, victim.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the run to kill never reached step 12"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert not (killed / "final").exists() and (killed / "checkpoint-10" / "trainer_state.json").exists()
    _finish(_launch(script, stage, killed, -1, "resume"))
    _finish(reference)
    return (load_file(straight / "final" / "model.safetensors"), load_file(killed / "final" / "model.safetensors"),
            killed)


def _assert_same_weights(expected: dict, got: dict) -> None:
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(got[name], tensor, atol=1e-6, rtol=0, msg=name)


def test_killed_embedding_run_resumes_to_the_same_weights(tmp_path):
    expected, got, killed = _run_killed_and_resumed(tmp_path, "embedding")
    _assert_same_weights(expected, got)
    assert any(not torch.equal(got[n], t) for n, t in load_file(killed / "checkpoint-10" / "model.safetensors")
               .items())  # the resumed run did train past its checkpoint


@pytest.mark.slow
def test_killed_mlm_run_resumes_through_the_curriculum_to_the_same_weights(tmp_path):
    """Killed in the second curriculum stage: the resumed run re-enters it (RoPE base, length) at its step."""
    expected, got, _ = _run_killed_and_resumed(tmp_path, "mlm")
    _assert_same_weights(expected, got)
