"""`RetrievalEvaluator`: BM25, dense (several Matryoshka dimensions and max lengths), sparse, hybrid and reranked
hybrid retrieval on a BEIR set, with metrics, wall time and peak memory per system.

    evaluator = RetrievalEvaluator("~/.cache/mgte-data/beir/gnome-de-en", dims=(128, 768), max_lengths=(512, 8192))
    report = evaluator.run(MgteEmbedder.from_pretrained(model_dir), MgteReranker.from_pretrained(reranker_dir))
    report.save("eval-out")                  # report.json, report.md, report.png
    evaluator(model)                         # in training: {"dense_d768_L512_ndcg@10": ..., ...}

The corpus is encoded once per max length (dense at full width and sparse from the same forward; a longer max
length re-encodes only the documents that exceed the previous one); each Matryoshka dimension truncates and
re-normalises those vectors with `modeling.dense_embedding`, exactly what the model returns for that dimension.
Search and scores go through `mgte_hf.index.HybridIndex` (hence `mgte_hf.scoring`); BM25 through `bm25s`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
from tokenizers import Tokenizer
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..adapters import unwrap_model
from ..data.beir import BeirDataset, load_beir
from ..index import HybridIndex, SearchHit, rerank_hits_weighted
from ..inference import EmbeddingResult, MgteEmbedder, MgteReranker
from ..inference.common import check_choice, check_dimension, check_positive_int
from ..inference.reranker import check_first_stage_weight
from ..modeling import MgteForSequenceClassification
from ..modeling.modeling_mgte import dense_embedding
from ..scoring import DEFAULT_DENSE_WEIGHT, DEFAULT_SPARSE_WEIGHT
from ..tokenizer import token_counts
from .bm25 import BM25_B, BM25_K1, BM25_METHOD, bm25_search, xlmr_subword_tokenizer
from .metrics import DEFAULT_METRICS, Run, evaluate_run, parse_metric
from .report import RetrievalReport, StageResult, SystemResult, measure


logger = logging.getLogger(__name__)

SYSTEMS = ("bm25", "dense", "sparse", "hybrid", "rerank")
DEFAULT_SYSTEMS = ("bm25", "dense", "sparse", "hybrid")
RERANK_FIRST_STAGES = ("hybrid", "bm25")


class RetrievalEvaluator:
    """Evaluate retrieval systems on one BEIR set; also a training evaluator (`evaluator(model) -> dict`).

    Args:
        dataset: a `BeirDataset` or a BEIR folder.
        systems: any of `bm25`, `dense`, `sparse`, `hybrid`, `rerank` (reranks the first-stage top `rerank_top_k`).
        dims: Matryoshka dimensions for `dense` (default: the embedder's dimension). Sparse, hybrid and rerank use
            the largest.
        max_lengths: document token limits (each a separate encoding); sparse and hybrid run at each, rerank at the
            largest. Queries are encoded once at the largest.
        hybrid_weights: `(dense_weight, sparse_weight)` pairs for `hybrid` (the first also feeds `rerank`).
        reranker: an `MgteReranker` or its folder, for `rerank`.
        rerank_top_k: first-stage candidates the reranker re-scores (the rest of the top `top_k` keeps their order).
        rerank_first_stage: what `rerank` reranks: `"hybrid"` (needs the embedder) or `"bm25"` (a reranker alone).
        rerank_first_stage_weights: interpolation weights α to evaluate `rerank` at (`MgteReranker.interpolate`),
            from one scoring pass: one system each, `rerank_a0.8` (default: the reranker's own `first_stage_weight`).
        metrics: `NAME@K` names (ndcg, recall, mrr, map).
        top_k: documents retrieved per query (at least the largest metric cut-off).
        tokenizer: for BM25 (default: the embedder's, else the real XLM-R tokenizer of the data cache; a Rust
            `tokenizers.Tokenizer` will do) and to wrap a bare `MgteForEmbedding` passed to `__call__`.
        max_queries: evaluate a seeded random sample of this many judged queries (default: all).
        seed: the sampling seed.
        batch_tokens: padded-token budget per forward (default: the embedder's).
        bm25: `{"k1", "b", "method"}` overrides for BM25 (defaults k1=0.9, b=0.4, Lucene idf).
        name: the dataset label in reports (default: the set's name).
        primary_metric: the key `__call__` optimises (default: the first metric of the first model system).
        show_progress_bar: show progress bars.
    """

    greater_is_better = True

    def __init__(
        self,
        dataset: BeirDataset | str | os.PathLike,
        *,
        systems: Sequence[str] = DEFAULT_SYSTEMS,
        dims: Sequence[int] | None = None,
        max_lengths: Sequence[int] = (512,),
        hybrid_weights: Sequence[tuple[float, float]] = ((DEFAULT_DENSE_WEIGHT, DEFAULT_SPARSE_WEIGHT),),
        reranker: MgteReranker | str | os.PathLike | None = None,
        rerank_top_k: int = 100,
        rerank_first_stage: str = "hybrid",
        rerank_first_stage_weights: Sequence[float] | None = None,
        metrics: Sequence[str] = DEFAULT_METRICS,
        top_k: int = 100,
        tokenizer: PreTrainedTokenizerBase | Tokenizer | None = None,
        max_queries: int | None = None,
        seed: int = 0,
        batch_tokens: int | None = None,
        bm25: dict | None = None,
        name: str | None = None,
        primary_metric: str | None = None,
        show_progress_bar: bool = True,
    ):
        full = dataset if isinstance(dataset, BeirDataset) else load_beir(os.path.expanduser(os.fspath(dataset)))
        self.dataset = full.sample_queries(max_queries, seed)
        self.name = name or self.dataset.name or "dataset"
        self.systems = _check_systems(systems)
        self.dims = None if dims is None else [check_positive_int(d, "dims") for d in dims]
        self.max_lengths = sorted({check_positive_int(n, "max_lengths") for n in max_lengths})
        if not self.max_lengths:
            raise ValueError("max_lengths needs at least one value, e.g. (512,).")
        self.hybrid_weights = [(float(d), float(s)) for d, s in hybrid_weights]
        if "hybrid" in self.systems and not self.hybrid_weights:
            raise ValueError("hybrid needs at least one (dense_weight, sparse_weight) pair.")
        self.reranker = reranker
        self.rerank_top_k = check_positive_int(rerank_top_k, "rerank_top_k")
        self.rerank_first_stage = check_choice(rerank_first_stage, RERANK_FIRST_STAGES, "rerank_first_stage")
        self.rerank_first_stage_weights = _check_weights(rerank_first_stage_weights)
        self.metrics = list(metrics)
        deepest = max(parse_metric(m)[1] for m in self.metrics)
        self.top_k = check_positive_int(top_k, "top_k")
        if self.top_k < deepest:
            raise ValueError(f"top_k={top_k} is below the deepest metric cut-off ({deepest}); raise top_k.")
        self.tokenizer = tokenizer
        self.batch_tokens = batch_tokens
        self.bm25 = {"k1": BM25_K1, "b": BM25_B, "method": BM25_METHOD, **(bm25 or {})}
        self.show_progress_bar = show_progress_bar
        self.primary_metric = primary_metric or self._default_primary_metric()

    # ------------------------------------------------------------------------------------------------ training API
    def __call__(self, model, output_path: str | os.PathLike | None = None, epoch: int = -1,
                 steps: int = -1) -> dict[str, float]:
        """Evaluate `model` (an `MgteEmbedder` or `MgteReranker`, or an `MgteForEmbedding` or one-label
        `MgteForSequenceClassification` possibly wrapped by DDP/PEFT, with the evaluator's `tokenizer`); returns
        `{"<system>_<metric>": value}`. A reranker alone runs `rerank` (and `bm25`) with `rerank_first_stage="bm25"`.
        With `output_path`, also writes the report there (`retrieval-<name>[-e<epoch>][-s<steps>].{json,md,png}`,
        replacing the report of the same step from an earlier run, as the Trainer replaces its checkpoints).
        The model's train/eval mode is restored."""
        module = model.model if isinstance(model, (MgteEmbedder, MgteReranker)) else unwrap_model(model)
        was_training = module.training
        try:
            if isinstance(module, MgteForSequenceClassification):
                report = self.run(reranker=self._wrap(model, MgteReranker, max_length=self.max_lengths[-1]))
            else:
                report = self.run(self._wrap(model, MgteEmbedder))
        finally:
            module.train(was_training)
        if output_path is not None:
            stem = (f"retrieval-{self.name}" + (f"-e{epoch}" if epoch >= 0 else "")
                    + (f"-s{steps}" if steps >= 0 else ""))
            report.save(output_path, stem, overwrite=True)  # this step's report of an earlier run is replaced
        return report.flat_metrics()

    def get_config_dict(self) -> dict:
        """Settings for model cards and logs."""
        return {"dataset": self.name, "systems": self.systems, "dims": self.dims, "max_lengths": self.max_lengths,
                "hybrid_weights": self.hybrid_weights, "top_k": self.top_k, "rerank_top_k": self.rerank_top_k,
                "rerank_first_stage": self.rerank_first_stage, "rerank_first_stage_weights": self.rerank_first_stage_weights,
                "metrics": self.metrics, "queries": len(self.dataset.queries), "bm25": self.bm25}

    # ------------------------------------------------------------------------------------------------ run
    def run(self, embedder: MgteEmbedder | None = None,
            reranker: MgteReranker | str | os.PathLike | None = None) -> RetrievalReport:
        """Run every configured system; returns the report (nothing written: see `RetrievalReport.save`)."""
        reranker = self._reranker(reranker if reranker is not None else self.reranker, embedder)
        bm25_rerank = "rerank" in self.systems and self.rerank_first_stage == "bm25"
        needs_model = [s for s in self.systems if s != "bm25" and not (s == "rerank" and bm25_rerank)]
        if needs_model and embedder is None:
            raise ValueError(f"the systems {needs_model} need a model: pass an MgteEmbedder (or use --systems bm25).")
        report = RetrievalReport(self.name, self.dataset.stats(), self.metrics,
                                 model=_model_name(embedder), reranker=_model_name(reranker),
                                 config=self.get_config_dict())
        doc_ids, doc_texts = self.dataset.doc_ids(), self.dataset.doc_texts()
        qids = list(self.dataset.queries)
        queries = [self.dataset.queries[q] for q in qids]
        if "bm25" in self.systems:
            report.systems.append(self._bm25(doc_texts, queries, qids, doc_ids, embedder))
        if needs_model:
            self._model_systems(report, embedder, reranker, doc_ids, doc_texts, queries, qids)
        if bm25_rerank:
            report.systems += self._bm25_rerank(doc_texts, queries, qids, doc_ids, embedder, reranker)
        return report

    def _bm25(self, doc_texts: list[str], queries: list[str], qids: list[str], doc_ids: list[str],
              embedder: MgteEmbedder | None) -> SystemResult:
        with measure() as m:
            indices, scores = bm25_search(doc_texts, queries, self._bm25_tokenizer(embedder), top_k=self.top_k,
                                          **self.bm25)
            run = {q: {doc_ids[j]: float(s) for j, s in zip(indices[i], scores[i])} for i, q in enumerate(qids)}
        return self._result("bm25", "bm25", dict(self.bm25), run, m)

    def _bm25_rerank(self, doc_texts: list[str], queries: list[str], qids: list[str], doc_ids: list[str],
                     embedder: MgteEmbedder | None, reranker: MgteReranker) -> list[SystemResult]:
        """Rerank the BM25 top `rerank_top_k`; below it the BM25 order continues down to `top_k`."""
        params = {"first_stage": "bm25", "max_length": self.max_lengths[-1], "rerank_top_k": self.rerank_top_k}
        with measure(reranker.device) as m:
            indices, scores = bm25_search(doc_texts, queries, self._bm25_tokenizer(embedder),
                                          top_k=max(self.top_k, self.rerank_top_k), **self.bm25)
            first = [[SearchHit(doc_ids[j], float(s), int(j), doc_texts[j]) for j, s in zip(rows, values)]
                     for rows, values in zip(indices, scores)]
            reranked = self._rerank_each(reranker, queries, first)
        return self._rerank_results(params, reranker, reranked, qids, m)

    def _bm25_tokenizer(self, embedder: MgteEmbedder | None) -> PreTrainedTokenizerBase | Tokenizer:
        return self.tokenizer or (embedder.tokenizer if embedder is not None else xlmr_subword_tokenizer())

    def _model_systems(self, report: RetrievalReport, embedder: MgteEmbedder, reranker: MgteReranker | None,
                       doc_ids: list[str], doc_texts: list[str], queries: list[str], qids: list[str]) -> None:
        full = embedder.model.config.hidden_size
        dims = [check_dimension(embedder.model, d) for d in (self.dims or [embedder.dimension])]
        top_dim = max(dims)
        with measure(embedder.device) as m:
            q_emb = self._encode(embedder, queries, self.max_lengths[-1], full)
        report.stages.append(StageResult(f"encode queries L{self.max_lengths[-1]}", m["seconds"], len(queries),
                                         m["peak_rss_mb"], m["peak_gpu_mb"]))
        doc_lengths = token_counts(embedder.tokenizer, doc_texts)
        d_emb, previous = None, 0
        plan = self._plan(dims, top_dim)
        bar = tqdm(total=sum(len(v) for v in plan.values()), desc=f"{self.name}: systems",
                   disable=not self.show_progress_bar)
        for length in self.max_lengths:
            redo = [i for i, n in enumerate(doc_lengths) if n > previous]  # the others encode the same as before
            with measure(embedder.device) as m:
                d_emb = self._encode_docs(embedder, doc_texts, redo, length, full, d_emb)
            report.stages.append(StageResult(f"encode corpus L{length}", m["seconds"], len(redo), m["peak_rss_mb"],
                                             m["peak_gpu_mb"]))
            previous = length
            indexes = {d: _index(doc_ids, doc_texts, d_emb, d) for d in {*dims, top_dim}}
            for family, params in plan[length]:
                bar.set_postfix_str(f"{family} L{length}")
                report.systems += self._search(family, params, indexes[params["dimension"]], q_emb, qids, queries,
                                               reranker, embedder.device)
                bar.update()
        bar.close()

    def _plan(self, dims: list[int], top_dim: int) -> dict[int, list[tuple[str, dict]]]:
        """Per max length, the (family, params) of each model system to run there."""
        plan: dict[int, list[tuple[str, dict]]] = {}
        for length in self.max_lengths:
            steps = []
            if "dense" in self.systems:
                steps += [("dense", {"dimension": d, "max_length": length}) for d in dims]
            if "sparse" in self.systems:
                steps.append(("sparse", {"dimension": top_dim, "max_length": length}))
            if "hybrid" in self.systems:
                steps += [("hybrid", {"dimension": top_dim, "max_length": length, "dense_weight": w_d,
                                      "sparse_weight": w_s}) for w_d, w_s in self.hybrid_weights]
            if "rerank" in self.systems and self.rerank_first_stage == "hybrid" and length == self.max_lengths[-1]:
                w_d, w_s = self.hybrid_weights[0] if self.hybrid_weights else (DEFAULT_DENSE_WEIGHT,
                                                                                DEFAULT_SPARSE_WEIGHT)
                steps.append(("rerank", {"dimension": top_dim, "max_length": length, "dense_weight": w_d,
                                         "sparse_weight": w_s, "rerank_top_k": self.rerank_top_k}))
            plan[length] = steps
        return plan

    def _search(self, family: str, params: dict, index: HybridIndex, q_emb: EmbeddingResult, qids: list[str],
                queries: list[str], reranker: MgteReranker | None, device: torch.device) -> list[SystemResult]:
        """One system's results (a `rerank` step gives one per interpolation weight)."""
        q = _at_dimension(q_emb, params["dimension"])
        weights = {k: params[k] for k in ("dense_weight", "sparse_weight") if k in params}
        with measure(device) as m:
            if family == "rerank":
                reranked = self._rerank(index, q, queries, reranker, weights)
            else:
                run = hits_to_run(qids, index.search(queries, top_k=self.top_k, mode=family, query_embeddings=q,
                                                     **weights))
        if family == "rerank":
            return self._rerank_results(params, reranker, reranked, qids, m)
        return [self._result(_system_name(family, params, self), family, params, run, m)]

    def _rerank(self, index: HybridIndex, q: EmbeddingResult, queries: list[str], reranker: MgteReranker,
                weights: dict) -> list[list[list[SearchHit]]]:
        """Rerank the hybrid top `rerank_top_k` (one set of hit lists per interpolation weight); below it the hybrid
        order continues down to `top_k`."""
        first = index.search(queries, top_k=max(self.top_k, self.rerank_top_k), mode="hybrid", query_embeddings=q,
                             **weights)
        return self._rerank_each(reranker, queries, first)

    def _rerank_each(self, reranker: MgteReranker, queries: list[str],
                     first: list[list[SearchHit]]) -> list[list[list[SearchHit]]]:
        weights = self._first_stage_weights(reranker)
        return [[row[:self.top_k] for row in hits]
                for hits in rerank_hits_weighted(reranker, queries, first, weights, depth=self.rerank_top_k)]

    def _first_stage_weights(self, reranker: MgteReranker) -> list[float]:
        return self.rerank_first_stage_weights or [reranker.first_stage_weight]

    def _rerank_results(self, params: dict, reranker: MgteReranker, reranked: list[list[list[SearchHit]]],
                        qids: list[str], m: dict) -> list[SystemResult]:
        """A `rerank` system per interpolation weight; each reports the time of the one scoring pass they share."""
        out = []
        for weight, hits in zip(self._first_stage_weights(reranker), reranked, strict=True):
            system = {**params, "first_stage_weight": weight}
            out.append(self._result(_system_name("rerank", system, self), "rerank", system, hits_to_run(qids, hits),
                                    m))
        return out

    # ------------------------------------------------------------------------------------------------ helpers
    def _result(self, name: str, family: str, params: dict, run: Run, m: dict) -> SystemResult:
        metrics = evaluate_run(run, self.dataset.qrels, self.metrics)
        logger.info("%s %s: %s (%.1f s)", self.name, name, {k: round(v, 4) for k, v in metrics.items()}, m["seconds"])
        return SystemResult(name, family, params, metrics, m["seconds"], m["peak_rss_mb"], m["peak_gpu_mb"])

    def _encode(self, embedder: MgteEmbedder, texts: list[str], length: int, dimension: int) -> EmbeddingResult:
        return embedder.encode(texts, dense=True, sparse=True, dimension=dimension, max_length=length,
                               batch_tokens=self.batch_tokens, show_progress_bar=self.show_progress_bar or None,
                               convert_to="torch")

    def _encode_docs(self, embedder: MgteEmbedder, texts: list[str], rows: list[int], length: int, dimension: int,
                     previous: EmbeddingResult | None) -> EmbeddingResult:
        """Encode `texts[rows]` at `length` and merge them into the previous encoding (all rows the first time)."""
        fresh = self._encode(embedder, [texts[i] for i in rows], length, dimension)
        if previous is None:
            return fresh
        dense = torch.as_tensor(previous.dense).clone()
        sparse = list(previous.sparse)
        if rows:
            dense[rows] = torch.as_tensor(fresh.dense)
            for i, row in zip(rows, fresh.sparse):
                sparse[i] = row
        return EmbeddingResult(dense, sparse, previous.tokenizer)

    def _wrap(self, model, cls: type[MgteEmbedder] | type[MgteReranker], **kwargs):
        """`model` itself when it is a `cls`, else its bare mGTE model wrapped in one with the evaluator's tokenizer."""
        if isinstance(model, cls):
            return model
        module = unwrap_model(model)
        if not isinstance(module, cls.model_class):
            raise TypeError(f"RetrievalEvaluator evaluates an MgteEmbedder, an MgteReranker or their models "
                            f"(MgteForEmbedding, MgteForSequenceClassification), got {type(module).__name__}.")
        if self.tokenizer is None:
            raise ValueError(f"pass tokenizer= to RetrievalEvaluator to evaluate a bare {type(module).__name__}.")
        return cls(module, self.tokenizer, **kwargs, **({"batch_tokens": self.batch_tokens} if self.batch_tokens
                                                        else {}))

    def _reranker(self, reranker, embedder: MgteEmbedder | None) -> MgteReranker | None:
        if "rerank" not in self.systems:
            return None
        if reranker is None:
            raise ValueError("the rerank system needs a reranker (an MgteReranker or its folder).")
        if isinstance(reranker, MgteReranker):
            return reranker
        device = embedder.device if embedder is not None else None
        self.reranker = MgteReranker.from_pretrained(os.path.expanduser(os.fspath(reranker)), device=device)
        return self.reranker

    def _default_primary_metric(self) -> str:
        model_systems = [s for s in self.systems if s != "bm25"]
        family = model_systems[0] if model_systems else "bm25"
        if family == "bm25":
            return f"bm25_{self.metrics[0]}"
        params = {"max_length": self.max_lengths[-1], "dimension": max(self.dims) if self.dims else None}
        if family in ("hybrid", "rerank"):
            params.update(zip(("dense_weight", "sparse_weight"), self.hybrid_weights[0]))
        if family == "rerank" and self.rerank_first_stage_weights:
            params["first_stage_weight"] = self.rerank_first_stage_weights[0]
        return f"{_system_name(family, params, self)}_{self.metrics[0]}"


def _system_name(family: str, params: dict, evaluator: RetrievalEvaluator) -> str:
    """Stable labels: `dense_d768_L512`, `sparse_L512`, `hybrid_L512` (`hybrid_1-0.3_L512` with several weight
    pairs), `rerank_L512` (`rerank_a0.8_L512` for the weights of `rerank_first_stage_weights`); the length is left
    out when one max length is evaluated, the dimension when `dims` was not given (the embedder's own)."""
    suffix = f"_L{params['max_length']}" if len(evaluator.max_lengths) > 1 else ""
    if family == "dense":
        return f"dense_d{params['dimension']}{suffix}" if evaluator.dims else f"dense{suffix}"
    if family == "hybrid" and len(evaluator.hybrid_weights) > 1:
        return f"hybrid_{params['dense_weight']:g}-{params['sparse_weight']:g}{suffix}"
    if family == "rerank" and evaluator.rerank_first_stage_weights:
        return f"rerank_a{params['first_stage_weight']:g}{suffix}"
    return f"{family}{suffix}"


def _check_systems(systems: Sequence[str]) -> list[str]:
    systems = [s.strip() for s in ([systems] if isinstance(systems, str) else systems)]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or not systems:
        raise ValueError(f"unknown or no retrieval systems {unknown or systems}; choose from {', '.join(SYSTEMS)}.")
    return [s for s in SYSTEMS if s in systems]


def _check_weights(weights: Sequence[float] | None) -> list[float] | None:
    """Interpolation weights: each in [0, 1], none twice, at least one (`None`: the reranker's own)."""
    if weights is None:
        return None
    checked = [check_first_stage_weight(w) for w in weights]
    if not checked or len(set(checked)) != len(checked):
        raise ValueError(f"rerank_first_stage_weights needs distinct weights in [0, 1], got {list(weights)}.")
    return checked


def _index(doc_ids: list[str], doc_texts: list[str], emb: EmbeddingResult, dimension: int) -> HybridIndex:
    index = HybridIndex(dimension=dimension)
    index.add(doc_texts, doc_ids, embeddings=_at_dimension(emb, dimension))
    return index


def _at_dimension(emb: EmbeddingResult, dimension: int) -> EmbeddingResult:
    """The Matryoshka view: the first `dimension` components, re-normalised (`modeling.dense_embedding`)."""
    return EmbeddingResult(dense_embedding(torch.as_tensor(emb.dense), dimension), emb.sparse, emb.tokenizer)


def hits_to_run(qids: list[str], hits: list[list[SearchHit]]) -> Run:
    """Hits → run; scores are rank-based (`len - rank`) so that the run's order is exactly the hit order."""
    return {q: {h.id: float(len(row) - r) for r, h in enumerate(row)} for q, row in zip(qids, hits)}


def _model_name(model) -> str | None:
    if model is None:
        return None
    return getattr(model.model.config, "_name_or_path", None) or type(model.model).__name__


__all__ = ["DEFAULT_SYSTEMS", "RERANK_FIRST_STAGES", "SYSTEMS", "RetrievalEvaluator", "hits_to_run"]
