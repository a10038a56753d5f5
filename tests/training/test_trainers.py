"""The four mGTE trainers on tiny models with the real tokenizer, collators, losses, samplers and PEFT."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback

from mgte_hf import MgteConfig, MgteForEmbedding, MgteForMaskedLM, MgteForSequenceClassification
from mgte_hf.adapters import apply_lora, merge_and_unload
from mgte_hf.modeling import rope_inv_freq
from mgte_hf.training.arguments import (
    MgteContrastiveTrainingArguments,
    MgteEmbeddingTrainingArguments,
    MgteMLMTrainingArguments,
    MgteRerankerTrainingArguments,
)
from mgte_hf.training.losses import TRMLoss
from mgte_hf.training.samplers import SingleSourceBatchSampler, TokenBudgetBatchSampler
from mgte_hf.training.trainers import (
    MgteContrastiveTrainer,
    MgteEmbeddingTrainer,
    MgteMLMTrainer,
    MgteRerankerTrainer,
    stagewise_lr_factor,
    truncate_packed,
)
from tiny import SENTENCES, make_model


LENGTH = 48  # every test sentence fits (at most 43 tiny-tokenizer tokens)
PLAIN_ROPE = {"rope_theta": 160000.0, "rope_scaling": None, "max_position_embeddings": 128}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small matmuls run faster on one thread, and much faster when other processes load the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def group_rows(count: int = 12, negatives: int = 2) -> list[dict]:
    """Query = a sentence, positive = the next one, negatives = the following ones; two sources."""
    n = len(SENTENCES)
    return [{"query": SENTENCES[i % n], "positive": SENTENCES[(i + 1) % n],
             "negatives": [SENTENCES[(i + 2 + j) % n] for j in range(negatives)], "source": "ab"[i % 2]}
            for i in range(count)]


def training_args(cls, tmp_path, **overrides):
    base = dict(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, disable_tqdm=True,
                save_strategy="no", logging_steps=1, max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
                seed=0)
    if cls is not MgteMLMTrainingArguments:
        length_fields = ("max_length",) if cls is MgteRerankerTrainingArguments else ("query_max_length",
                                                                                         "passage_max_length")
        base.update({name: 2 * LENGTH if name == "max_length" else LENGTH for name in length_fields})
    if cls in (MgteEmbeddingTrainingArguments, MgteContrastiveTrainingArguments):
        base["num_negatives"] = 2
    if cls is MgteRerankerTrainingArguments:
        base["group_size"] = 3
    return cls(**{**base, **overrides})


def embedding_trainer(tmp_path, tokenizer, model=None, rows=None, **overrides):
    model = model if model is not None else make_model(MgteForEmbedding, **PLAIN_ROPE).train()
    args = training_args(MgteEmbeddingTrainingArguments, tmp_path, **overrides)
    return MgteEmbeddingTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows or group_rows()),
                                processing_class=tokenizer)


class Recorder(TrainerCallback):
    """Calls `fn(state, model)` at the end of every optimizer step and keeps the results."""

    def __init__(self, fn):
        self.fn, self.seen = fn, []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.seen.append(self.fn(state, model))


class RecordingTRMLoss(TRMLoss):
    """TRMLoss that keeps the detached parts of every call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls: list[dict[str, float]] = []

    def forward(self, query, passages):
        parts = super().forward(query, passages)
        self.calls.append({k: float(v.detach()) for k, v in parts.items()})
        return parts


# ============================================================================================== logging
def test_every_loss_part_is_logged_as_its_mean_over_the_logging_window(tmp_path, tiny_tokenizer):
    loss = RecordingTRMLoss(matryoshka_dimensions=[16, 32], ignore_token_ids=[0, 1, 2, 3])
    trainer = embedding_trainer(tmp_path, tiny_tokenizer, max_steps=4, logging_steps=2)
    trainer.loss = loss
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["step"] for h in logs] == [2, 4]
    for log, calls in zip(logs, (loss.calls[:2], loss.calls[2:4])):
        assert {"loss_dense", "loss_sparse", "loss_dense_dim_16", "loss_dense_dim_32"} <= set(log)
        for part in ("dense", "sparse", "dense_dim_16", "dense_dim_32"):
            assert log[f"loss_{part}"] == pytest.approx(sum(c[part] for c in calls) / 2, abs=2e-6)
        assert log["loss"] == pytest.approx(sum(c["loss"] for c in calls) / 2, rel=1e-5)
    assert len(loss.calls) == 4


# ============================================================================================== MLM curriculum
def test_mlm_curriculum_switches_rope_base_and_context_length(tmp_path, tiny_tokenizer):
    texts = [" ".join(SENTENCES[i:i + 3]) for i in range(0, 18)]  # up to ~120 tokens, cut by the stages
    model = make_model(MgteForMaskedLM, **PLAIN_ROPE).train()
    seen = []  # (RoPE base, longest sequence) of every training forward
    model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((m.config.rope_theta, int(kwargs["seqlens"].max())))
        if "seqlens" in kwargs else None, with_kwargs=True)
    logits = []  # the head runs at the masked positions only: (n_labelled, V) logits, the config left as it was
    model.register_forward_hook(lambda m, args, out: logits.append(out.logits.dim()))
    args = training_args(MgteMLMTrainingArguments, tmp_path, max_steps=4, curriculum_max_lengths=[16, 40],
                         curriculum_rope_thetas=[10000, 160000], curriculum_stage_steps=[2, 2])
    recorder = Recorder(lambda state, m: (state.global_step, m.config.rope_theta, m.config.rope_scaling,
                                          m.config.max_position_embeddings))
    trainer = MgteMLMTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts}),
                             processing_class=tiny_tokenizer, callbacks=[recorder])
    assert trainer.data_collator.max_length == 40  # collates at the longest stage; each step cuts to its own
    trainer.train()
    assert recorder.seen == [(1, 10000.0, None, 16), (2, 10000.0, None, 16), (3, 160000.0, None, 40),
                             (4, 160000.0, None, 40)]
    assert [theta for theta, _ in seen] == [10000.0, 10000.0, 160000.0, 160000.0]
    assert [longest for _, longest in seen[:2]] == [16, 16] and 16 < max(n for _, n in seen[2:]) <= 40
    logged = [(h["rope_theta"], h["max_length"]) for h in trainer.state.log_history if "loss" in h]
    assert logged == [(10000.0, 16), (10000.0, 16), (160000.0, 40), (160000.0, 40)]
    assert logits == [2] * 4 and model.config.sparse_prediction is False

    # RoPE comes from the config at every forward: the model equals a fresh one built from its current config
    model.eval()
    with torch.no_grad():
        for layer in model.new.encoder.layer:  # sharp attention, so that positions matter
            layer.attention.qkv_proj.weight.mul_(20)
        ids = tiny_tokenizer([texts[0]], return_tensors="pt")["input_ids"][:, :40]
        outputs = {}
        for theta in (160000.0, 10000.0):
            model.config.rope_theta = theta
            fresh = MgteForMaskedLM(MgteConfig.from_dict(model.config.to_dict())).eval()
            fresh.load_state_dict(model.state_dict())
            outputs[theta] = model(input_ids=ids).logits
            torch.testing.assert_close(fresh(input_ids=ids).logits, outputs[theta])
        assert (outputs[160000.0] - outputs[10000.0]).abs().max() > 1e-2


def test_truncate_packed_keeps_each_sequences_head_and_last_token():
    batch = {"input_ids": torch.tensor([[0, 5, 6, 7, 8, 2, 0, 9, 2]]), "labels": torch.tensor([[-100, 5, -100, 7,
             -100, -100, -100, 9, -100]]), "seqlens": torch.tensor([6, 3])}
    cut = truncate_packed(batch, 4)
    assert cut["input_ids"].tolist() == [[0, 5, 6, 2, 0, 9, 2]]
    assert cut["labels"].tolist() == [[-100, 5, -100, -100, -100, 9, -100]]
    assert cut["seqlens"].tolist() == [4, 3]
    assert batch["seqlens"].tolist() == [6, 3]  # the caller's batch is untouched
    assert truncate_packed(batch, 6)["input_ids"] is batch["input_ids"]


def test_stagewise_learning_rate_warms_up_and_decays_within_each_stage():
    factor = [stagewise_lr_factor(s, stage_steps=[10, 4], peaks=[1.0, 0.1], warmup_ratio=0.2) for s in range(15)]
    assert factor[:3] == [0.0, 0.5, 1.0]  # 2 warm-up steps to the first peak
    assert factor[9] == pytest.approx(1.0 / 8)  # linear decay to 0 at the stage's end
    assert factor[10] == 0.0 and factor[11] == pytest.approx(0.1)  # 1 warm-up step to the second peak
    assert factor[13] == pytest.approx(0.1 / 3) and factor[14] == 0.0


def test_stagewise_schedule_is_built_again_for_each_train_call(tmp_path, tiny_tokenizer):
    model = make_model(MgteForMaskedLM, **PLAIN_ROPE).train()
    args = training_args(MgteMLMTrainingArguments, tmp_path, max_steps=4, curriculum_max_lengths=[16, 24],
                         curriculum_rope_thetas=[10000, 160000], curriculum_stage_steps=[2, 2],
                         curriculum_learning_rates=[1e-3, 1e-4], warmup_steps=0.5)
    trainer = MgteMLMTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": SENTENCES}),
                             processing_class=tiny_tokenizer)
    trainer.train()
    first = trainer.lr_scheduler
    assert first.lr_lambdas[0].keywords["stage_steps"] == [2, 2]
    args.max_steps, args.curriculum_stage_steps = 6, [4, 2]
    trainer.train()
    assert trainer.lr_scheduler is not first and trainer.lr_scheduler.lr_lambdas[0].keywords["stage_steps"] == [4, 2]


def test_mlm_stage_steps_default_to_the_papers_proportions():
    args = MgteMLMTrainingArguments(output_dir="unused", report_to="none")
    assert args.stage_steps(280) == [250, 30]
    with pytest.raises(ValueError, match="too few"):
        args.stage_steps(1)


# ============================================================================================== revNTK
def test_contrastive_trainer_trains_at_base_over_f_and_saves_the_inference_config(tmp_path, tiny_tokenizer):
    model = make_model(MgteForEmbedding, **PLAIN_ROPE).train()
    seen_by_evaluator = []

    def evaluator(m):
        seen_by_evaluator.append((m.training, m.config.rope_theta, m.config.rope_scaling))
        return {"score": 0.5}

    args = training_args(MgteContrastiveTrainingArguments, tmp_path, rev_ntk_factor=8, num_negatives=0,
                         max_steps=2, save_strategy="steps", save_steps=1, eval_strategy="steps", eval_steps=2)
    recorder = Recorder(lambda state, m: (m.config.rope_theta, m.config.rope_scaling))
    trainer = MgteContrastiveTrainer(model=model, args=args, train_dataset=Dataset.from_list(group_rows()),
                                     processing_class=tiny_tokenizer, evaluator=evaluator, callbacks=[recorder])
    trainer.train()
    ntk8 = {"type": "ntk", "factor": 8.0}
    assert recorder.seen == [(20000.0, None)] * 2  # trained at 160000 / 8 with plain RoPE
    assert seen_by_evaluator == [(False, 20000.0, ntk8)]  # evaluated as it will be used
    assert any(h.get("eval_score") == 0.5 for h in trainer.state.log_history)
    assert (model.config.rope_theta, model.config.rope_scaling) == (20000.0, ntk8)  # leaves in inference form
    checkpoint = json.loads((tmp_path / "out" / "checkpoint-1" / "config.json").read_text())
    assert checkpoint["rope_parameters"] == {"rope_type": "ntk", "rope_theta": 20000.0, "factor": 8.0}

    trainer.save_model(str(tmp_path / "final"))
    saved = MgteForEmbedding.from_pretrained(tmp_path / "final")
    assert (saved.config.rope_theta, saved.config.rope_scaling, saved.config.max_position_embeddings) == (
        20000.0, ntk8, 128)
    # the released meaning: frequencies of base 160000, scaled by 8^(-2/d), at every length
    d = saved.config.head_dim
    j = torch.arange(0, d, 2, dtype=torch.float32)
    torch.testing.assert_close(rope_inv_freq(saved.config), 160000.0 ** (-j / d) * 8.0 ** (-2 / d))
    ids = tiny_tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(saved.eval()(**ids).dense, model.eval()(**ids).dense)


def test_revntk_starts_from_a_released_config_and_refuses_other_scalings(tmp_path, tiny_tokenizer):
    released = make_model(MgteForEmbedding, rope_theta=20000.0, rope_scaling={"type": "ntk", "factor": 8.0},
                          max_position_embeddings=128).train()
    recorder = Recorder(lambda state, m: (m.config.rope_theta, m.config.rope_scaling))
    args = training_args(MgteContrastiveTrainingArguments, tmp_path, max_steps=1)
    MgteContrastiveTrainer(model=released, args=args, train_dataset=Dataset.from_list(group_rows()),
                           processing_class=tiny_tokenizer, callbacks=[recorder]).train()
    assert recorder.seen == [(20000.0, None)]
    assert released.config.rope_scaling == {"type": "ntk", "factor": 8.0}
    other = make_model(MgteForEmbedding, max_position_embeddings=128)  # NTK factor 2
    with pytest.raises(ValueError, match="revNTK by 8"):
        MgteContrastiveTrainer(model=other, args=args, train_dataset=Dataset.from_list(group_rows()),
                               processing_class=tiny_tokenizer)
    assert other.config.rope_scaling == {"type": "ntk", "factor": 2.0}


# ============================================================================================== evaluator
def test_evaluator_runs_at_eval_steps_in_eval_mode_next_to_the_eval_loss(tmp_path, tiny_tokenizer):
    calls = []

    def evaluator(model):
        calls.append(model.training)
        return {"ndcg@10": 0.25 * len(calls)}

    rows = group_rows()
    args = training_args(MgteEmbeddingTrainingArguments, tmp_path, max_steps=2, eval_strategy="steps", eval_steps=1)
    trainer = MgteEmbeddingTrainer(model=make_model(MgteForEmbedding, **PLAIN_ROPE).train(), args=args,
                                   train_dataset=Dataset.from_list(rows), eval_dataset=Dataset.from_list(rows[:4]),
                                   processing_class=tiny_tokenizer, evaluator=evaluator)
    trainer.train()
    assert calls == [False, False]
    scores = [h["eval_ndcg@10"] for h in trainer.state.log_history if "eval_ndcg@10" in h]
    assert scores == [0.25, 0.5]
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 2 and all({"eval_loss_dense", "eval_loss_sparse"} <= set(h) for h in evals)


def test_eval_strategy_without_dataset_or_evaluator_is_refused(tmp_path, tiny_tokenizer):
    with pytest.raises(ValueError, match="neither an eval_dataset nor an evaluator"):
        embedding_trainer(tmp_path, tiny_tokenizer, eval_strategy="steps", eval_steps=1)


# ============================================================================================== gradient caching
def _step_gradients(trainer, batch):
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer.training_step(trainer.model, copy.deepcopy(batch))
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return float(loss), grads


@pytest.mark.parametrize("stage", ["embedding", "contrastive", "reranker"])
def test_grad_cache_step_gives_the_gradients_of_the_whole_batch(tmp_path, tiny_tokenizer, stage):
    cls, args_cls, trainer_cls, extra = {
        "embedding": (MgteForEmbedding, MgteEmbeddingTrainingArguments, MgteEmbeddingTrainer, {}),
        "contrastive": (MgteForEmbedding, MgteContrastiveTrainingArguments, MgteContrastiveTrainer, {}),
        "reranker": (MgteForSequenceClassification, MgteRerankerTrainingArguments, MgteRerankerTrainer,
                     {"num_labels": 1}),
    }[stage]
    rows = group_rows(6)
    results = []
    for chunk in (None, 4):
        model = make_model(cls, **PLAIN_ROPE, **extra).train()
        args = training_args(args_cls, tmp_path, grad_cache_chunk_size=chunk)
        trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tiny_tokenizer)
        results.append(_step_gradients(trainer, trainer.data_collator(rows)))
    (loss, grads), (cached_loss, cached_grads) = results
    assert cached_loss == pytest.approx(loss, rel=1e-5)
    assert grads.keys() == cached_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(cached_grads[name], grad, atol=2e-5, rtol=1e-4, msg=name)


# ============================================================================================== LoRA
def test_lora_trains_adapters_and_heads_only_and_merges_to_a_plain_checkpoint(tmp_path, tiny_tokenizer):
    base = make_model(MgteForEmbedding, **PLAIN_ROPE)
    frozen_before = base.new.embeddings.word_embeddings.weight.clone()
    head_before = base.classifier.weight.clone()
    peft_model = apply_lora(base, r=4, alpha=8)
    lora_b_before = {n: p.clone() for n, p in peft_model.named_parameters() if "lora_B" in n}
    trainer = embedding_trainer(tmp_path, tiny_tokenizer, model=peft_model, max_steps=2, learning_rate=1e-2)
    trainer.train()
    assert torch.equal(base.new.embeddings.word_embeddings.weight, frozen_before)
    assert not torch.equal(base.classifier.weight, head_before)
    assert any(not torch.equal(p, lora_b_before[n]) for n, p in peft_model.named_parameters() if "lora_B" in n)
    trainer.save_model(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()

    merged = merge_and_unload(peft_model).eval()
    merged.save_pretrained(tmp_path / "merged")
    reloaded = MgteForEmbedding.from_pretrained(tmp_path / "merged").eval()
    ids = tiny_tokenizer(SENTENCES[:3], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**ids).dense, merged(**ids).dense)


# ============================================================================================== batching
def _own_sampler(loader):
    """Our batch sampler, inside accelerate's per-process wrapper when there is one."""
    return getattr(loader.batch_sampler, "batch_sampler", loader.batch_sampler)


def test_single_source_batches_hold_one_source_each(tmp_path, tiny_tokenizer):
    trainer = embedding_trainer(tmp_path, tiny_tokenizer, single_source_batches=True, per_device_train_batch_size=3)
    loader = trainer.get_train_dataloader()
    assert isinstance(_own_sampler(loader), SingleSourceBatchSampler)
    rows = trainer.train_dataset
    for indices in loader.batch_sampler:
        assert len({rows[i]["source"] for i in indices}) == 1


def test_token_budget_batches_stay_under_the_budget(tmp_path, tiny_tokenizer):
    trainer = embedding_trainer(tmp_path, tiny_tokenizer, max_tokens_per_batch=400)
    loader = trainer.get_train_dataloader()
    assert isinstance(_own_sampler(loader), TokenBudgetBatchSampler)
    lengths = trainer.example_lengths(trainer.train_dataset)
    batches = list(loader.batch_sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(trainer.train_dataset)))
    assert all(len(b) * max(lengths[i] for i in b) <= 400 for b in batches if len(b) > 1)
    assert len(batches) > 1


# ============================================================================================== saving
def test_saved_model_is_safetensors_with_json_arguments_and_reloads(tmp_path, tiny_tokenizer):
    model = make_model(MgteForSequenceClassification, num_labels=1, **PLAIN_ROPE).train()
    args = training_args(MgteRerankerTrainingArguments, tmp_path, max_steps=1)
    trainer = MgteRerankerTrainer(model=model, args=args, train_dataset=Dataset.from_list(group_rows()),
                                  processing_class=tiny_tokenizer)
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    files = {p.name for p in (tmp_path / "final").iterdir()}
    assert {"model.safetensors", "config.json", "training_args.json", "tokenizer.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files)
    assert json.loads((tmp_path / "final" / "training_args.json").read_text())["group_size"] == 3
    reloaded = MgteForSequenceClassification.from_pretrained(tmp_path / "final").eval()
    pairs = tiny_tokenizer(SENTENCES[:2], SENTENCES[2:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**pairs).logits, model.eval()(**pairs).logits)


# ============================================================================================== bad input
def _bad_rows(kind: str) -> list[dict]:
    rows = group_rows(6)
    if kind == "no positive":
        del rows[3]["positive"]
    elif kind == "too few negatives":
        rows[4]["negatives"] = rows[4]["negatives"][:1]
    elif kind == "label out of range":
        rows[2] = {"query": "q", "passages": ["a", "b", "c"], "label": 5}
    elif kind == "empty query":
        rows[1]["query"] = ""
    return rows


@pytest.mark.parametrize(("kind", "message"), [
    ("no positive", "example 3 .*has no positive"),
    ("too few negatives", "example 4 has 1 negatives, fewer than num_negatives=2"),
    ("label out of range", "example 2: label 5 is out of range"),
    ("empty query", "example 1 needs a non-empty 'query'"),
])
@pytest.mark.parametrize("stage", ["embedding", "reranker"])
def test_bad_examples_are_refused_before_the_first_step(tmp_path, tiny_tokenizer, kind, message, stage):
    rows = _bad_rows(kind)
    before = copy.deepcopy(rows)
    if stage == "embedding":
        model, args, trainer_cls = (make_model(MgteForEmbedding, **PLAIN_ROPE),
                                    training_args(MgteEmbeddingTrainingArguments, tmp_path), MgteEmbeddingTrainer)
    else:
        model, args, trainer_cls = (make_model(MgteForSequenceClassification, num_labels=1, **PLAIN_ROPE),
                                    training_args(MgteRerankerTrainingArguments, tmp_path), MgteRerankerTrainer)
    with pytest.raises(ValueError, match=f"train dataset: {message}"):
        trainer_cls(model=model, args=args, train_dataset=rows, processing_class=tiny_tokenizer)
    assert rows == before


@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda tmp, tok: embedding_trainer(tmp, tok, passage_max_length=200), ValueError,
     "passage_max_length=200 exceeds the model's max_position_embeddings \\(128\\)"),
    (lambda tmp, tok: embedding_trainer(tmp, tok, model=make_model(MgteForEmbedding, vocab_size=256, **PLAIN_ROPE)),
     ValueError, "tokenizer has 287 tokens but the model's vocab_size is 256"),
    (lambda tmp, tok: MgteRerankerTrainer(
        model=make_model(MgteForSequenceClassification, num_labels=2, **PLAIN_ROPE),
        args=training_args(MgteRerankerTrainingArguments, tmp), train_dataset=group_rows(), processing_class=tok),
     ValueError, "num_labels=2"),
    (lambda tmp, tok: MgteMLMTrainer(
        model=make_model(MgteForMaskedLM, **PLAIN_ROPE), args=training_args(MgteMLMTrainingArguments, tmp),
        train_dataset=[{"text": "fine"}, {"txt": "typo"}], processing_class=tok),
     ValueError, "example 1 needs a non-empty 'text'"),
    (lambda tmp, tok: embedding_trainer(tmp, tok, rows=[{k: v for k, v in r.items() if k != "source"}
                                                        for r in group_rows()], single_source_batches=True),
     ValueError, "example 0 has no 'source'"),
    (lambda tmp, tok: embedding_trainer(tmp, tok, remove_unused_columns=True), ValueError, "remove_unused_columns"),
    (lambda tmp, tok: embedding_trainer(tmp, tok, model=make_model(MgteForMaskedLM, **PLAIN_ROPE)), TypeError,
     "trains a MgteForEmbedding"),
])
def test_bad_settings_are_refused_before_the_first_step(tmp_path, tiny_tokenizer, make, error, message):
    with pytest.raises(error, match=message):
        make(tmp_path, tiny_tokenizer)


def test_scaled_model_may_train_past_its_context_with_a_warning(tmp_path, tiny_tokenizer, caplog):
    model = make_model(MgteForEmbedding, max_position_embeddings=32)  # NTK factor 2
    trainer = embedding_trainer(tmp_path, tiny_tokenizer, model=model)
    assert trainer is not None
    assert "exceeds max_position_embeddings (32)" in caplog.text
    assert math.isfinite(trainer.train().training_loss)
