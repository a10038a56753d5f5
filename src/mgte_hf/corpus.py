"""Readers of id'd corpora: one `(id, text)` pair per document, streamed, never held whole.

    corpus = open_corpus("corpus.jsonl", id_field="_id")   # or a folder saved by datasets, or a datasets object
    for doc_id, text in corpus: ...

A record without its id or text, with an id that is not a string or integer, or a line that is not a JSON object
raises `ValueError` naming the file and line (or the dataset row). Ids are yielded as strings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


READ_BATCH = 1024  # rows per `datasets` read


class JsonlCorpus:
    """A JSON-lines corpus read line by line: one object per non-blank line with a string/int id and a string text.

    Iterating yields `(id, text)` with the id as a string; a bad line raises `ValueError` naming file and line.
    """

    def __init__(self, path: str | os.PathLike, id_field: str = "id", text_field: str = "text"):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"corpus file {self.path} does not exist.")
        self.id_field, self.text_field = id_field, text_field

    def __iter__(self) -> Iterator[tuple[str, str]]:
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{self.path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{where}: not valid JSON ({err.msg}).") from err
                if not isinstance(record, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}.")
                yield _check_record(record, self.id_field, self.text_field, where)


class DatasetCorpus:
    """A `datasets.Dataset` (memory-mapped) or `datasets.IterableDataset`, read in batches of `READ_BATCH` rows.

    Iterating yields `(id, text)` with the id as a string.
    """

    def __init__(self, dataset: Any, id_field: str = "id", text_field: str = "text"):
        import datasets

        if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            raise ValueError(f"Got a dataset with splits {list(dataset)}; choose one (split=, or --split).")
        if not isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
            raise TypeError(f"Expected a datasets.Dataset or IterableDataset, got {type(dataset).__name__}.")
        missing = [f for f in (id_field, text_field) if dataset.column_names is not None and
                   f not in dataset.column_names]
        if missing:
            raise ValueError(f"The dataset has no column {missing[0]!r} (columns: {dataset.column_names}); choose "
                             "the id and text columns with id_field= and text_field=.")
        self.dataset, self.id_field, self.text_field = dataset, id_field, text_field

    def __iter__(self) -> Iterator[tuple[str, str]]:
        row = 0
        for batch in self.dataset.iter(batch_size=READ_BATCH):
            size = len(next(iter(batch.values())))
            missing = [None] * size  # a column absent from this batch: `_check_record` names it
            for doc_id, text in zip(batch.get(self.id_field, missing), batch.get(self.text_field, missing)):
                yield _check_record({self.id_field: doc_id, self.text_field: text}, self.id_field, self.text_field,
                                    f"dataset row {row}")
                row += 1


Corpus = JsonlCorpus | DatasetCorpus


def open_corpus(source: Any, id_field: str = "id", text_field: str = "text", split: str | None = None) -> Corpus:
    """A corpus reader for a `.jsonl` file, a folder written by `datasets`' `save_to_disk`, or a `datasets` object.

    Args:
        source: a path or a `datasets` Dataset / IterableDataset / DatasetDict.
        id_field, text_field: the fields holding the id and the text.
        split: the split to read when the source has several.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file():
            if path.suffix != ".jsonl":
                raise ValueError(f"{path}: expected a .jsonl file (or a folder saved with datasets' save_to_disk).")
            return JsonlCorpus(path, id_field, text_field)
        if not path.is_dir():
            raise FileNotFoundError(f"corpus {path} does not exist.")
        import datasets

        source = datasets.load_from_disk(str(path))
    if split is not None:
        if split not in source:
            raise ValueError(f"The dataset has no split {split!r}; it has {list(source)}.")
        source = source[split]
    return DatasetCorpus(source, id_field, text_field)


def _check_record(record: Mapping[str, Any], id_field: str, text_field: str, where: str) -> tuple[str, str]:
    """`(id, text)` of one record; a missing or mistyped field raises `ValueError` naming `where`."""
    for name, option in ((id_field, "id_field"), (text_field, "text_field")):
        if record.get(name) is None:
            raise ValueError(f"{where}: no {name!r} field (choose the field with {option}=).")
    doc_id, text = record[id_field], record[text_field]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise ValueError(f"{where}: the id is a {type(doc_id).__name__}; ids must be strings or integers.")
    if not isinstance(text, str):
        raise ValueError(f"{where}: the text is a {type(text).__name__}, not a string.")
    return str(doc_id), text


__all__ = ["READ_BATCH", "Corpus", "DatasetCorpus", "JsonlCorpus", "open_corpus"]
