"""The one reader of id'd corpora: one `(id, text)` pair per document, for every command and API of the package.

    ids, texts = read_corpus("corpus.jsonl", id_field="_id")   # in memory; ids checked unique
    for doc_id, text in open_corpus("corpus.jsonl"): ...       # streamed, never held whole (sharded encoding)

Sources:
- `.jsonl`: one JSON object per non-blank line, the id in `id_field`, the text in `text_field`;
- `.tsv`: tab-separated, with a header row naming the columns (`id_field`, `text_field`); a file without one holds
  `id<TAB>text` rows;
- `.txt`: one text per non-blank line; its id is the line number;
- a folder written by `datasets`' `save_to_disk`, or a `datasets` Dataset / IterableDataset / DatasetDict (choose
  the split).

`id_field=None` numbers the documents instead of reading ids: the line number (from 1) of a file, the row index
(from 0) of a dataset. A missing id or text, an id that is not a string or an integer, a text that is not a string or
holds a lone surrogate, and a line that is not valid UTF-8, JSON or TSV raise `ValueError` naming the file and line
(or the dataset row); `read_corpus` also refuses a repeated id (naming both places) and an empty corpus. Ids are
returned as strings (the integer 7 and the string "7" are the same id).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


READ_BATCH = 1024  # rows per `datasets` read
FILE_SUFFIXES = (".jsonl", ".tsv", ".txt")


class _FileCorpus:
    """A corpus file read line by line (bytes decoded per line, so a bad byte is named by its line)."""

    def __init__(self, path: str | os.PathLike, id_field: str | None = "id", text_field: str = "text"):
        self.path = Path(path)
        if not self.path.is_file():
            what = "is a folder, not a file" if self.path.is_dir() else "does not exist"
            raise FileNotFoundError(f"corpus file {self.path} {what}.")
        self.id_field, self.text_field = id_field, text_field

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, doc_id, text in self.records():
            yield doc_id, text

    def records(self) -> Iterator[tuple[str, str, str]]:
        """`(where, id, text)` of each document, `where` being `file:line`."""
        for number, line in self._lines():
            record = self._parse(line, f"{self.path}:{number}", number)
            if record is not None:
                yield record

    def _lines(self) -> Iterator[tuple[int, str]]:
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:  # a byte-order mark (Windows editors write one) is not part of the first line
                    yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
                except UnicodeDecodeError as err:
                    raise ValueError(f"{self.path}:{number}: not valid UTF-8 ({err.reason} at byte {err.start} of "
                                     "the line); save the file as UTF-8.") from None

    def _parse(self, line: str, where: str, number: int) -> tuple[str, str, str] | None:
        raise NotImplementedError


class JsonlCorpus(_FileCorpus):
    """JSON lines: one object per non-blank line holding the id (`id_field`) and the text (`text_field`)."""

    def _parse(self, line: str, where: str, number: int) -> tuple[str, str, str] | None:
        if not line.strip():
            return None
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err.msg}).") from err
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}.")
        return where, *check_record(record, self.id_field, self.text_field, where, number)


class TsvCorpus(_FileCorpus):
    """Tab-separated rows with a header naming the columns (`id_field`, `text_field`), else `id<TAB>text` rows."""

    def records(self) -> Iterator[tuple[str, str, str]]:
        header: list[str] | None = None
        first = True
        for number, line in self._lines():
            if not line.strip():
                continue
            cells, where = line.split("\t"), f"{self.path}:{number}"
            if first and self.text_field in cells:  # a header row
                first, header = False, cells
                missing = [f for f in (self.id_field, self.text_field) if f is not None and f not in cells]
                if missing:
                    raise ValueError(f"{where}: the header has no column {missing[0]!r} (columns: {cells}); choose "
                                     "the columns with --id-field / --text-field (id_field=, text_field=).")
                continue
            first = False
            names = header or (["text"] if self.id_field is None else ["id", "text"])
            if len(cells) != len(names):
                raise ValueError(f"{where}: {len(cells)} tab-separated fields where {len(names)} are expected "
                                 f"({', '.join(names)}); remove tabs inside texts, or add a header row naming the "
                                 "columns.")
            record = dict(zip(names, cells, strict=True))
            id_field = self.id_field if header or self.id_field is None else "id"
            yield where, *check_record(record, id_field, self.text_field if header else "text", where, number)


class TextCorpus(_FileCorpus):
    """Plain text: one document per non-blank line; its id is the line number."""

    def __init__(self, path: str | os.PathLike, id_field: str | None = None, text_field: str = "text"):
        super().__init__(path, None, text_field)

    def _parse(self, line: str, where: str, number: int) -> tuple[str, str, str] | None:
        if not line.strip():
            return None
        return where, *check_record({"text": line}, None, "text", where, number)


class DatasetCorpus:
    """A `datasets.Dataset` (memory-mapped) or `datasets.IterableDataset`, read in batches of `READ_BATCH` rows.

    Iterating yields `(id, text)` with the id as a string.
    """

    def __init__(self, dataset: Any, id_field: str | None = "id", text_field: str = "text"):
        import datasets

        if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            raise ValueError(f"Got a dataset with splits {list(dataset)}; choose one (split=, or --split).")
        if not isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
            raise TypeError(f"Expected a datasets.Dataset or IterableDataset, got {type(dataset).__name__}.")
        missing = [f for f in (id_field, text_field) if f is not None and dataset.column_names is not None and
                   f not in dataset.column_names]
        if missing:
            raise ValueError(f"The dataset has no column {missing[0]!r} (columns: {dataset.column_names}); choose "
                             "the id and text columns with id_field= and text_field=.")
        self.dataset, self.id_field, self.text_field = dataset, id_field, text_field

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for _, doc_id, text in self.records():
            yield doc_id, text

    def records(self) -> Iterator[tuple[str, str, str]]:
        """`(where, id, text)` of each row, `where` being `dataset row N`."""
        row = 0
        for batch in self.dataset.iter(batch_size=READ_BATCH):
            size = len(next(iter(batch.values())))
            missing = [None] * size  # a column absent from this batch: `check_record` names it
            ids = batch.get(self.id_field, missing) if self.id_field is not None else missing
            for doc_id, text in zip(ids, batch.get(self.text_field, missing)):
                where = f"dataset row {row}"
                yield where, *check_record({self.id_field: doc_id, self.text_field: text}, self.id_field,
                                           self.text_field, where, row)
                row += 1


Corpus = JsonlCorpus | TsvCorpus | TextCorpus | DatasetCorpus
_READERS = {".jsonl": JsonlCorpus, ".tsv": TsvCorpus, ".txt": TextCorpus}


def open_corpus(source: Any, id_field: str | None = "id", text_field: str = "text",
                split: str | None = None) -> Corpus:
    """A corpus reader for a `.jsonl`, `.tsv` or `.txt` file, a folder written by `datasets`' `save_to_disk`, or a
    `datasets` object.

    Args:
        source: a path or a `datasets` Dataset / IterableDataset / DatasetDict.
        id_field, text_field: the fields (columns) holding the id and the text; `id_field=None` numbers the
            documents (line numbers of a file, row indices of a dataset).
        split: the split to read from a source that has several (datasets only).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_file():
            if path.suffix not in _READERS:
                raise ValueError(f"{path}: expected a {', '.join(FILE_SUFFIXES)} file (or a folder saved with "
                                 "datasets' save_to_disk).")
            if split is not None:
                raise ValueError(f"{path} is a {path.suffix} file, which has no splits; --split (split=) applies to "
                                 "a datasets folder with several splits.")
            return _READERS[path.suffix](path, id_field, text_field)
        if not path.is_dir():
            raise FileNotFoundError(f"corpus {path} does not exist.")
        import datasets

        try:
            source = datasets.load_from_disk(str(path))
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{path} is a folder but not one written by datasets' save_to_disk; give a "
                                    f"{', '.join(FILE_SUFFIXES)} file or such a folder.") from err
    if split is not None:
        if not hasattr(source, "keys"):
            raise ValueError(f"split={split!r}, but the dataset has no splits.")
        if split not in source:
            raise ValueError(f"The dataset has no split {split!r}; it has {list(source)}.")
        source = source[split]
    return DatasetCorpus(source, id_field, text_field)


def read_corpus(source: Any, id_field: str | None = "id", text_field: str = "text",
                split: str | None = None) -> tuple[list[str], list[str]]:
    """`(ids, texts)` of a whole corpus (`open_corpus`), refusing repeated ids and an empty corpus."""
    corpus = open_corpus(source, id_field, text_field, split)
    seen: dict[str, str] = {}
    ids, texts = [], []
    for where, doc_id, text in corpus.records():
        if doc_id in seen:
            raise ValueError(f"{where}: the id {doc_id!r} repeats the one at {seen[doc_id]}; ids must be unique.")
        seen[doc_id] = where
        ids.append(doc_id)
        texts.append(text)
    if not ids:
        raise ValueError(f"{source} holds no documents.")
    return ids, texts


def check_record(record: Mapping[str, Any], id_field: str | None, text_field: str, where: str,
                 number: int) -> tuple[str, str]:
    """`(id, text)` of one record (`number` is its id when `id_field` is None); a missing or mistyped field raises
    `ValueError` naming `where`."""
    for name, option in ((id_field, "id_field"), (text_field, "text_field")):
        if name is not None and record.get(name) is None:
            hint = " or number the documents with id_field=None (--line-ids)" if option == "id_field" else ""
            raise ValueError(f"{where}: no {name!r} field (choose the field with {option}= / "
                             f"--{option.replace('_', '-')}{hint}).")
    doc_id = number if id_field is None else record[id_field]
    text = record[text_field]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise ValueError(f"{where}: the id is a {type(doc_id).__name__}; ids must be strings or integers.")
    if not isinstance(text, str):
        raise ValueError(f"{where}: the text is a {type(text).__name__}, not a string.")
    for what, value in (("id", str(doc_id)), ("text", text)):
        surrogate = next((c for c in value if "\ud800" <= c <= "\udfff"), None)
        if surrogate is not None:
            raise ValueError(f"{where}: the {what} holds a lone surrogate (U+{ord(surrogate):04X}), which is not "
                             "text; repair the source (it is often a broken emoji escape).")
    return str(doc_id), text


__all__ = [
    "FILE_SUFFIXES",
    "READ_BATCH",
    "Corpus",
    "DatasetCorpus",
    "JsonlCorpus",
    "TextCorpus",
    "TsvCorpus",
    "check_record",
    "open_corpus",
    "read_corpus",
]
