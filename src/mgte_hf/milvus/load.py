"""Bulk loading the shards of `encode_to_shards` into a `MilvusIndex`: streamed, resumable, never a duplicate row.

    index = MilvusIndex(embedder, uri="index.db", collection="docs")
    load_shards(index, "shards/", corpus=JsonlCorpus("corpus.jsonl", id_field="_id"))  # the corpus adds the texts

The chunks are loaded in corpus order, one at a time (memory: one chunk's rows), as rows numbered by their
position in the corpus. After each chunk the collection's `mgte.shards` property records the shard run (sha256 of
its identity: model, dimension, settings, corpus), how many chunks are loaded and a sha256 chain over their
manifests' sha256 (a chunk's manifest holds the sha256 of each of its files). A load stopped at any point (even by
SIGKILL) and started again checks that chain against the folder, deletes the rows of the chunk that was being
written, and goes on from there: it ends with exactly the corpus rows. A collection that holds other rows, rows of
other shards, or a model or dimension other than the shards' is refused before anything is written (open the index
with `overwrite=True` to replace it). Every chunk file is checked against the sha256 its manifest records as it is
read (`ShardChunk`), so a damaged chunk is refused by name with the chunks before it loaded.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import reduce

from tqdm.auto import tqdm

from ..corpus import Corpus
from ..hashing import check_model_identity, identity_differences, sha256_bytes
from ..inference.common import check_dimension, show_progress
from ..shards.corpus import chunks, scan_corpus
from ..shards.reader import ShardReader
from ..shards.storage import json_bytes
from .index import MilvusIndex


logger = logging.getLogger(__name__)
REPLACE = ", or open the index with overwrite=True (--overwrite) to replace this one"


@dataclass
class LoadRun:
    """What a load did: the chunks it loaded, those it found loaded already, and its seconds."""

    count: int  # documents in the shards
    num_chunks: int
    loaded: list[int]
    skipped: int
    seconds: float


def load_shards(index: MilvusIndex, folder: str | os.PathLike, *, corpus: Corpus | None = None,
                show_progress_bar: bool | None = None) -> LoadRun:
    """Load the finished shards in `folder` into `index`'s collection, resuming a load that was stopped.

    Args:
        index: the target; its collection is created if missing (with the shards' model identity and dimension).
        folder: the shard folder of `encode_to_shards` / `mgte-hf encode-corpus`.
        corpus: the corpus the shards were encoded from (checked by sha256), to store the texts; without it the
            rows hold no text (no reranking).
        show_progress_bar: a bar over the chunks; `None`: for 256 documents or more.

    Raises:
        ValueError: a collection of other rows, shards, model or dimension; a corpus that is not the shards' own; a
            damaged chunk file (the chunks before it stay loaded). Nothing else is written then.
    """
    start_time = time.perf_counter()
    reader = ShardReader(folder)
    run = reader.manifest["run"]
    manifests = [entry["manifest_sha256"] for entry in reader.manifest["chunks"]]
    where = f"Collection {index.collection!r} at {index.uri}"
    state = _check_target(index, reader, where, corpus is not None)
    if corpus is not None:
        scan = scan_corpus(corpus)
        if (scan.count, scan.sha256) != (run["corpus"]["count"], run["corpus"]["sha256"]):
            raise ValueError(f"The corpus ({scan.count} records, sha256 {scan.sha256[:12]}…) is not the one the "
                             f"shards in {reader.folder} were encoded from ({run['corpus']['count']} records, sha256 "
                             f"{run['corpus']['sha256'][:12]}…); pass that corpus, or none to store no texts.")
    if not index.client.has_collection(index.collection):
        index._create(reader.dimension, run["model"], corpus is not None)
    if state is None:
        state = {"run": sha256_bytes(json_bytes(run)), "count": len(reader), "chunks": len(reader.chunks),
                 "loaded": 0, "chain": "", "texts": corpus is not None}
        index._set_property("mgte.texts", corpus is not None)
        index._set_property("mgte.shards", state)
        index.holds_texts = corpus is not None
    skipped = state["loaded"]
    if skipped < len(reader.chunks):
        _drop_partial_chunk(index, reader.chunks[skipped].first_row, where)
    loaded = []
    texts = chunks(corpus, run["chunk_size"]) if corpus is not None else None
    bar = tqdm(total=len(reader.chunks), initial=skipped, desc="Loading chunks", unit="chunk",
               disable=not show_progress(show_progress_bar, len(reader)))
    with bar:
        for chunk in reader.chunks:
            part = next(texts)[2] if texts is not None else None
            if chunk.index < skipped:
                continue
            try:  # each file is checked against its recorded sha256 as it is read
                ids, dense, csr = chunk.ids(), chunk.dense(), chunk.sparse_csr()
            except ValueError as err:
                raise ValueError(f"{err} Then load again: the {chunk.index} chunks before it stay loaded.") from None
            index._write(ids, part, dense, csr, identity=run["model"], what=str(chunk.path / "dense.npy"),
                         start=chunk.first_row, flush=False)
            state = {**state, "loaded": chunk.index + 1, "chain": _link(state["chain"], manifests[chunk.index])}
            index._set_property("mgte.shards", state)
            loaded.append(chunk.index)
            logger.info("chunk %d of %d loaded (%d rows).", chunk.index + 1, len(reader.chunks), chunk.count)
            bar.update()
    index.client.flush(index.collection)
    return LoadRun(len(reader), len(reader.chunks), loaded, skipped, time.perf_counter() - start_time)


def _check_target(index: MilvusIndex, reader: ShardReader, where: str, texts: bool) -> dict | None:
    """The load state of `index`'s collection (`None`: a new load), after checking it can take these shards."""
    run = reader.manifest["run"]
    exists = index.client.has_collection(index.collection)
    if exists and index.dimension != reader.dimension:
        raise ValueError(f"The shards in {reader.folder} hold dense vectors of dimension {reader.dimension}; {where} "
                         f"holds {index.dimension}. Load them into a new collection{REPLACE}.")
    if not exists:
        if index.embedder is not None:
            check_dimension(index.embedder.model, reader.dimension)
            check_model_identity(run["model"], index.embedder.model, index.embedder.tokenizer,
                                 artifact=f"The shard run in {reader.folder}", allow_other_model=index.allow_other_model)
        return None
    recorded = index._property("mgte.model")
    if recorded is not None and identity_differences(recorded, run["model"]):
        raise ValueError(f"{where} was built with another model than the shards in {reader.folder}: "
                         f"{'; '.join(identity_differences(recorded, run['model'], labels=('collection', 'shards')))}."
                         f" Load them into a new collection{REPLACE}.")
    state = index._property("mgte.shards")
    if state is None:
        count = len(index)
        if count:
            raise ValueError(f"{where} holds {count} documents that were not loaded from {reader.folder}; load the "
                             f"shards into a new collection{REPLACE}.")
        return None
    if state["run"] != sha256_bytes(json_bytes(run)):
        raise ValueError(f"{where} holds rows loaded from other shards (another model, corpus or settings than "
                         f"{reader.folder}); load these into a new collection{REPLACE}.")
    manifests = [entry["manifest_sha256"] for entry in reader.manifest["chunks"]]
    if reduce(_link, manifests[: state["loaded"]], "") != state["chain"]:
        raise ValueError(f"The first {state['loaded']} chunks in {reader.folder} are not the ones {where} loaded "
                         f"(their manifests changed); load the shards into a new collection{REPLACE}.")
    if state["texts"] != texts:
        raise ValueError(f"The load into {where} began {'with' if state['texts'] else 'without'} the corpus; "
                         f"run it again {'with' if state['texts'] else 'without'} it (--corpus) to finish.")
    return state


def _link(chain: str, manifest_sha256: str) -> str:
    """The load record's chain after one more chunk: sha256 of the chain so far and the chunk manifest's sha256."""
    return sha256_bytes((chain + manifest_sha256).encode())


def _drop_partial_chunk(index: MilvusIndex, first_row: int, where: str) -> None:
    """Delete the rows a stopped load wrote past the last recorded chunk; refuse a collection with rows missing."""
    index._delete_from(first_row)
    count = len(index)
    if count != first_row:
        raise ValueError(f"{where} holds {count} rows where its load record says {first_row}: rows were deleted or "
                         f"added by hand. Load the shards into a new collection{REPLACE}.")


__all__ = ["LoadRun", "load_shards"]
