"""`MgteTrainer`: what the trainers of every mGTE stage share, as a transformers `Trainer` that overrides only its
hooks: loss-part logging, the non-finite-loss stop, the evaluator, the batch samplers, input checks before the first
step and safetensors-only saving. The stages are in `mgte_hf.training.trainers`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback
from transformers.trainer_utils import get_last_checkpoint, has_length, seed_worker

from mgte_hf.adapters import unwrap_model
from mgte_hf.modeling import MgteConfig, MgtePreTrainedModel

from .arguments import MgteTrainingArguments
from .rope import RopeSetting, rope_setting
from .samplers import SingleSourceBatchSampler, TokenBudgetBatchSampler


logger = logging.getLogger(__name__)

Evaluator = Callable[[nn.Module], Mapping[str, float] | float]
"""`evaluator(model)` → metrics (or one number), run at evaluation steps on the model in eval mode."""

_NO_EVAL_DATASET = "no eval dataset: the evaluator runs alone"  # placeholder that passes Trainer's eval check


# ============================================================================================== helpers
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


def iter_rows(dataset: Any) -> Iterable[Mapping[str, Any]] | None:
    """The examples of a map-style dataset, or None for a streaming one (checked per batch by the collator)."""
    if dataset is None or isinstance(dataset, IterableDataset) or not has_length(dataset):
        return None
    return (dataset[i] for i in range(len(dataset))) if not hasattr(dataset, "__iter__") else dataset


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
        if not isinstance(unwrap_model(model), self.model_class):
            raise TypeError(f"{name} trains a {self.model_class.__name__} (or a PEFT model around one), got "
                            f"{type(unwrap_model(model)).__name__}.")
        if args.remove_unused_columns:
            raise ValueError(f"{name}: set remove_unused_columns=False; the mGTE collators read the text columns.")
        if args.eval_strategy != "no" and eval_dataset is None and evaluator is None:
            raise ValueError(f"{name}: eval_strategy is {args.eval_strategy!r} but there is neither an eval_dataset "
                             "nor an evaluator; pass one or set eval_strategy='no'.")
        if data_collator is None and processing_class is None:
            raise ValueError(f"{name} needs processing_class (the tokenizer) to build its collator.")
        self.evaluator = evaluator
        config = unwrap_model(model).config
        check_tokenizer(processing_class, config)
        self.check_args(args, config)
        self.check_batching(args, train_dataset)
        for split, dataset in (("train", train_dataset), ("eval", eval_dataset)):
            self.check_dataset(dataset, split, args)
        if data_collator is None:
            data_collator = self.default_collator(processing_class, args)
        kwargs["callbacks"] = [*self.stage_callbacks(config, args), *(kwargs.get("callbacks") or [])]
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

    def stage_callbacks(self, config: MgteConfig, args: MgteTrainingArguments) -> list[TrainerCallback]:
        """Callbacks of the stage, run before the caller's (e.g. the revNTK RoPE switch)."""
        return []

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
        return unwrap_model(self.model).config

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


__all__ = ["Evaluator", "MgteTrainer", "check_max_length", "check_tokenizer", "iter_rows"]
