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

from ..outputs import write_atomic


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
        return {"documents": len(self.corpus), "queries": len(self.queries),
                "judged_queries": len(self.judged_query_ids()), "qrels": sum(len(r) for r in self.qrels.values())}


def document_text(doc: Mapping) -> str:
    """BEIR's convention for what gets indexed: `title + " " + text` (just the text when there is no title)."""
    return f"{doc.get('title') or ''} {doc.get('text') or ''}".strip()


def load_beir(folder: str | os.PathLike, split: str = "test") -> BeirDataset:
    """Read a BEIR folder. Qrels rows of unknown queries are dropped with a warning; unknown docs are kept (warned).

    Raises:
        FileNotFoundError: when a required file is missing.
        ValueError: on malformed rows or duplicate ids.
    """
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
    qrels = _read_qrels(qrels_path, queries, corpus)
    return BeirDataset(corpus, queries, qrels, name=root.name, query_metadata=query_metadata)


def write_beir(dataset: BeirDataset, folder: str | os.PathLike, split: str = "test") -> Path:
    """Write `dataset` as a BEIR folder (files replaced atomically, rows in the dataset's order); returns it."""
    root = Path(folder)
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
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n} is not valid JSON ({err.msg}).") from err
            if not isinstance(row, dict) or "_id" not in row:
                raise ValueError(f"{path}:{n} needs an object with an '_id' field.")
            row["_id"] = str(row["_id"])
            yield row


def _put_unique(table: dict, key: str, value, source: str) -> None:
    if key in table:
        raise ValueError(f"{source}: the id {key!r} appears twice; ids must be unique.")
    table[key] = value


def _read_qrels(path: Path, queries: Mapping[str, str], corpus: Mapping[str, dict]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    unknown_queries, unknown_docs = set(), set()
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t")
        for n, row in enumerate(rows, 1):
            if n == 1 and row and row[0] == "query-id":
                continue
            if len(row) != 3:
                raise ValueError(f"{path}:{n} needs 3 tab-separated fields (query-id, corpus-id, score), "
                                 f"got {len(row)}.")
            qid, doc, grade = row
            try:
                grade_value = int(float(grade))
            except ValueError as err:
                raise ValueError(f"{path}:{n}: the score {grade!r} is not a number.") from err
            if qid not in queries:
                unknown_queries.add(qid)
                continue
            unknown_docs.update([doc] if doc not in corpus else [])
            qrels.setdefault(qid, {})[doc] = grade_value
    if unknown_queries:
        logger.warning("%s: dropped the judgements of %d query ids absent from queries.jsonl (e.g. %r).",
                       path, len(unknown_queries), sorted(unknown_queries)[0])
    if unknown_docs:
        logger.warning("%s: %d judged doc ids are absent from corpus.jsonl (e.g. %r); they count as never retrieved.",
                       path, len(unknown_docs), sorted(unknown_docs)[0])
    return qrels


__all__ = ["BeirDataset", "document_text", "load_beir", "write_beir"]
