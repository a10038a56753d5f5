"""The demo's micro setting: a tiny data cache with the layout `mgte-hf data build` writes (real XLM-R tokenizer, a
few English and German sentences) and a config that runs every stage in seconds."""

from __future__ import annotations

import os
from pathlib import Path

from mgte_hf.data.cache import write_jsonl
from mgte_hf.demo import DemoConfig, DemoResult, StageBudget, run_demo
from mgte_hf.evaluation import BeirDataset, write_beir
from mgte_hf.tokenizer import xlmr_tokenizer_dir
from tiny import SENTENCES


ENGLISH = [f"The {who} {does} {where}." for who in ("dog", "cat", "teacher", "farmer")
           for does in ("sleeps", "reads a book", "drinks coffee") for where in ("in the park", "at home")]
GERMAN = [f"{who} {does} {where}." for who in ("Der Hund", "Die Katze", "Der Lehrer", "Der Bauer")
          for does in ("schläft", "liest ein Buch", "trinkt Kaffee") for where in ("im Park", "zu Hause")]


def beir(name: str, queries: list[str], docs: list[str], relevant: list[int]) -> BeirDataset:
    """Query i is answered by document `relevant[i]`."""
    return BeirDataset(corpus={f"d{i}": {"title": "", "text": t} for i, t in enumerate(docs)},
                       queries={f"q{i}": t for i, t in enumerate(queries)},
                       qrels={f"q{i}": {f"d{j}": 1} for i, j in enumerate(relevant)}, name=name)


def make_tiny_cache(root: Path) -> Path:
    """Write the tiny cache into `root` (the tokenizer is a link to the real XLM-R one)."""
    (root / "tokenizers").mkdir(parents=True)
    (root / "tokenizers" / "xlm-roberta").symlink_to(xlmr_tokenizer_dir())
    write_jsonl(root / "udhr" / "units.jsonl", [
        {"code": code, "bcp47": lang, "unit": i, "text": text}
        for code, lang, texts in (("eng", "en", ENGLISH), ("deu_1996", "de", GERMAN)) for i, text in enumerate(texts[:8])])
    write_jsonl(root / "ddtp" / "mlm.jsonl", [{"lang": "en", "text": t} for t in SENTENCES])
    write_jsonl(root / "ddtp" / "pairs.jsonl", [
        {"lang": "en", "md5": str(i), "query": ENGLISH[i], "positive": ENGLISH[i + 1]} for i in range(20)])
    write_jsonl(root / "ddtp" / "crosslingual.jsonl", [
        {"md5": str(i), "lang": "de", "text": f"{GERMAN[i]}\n{GERMAN[i + 1]}", "en_text": f"{ENGLISH[i]}\n{ENGLISH[i + 1]}"}
        for i in range(20)])
    long_docs = [" ".join(ENGLISH[i:i + 4]) for i in range(10)]  # 30-odd tokens: "long" at the micro lengths
    write_beir(beir("gnome-de-en", GERMAN[:6], ENGLISH[:8] + long_docs[:2], [0, 1, 2, 3, 8, 9]),
               root / "beir" / "gnome-de-en")
    write_beir(beir("bible-es-en", ENGLISH[10:18], long_docs[:8], list(range(8))), root / "beir" / "bible-es-en")
    return root


def micro_config(**overrides) -> DemoConfig:
    """Every stage for a few steps on a 1-layer, 32-wide model: seconds."""
    base = dict(
        languages=("en", "de"), udhr_codes=("eng", "deu_1996"), mlm_texts=20, pair_count=8, crosslingual_count=6,
        trm_count=8, dev_count=6, reranker_count=6, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=48,
        mlm_lengths=(16, 32), mlm=StageBudget(2, 256, 1e-3), contrastive=StageBudget(2, 4, 1e-3),
        trm=StageBudget(2, 4, 1e-3), reranker=StageBudget(3, 2, 1e-3), query_length=16, passage_length=24,
        num_negatives=2, negative_skip=1, reranker_hard_negatives=1, reranker_random_negatives=1,
        reranker_length=40, matryoshka_dimensions=(16, 32), matryoshka_weights=(0.5, 1.0), eval_sets=("gnome-de-en", "bible-es-en:5"),
        bible_chapters=6, eval_max_length=32, rerank_depth=3, rerank_queries=4, ablation_lengths=(16, 48),
        threads=1, time_limit=600.0)
    base.update(overrides)
    return DemoConfig(**base)


def run_micro(cache: Path, out: Path, **kwargs) -> DemoResult:
    """The micro demo into `out`, given as a relative folder from its parent (as `make demo` passes it)."""
    cwd = os.getcwd()
    os.chdir(out.parent)
    try:
        return run_demo(out.name, cache, kwargs.pop("config", None) or micro_config(), build=False, quiet=True,
                        **kwargs)
    finally:
        os.chdir(cwd)
