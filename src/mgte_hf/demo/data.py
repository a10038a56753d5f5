"""The demo's texts: seeded samples of the data cache for every stage, and the evaluation sets.

Training text is UDHR and Debian package descriptions (DDTP); evaluation is GNOME Help and the Bible (BEIR folders
of `mgte_hf.data`). Every sample is drawn with `random.Random(config.seed)` in a fixed order, so the same config
gives the same texts.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mgte_hf.data import beir_dir
from mgte_hf.data.cache import read_jsonl
from mgte_hf.evaluation import BeirDataset, load_beir

from .config import DemoConfig


UDHR_ENGLISH = "eng"


@dataclass
class DemoData:
    """The texts of every stage and the evaluation sets (each already sampled)."""

    mlm: list[str]
    contrastive: list[dict[str, str]]  # {"query", "positive"}
    finetune: list[dict[str, str]]  # {"query", "positive"}: the TRM (and reranker) queries
    dev: list[dict[str, str]]  # held-out {"query", "positive"} of the same kind, for the hybrid and reranker weights
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
    units_file = root / "udhr" / "units.jsonl"
    if not units_file.is_file():
        raise FileNotFoundError(f"{units_file} is missing; run `mgte-hf data build` (or point --cache at a built "
                                "cache).")
    units = [r for r in read_jsonl(units_file) if r["code"] in config.udhr_codes]
    if not units:
        raise FileNotFoundError(f"no UDHR units of {config.udhr_codes} in {root / 'udhr'}; run `mgte-hf data build`.")
    mlm_pool = [r["text"] for r in rows_of(root / "ddtp" / "mlm.jsonl", langs)]
    pairs = rows_of(root / "ddtp" / "pairs.jsonl", langs)
    cross = rows_of(root / "ddtp" / "crosslingual.jsonl", langs)
    mlm = [u["text"] for u in units] + sample(rng, mlm_pool, config.mlm_texts)

    by_lang_pairs = _group(pairs, "lang")
    by_lang_cross = _group(cross, "lang")
    contrastive, finetune = [], []
    for lang in config.languages:
        extra = (config.trm_count + config.dev_count) // 2
        mono = sample(rng, by_lang_pairs.get(lang, []), config.pair_count + extra)
        contrastive += [{"query": r["query"], "positive": r["positive"]} for r in mono[:config.pair_count]]
        finetune += [{"query": r["query"], "positive": r["positive"]} for r in mono[config.pair_count:]]
        if lang == "en":
            continue
        pool = sample(rng, by_lang_cross.get(lang, []), config.crosslingual_count + extra)
        for i, r in enumerate(pool):
            synopsis, _, _ = r["text"].partition("\n")
            _, _, en_description = r["en_text"].partition("\n")
            if i < config.crosslingual_count:  # a translation and, for retrieval, its synopsis → English body
                contrastive.append({"query": r["text"], "positive": r["en_text"]})
            if en_description.strip():
                (contrastive if i < config.crosslingual_count else finetune).append(
                    {"query": synopsis, "positive": en_description})
    contrastive += udhr_pairs(units)
    finetune = sample(rng, finetune, config.trm_count + config.dev_count)
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
    return restricted(dataset, keep)


def restricted(dataset: BeirDataset, keep: set[str]) -> BeirDataset:
    """A copy with the documents in `keep` and only the queries whose relevant documents all remain."""
    qids = [q for q in dataset.queries if dataset.qrels.get(q) and set(dataset.qrels[q]) <= keep]
    return BeirDataset(corpus={d: doc for d, doc in dataset.corpus.items() if d in keep},
                       queries={q: dataset.queries[q] for q in qids}, qrels={q: dict(dataset.qrels[q]) for q in qids},
                       name=dataset.name, query_metadata={q: dataset.query_metadata[q] for q in qids
                                                          if q in dataset.query_metadata})


def pairs_dataset(rows: Sequence[Mapping[str, str]], name: str) -> BeirDataset:
    """Query i → its positive, over the corpus of every distinct positive of `rows` (a BEIR set of training-like
    pairs, e.g. the held-out dev pairs)."""
    positives = list(dict.fromkeys(r["positive"] for r in rows))
    index = {text: f"d{i}" for i, text in enumerate(positives)}
    return BeirDataset(corpus={index[t]: {"title": "", "text": t} for t in positives},
                       queries={f"q{i}": r["query"] for i, r in enumerate(rows)},
                       qrels={f"q{i}": {index[r["positive"]]: 1} for i, r in enumerate(rows)}, name=name)


def sample(rng: random.Random, rows: list, count: int) -> list:
    """`count` rows drawn without replacement (all of them, shuffled, when there are fewer)."""
    return rng.sample(rows, min(count, len(rows)))


def _group(rows: list[dict], key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row[key], []).append(row)
    return out


__all__ = ["DemoData", "chapter_sample", "load_demo_data", "load_eval_sets", "pairs_dataset", "restricted",
           "rows_of", "sample", "udhr_pairs"]
