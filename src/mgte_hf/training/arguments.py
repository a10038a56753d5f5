"""Training arguments of the four mGTE stages: transformers `TrainingArguments` plus the recipe's own settings.

Every class works with `HfArgumentParser` (command line, `parse_json_file`, `parse_yaml_file`). Defaults are the
paper's (arXiv 2407.19669, RECIPE.md); where the paper gives no number, the field's help says what was chosen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments


# MLM curriculum (paper Table 8): 250k steps at 2048 tokens, RoPE base 10 000, then 30k at 8192, base 160 000.
PAPER_MLM_MAX_LENGTHS = (2048, 8192)
PAPER_MLM_ROPE_THETAS = (10000.0, 160000.0)
PAPER_MLM_STAGE_STEPS = (250_000, 30_000)


def _fail(cls: type, message: str) -> None:
    raise ValueError(f"{cls.__name__}: {message}")


def _grad_cache_field():
    return field(default=None, metadata={"help": "Encode each batch in chunks of this many texts with gradient caching "
                                                 "(the paper's sub-batches; gradients equal the full batch's). None "
                                                 "encodes the whole batch at once."})


@dataclass
class MgteTrainingArguments(TrainingArguments):
    """Settings shared by the mGTE trainers (batching). Our collators read the raw text columns, so
    `remove_unused_columns` defaults to False."""

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep the dataset's text columns: the mGTE collators tokenise them."})
    max_tokens_per_batch: int | None = field(
        default=None, metadata={"help": "Token budget per batch (length-bucketed batches, the paper's dynamic batch "
                                        "size); None uses per_device_train_batch_size examples per batch."})
    single_source_batches: bool = field(
        default=False, metadata={"help": "Draw every batch from one data source (the dataset's 'source' column), "
                                         "sources sampled in proportion to size^source_sampling_alpha (the paper)."})
    source_sampling_alpha: float = field(
        default=0.5, metadata={"help": "Exponent of the source sampling distribution (the paper: 0.5)."})

    def __post_init__(self):
        super().__post_init__()
        if self.max_tokens_per_batch is not None and self.max_tokens_per_batch < 1:
            _fail(type(self), f"max_tokens_per_batch must be >= 1 or None, got {self.max_tokens_per_batch}.")
        if not 0.0 <= self.source_sampling_alpha <= 1.0:
            _fail(type(self), f"source_sampling_alpha must be in [0, 1], got {self.source_sampling_alpha}.")


@dataclass
class MgteMLMTrainingArguments(MgteTrainingArguments):
    """MLM pre-training with the length curriculum: stage i trains at `curriculum_max_lengths[i]` tokens with plain
    RoPE of base `curriculum_rope_thetas[i]`, for `curriculum_stage_steps[i]` optimizer steps."""

    mlm_probability: float = field(default=0.3, metadata={"help": "Share of tokens to predict (the paper: 0.3)."})
    curriculum_max_lengths: list[int] = field(
        default_factory=lambda: list(PAPER_MLM_MAX_LENGTHS),
        metadata={"help": "Max sequence length of each stage (the paper: 2048 8192)."})
    curriculum_rope_thetas: list[float] = field(
        default_factory=lambda: list(PAPER_MLM_ROPE_THETAS),
        metadata={"help": "RoPE base of each stage (the paper: 10000 160000)."})
    curriculum_stage_steps: list[int] | None = field(
        default=None,
        metadata={"help": "Optimizer steps of each stage, summing to max_steps (the paper: 250000 30000). None splits "
                          "the run in the paper's proportions (25:3)."})
    curriculum_learning_rates: list[float] | None = field(
        default=None,
        metadata={"help": "Peak learning rate of each stage, each with its own warm-up (warmup_steps as a ratio of the "
                          "stage) and linear decay, as the paper's separate stages (5e-4 then 5e-5). None: one "
                          "schedule for the whole run at learning_rate."})

    def __post_init__(self):
        super().__post_init__()
        cls = type(self)
        if not 0.0 < self.mlm_probability < 1.0:
            _fail(cls, f"mlm_probability must be in (0, 1), got {self.mlm_probability}.")
        stages = len(self.curriculum_max_lengths)
        if stages < 1 or len(self.curriculum_rope_thetas) != stages:
            _fail(cls, f"give one RoPE base per curriculum stage: {stages} max lengths and "
                       f"{len(self.curriculum_rope_thetas)} rope thetas.")
        if any(n < 2 for n in self.curriculum_max_lengths) or any(not t > 0 for t in self.curriculum_rope_thetas):
            _fail(cls, "curriculum max lengths must be >= 2 and RoPE bases > 0.")
        for name in ("curriculum_stage_steps", "curriculum_learning_rates"):
            values = getattr(self, name)
            if values is not None and (len(values) != stages or any(not v > 0 for v in values)):
                _fail(cls, f"{name} needs {stages} positive values (one per stage), got {values}.")
        if self.curriculum_stage_steps is not None and self.max_steps > 0 \
                and sum(self.curriculum_stage_steps) != self.max_steps:
            _fail(cls, f"curriculum_stage_steps {self.curriculum_stage_steps} sum to {sum(self.curriculum_stage_steps)}"
                       f", not max_steps={self.max_steps}; make them agree (or leave max_steps at -1).")
        if self.curriculum_learning_rates is not None and self.warmup_steps >= 1:
            _fail(cls, "with curriculum_learning_rates, give warmup_steps as a ratio (< 1) of each stage.")

    def stage_steps(self, total_steps: int) -> list[int]:
        """Optimizer steps of each stage for a run of `total_steps`."""
        if self.curriculum_stage_steps is not None:
            if sum(self.curriculum_stage_steps) != total_steps:
                _fail(type(self), f"curriculum_stage_steps sum to {sum(self.curriculum_stage_steps)} but the run has "
                                  f"{total_steps} optimizer steps; set max_steps={sum(self.curriculum_stage_steps)}.")
            return list(self.curriculum_stage_steps)
        stages = len(self.curriculum_max_lengths)
        if stages == 1:
            return [total_steps]
        shares = list(PAPER_MLM_STAGE_STEPS) if stages == 2 else [1] * stages
        bounds = [math.floor(total_steps * sum(shares[: i + 1]) / sum(shares)) for i in range(stages)]
        steps = [b - a for a, b in zip([0, *bounds[:-1]], bounds)]
        if min(steps) < 1:
            _fail(type(self), f"{total_steps} optimizer steps are too few for {stages} curriculum stages.")
        return steps


@dataclass
class MgteContrastiveTrainingArguments(MgteTrainingArguments):
    """Contrastive pre-training on weakly supervised pairs, with reversed NTK scaling (revNTK)."""

    query_max_length: int = field(default=512, metadata={"help": "Query truncation length (the paper: 512)."})
    passage_max_length: int = field(default=1024, metadata={"help": "Passage truncation length (the paper: 1024)."})
    num_negatives: int = field(
        default=0, metadata={"help": "Hard negatives per query (the paper: 0, in-batch negatives only)."})
    temperature: float = field(default=0.01, metadata={"help": "InfoNCE temperature (the paper: 0.01)."})
    cross_device_negatives: bool = field(
        default=True, metadata={"help": "Score each query against the passages of all processes."})
    rev_ntk_factor: float = field(
        default=8.0,
        metadata={"help": "revNTK factor f: train at RoPE base/f with plain RoPE, save with NTK factor f (the "
                          "released config: rope_theta 20000, ntk 8 from the MLM base 160000). 1 turns it off."})
    grad_cache_chunk_size: int | None = _grad_cache_field()

    def __post_init__(self):
        super().__post_init__()
        _check_lengths(self, "query_max_length", "passage_max_length")
        _check_positive(self, "temperature")
        if self.num_negatives < 0:
            _fail(type(self), f"num_negatives must be >= 0, got {self.num_negatives}.")
        if not self.rev_ntk_factor >= 1:
            _fail(type(self), f"rev_ntk_factor must be >= 1 (1: no revNTK), got {self.rev_ntk_factor}.")
        _check_grad_cache(self)


@dataclass
class MgteEmbeddingTrainingArguments(MgteTrainingArguments):
    """TRM fine-tuning: Matryoshka dense InfoNCE + sparse lexical InfoNCE with hard negatives."""

    query_max_length: int = field(default=512, metadata={"help": "Query truncation length."})
    passage_max_length: int = field(default=8192, metadata={"help": "Passage truncation length (the paper: 8192)."})
    num_negatives: int = field(default=8, metadata={"help": "Hard negatives per query (the paper: 8)."})
    dense_temperature: float = field(default=0.05, metadata={"help": "Dense InfoNCE temperature (the paper: 0.05)."})
    sparse_temperature: float = field(default=0.01, metadata={"help": "Sparse InfoNCE temperature (the paper: 0.01)."})
    dense_weight: float = field(default=1.0, metadata={"help": "Weight of the dense (Matryoshka) part."})
    sparse_weight: float = field(
        default=0.3, metadata={"help": "λ of the sparse part (not reported by the paper; 0.3 as BGE-M3). 0 turns the "
                                       "sparse part off."})
    matryoshka_dimensions: list[int] | None = field(
        default=None, metadata={"help": "Dense prefix sizes; None: the paper's multiples of 32 up to the hidden size."})
    matryoshka_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per prefix (not reported by the paper); None: equal, summing to 1."})
    cross_device_negatives: bool = field(
        default=True, metadata={"help": "Score each query against the passages of all processes."})
    grad_cache_chunk_size: int | None = _grad_cache_field()

    def __post_init__(self):
        super().__post_init__()
        _check_lengths(self, "query_max_length", "passage_max_length")
        _check_positive(self, "dense_temperature", "sparse_temperature")
        if self.num_negatives < 0:
            _fail(type(self), f"num_negatives must be >= 0, got {self.num_negatives}.")
        if self.dense_weight < 0 or self.sparse_weight < 0 or self.dense_weight + self.sparse_weight == 0:
            _fail(type(self), "dense_weight and sparse_weight must be >= 0 and not both 0.")
        _check_grad_cache(self)


@dataclass
class MgteRerankerTrainingArguments(MgteTrainingArguments):
    """Cross-encoder reranker training with a listwise cross-entropy over groups of 1 positive + n negatives."""

    max_length: int = field(default=8192, metadata={"help": "Length of a query-document pair (the paper: 8192)."})
    group_size: int = field(
        default=11, metadata={"help": "Documents per query: 1 positive + negatives (the paper: 1 + 6 hard + 4 random)."})
    temperature: float = field(default=1.0, metadata={"help": "Temperature of the listwise softmax (not reported)."})
    grad_cache_chunk_size: int | None = _grad_cache_field()

    def __post_init__(self):
        super().__post_init__()
        _check_lengths(self, "max_length")
        _check_positive(self, "temperature")
        if self.group_size < 2:
            _fail(type(self), f"group_size must be >= 2 (a positive and at least one negative), got {self.group_size}.")
        _check_grad_cache(self)


def _check_grad_cache(args: TrainingArguments) -> None:
    if args.grad_cache_chunk_size is not None and args.grad_cache_chunk_size < 1:
        _fail(type(args), f"grad_cache_chunk_size must be >= 1 or None, got {args.grad_cache_chunk_size}.")


def _check_lengths(args: TrainingArguments, *names: str) -> None:
    for name in names:
        if getattr(args, name) < 2:
            _fail(type(args), f"{name} must be >= 2 (room for the special tokens), got {getattr(args, name)}.")


def _check_positive(args: TrainingArguments, *names: str) -> None:
    for name in names:
        if not getattr(args, name) > 0:
            _fail(type(args), f"{name} must be > 0, got {getattr(args, name)}.")


__all__ = [
    "PAPER_MLM_MAX_LENGTHS",
    "PAPER_MLM_ROPE_THETAS",
    "PAPER_MLM_STAGE_STEPS",
    "MgteContrastiveTrainingArguments",
    "MgteEmbeddingTrainingArguments",
    "MgteMLMTrainingArguments",
    "MgteRerankerTrainingArguments",
    "MgteTrainingArguments",
]
