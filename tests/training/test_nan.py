"""A loss that turns NaN or infinite stops the run with a clear message naming the step, before the weights move."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from mgte_hf import MgteForEmbedding, MgteForMaskedLM
from mgte_hf.training.arguments import (
    MgteContrastiveTrainingArguments,
    MgteEmbeddingTrainingArguments,
    MgteMLMTrainingArguments,
)
from mgte_hf.training.losses import TRMLoss
from mgte_hf.training.trainers import MgteContrastiveTrainer, MgteEmbeddingTrainer, MgteMLMTrainer
from tiny import SENTENCES, make_model


PLAIN_ROPE = {"rope_theta": 160000.0, "rope_scaling": None, "max_position_embeddings": 128}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pairs(count: int = 16) -> list[dict]:
    n = len(SENTENCES)
    return [{"query": SENTENCES[i % n], "positive": SENTENCES[(i + 1) % n],
             "negatives": [SENTENCES[(i + 2) % n]]} for i in range(count)]


def common(tmp_path, **overrides) -> dict:
    return {"output_dir": str(tmp_path), "report_to": "none", "use_cpu": True, "disable_tqdm": True,
            "per_device_train_batch_size": 4, "logging_steps": 1, "learning_rate": 1e-3, "seed": 0, **overrides}


class PoisonedTRMLoss(TRMLoss):
    """The real TRM loss, multiplied by `poison` on its `at`-th call (1-based)."""

    def __init__(self, at: int, poison: float, **kwargs):
        super().__init__(**kwargs)
        self.at, self.poison, self.calls = at, poison, 0

    def forward(self, query, passages):
        self.calls += 1
        parts = super().forward(query, passages)
        if self.calls == self.at:
            parts["loss"] = parts["loss"] * self.poison
        return parts


class WeightSnapshots(TrainerCallback):
    def __init__(self):
        self.after_step: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after_step[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_non_finite_loss_stops_at_its_step_before_the_optimizer_moves(tmp_path, tiny_tokenizer, poison):
    model = make_model(MgteForEmbedding, **PLAIN_ROPE).train()
    snapshots = WeightSnapshots()
    args = MgteEmbeddingTrainingArguments(**common(tmp_path, max_steps=6, save_strategy="steps", save_steps=1),
                                          query_max_length=48, passage_max_length=48, num_negatives=1)
    trainer = MgteEmbeddingTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs()),
                                   processing_class=tiny_tokenizer, callbacks=[snapshots],
                                   loss=PoisonedTRMLoss(at=3, poison=poison, ignore_token_ids=[0, 1, 2, 3]))
    name = "nan" if poison != poison else "inf"
    with pytest.raises(FloatingPointError, match=rf"not finite at training step 3 \(epoch .*loss={name}.*"
                                                 r"the last checkpoint is .*checkpoint-2"):
        trainer.train()
    assert trainer.state.global_step == 2
    for param_name, param in model.named_parameters():  # the poisoned step did not reach the weights
        assert torch.equal(param, snapshots.after_step[2][param_name]), param_name
        assert torch.isfinite(param).all()


def test_overflowing_scores_give_nan_at_the_first_step(tmp_path, tiny_tokenizer):
    """A real NaN: a temperature so small that scores / τ overflow to ±inf in the InfoNCE softmax."""
    model = make_model(MgteForEmbedding, **PLAIN_ROPE).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = MgteContrastiveTrainingArguments(**common(tmp_path, max_steps=2, save_strategy="no"), temperature=1e-45,
                                            rev_ntk_factor=1, query_max_length=48, passage_max_length=48)
    trainer = MgteContrastiveTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs()),
                                     processing_class=tiny_tokenizer)
    with pytest.raises(FloatingPointError, match=r"training step 1 .*loss=nan.*no checkpoint was saved yet"):
        trainer.train()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_mlm_loss_turning_infinite_names_the_step(tmp_path, tiny_tokenizer):
    model = make_model(MgteForMaskedLM, **PLAIN_ROPE).train()

    class Blowup(TrainerCallback):  # a weight overflows after step 2: the next loss is no longer finite
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 2:
                with torch.no_grad():
                    model.lm_head.decoder.bias.fill_(float("inf"))

    args = MgteMLMTrainingArguments(**common(tmp_path, max_steps=4, save_strategy="no"),
                                    curriculum_max_lengths=[48], curriculum_rope_thetas=[10000.0])
    trainer = MgteMLMTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": SENTENCES}),
                             processing_class=tiny_tokenizer, callbacks=[Blowup()])
    with pytest.raises(FloatingPointError, match=r"MgteMLMTrainer: the loss is not finite at training step 3"):
        trainer.train()
