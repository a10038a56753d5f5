"""`run_demo`: the whole demo in order, every evaluation through `RetrievalEvaluator`.

data → trimmed XLM-R tokenizer → MLM → contrastive → TRM → reranker, each stage's model evaluated on the same sets
(BM25 as the reference; dense after every stage; sparse and hybrid after the TRM; the reranker on the hybrid top-k
of a query sample, alone and interpolated with the hybrid score), then the report and the Hub folders, checked in a
fresh process. The run holds a fixed number of torch threads throughout and restores the caller's afterwards.
"""

from __future__ import annotations

import logging
import os
import random
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from mgte_hf.data import build as build_data
from mgte_hf.data import cache_root, tokenizer_dir
from mgte_hf.outputs import check_output

from .ablations import run_ablations
from .config import DemoConfig
from .data import load_demo_data, pairs_dataset, sample
from .report import DemoResult, Scores, write_report
from .retrieval import add_dense, choose_rerank_weight, choose_sparse_weight, embedder_of, evaluate, reranked_metrics
from .stages import (
    Guard,
    build_model,
    mine_negatives,
    train_contrastive,
    train_mlm,
    train_reranker,
    train_trm,
    trimmed_tokenizer,
)
from .verify import package, verify_folders


logger = logging.getLogger(__name__)

STAGES = ("mlm", "contrastive", "trm", "reranker")


class Clock:
    """Seconds and CPU seconds of each named step of the run (the "This run" section of the report); every step
    first checks the run's time guard."""

    def __init__(self, guard: Guard):
        self.guard = guard
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._start, self._cpu_start = time.perf_counter(), _cpu_seconds()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.guard.check(name)
        start, cpu = time.perf_counter(), _cpu_seconds()
        logger.info("== %s", name)
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 1)
            self.cpu[name] = round(_cpu_seconds() - cpu, 1)
            logger.info("== %s done in %.1f s", name, self.seconds[name])

    def total(self) -> None:
        self.seconds["total"] = round(time.perf_counter() - self._start, 1)
        self.cpu["total"] = round(_cpu_seconds() - self._cpu_start, 1)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the fresh-process check)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with `count` intra-op threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ================================================================================================== the run
def run_demo(output: str | os.PathLike, cache: str | os.PathLike | None = None, config: DemoConfig | None = None,
             *, build: bool = True, verify: bool = True, ablations: bool = False, quiet: bool = False,
             overwrite: bool = False) -> DemoResult:
    """Run the whole demo into `output`; returns the metrics and timings.

    Args:
        output: folder for the stage checkpoints, the report and the Hub folders.
        cache: the data cache (default `$MGTE_DATA` or `~/.cache/mgte-data`).
        config: sizes and budgets; default `DemoConfig.full()`.
        build: fetch and build the data first (idempotent: an intact cache is only verified).
        verify: reload the Hub folders in a fresh process (transformers `trust_remote_code` and sentence-
            transformers only) and check they reproduce the report's numbers.
        ablations: also run the ablation studies (`mgte_hf.demo.ablations`) and add their tables to the report.
        quiet: no progress bars.
        overwrite: run into an `output` folder that is not empty (an earlier run's files are replaced stage by
            stage); without it such a folder is refused before any work.

    Raises:
        DemoTimeout: the run passed `config.time_limit` (nothing is reported).
    """
    config = config or DemoConfig.full()
    # Absolute: the fresh-process check runs in a temporary folder, and `make demo` passes a relative folder.
    out = check_output(output, overwrite=overwrite, folder=True, what="demo output folder")
    root = cache_root(cache)
    out.mkdir(parents=True, exist_ok=True)
    with torch_threads(config.threads):
        return _run(out, root, config, build=build, verify=verify, ablations=ablations, quiet=quiet)


def _run(out: Path, root: Path, config: DemoConfig, *, build: bool, verify: bool, ablations: bool,
         quiet: bool) -> DemoResult:
    guard = Guard(config.time_limit)
    clock = Clock(guard)
    load = {"start": list(os.getloadavg())}
    if build:
        with clock.step("data"):
            build_data(cache=root, progress=not quiet)
    ckpt = {name: out / "checkpoints" / name for name in STAGES}
    stages: dict[str, dict[str, Any]] = {}
    with clock.step("prepare"):
        data = load_demo_data(root, config)
        tokenizer, kept, xlmr_size = trimmed_tokenizer(tokenizer_dir(root), data.all_texts(), out / "tokenizer")
        model = build_model(tokenizer, config)
        metrics: dict[str, Scores] = {name: {"bm25": evaluate(dataset, config, tokenizer, ["bm25"])["bm25"]}
                                      for name, dataset in data.eval_sets.items()}
        dev = pairs_dataset(data.dev, "dev")
    vocab = {"xlmr": xlmr_size, "trimmed": len(tokenizer), "model": model.config.vocab_size}
    logger.info("data: %d MLM texts, %d contrastive pairs, %d TRM queries; vocabulary %d; %.1fM parameters",
                len(data.mlm), len(data.contrastive), len(data.finetune), len(tokenizer),
                sum(p.numel() for p in model.parameters()) / 1e6)

    with clock.step("mlm"):
        stages["mlm"] = train_mlm(model, tokenizer, data.mlm, ckpt["mlm"], config, guard, quiet)
    with clock.step("eval_mlm"):
        add_dense(metrics, data, embedder_of(ckpt["mlm"], tokenizer, config.eval_max_length), config, tokenizer,
                   "dense_mlm")
    with clock.step("contrastive"):
        stages["contrastive"] = train_contrastive(ckpt["mlm"], tokenizer, data.contrastive, ckpt["contrastive"],
                                                  config, guard, quiet)
    with clock.step("eval_contrastive"):
        add_dense(metrics, data, embedder_of(ckpt["contrastive"], tokenizer, config.eval_max_length), config,
                   tokenizer, "dense_contrastive")
    with clock.step("mine_trm"):
        groups = mine_negatives(embedder_of(ckpt["contrastive"], tokenizer, config.passage_length), data.finetune,
                                config.num_negatives, skip=config.negative_skip)
    with clock.step("trm"):
        stages["trm"] = train_trm(ckpt["contrastive"], tokenizer, groups, ckpt["trm"], config, guard, quiet)
    with clock.step("eval_trm"):
        trm = embedder_of(ckpt["trm"], tokenizer, config.eval_max_length)
        sparse_weight, dev_hybrid = choose_sparse_weight(trm, dev, config, tokenizer)
        for name, dataset in data.eval_sets.items():
            found = evaluate(dataset, config, tokenizer, ["dense", "sparse", "hybrid"], trm,
                             hybrid_weights=[(1.0, sparse_weight)])
            metrics[name].update(found)
    with clock.step("mine_reranker"):
        rows = sample(random.Random(config.seed + 1), data.finetune, config.reranker_count)
        rerank_groups = mine_negatives(
            embedder_of(ckpt["trm"], tokenizer, config.passage_length), rows, config.reranker_hard_negatives,
            skip=config.negative_skip, mode="hybrid", sparse_weight=sparse_weight,
            random_count=config.reranker_random_negatives, seed=config.seed)
    with clock.step("reranker"):
        stages["reranker"] = train_reranker(ckpt[config.reranker_init], tokenizer, rerank_groups, ckpt["reranker"],
                                            config, guard, quiet)
    with clock.step("eval_reranker"):
        rerank_weight, dev_rerank = choose_rerank_weight(trm, ckpt["reranker"], dev, sparse_weight, config, tokenizer)
        rerank_metrics = {name: reranked_metrics(dataset, trm, ckpt["reranker"], sparse_weight, rerank_weight, config,
                                                tokenizer) for name, dataset in data.eval_sets.items()}
    result = DemoResult(
        metrics=metrics, rerank_metrics=rerank_metrics, stages=stages, vocab=vocab, sparse_weight=sparse_weight,
        rerank_weight=rerank_weight, dev={"hybrid": dev_hybrid, "rerank": dev_rerank},
        query_counts={n: len(d.queries) for n, d in data.eval_sets.items()},
        rerank_counts={n: len(d.sample_queries(config.rerank_queries, config.seed).queries)
                       for n, d in data.eval_sets.items()}, output=out)
    if ablations:
        with clock.step("ablations"):
            result.ablations = run_ablations(data, tokenizer, ckpt, config, guard, quiet)
    with clock.step("package"):
        result.files = package(result, ckpt["trm"], ckpt["reranker"], tokenizer, kept, config)
    if verify:
        with clock.step("verify"):
            result.verification = verify_folders(result, data.eval_sets, config)
    clock.total()
    load["end"] = list(os.getloadavg())
    result.timings, result.cpu_seconds, result.load = clock.seconds, clock.cpu, load
    result.files.update(write_report(result, config))
    return result


__all__ = ["STAGES", "Clock", "run_demo", "torch_threads"]
