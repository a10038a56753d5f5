"""The demo's model and its four training stages, each a fixed number of optimizer steps of the project's trainers.

MLM (length curriculum) → contrastive pre-training (revNTK) → TRM fine-tuning (Matryoshka dense + sparse, hard
negatives mined with the contrastive model) → reranker (listwise, groups mined with the TRM). Every stage seeds its
new weights and its data order from `DemoConfig.seed`; the wall-clock `Guard` can only stop the run with an error.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase, TrainerCallback, set_seed

from mgte_hf.index import HybridIndex
from mgte_hf.inference import MgteEmbedder
from mgte_hf.modeling import MgteConfig, MgteForEmbedding, MgteForMaskedLM, MgteForSequenceClassification
from mgte_hf.tokenizer import load_xlmr_tokenizer, save_vocab_mapping, trim_tokenizer
from mgte_hf.training.arguments import (
    MgteContrastiveTrainingArguments,
    MgteEmbeddingTrainingArguments,
    MgteMLMTrainingArguments,
    MgteRerankerTrainingArguments,
)
from mgte_hf.training.trainers import (
    MgteContrastiveTrainer,
    MgteEmbeddingTrainer,
    MgteMLMTrainer,
    MgteRerankerTrainer,
    MgteTrainer,
)

from .config import DemoConfig, StageBudget


logger = logging.getLogger(__name__)

XLMR_SOURCE = "XLM-R (xlm-roberta-base sentencepiece, 250 002 pieces)"


class DemoTimeout(RuntimeError):
    """The run passed `DemoConfig.time_limit`; nothing it trained is reported."""


class Guard(TrainerCallback):
    """The run's wall-clock guard: `check()` (and, as a callback, every optimizer step) raises `DemoTimeout` once
    `limit` seconds have passed since the guard was made. It never shortens a stage: a run either finishes every
    step or stops with the error."""

    def __init__(self, limit: float | None):
        self.limit = limit
        self.start = time.perf_counter()
        self.stage = "start"

    def check(self, where: str | None = None) -> None:
        self.stage = where or self.stage
        elapsed = time.perf_counter() - self.start
        if self.limit is not None and elapsed > self.limit:
            raise DemoTimeout(
                f"the demo passed its time limit of {self.limit:.0f} s ({elapsed:.0f} s) in {self.stage}; it stops "
                "rather than train less (its figures come from fixed step counts). Run it on a less busy machine, or "
                "raise the limit (mgte-hf demo --time-limit MINUTES; 0 for none).")

    def on_step_end(self, args, state, control, **kwargs):
        self.check(f"{self.stage} (step {state.global_step} of {state.max_steps})")


# ================================================================================================== model
def build_model(tokenizer: PreTrainedTokenizerBase, config: DemoConfig) -> MgteForMaskedLM:
    """A new MLM model sized to the trimmed tokenizer (vocabulary padded to a multiple of 64, as mGTE)."""
    set_seed(config.seed)
    model_config = MgteConfig(
        vocab_size=64 * math.ceil(len(tokenizer) / 64), hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size, max_position_embeddings=config.mlm_lengths[0],
        rope_theta=config.mlm_rope_thetas[0], rope_scaling=None, hidden_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id, matryoshka_dimensions=list(config.matryoshka_dimensions))
    return MgteForMaskedLM(model_config)


def trimmed_tokenizer(tokenizer_folder: Path, texts, out: Path) -> tuple[PreTrainedTokenizerBase, list[int], int]:
    """The real XLM-R tokenizer (from `tokenizer_folder`) trimmed to `texts`, saved with its id mapping in `out`.

    Returns:
        the trimmed tokenizer, the XLM-R id of each of its pieces, and the size of the full XLM-R vocabulary.
    """
    xlmr = load_xlmr_tokenizer(tokenizer_folder, fetch=False)
    tokenizer, kept = trim_tokenizer(xlmr, texts)
    tokenizer.save_pretrained(str(out))
    save_vocab_mapping(out, kept, XLMR_SOURCE)
    logger.info("tokenizer trimmed from %d to %d pieces", len(xlmr), len(tokenizer))
    return tokenizer, kept, len(xlmr)


# ================================================================================================== training
def common_args(out: Path, budget: StageBudget, config: DemoConfig, quiet: bool) -> dict[str, Any]:
    """TrainingArguments shared by the four stages (CPU, no checkpoints, a fixed seed, linear decay)."""
    return dict(output_dir=str(out), max_steps=budget.steps, learning_rate=budget.learning_rate,
                warmup_steps=max(1, budget.steps // 10), lr_scheduler_type="linear", weight_decay=0.01,
                logging_steps=max(1, budget.steps // 10), save_strategy="no", report_to="none", seed=config.seed,
                data_seed=config.seed, use_cpu=True, dataloader_num_workers=0, disable_tqdm=quiet)


def run_stage(trainer: MgteTrainer, guard: Guard, name: str, out: Path) -> dict[str, Any]:
    """Train every step (under the guard), save (safetensors, inference RoPE) and summarise one stage."""
    guard.check(name)
    trainer.add_callback(guard)
    result = trainer.train()
    trainer.save_model(str(out))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "train_loss": round(result.training_loss, 4),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}


def train_mlm(model: MgteForMaskedLM, tokenizer: PreTrainedTokenizerBase, texts: list[str], out: Path,
              config: DemoConfig, guard: Guard, quiet: bool = True) -> dict[str, Any]:
    """MLM pre-training: short texts first (`mlm_lengths[0]`), then long ones at the raised RoPE base."""
    budget = config.mlm
    short = max(1, budget.steps * 3 // 4)
    args = MgteMLMTrainingArguments(
        **common_args(out, budget, config, quiet), max_tokens_per_batch=budget.batch_size,
        curriculum_max_lengths=list(config.mlm_lengths), curriculum_rope_thetas=list(config.mlm_rope_thetas),
        curriculum_stage_steps=[short, budget.steps - short])
    trainer = MgteMLMTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"text": t} for t in texts]),
                             processing_class=tokenizer)
    return run_stage(trainer, guard, "mlm", out)


def train_contrastive(source: Path, tokenizer: PreTrainedTokenizerBase, pairs: list[dict[str, str]], out: Path,
                      config: DemoConfig, guard: Guard, quiet: bool = True, *,
                      rev_ntk_factor: float | None = None) -> dict[str, Any]:
    """Contrastive pre-training (InfoNCE, in-batch negatives, revNTK) from the MLM encoder.

    `rev_ntk_factor` overrides the config's (1.0 trains without revNTK, for the ablation).
    """
    budget = config.contrastive
    set_seed(config.seed)  # the new sparse head (unused here, saved with the model)
    model = MgteForEmbedding.from_pretrained(str(source))
    factor = config.rev_ntk_factor if rev_ntk_factor is None else rev_ntk_factor
    args = MgteContrastiveTrainingArguments(
        **common_args(out, budget, config, quiet), per_device_train_batch_size=budget.batch_size,
        query_max_length=config.query_length, passage_max_length=config.passage_length, temperature=0.05,
        rev_ntk_factor=factor, dataloader_drop_last=True)
    trainer = MgteContrastiveTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs),
                                     processing_class=tokenizer)
    return run_stage(trainer, guard, "contrastive", out)


def mine_negatives(embedder: MgteEmbedder, rows: Sequence[dict[str, str]], count: int, *, skip: int = 0,
                   mode: str = "dense", sparse_weight: float = 0.0, random_count: int = 0,
                   seed: int = 0) -> list[dict[str, Any]]:
    """Groups `{query, positive, negatives}` from the other positives of `rows`, searched in a `HybridIndex`.

    The hard negatives are the best `count` after the first `skip` (skipping the very top leaves out near-duplicates,
    likely false negatives; a set too small for `skip` skips fewer, so that every group still gets `count`); then
    `random_count` other positives drawn at random (seeded), none of them the positive or a hard negative.
    """
    positives = list(dict.fromkeys(r["positive"] for r in rows))
    if len(positives) <= count + random_count:
        raise ValueError(f"{len(positives)} distinct positives cannot give {count} + {random_count} negatives per "
                         "query; use more rows or fewer negatives.")
    skip = max(0, min(skip, len(positives) - 1 - count))
    index = HybridIndex(dimension=embedder.dimension)
    index.add(positives, embeddings=embedder.encode_corpus(positives, convert_to="torch"))
    queries = [r["query"] for r in rows]
    hits = index.search(queries, top_k=skip + count + 1, mode=mode, dense_weight=1.0, sparse_weight=sparse_weight,
                        query_embeddings=embedder.encode_queries(queries, convert_to="torch"))
    rng = random.Random(seed)
    groups = []
    for row, found in zip(rows, hits, strict=True):
        hard = [h.document for h in found if h.document != row["positive"]][skip:skip + count]
        taken = {row["positive"], *hard}
        extra: list[str] = []
        while len(extra) < random_count:
            text = positives[rng.randrange(len(positives))]
            if text not in taken:
                extra.append(text)
                taken.add(text)
        groups.append({"query": row["query"], "positive": row["positive"], "negatives": hard + extra})
    return groups


def train_trm(source: Path, tokenizer: PreTrainedTokenizerBase, groups: list[dict[str, Any]], out: Path,
              config: DemoConfig, guard: Guard, quiet: bool = True) -> dict[str, Any]:
    """TRM fine-tuning: Matryoshka dense + sparse InfoNCE with the mined hard negatives."""
    budget = config.trm
    set_seed(config.seed)
    model = MgteForEmbedding.from_pretrained(str(source))
    weights = None if config.matryoshka_weights is None else list(config.matryoshka_weights)
    args = MgteEmbeddingTrainingArguments(
        **common_args(out, budget, config, quiet), per_device_train_batch_size=budget.batch_size,
        query_max_length=config.query_length, passage_max_length=config.passage_length,
        num_negatives=config.num_negatives, matryoshka_dimensions=list(config.matryoshka_dimensions),
        matryoshka_weights=weights, sparse_weight=config.trm_sparse_weight, dataloader_drop_last=True)
    trainer = MgteEmbeddingTrainer(model=model, args=args, train_dataset=Dataset.from_list(groups),
                                   processing_class=tokenizer)
    return run_stage(trainer, guard, "trm", out)


def train_reranker(source: Path, tokenizer: PreTrainedTokenizerBase, groups: list[dict[str, Any]], out: Path,
                   config: DemoConfig, guard: Guard, quiet: bool = True) -> dict[str, Any]:
    """Reranker training (listwise cross-entropy, positive first in each group) from the `source` encoder."""
    budget = config.reranker
    set_seed(config.seed)  # the new pooler and classifier
    model = MgteForSequenceClassification.from_pretrained(str(source), num_labels=1)
    args = MgteRerankerTrainingArguments(
        **common_args(out, budget, config, quiet), per_device_train_batch_size=budget.batch_size,
        max_length=config.reranker_length,
        group_size=1 + config.reranker_hard_negatives + config.reranker_random_negatives, dataloader_drop_last=True)
    trainer = MgteRerankerTrainer(model=model, args=args, train_dataset=Dataset.from_list(groups),
                                  processing_class=tokenizer)
    return run_stage(trainer, guard, "reranker", out)


__all__ = ["DemoTimeout", "Guard", "build_model", "common_args", "mine_negatives", "run_stage", "train_contrastive",
           "train_mlm", "train_reranker", "train_trm", "trimmed_tokenizer"]
