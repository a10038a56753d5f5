"""BEIR-format retrieval sets: `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`, read and written.

Rows follow the BEIR layout (`{"_id", "title", "text", "metadata"}` in the corpus, `{"_id", "text", "metadata"}`
in the queries, and a `query-id  corpus-id  score` TSV with a header), so any standard BEIR set drops in.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..outputs import check_output, write_atomic


logger = logging.getLogger(__name__)


@dataclass
class BeirDataset:
    """A retrieval set in memory.

    Attributes:
        corpus: doc id → `{"title": str, "text": str}` (plus optional `"metadata"`).
        queries: query id → query text.
        qrels: query id → `{doc id: relevance grade}` (grade > 0 is relevant).
        name: a short label for reports.
        query_metadata: optional query id → metadata dict (e.g. `{"lang": "de"}`).
    """

    corpus: dict[str, dict]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str = ""
    query_metadata: dict[str, dict] = field(default_factory=dict)

    def doc_ids(self) -> list[str]:
        return list(self.corpus)

    def doc_texts(self) -> list[str]:
        """The text to index for each document, in `doc_ids()` order: title and body joined by a space."""
        return [document_text(doc) for doc in self.corpus.values()]

    def judged_query_ids(self) -> list[str]:
        """Ids of the queries that have at least one relevant document, in query order."""
        return [q for q in self.queries if any(g > 0 for g in self.qrels.get(q, {}).values())]

    def sample_queries(self, max_queries: int | None, seed: int = 0) -> BeirDataset:
        """A copy keeping at most `max_queries` judged queries (a seeded random sample, query order kept)."""
        judged = self.judged_query_ids()
        if max_queries is None or max_queries >= len(judged):
            keep = judged
        else:
            if max_queries < 1:
                raise ValueError(f"max_queries must be >= 1, got {max_queries}.")
            chosen = set(random.Random(seed).sample(judged, max_queries))
            keep = [q for q in judged if q in chosen]
        return BeirDataset(
            corpus=self.corpus, queries={q: self.queries[q] for q in keep},
            qrels={q: dict(self.qrels[q]) for q in keep}, name=self.name,
            query_metadata={q: self.query_metadata[q] for q in keep if q in self.query_metadata})

    def stats(self) -> dict[str, int]:
        """Counts for reports; `qrels_absent_from_corpus` when judgements name documents the corpus lacks."""
        stats = {"documents": len(self.corpus), "queries": len(self.queries),
                 "judged_queries": len(self.judged_query_ids()), "qrels": sum(len(r) for r in self.qrels.values())}
        absent = sum(doc not in self.corpus for docs in self.qrels.values() for doc in docs)
        return {**stats, "qrels_absent_from_corpus": absent} if absent else stats


def document_text(doc: Mapping) -> str:
    """BEIR's convention for what gets indexed: `title + " " + text` (just the text when there is no title)."""
    return f"{doc.get('title') or ''} {doc.get('text') or ''}".strip()


UNKNOWN_DOCS = ("keep", "drop", "error")


def load_beir(folder: str | os.PathLike, split: str = "test", *, unknown_docs: str = "keep") -> BeirDataset:
    """Read a BEIR folder. Qrels rows of unknown queries are dropped with a warning.

    Args:
        folder: the BEIR folder.
        split: the qrels file `qrels/<split>.tsv`.
        unknown_docs: judgements naming documents absent from the corpus: `"keep"` them (trec_eval's convention:
            relevant, never retrieved; comparable to published figures), `"drop"` them, or refuse them
            (`"error"`). Kept or dropped, they are counted in a warning; kept ones also in `stats()`.

    Raises:
        FileNotFoundError: when a required file is missing.
        ValueError: on malformed rows or duplicate ids, or unknown documents with `unknown_docs="error"`.
    """
    if unknown_docs not in UNKNOWN_DOCS:
        raise ValueError(f"unknown_docs must be one of {', '.join(UNKNOWN_DOCS)}; got {unknown_docs!r}.")
    root = Path(folder)
    qrels_path = root / "qrels" / f"{split}.tsv"
    for path in (root / "corpus.jsonl", root / "queries.jsonl", qrels_path):
        if not path.is_file():
            splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
            raise FileNotFoundError(f"{path} is missing: a BEIR folder holds corpus.jsonl, queries.jsonl and "
                                    f"qrels/<split>.tsv (splits found here: {', '.join(splits) or 'none'}).")
    corpus: dict[str, dict] = {}
    for row in _read_jsonl(root / "corpus.jsonl"):
        doc = {"title": row.get("title") or "", "text": row.get("text") or ""}
        if row.get("metadata"):
            doc["metadata"] = row["metadata"]
        _put_unique(corpus, row["_id"], doc, "corpus.jsonl")
    queries: dict[str, str] = {}
    query_metadata: dict[str, dict] = {}
    for row in _read_jsonl(root / "queries.jsonl"):
        _put_unique(queries, row["_id"], row.get("text") or "", "queries.jsonl")
        if row.get("metadata"):
            query_metadata[str(row["_id"])] = row["metadata"]
    qrels = _read_qrels(qrels_path, queries, corpus, unknown_docs)
    return BeirDataset(corpus, queries, qrels, name=root.name, query_metadata=query_metadata)


def write_beir(dataset: BeirDataset, folder: str | os.PathLike, split: str = "test", *,
               overwrite: bool = False) -> Path:
    """Write `dataset` as a BEIR folder (each file written aside and renamed, rows in the dataset's order).

    Args:
        dataset: the set.
        folder: the BEIR folder (created).
        split: the qrels file `qrels/<split>.tsv`.
        overwrite: replace the files of an existing set (otherwise refused before anything is written).

    Returns:
        The folder.
    """
    root = Path(folder)
    for path in (root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv"):
        check_output(path, overwrite=overwrite)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    write_atomic(root / "corpus.jsonl", (
        json.dumps({"_id": i, "title": d.get("title", ""), "text": d.get("text", ""),
                    **({"metadata": d["metadata"]} if d.get("metadata") else {})}, ensure_ascii=False) + "\n"
        for i, d in dataset.corpus.items()))
    write_atomic(root / "queries.jsonl", (
        json.dumps({"_id": q, "text": t, **({"metadata": dataset.query_metadata[q]}
                                            if dataset.query_metadata.get(q) else {})}, ensure_ascii=False) + "\n"
        for q, t in dataset.queries.items()))
    write_atomic(root / "qrels" / f"{split}.tsv", _qrels_lines(dataset.qrels))
    return root


def _qrels_lines(qrels: Mapping[str, Mapping[str, int]]) -> Iterator[str]:
    yield "query-id\tcorpus-id\tscore\n"
    for qid, docs in qrels.items():
        for doc, grade in docs.items():
            yield f"{qid}\t{doc}\t{int(grade)}\n"


def _read_jsonl(path: Path) -> Iterator[dict]:
    """The objects of a BEIR JSONL file, each with a string `_id` and string `title`/`text` (when present)."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}:{n} is not valid UTF-8 ({err.reason}); save the file as UTF-8.") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n} is not valid JSON ({err.msg}).") from err
            if not isinstance(row, dict) or "_id" not in row:
                raise ValueError(f"{path}:{n} needs an object with an '_id' field.")
            bad = [k for k in ("title", "text") if row.get(k) is not None and not isinstance(row[k], str)]
            if bad or isinstance(row["_id"], (bool, dict, list, float)) or row["_id"] is None:
                what = f"its {bad[0]!r} is not a string" if bad else "its '_id' is not a string or an integer"
                raise ValueError(f"{path}:{n}: {what}.")
            row["_id"] = str(row["_id"])
            yield row


def _put_unique(table: dict, key: str, value, source: str) -> None:
    if key in table:
        raise ValueError(f"{source}: the id {key!r} appears twice; ids must be unique.")
    table[key] = value


def _read_qrels(path: Path, queries: Mapping[str, str], corpus: Mapping[str, dict],
                unknown_docs: str) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    unknown_queries, absent = set(), set()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not valid UTF-8 ({err.reason} at byte {err.start}); save it as UTF-8.") from None
    rows = csv.reader(text.splitlines(), delimiter="\t")
    for n, row in enumerate(rows, 1):
        if n == 1 and row and row[0] == "query-id":
            continue
        if len(row) != 3:
            raise ValueError(f"{path}:{n} needs 3 tab-separated fields (query-id, corpus-id, score), "
                             f"got {len(row)}.")
        qid, doc, grade = row
        try:
            grade_value = int(float(grade))
        except (ValueError, OverflowError) as err:
            raise ValueError(f"{path}:{n}: the score {grade!r} is not a number.") from err
        if qid not in queries:
            unknown_queries.add(qid)
            continue
        if doc not in corpus:
            if unknown_docs == "error":
                raise ValueError(f"{path}:{n}: the judged document {doc!r} is not in corpus.jsonl; fix the "
                                 "qrels, or choose unknown_docs='keep' / 'drop' (--unknown-docs).")
            absent.add(doc)
            if unknown_docs == "drop":
                continue
        qrels.setdefault(qid, {})[doc] = grade_value
    if unknown_queries:
        logger.warning("%s: dropped the judgements of %d query ids absent from queries.jsonl (e.g. %r).",
                       path, len(unknown_queries), sorted(unknown_queries)[0])
    if absent:
        fate = "they count as relevant and never retrieved" if unknown_docs == "keep" else "their judgements are dropped"
        logger.warning("%s: %d judged doc ids are absent from corpus.jsonl (e.g. %r); %s (unknown_docs=%r).",
                       path, len(absent), sorted(absent)[0], fate, unknown_docs)
    return qrels


__all__ = ["UNKNOWN_DOCS", "BeirDataset", "document_text", "load_beir", "write_beir"]
