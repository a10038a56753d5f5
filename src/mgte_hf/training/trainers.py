"""Trainers of the four mGTE stages, as transformers `Trainer` subclasses that override only Trainer hooks.

* `MgteMLMTrainer`: masked-LM pre-training with the length curriculum (2048 tokens at RoPE base 10 000, then 8192 at
  160 000); the switch rewrites the config, which the model reads at every forward.
* `MgteContrastiveTrainer`: contrastive pre-training on weakly supervised pairs (InfoNCE, τ = 0.01, in-batch
  negatives) with reversed NTK scaling: trains at base/f, saves the inference config (NTK factor f).
* `MgteEmbeddingTrainer`: TRM fine-tuning, Matryoshka dense + sparse lexical InfoNCE with hard negatives.
* `MgteRerankerTrainer`: listwise cross-entropy over groups of 1 positive + n negatives.

All of them log every part of their loss (averaged over the logging window), stop with a clear error at the first
non-finite loss, run an optional `evaluator(model) -> {metric: value}` at evaluation steps, check their inputs before
the first step, encode large contrastive batches with gradient caching on request (`grad_cache_chunk_size`), work
with LoRA models (`mgte_hf.adapters.apply_lora`) and save safetensors only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from transformers import PreTrainedTokenizerBase, Trainer
from transformers.trainer_utils import get_last_checkpoint, has_length, seed_worker, unwrap_peft_model

from mgte_hf.modeling import (
    MgteConfig,
    MgteForEmbedding,
    MgteForMaskedLM,
    MgteForSequenceClassification,
    MgtePreTrainedModel,
)
from mgte_hf.tokenizer import special_token_ids

from .arguments import (
    MgteContrastiveTrainingArguments,
    MgteEmbeddingTrainingArguments,
    MgteMLMTrainingArguments,
    MgteRerankerTrainingArguments,
    MgteTrainingArguments,
)
from .collators import ContrastiveCollator, MLMCollator, RerankerCollator, collect_groups, example_group
from .grad_cache import GradCache
from .losses import InfoNCELoss, ListwiseCELoss, TRMLoss
from .rope import RopeSetting, curriculum_setting, rev_ntk_settings, rope_setting
from .samplers import SingleSourceBatchSampler, TokenBudgetBatchSampler


logger = logging.getLogger(__name__)

Evaluator = Callable[[nn.Module], Mapping[str, float] | float]
"""`evaluator(model)` → metrics (or one number), run at evaluation steps on the model in eval mode."""

_NO_EVAL_DATASET = "no eval dataset: the evaluator runs alone"  # placeholder that passes Trainer's eval check
_LENGTH_CHUNK = 1024  # texts tokenised at once when measuring example lengths


# ============================================================================================== helpers
def base_model(model: nn.Module) -> MgtePreTrainedModel:
    """The mGTE model inside DDP / accelerate / PEFT wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return unwrap_peft_model(model)


def check_max_length(config: MgteConfig, length: int, name: str) -> None:
    """Refuse a training length the model cannot place (above `max_position_embeddings` without RoPE scaling)."""
    limit = config.max_position_embeddings
    if length <= limit:
        return
    if config.position_embedding_type == "absolute" or config.rope_scaling is None:
        raise ValueError(f"{name}={length} exceeds the model's max_position_embeddings ({limit}) and the model has no "
                         f"RoPE scaling: lower {name} to {limit}, or train a longer context first (the MLM "
                         "curriculum) or set rope_scaling.")
    logger.warning("%s=%d exceeds max_position_embeddings (%d); positions beyond it rely on the RoPE scaling %s.",
                   name, length, limit, config.rope_scaling)


def check_tokenizer(tokenizer: PreTrainedTokenizerBase | None, config: MgteConfig) -> None:
    """Refuse a tokenizer whose ids do not all fit the model's embedding table."""
    if tokenizer is not None and len(tokenizer) > config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{config.vocab_size}: token ids up to {len(tokenizer) - 1} would be out of range. Build the "
                         "model with vocab_size >= len(tokenizer) (a multiple of 64, as mGTE) or use its tokenizer.")


def token_counts(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int,
                 pairs: list[str] | None = None) -> list[int]:
    """Token count of each text (or text pair), special tokens included, capped at `max_length`."""
    counts: list[int] = []
    for start in range(0, len(texts), _LENGTH_CHUNK):
        second = None if pairs is None else pairs[start:start + _LENGTH_CHUNK]
        encoded = tokenizer(texts[start:start + _LENGTH_CHUNK], second, truncation=True, max_length=max_length)
        counts.extend(len(ids) for ids in encoded["input_ids"])
    return counts


def iter_rows(dataset: Any) -> Iterable[Mapping[str, Any]] | None:
    """The examples of a map-style dataset, or None for a streaming one (checked per batch by the collator)."""
    if dataset is None or isinstance(dataset, IterableDataset) or not has_length(dataset):
        return None
    return (dataset[i] for i in range(len(dataset))) if not hasattr(dataset, "__iter__") else dataset


def _merge_padded(query: Mapping[str, torch.Tensor], passages: Mapping[str, torch.Tensor],
                  pad_token_id: int) -> dict[str, torch.Tensor]:
    """Stack query and passage rows into one padded batch (one forward: DDP sees each parameter once per step)."""
    width = max(query["input_ids"].shape[1], passages["input_ids"].shape[1])

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    return {"input_ids": torch.cat([pad(query["input_ids"], pad_token_id), pad(passages["input_ids"], pad_token_id)]),
            "attention_mask": torch.cat([pad(query["attention_mask"], 0), pad(passages["attention_mask"], 0)])}


# ============================================================================================== base
class MgteTrainer(Trainer):
    """What the mGTE trainers share: loss-part logging, the non-finite-loss stop, the evaluator, the batch samplers,
    input checks before the first step and safetensors-only saving.

    Subclasses set `arguments_class` and `model_class` and implement `loss_parts(model, inputs)` (a dict with
    `"loss"` and named parts), `default_collator`, `default_loss`, `check_example` and `example_lengths`.

    Args:
        model: the mGTE model (or a PEFT model around one).
        args: the stage's `*TrainingArguments`.
        data_collator: default: the stage's collator built from `processing_class` and `args`.
        train_dataset, eval_dataset: map-style datasets (rows checked before training) or iterable ones.
        processing_class: the tokenizer.
        evaluator: `evaluator(model) -> {metric: value}` run at evaluation steps (logged as `eval_<metric>`).
        loss: a loss module returning a dict with `"loss"`; default: the stage's loss from `args`.
        **kwargs: further `transformers.Trainer` arguments (callbacks, optimizers, ...).
    """

    arguments_class: type[MgteTrainingArguments] = MgteTrainingArguments
    model_class: type[MgtePreTrainedModel] = MgtePreTrainedModel
    loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean; the Trainer divides by the GA steps

    def __init__(self, model: nn.Module, args: MgteTrainingArguments, data_collator: Callable | None = None,
                 train_dataset: Any = None, eval_dataset: Any = None,
                 processing_class: PreTrainedTokenizerBase | None = None, evaluator: Evaluator | None = None,
                 loss: nn.Module | None = None, **kwargs: Any):
        name = type(self).__name__
        if not isinstance(args, self.arguments_class):
            raise TypeError(f"{name} needs args of type {self.arguments_class.__name__}, got {type(args).__name__}.")
        if not isinstance(base_model(model), self.model_class):
            raise TypeError(f"{name} trains a {self.model_class.__name__} (or a PEFT model around one), got "
                            f"{type(base_model(model)).__name__}.")
        if args.remove_unused_columns:
            raise ValueError(f"{name}: set remove_unused_columns=False; the mGTE collators read the text columns.")
        if args.eval_strategy != "no" and eval_dataset is None and evaluator is None:
            raise ValueError(f"{name}: eval_strategy is {args.eval_strategy!r} but there is neither an eval_dataset "
                             "nor an evaluator; pass one or set eval_strategy='no'.")
        if data_collator is None and processing_class is None:
            raise ValueError(f"{name} needs processing_class (the tokenizer) to build its collator.")
        self.evaluator = evaluator
        config = base_model(model).config
        check_tokenizer(processing_class, config)
        self.check_args(args, config)
        self.check_batching(args, train_dataset)
        for split, dataset in (("train", train_dataset), ("eval", eval_dataset)):
            self.check_dataset(dataset, split, args)
        if data_collator is None:
            data_collator = self.default_collator(processing_class, args)
        super().__init__(model=model, args=args, data_collator=data_collator,
                         train_dataset=train_dataset,
                         eval_dataset=_NO_EVAL_DATASET if eval_dataset is None and evaluator is not None
                         else eval_dataset,
                         processing_class=processing_class, **kwargs)
        if self.eval_dataset is _NO_EVAL_DATASET:
            self.eval_dataset = None
        self.loss = loss if loss is not None else self.default_loss()
        self.can_return_loss = True  # our compute_loss needs no labels
        self._loss_sums: dict[str, dict[str, torch.Tensor]] = {"train": {}, "eval": {}}
        self._loss_counts = {"train": 0, "eval": 0}

    # ---------------------------------------------------------------------------------------------- stage hooks
    def default_collator(self, tokenizer: PreTrainedTokenizerBase, args: MgteTrainingArguments) -> Callable:
        raise NotImplementedError

    def default_loss(self) -> nn.Module:
        raise NotImplementedError

    def loss_parts(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The loss of one batch and its named parts (`{"loss": total, ...}`)."""
        raise NotImplementedError

    def check_args(self, args: MgteTrainingArguments, config: MgteConfig) -> None:
        """Stage-specific checks of the arguments against the model's config."""

    def check_example(self, example: Mapping[str, Any], index: int, args: MgteTrainingArguments) -> None:
        """Raise a `ValueError` naming `index` for an example the collator would refuse."""

    def example_lengths(self, dataset: Any) -> list[int]:
        """Token count of each example, for `max_tokens_per_batch`."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------------------- input checks
    def check_batching(self, args: MgteTrainingArguments, dataset: Any) -> None:
        if getattr(args, "grad_cache_chunk_size", None) is not None and args.deepspeed:
            raise ValueError("grad_cache_chunk_size does not work with DeepSpeed (its engine owns the backward pass); "
                             "unset one of them.")
        if args.single_source_batches and args.max_tokens_per_batch is not None:
            raise ValueError("choose single_source_batches or max_tokens_per_batch, not both.")
        wants_sampler = args.single_source_batches or args.max_tokens_per_batch is not None
        if wants_sampler and dataset is not None and iter_rows(dataset) is None:
            raise ValueError("single_source_batches and max_tokens_per_batch need a map-style train dataset (with a "
                             "length), not a streaming one.")

    def check_dataset(self, dataset: Any, split: str, args: MgteTrainingArguments) -> None:
        """Check every example of a map-style dataset before the first step (streaming ones: per batch)."""
        rows = iter_rows(dataset)
        if rows is None:
            return
        count = 0
        for index, example in enumerate(rows):
            try:
                self.check_example(example, index, args)
            except ValueError as err:
                raise ValueError(f"{split} dataset: {err}") from None
            if split == "train" and args.single_source_batches and "source" not in example:
                raise ValueError(f"train dataset: example {index} has no 'source', which single_source_batches "
                                 "needs (one source label per example).")
            count += 1
        if count == 0:
            raise ValueError(f"the {split} dataset is empty.")

    # ---------------------------------------------------------------------------------------------- Trainer hooks
    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None):
        parts = self.loss_parts(model, inputs)
        self.record_loss_parts(parts)
        return (parts["loss"], {}) if return_outputs else parts["loss"]

    def record_loss_parts(self, parts: Mapping[str, torch.Tensor]) -> None:
        """Stop on a non-finite loss; add the parts to the current logging window."""
        self.check_finite(parts)
        kind = "train" if self.model.training else "eval"
        sums = self._loss_sums[kind]
        for name, value in parts.items():
            value = value.detach().float()
            sums[name] = sums[name] + value if name in sums else value
        self._loss_counts[kind] += 1

    def check_finite(self, parts: Mapping[str, torch.Tensor]) -> None:
        """Raise `FloatingPointError` naming the step when the loss is NaN or infinite (on every rank at once)."""
        bad = (~torch.isfinite(parts["loss"].detach())).any().float()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if not bad.item():
            return
        training = self.model.training
        step = self.state.global_step + (1 if training else 0)
        values = ", ".join(f"{name}={float(value.detach().float().mean()):.6g}" for name, value in parts.items())
        last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
        resume = f"the last checkpoint is {last}" if last else "no checkpoint was saved yet"
        raise FloatingPointError(
            f"{type(self).__name__}: the loss is not finite at {'training' if training else 'evaluation'} step "
            f"{step} (epoch {self.state.epoch or 0.0:.2f}): {values}. Stopped before the optimizer step. Lower "
            f"learning_rate, keep max_grad_norm > 0, prefer bf16 to fp16, or check this batch's texts; {resume}.")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean of every loss part over the logging window (`loss_<part>`, `eval_loss_<part>`)."""
        kind = "train" if "loss" in logs else "eval" if "eval_loss" in logs else None
        if kind is not None:
            logs = {**logs, **self._window_means(kind)}
        super().log(logs, start_time)

    def _window_means(self, kind: str) -> dict[str, float]:
        sums, count = self._loss_sums[kind], self._loss_counts[kind]
        names = sorted(name for name in sums if name != "loss")
        if not names:
            return {}
        totals = torch.stack([sums[name] for name in names] + [torch.tensor(float(count), device=sums[names[0]].device)])
        totals = self.accelerator.reduce(totals, reduction="sum")  # every rank logs at the same steps
        self._loss_sums[kind], self._loss_counts[kind] = {}, 0
        prefix = "loss_" if kind == "train" else "eval_loss_"
        return {prefix + name: round(float(totals[i] / totals[-1]), 6) for i, name in enumerate(names)}

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """The eval-dataset loss (when there is an eval dataset) and the evaluator's metrics (when there is one)."""
        if eval_dataset is None and self.eval_dataset is None and self.evaluator is None:
            raise ValueError(f"{type(self).__name__}.evaluate needs an eval_dataset or an evaluator.")
        metrics: dict[str, float] = {}
        if eval_dataset is not None or self.eval_dataset is not None:
            metrics.update(super().evaluate(eval_dataset, ignore_keys, metric_key_prefix))
        if self.evaluator is not None:
            scores = self.run_evaluator(metric_key_prefix)
            self.log(scores)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, scores)
            metrics.update(scores)
        return metrics

    def run_evaluator(self, prefix: str = "eval") -> dict[str, float]:
        """Run the evaluator on the model in eval mode (on every process) and prefix its metrics."""
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), self.inference_setting():
                result = self.evaluator(model)
        finally:
            model.train(was_training)
        if not isinstance(result, Mapping):
            result = {"evaluator": result}
        return {(key if key.startswith(f"{prefix}_") else f"{prefix}_{key}"): float(value)
                for key, value in result.items()}

    def inference_setting(self):
        """Context in which the model is evaluated and saved as it will be used (revNTK: the inference RoPE)."""
        return rope_setting(self.config, RopeSetting.of(self.config))

    @property
    def config(self) -> MgteConfig:
        return base_model(self.model).config

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """`save_pretrained` (safetensors) with the inference config, the tokenizer, and the arguments as JSON."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        logger.info("Saving model checkpoint to %s", output_dir)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        with self.inference_setting():
            model.save_pretrained(output_dir, state_dict=state_dict, is_main_process=True)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        Path(output_dir, "training_args.json").write_text(self.args.to_json_string(), encoding="utf-8")

    def get_train_dataloader(self) -> DataLoader:
        """The stage's batch sampler (token budget or single source) when the arguments ask for one."""
        if self.train_dataset is None:
            raise ValueError(f"{type(self).__name__}: training needs a train_dataset.")
        sampler = self.train_batch_sampler(self.train_dataset)
        if sampler is None:
            return super().get_train_dataloader()
        args = self.args
        workers = args.dataloader_num_workers
        loader = DataLoader(
            self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator, num_workers=workers,
            pin_memory=args.dataloader_pin_memory, persistent_workers=args.dataloader_persistent_workers and workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor if workers > 0 else None,
            worker_init_fn=partial(seed_worker, num_workers=workers, rank=args.process_index))
        return self.accelerator.prepare(loader)

    def train_batch_sampler(self, dataset: Any) -> torch.utils.data.Sampler | None:
        """A sampler yielding every rank's batches in turn (accelerate deals them out), or None for the default."""
        args = self.args
        if args.single_source_batches:
            sources = dataset["source"] if hasattr(dataset, "column_names") else [row["source"] for row in dataset]
            return SingleSourceBatchSampler(list(sources), args.per_device_train_batch_size,
                                            alpha=args.source_sampling_alpha, seed=args.seed,
                                            num_replicas=args.world_size)
        if args.max_tokens_per_batch is not None:
            if self.processing_class is None:
                raise ValueError("max_tokens_per_batch needs processing_class (the tokenizer) to measure examples.")
            return TokenBudgetBatchSampler(self.example_lengths(dataset), args.max_tokens_per_batch, seed=args.seed,
                                           drop_last=args.dataloader_drop_last, num_replicas=args.world_size)
        return None


# ============================================================================================== MLM
class MgteMLMTrainer(MgteTrainer):
    """Masked-LM pre-training with the length curriculum of `MgteMLMTrainingArguments`.

    Stage i of `args.curriculum_*` trains at `curriculum_max_lengths[i]` tokens with plain RoPE of base
    `curriculum_rope_thetas[i]` (the paper: 2048 at 10 000, then 8192 at 160 000). Before the batches of each
    optimizer step are drawn, the trainer enters the stage of that step: it sets `config.rope_theta`,
    `config.rope_scaling = None` and `config.max_position_embeddings` on the live model (its RoPE frequencies come
    from the config at every forward, so nothing cached goes stale); a resumed run enters the stage of its step.
    The packed collator works at the longest stage length and every batch is cut to the current stage's length when
    its loss is computed (`truncate_packed`), so batches prefetched by the data loader or its workers before a switch
    are still trained at the right length. With `curriculum_learning_rates`, each stage has its own warm-up and linear
    decay to its own peak rate.
    """

    arguments_class = MgteMLMTrainingArguments
    model_class = MgteForMaskedLM

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        longest = max(self.args.curriculum_max_lengths)
        if getattr(self.data_collator, "max_length", longest) < longest or not getattr(self.data_collator, "pack",
                                                                                         True):
            raise ValueError(f"the MLM curriculum needs a packed collator (pack=True) whose max_length covers the "
                             f"longest stage ({longest}); got {self.data_collator!r}.")
        self._stage: int | None = None

    def default_collator(self, tokenizer: PreTrainedTokenizerBase, args: MgteMLMTrainingArguments) -> MLMCollator:
        return MLMCollator(tokenizer, mlm_probability=args.mlm_probability,
                           max_length=max(args.curriculum_max_lengths), pack=True)

    def default_loss(self) -> None:
        return None  # the MLM head computes its own cross-entropy at the masked positions

    def check_args(self, args: MgteMLMTrainingArguments, config: MgteConfig) -> None:
        if config.position_embedding_type != "rope":
            raise ValueError("the MLM length curriculum changes the RoPE base; this model uses absolute positions.")

    def check_example(self, example: Mapping[str, Any], index: int, args: MgteMLMTrainingArguments) -> None:
        ids, text = example.get("input_ids"), example.get("text")
        if ids is None and not (isinstance(text, str) and text.strip()):
            raise ValueError(f"example {index} needs a non-empty 'text' string or 'input_ids', got "
                             f"{sorted(example)}.")
        if ids is not None and len(ids) == 0:
            raise ValueError(f"example {index} has no tokens.")

    def example_lengths(self, dataset: Any) -> list[int]:
        cap = max(self.args.curriculum_max_lengths)  # never over the budget; shorter stages fill batches less
        rows = list(dataset)
        texts = [row["text"] for row in rows if "input_ids" not in row]
        counts = iter(token_counts(self.processing_class, texts, cap) if texts else [])
        return [min(len(row["input_ids"]), cap) if "input_ids" in row else next(counts) for row in rows]

    def loss_parts(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": model(**truncate_packed(inputs, self.config.max_position_embeddings)).loss}

    # ---------------------------------------------------------------------------------------------- curriculum
    def stage_bounds(self) -> list[tuple[int, int]]:
        """`(first_step, num_steps)` of each stage for this run's `max_steps`."""
        steps = self.args.stage_steps(self.state.max_steps)
        starts = [sum(steps[:i]) for i in range(len(steps))]
        return list(zip(starts, steps))

    def stage_at(self, step: int) -> int:
        """Index of the stage that trains optimizer step `step` (0-based count of finished steps)."""
        bounds = self.stage_bounds()
        return next((i for i, (start, n) in enumerate(bounds) if step < start + n), len(bounds) - 1)

    def enter_stage(self, stage: int) -> None:
        """Set the stage's RoPE base and context length on the live model."""
        args = self.args
        length, theta = args.curriculum_max_lengths[stage], args.curriculum_rope_thetas[stage]
        curriculum_setting(length, theta).apply(self.config)
        self._stage = stage
        logger.info("MLM curriculum stage %d/%d from step %d: max_length %d, RoPE base %g.", stage + 1,
                    len(args.curriculum_max_lengths), self.state.global_step, length, theta)

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """Enter the stage of the next optimizer step (if it changed) before its batches are drawn."""
        stage = self.stage_at(self.state.global_step)
        if stage != self._stage:
            self.enter_stage(stage)
        return super().get_batch_samples(epoch_iterator, num_batches, device)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """With `curriculum_learning_rates`: warm-up and linear decay within each stage, to the stage's peak."""
        rates = self.args.curriculum_learning_rates
        if rates is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        steps = self.args.stage_steps(num_training_steps)
        factor = partial(stagewise_lr_factor, stage_steps=steps, peaks=[r / self.args.learning_rate for r in rates],
                         warmup_ratio=self.args.warmup_steps)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, factor)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # the curriculum state next to each training loss
            logs = {**logs, "rope_theta": self.config.rope_theta, "max_length": self.config.max_position_embeddings}
        super().log(logs, start_time)


def truncate_packed(batch: Mapping[str, Any], max_length: int) -> dict[str, Any]:
    """Cut every sequence of a packed MLM batch to `max_length` tokens, keeping its last token (`</s>`).

    Args:
        batch: `{"input_ids": (1, T), "labels": (1, T), "seqlens": (B,)}` (other keys pass through).
        max_length: longest sequence to keep (>= 2).

    Returns:
        The batch itself when every sequence fits, else a new one with `(1, T')` tensors and clipped `seqlens`.
    """
    seqlens = torch.as_tensor(batch["seqlens"])
    if int(seqlens.max()) <= max_length:
        return dict(batch)
    ends = seqlens.cumsum(0)
    starts = ends - seqlens
    total = int(ends[-1])
    position = torch.arange(total) - torch.repeat_interleave(starts, seqlens, output_size=total)  # (T,)
    last = torch.repeat_interleave(seqlens - 1, seqlens, output_size=total)  # (T,) last position of each token's row
    keep = ((position < max_length - 1) | (position == last)).to(batch["input_ids"].device)
    cut = {key: value[:, keep] for key, value in batch.items() if key in ("input_ids", "labels")}
    return {**batch, **cut, "seqlens": seqlens.clamp(max=max_length)}


def stagewise_lr_factor(step: int, stage_steps: list[int], peaks: list[float], warmup_ratio: float) -> float:
    """Learning-rate multiplier at `step`: in each stage a linear warm-up over `warmup_ratio` of it to `peaks[i]`,
    then a linear decay to 0 at the stage's end (transformers' linear schedule, restarted per stage)."""
    start = 0
    for steps, peak in zip(stage_steps, peaks):
        if step < start + steps:
            local, warmup = step - start, math.ceil(steps * warmup_ratio)
            if local < warmup:
                return peak * local / warmup
            return peak * max(0.0, (steps - local) / max(1, steps - warmup))
        start += steps
    return 0.0


# ============================================================================================== contrastive
class _GroupTrainer(MgteTrainer):
    """Shared by the trainers whose examples are (query, positive, negatives) groups."""

    _warned_teacher = False

    def group_negatives(self, args: MgteTrainingArguments) -> int:
        return args.num_negatives

    def check_example(self, example: Mapping[str, Any], index: int, args: MgteTrainingArguments) -> None:
        example_group(example, index, self.group_negatives(args))  # the collator's own checks

    def example_lengths(self, dataset: Any) -> list[int]:
        args, tokenizer = self.args, self.processing_class
        k = self.group_negatives(args)
        queries, groups, _ = collect_groups(list(dataset), k)
        q = token_counts(tokenizer, queries, args.query_max_length)
        p = token_counts(tokenizer, [text for group in groups for text in group], args.passage_max_length)
        size = len(groups[0])
        return [q[i] + sum(p[i * size:(i + 1) * size]) for i in range(len(queries))]

    def grad_cache_step(self, model: nn.Module, encode: Callable, *inputs: Mapping[str, Any],
                        **loss_kwargs: Any) -> torch.Tensor:
        """One training step with gradient caching: backward done here, the loss returned detached."""
        model.train()
        scale = 1.0 / self.current_gradient_accumulation_steps
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None:
            scale *= scaler.get_scale()
        cache = GradCache(model, self.loss, self.args.grad_cache_chunk_size, encode_fn=encode)
        with self.compute_loss_context_manager():
            parts = cache.step(*inputs, grad_scale=scale, **loss_kwargs)
        self.record_loss_parts(parts)
        return parts["loss"] / self.current_gradient_accumulation_steps

    def pop_teacher_scores(self, inputs: dict[str, Any]) -> None:
        if inputs.pop("teacher_scores", None) is not None and not self._warned_teacher:
            logger.warning("%s ignores teacher_scores: it has no distillation loss.", type(self).__name__)
            self._warned_teacher = True


class MgteContrastiveTrainer(_GroupTrainer):
    """Contrastive pre-training on weakly supervised (query, positive) pairs with reversed NTK scaling.

    Loss: InfoNCE on the dense CLS vectors (τ = `args.temperature`, the paper: 0.01) with in-batch negatives
    (cross-device with `cross_device_negatives`) and `num_negatives` hard negatives (the paper: none).

    revNTK (`args.rev_ntk_factor` f, the paper: 8): during `train()` the model runs at RoPE base b/f with plain RoPE
    (b: the base of the MLM encoder it starts from); checkpoints, the final save, evaluations and the model after
    training use the inference setting, base b/f with static NTK factor f, as the released gte-multilingual-base
    config (`rope_theta` 20000, `rope_scaling` {"type": "ntk", "factor": 8.0}).
    """

    arguments_class = MgteContrastiveTrainingArguments
    model_class = MgteForEmbedding

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rope_train, self.rope_inference = rev_ntk_settings(self.config, self.args.rev_ntk_factor)

    def check_args(self, args: MgteContrastiveTrainingArguments, config: MgteConfig) -> None:
        train, _ = rev_ntk_settings(config, args.rev_ntk_factor)  # refuses configs revNTK cannot start from
        with rope_setting(config, train):
            check_max_length(config, args.query_max_length, "query_max_length")
            check_max_length(config, args.passage_max_length, "passage_max_length")
        if args.rev_ntk_factor > 1 and args.passage_max_length > config.max_position_embeddings / args.rev_ntk_factor:
            logger.warning("revNTK by %g is meant for texts of up to max_position_embeddings / %g = %d tokens; "
                           "passage_max_length is %d.", args.rev_ntk_factor, args.rev_ntk_factor,
                           config.max_position_embeddings // args.rev_ntk_factor, args.passage_max_length)

    def default_collator(self, tokenizer: PreTrainedTokenizerBase,
                         args: MgteContrastiveTrainingArguments) -> ContrastiveCollator:
        return ContrastiveCollator(tokenizer, args.query_max_length, args.passage_max_length, args.num_negatives)

    def default_loss(self) -> InfoNCELoss:
        return InfoNCELoss(self.args.temperature, cross_device=self.args.cross_device_negatives)

    def inference_setting(self):
        return rope_setting(self.config, self.rope_inference)

    def train(self, *args: Any, **kwargs: Any):
        """Train at the revNTK training setting; the model leaves (also on errors) with the inference setting."""
        self.rope_train.apply(self.config)
        try:
            return super().train(*args, **kwargs)
        finally:
            self.rope_inference.apply(self.config)

    def loss_parts(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.pop_teacher_scores(inputs)
        query, passages = inputs["query"], inputs["passages"]
        merged = _merge_padded(query, passages, self.config.pad_token_id)
        dense = model(**merged, return_sparse=False).dense  # (B + B·(1+k), H)
        return self.loss(dense[: query["input_ids"].shape[0]], dense[query["input_ids"].shape[0]:])

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        if self.args.grad_cache_chunk_size is None:
            return super().training_step(model, inputs, num_items_in_batch)
        inputs = self._prepare_inputs(inputs)
        self.pop_teacher_scores(inputs)
        return self.grad_cache_step(model, _dense_features, inputs["query"], inputs["passages"])


def _dense_features(model: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
    return model(**inputs, return_sparse=False).dense  # (n, H)


class MgteEmbeddingTrainer(_GroupTrainer):
    """TRM fine-tuning: `TRMLoss` = dense_weight · Matryoshka dense InfoNCE + sparse_weight · sparse InfoNCE.

    Each query is scored against its positive, its `num_negatives` hard negatives (the paper: 8) and the passages of
    the other queries (of all processes with `cross_device_negatives`). Logged parts: `loss_dense`, `loss_sparse` and
    `loss_dense_dim_<d>` for every Matryoshka prefix. Sparse weights of the tokenizer's special tokens are ignored,
    as at inference.
    """

    arguments_class = MgteEmbeddingTrainingArguments
    model_class = MgteForEmbedding

    def check_args(self, args: MgteEmbeddingTrainingArguments, config: MgteConfig) -> None:
        check_max_length(config, args.query_max_length, "query_max_length")
        check_max_length(config, args.passage_max_length, "passage_max_length")
        if args.matryoshka_dimensions is not None and max(args.matryoshka_dimensions) > config.hidden_size:
            raise ValueError(f"matryoshka_dimensions {args.matryoshka_dimensions} exceed the hidden size "
                             f"({config.hidden_size}).")

    def default_collator(self, tokenizer: PreTrainedTokenizerBase,
                         args: MgteEmbeddingTrainingArguments) -> ContrastiveCollator:
        return ContrastiveCollator(tokenizer, args.query_max_length, args.passage_max_length, args.num_negatives)

    def default_loss(self) -> TRMLoss:
        args = self.args
        ignore = self.config.sparse_ignore_token_ids
        if ignore is None:
            ignore = special_token_ids(self.processing_class) if self.processing_class is not None else ()
        return TRMLoss(dense_weight=args.dense_weight, sparse_weight=args.sparse_weight,
                       matryoshka_dimensions=args.matryoshka_dimensions, matryoshka_weights=args.matryoshka_weights,
                       dense_temperature=args.dense_temperature, sparse_temperature=args.sparse_temperature,
                       ignore_token_ids=ignore, cross_device=args.cross_device_negatives)

    def loss_parts(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.pop_teacher_scores(inputs)
        query, passages = inputs["query"], inputs["passages"]
        out = model(**_merge_padded(query, passages, self.config.pad_token_id),
                    return_sparse=self.args.sparse_weight > 0)
        rows = query["input_ids"].shape[0]
        return self.loss(_side(query, out, slice(0, rows)), _side(passages, out, slice(rows, None)))

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        if self.args.grad_cache_chunk_size is None:
            return super().training_step(model, inputs, num_items_in_batch)
        inputs = self._prepare_inputs(inputs)
        self.pop_teacher_scores(inputs)
        encode = partial(_embedding_features, return_sparse=self.args.sparse_weight > 0)
        return self.grad_cache_step(model, encode, inputs["query"], inputs["passages"])


def _side(inputs: Mapping[str, torch.Tensor], out, rows: slice) -> dict[str, torch.Tensor]:
    """`TRMLoss` features of one side (queries or passages) from the merged forward."""
    width = inputs["input_ids"].shape[1]
    features = {"dense": out.dense[rows], "input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    if out.sparse is not None:
        features["sparse"] = out.sparse[rows, :width]  # (n, L) of this side's padded width
    return features


def _embedding_features(model: nn.Module, inputs: Mapping[str, Any], return_sparse: bool) -> dict[str, torch.Tensor]:
    out = model(**inputs, return_sparse=return_sparse)
    return _side(inputs, out, slice(None))


# ============================================================================================== reranker
class MgteRerankerTrainer(_GroupTrainer):
    """Cross-encoder training with a listwise softmax cross-entropy over each group of `group_size` documents
    (positive first; the paper: 1 positive + 10 negatives) scored by an `MgteForSequenceClassification` with one
    label."""

    arguments_class = MgteRerankerTrainingArguments
    model_class = MgteForSequenceClassification

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.label_names = []  # the groups carry their labels implicitly (positive first)

    def group_negatives(self, args: MgteRerankerTrainingArguments) -> int:
        return args.group_size - 1

    def check_args(self, args: MgteRerankerTrainingArguments, config: MgteConfig) -> None:
        if config.num_labels != 1:
            raise ValueError(f"a reranker scores with one relevance logit; this model has num_labels="
                             f"{config.num_labels}. Build it with num_labels=1.")
        check_max_length(config, args.max_length, "max_length")

    def default_collator(self, tokenizer: PreTrainedTokenizerBase,
                         args: MgteRerankerTrainingArguments) -> RerankerCollator:
        return RerankerCollator(tokenizer, args.max_length, args.group_size)

    def default_loss(self) -> ListwiseCELoss:
        return ListwiseCELoss(self.args.temperature)

    def example_lengths(self, dataset: Any) -> list[int]:
        args = self.args
        queries, groups, _ = collect_groups(list(dataset), self.group_negatives(args))
        size = len(groups[0])
        counts = token_counts(self.processing_class, [q for q in queries for _ in range(size)], args.max_length,
                              pairs=[doc for group in groups for doc in group])
        return [sum(counts[i * size:(i + 1) * size]) for i in range(len(queries))]

    def loss_parts(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        group_size = int(inputs.pop("group_size"))
        return self.loss(model(**inputs).logits, group_size)

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        if self.args.grad_cache_chunk_size is None:
            return super().training_step(model, inputs, num_items_in_batch)
        inputs = self._prepare_inputs(inputs)
        group_size = int(inputs.pop("group_size"))
        return self.grad_cache_step(model, _logits, inputs, group_size=group_size)


def _logits(model: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
    return model(**inputs).logits  # (n, 1)


__all__ = [
    "Evaluator",
    "MgteContrastiveTrainer",
    "MgteEmbeddingTrainer",
    "MgteMLMTrainer",
    "MgteRerankerTrainer",
    "MgteTrainer",
    "base_model",
    "check_max_length",
    "check_tokenizer",
    "stagewise_lr_factor",
    "truncate_packed",
]
