"""Trainers of the four mGTE stages, each an `MgteTrainer` (`mgte_hf.training.base`) that overrides only hooks.

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
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase, TrainerCallback

from mgte_hf.modeling import MgteConfig, MgteForEmbedding, MgteForMaskedLM, MgteForSequenceClassification
from mgte_hf.tokenizer import special_token_ids, token_counts

from .arguments import (
    MgteContrastiveTrainingArguments,
    MgteEmbeddingTrainingArguments,
    MgteMLMTrainingArguments,
    MgteRerankerTrainingArguments,
    MgteTrainingArguments,
)
from .base import Evaluator, MgteTrainer, check_max_length, check_tokenizer
from .collators import ContrastiveCollator, MLMCollator, RerankerCollator, collect_groups, example_group
from .grad_cache import EncodeFn, GradCache
from .losses import InfoNCELoss, ListwiseCELoss, TRMLoss
from .rope import RopeSwitch, curriculum_setting, rev_ntk_settings, rope_setting


logger = logging.getLogger(__name__)


def _merge_padded(query: Mapping[str, torch.Tensor], passages: Mapping[str, torch.Tensor],
                  pad_token_id: int) -> dict[str, torch.Tensor]:
    """Stack query and passage rows into one padded batch (one forward: DDP sees each parameter once per step)."""
    width = max(query["input_ids"].shape[1], passages["input_ids"].shape[1])

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    return {"input_ids": torch.cat([pad(query["input_ids"], pad_token_id), pad(passages["input_ids"], pad_token_id)]),
            "attention_mask": torch.cat([pad(query["attention_mask"], 0), pad(passages["attention_mask"], 0)])}


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
        self._stagewise_scheduler = False

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
        counts = iter(token_counts(self.processing_class, texts, max_length=cap) if texts else [])
        return [min(len(row["input_ids"]), cap) if "input_ids" in row else next(counts) for row in rows]

    def loss_parts(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The MLM loss; only the loss is used, so the head runs at the masked positions only (`sparse_prediction`,
        the same loss with about 70 % less head work), and the config is left as it was."""
        config, before = self.config, self.config.sparse_prediction
        config.sparse_prediction = True
        try:
            return {"loss": model(**truncate_packed(inputs, config.max_position_embeddings)).loss}
        finally:
            config.sparse_prediction = before

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
        if rates is None or (self.lr_scheduler is not None and not self._stagewise_scheduler):
            return super().create_scheduler(num_training_steps, optimizer)
        steps = self.args.stage_steps(num_training_steps)
        factor = partial(stagewise_lr_factor, stage_steps=steps, peaks=[r / self.args.learning_rate for r in rates],
                         warmup_ratio=self.args.warmup_steps)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, factor)
        self._stagewise_scheduler = True  # ours: built again for the next train() (its step count may differ)
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
        q = token_counts(tokenizer, queries, max_length=args.query_max_length)
        p = token_counts(tokenizer, [text for group in groups for text in group], max_length=args.passage_max_length)
        size = len(groups[0])
        return [q[i] + sum(p[i * size:(i + 1) * size]) for i in range(len(queries))]

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        """The Trainer's step; with `grad_cache_chunk_size`, a gradient-cached one (backward done here, the loss
        returned detached) that encodes the batch in row chunks through `grad_cache_encoder`."""
        if self.args.grad_cache_chunk_size is None:
            return super().training_step(model, inputs, num_items_in_batch)
        encode, parts, loss_kwargs = self.grad_cache_encoder(self._prepare_inputs(inputs))
        model.train()
        scale = 1.0 / self.current_gradient_accumulation_steps
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None:
            scale *= scaler.get_scale()
        cache = GradCache(model, self.loss, self.args.grad_cache_chunk_size, encode_fn=encode)
        with self.compute_loss_context_manager():
            losses = cache.step(*parts, grad_scale=scale, **loss_kwargs)
        self.record_loss_parts(losses)
        return losses["loss"] / self.current_gradient_accumulation_steps

    def grad_cache_encoder(self, inputs: dict[str, Any]) -> tuple[EncodeFn, tuple[Mapping[str, Any], ...], dict]:
        """How a gradient-cached step encodes a collated batch: `(encode(model, chunk) -> representation, the
        model inputs to encode (each split into row chunks, its representations passed to the loss in order), the
        loss's further keyword arguments)`."""
        raise NotImplementedError

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
    config (`rope_theta` 20000, `rope_scaling` {"type": "ntk", "factor": 8.0}). The switch is a callback
    (`RopeSwitch`); when `train()` stops with an exception the live config keeps the training setting, while
    `save_model` and `evaluate` still use the inference one.
    """

    arguments_class = MgteContrastiveTrainingArguments
    model_class = MgteForEmbedding

    def stage_callbacks(self, config: MgteConfig, args: MgteContrastiveTrainingArguments) -> list[TrainerCallback]:
        self.rope_train, self.rope_inference = rev_ntk_settings(config, args.rev_ntk_factor)
        return [RopeSwitch(config, self.rope_train, self.rope_inference)]

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

    def loss_parts(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.pop_teacher_scores(inputs)
        query, passages = inputs["query"], inputs["passages"]
        merged = _merge_padded(query, passages, self.config.pad_token_id)
        dense = model(**merged, return_sparse=False).dense  # (B + B·(1+k), H)
        return self.loss(dense[: query["input_ids"].shape[0]], dense[query["input_ids"].shape[0]:])

    def grad_cache_encoder(self, inputs: dict[str, Any]) -> tuple[EncodeFn, tuple[Mapping[str, Any], ...], dict]:
        self.pop_teacher_scores(inputs)
        return _dense_features, (inputs["query"], inputs["passages"]), {}


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

    def grad_cache_encoder(self, inputs: dict[str, Any]) -> tuple[EncodeFn, tuple[Mapping[str, Any], ...], dict]:
        self.pop_teacher_scores(inputs)
        encode = partial(_embedding_features, return_sparse=self.args.sparse_weight > 0)
        return encode, (inputs["query"], inputs["passages"]), {}


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
        counts = token_counts(self.processing_class, [q for q in queries for _ in range(size)],
                              [doc for group in groups for doc in group], max_length=args.max_length)
        return [sum(counts[i * size:(i + 1) * size]) for i in range(len(queries))]

    def loss_parts(self, model: nn.Module, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        group_size = int(inputs.pop("group_size"))
        return self.loss(model(**inputs).logits, group_size)

    def grad_cache_encoder(self, inputs: dict[str, Any]) -> tuple[EncodeFn, tuple[Mapping[str, Any], ...], dict]:
        group_size = int(inputs.pop("group_size"))
        return _logits, (inputs,), {"group_size": group_size}


def _logits(model: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
    return model(**inputs).logits  # (n, 1)


__all__ = [
    "Evaluator",
    "MgteContrastiveTrainer",
    "MgteEmbeddingTrainer",
    "MgteMLMTrainer",
    "MgteRerankerTrainer",
    "MgteTrainer",
    "check_max_length",
    "check_tokenizer",
    "stagewise_lr_factor",
    "truncate_packed",
]
