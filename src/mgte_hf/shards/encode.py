"""Encoding a corpus into resumable shards, on every rank of a `torch.distributed` job (or in one process).

The corpus is streamed twice and never held whole: a scan (count, sha256 of the records, duplicate ids), then the
encoding pass, which holds one chunk. Chunk c is records [c·N, (c+1)·N) (N = `chunk_size`) and belongs to rank
c mod world_size. Its files do not depend on the rank or the number of ranks, so 1 and K processes write the same
shards, and a run stopped at any point (even SIGKILL) and started again with the same arguments, with any number of
processes, skips the chunks already done (each verified by sha256) and ends with byte-identical files.

Run identity: the model's identity (`mgte_hf.hashing.model_identity`: sha256 of its weights, config and tokenizer,
and its dtype), the dimension, max_length, truncation, chunk_size and the corpus (count and sha256 of its (id, text)
records). A folder that holds shards of another identity is refused before anything is written. `batch_tokens`, the
device and the number of processes are not part of it: they change the speed, not the meaning (different
`batch_tokens` can change float rounding, so byte-identity needs the same arguments).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist
from tqdm.auto import tqdm

from ..corpus import Corpus
from ..hashing import model_identity
from ..inference.common import check_dimension, check_positive_int, show_progress
from ..inference.embedder import MgteEmbedder
from ..ranks import barrier, get_rank, get_world_size, is_distributed
from .corpus import MAX_REPORTED, CorpusScan, chunks, scan_corpus
from .storage import check_folder, chunk_name, finished_chunk, remove, write_chunk, write_manifest


logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 4096


@dataclass
class ShardRun:
    """What one rank did: the chunks it encoded and those it found done; `seconds` of its encoding pass."""

    folder: Path
    count: int
    num_chunks: int
    encoded: list[int]
    skipped: list[int]
    texts_encoded: int
    seconds: float


def encode_to_shards(
    embedder: MgteEmbedder,
    corpus: Corpus,
    output_dir: str | os.PathLike,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    dimension: int | None = None,
    max_length: int | None = None,
    batch_tokens: int | None = None,
    show_progress_bar: bool | None = None,
    overwrite: bool = False,
) -> ShardRun:
    """Encode `corpus` (dense + sparse) into resumable shards in `output_dir`; call it on every rank.

    Args:
        embedder: the model; each rank's embedder sits on that rank's device.
        corpus: a `JsonlCorpus` or `DatasetCorpus` (see `open_corpus`); it is read twice, never held whole.
        output_dir: the shard folder (created); if it holds shards of another run, or chunk folders this run did
            not write, `ValueError` and nothing is written (files of other names in it are left alone).
        chunk_size: documents per chunk (the unit of work, of resuming and of memory: one chunk's texts and
            tokens are held at a time).
        dimension: dense size; default `embedder.dimension`.
        max_length: token limit per document; default `embedder.max_length`.
        batch_tokens: padded-token budget per forward; default `embedder.batch_tokens`.
        show_progress_bar: a bar over this rank's chunks on rank 0; `None`: for corpora of 256 documents or more.
        overwrite: delete the shards of another run (and foreign chunk folders) in `output_dir` first.

    Returns:
        A `ShardRun` of this rank.

    Raises:
        ValueError: an empty corpus, duplicate ids, a bad record, or a folder of another run (on every rank).
    """
    chunk_size = check_positive_int(chunk_size, "chunk_size")
    dimension = check_dimension(embedder.model, embedder.dimension if dimension is None else dimension)
    max_length = check_positive_int(embedder.max_length if max_length is None else max_length, "max_length")
    rank, world_size = get_rank(), get_world_size()
    folder = Path(output_dir)
    settings = {"dimension": dimension, "max_length": max_length, "truncation": embedder.truncation,
                "chunk_size": chunk_size}
    scan, run, foreign = _plan(embedder, corpus, folder, settings, rank, world_size, overwrite)
    if rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
        remove(foreign)
    barrier()
    num_chunks = -(-scan.count // chunk_size)
    own = [c for c in range(num_chunks) if c % world_size == rank]
    encoded, skipped, texts_encoded, start = [], [], 0, time.perf_counter()
    bar = tqdm(total=len(own), desc=f"Encoding chunks (rank {rank}/{world_size})", unit="chunk",
               disable=rank != 0 or not show_progress(show_progress_bar, scan.count))
    with bar:
        for index, ids, texts in chunks(corpus, chunk_size) if own else ():
            if index > own[-1]:
                break
            if index % world_size != rank:
                continue
            shutil.rmtree(folder / f"{chunk_name(index)}.tmp", ignore_errors=True)  # left by a killed run
            if finished_chunk(folder, index, run) is not None:
                skipped.append(index)
            else:
                result = embedder.encode(texts, dimension=dimension, max_length=max_length, batch_tokens=batch_tokens,
                                         show_progress_bar=False)
                write_chunk(folder, index, index * chunk_size, ids, result, run)
                encoded.append(index)
                texts_encoded += len(texts)
                logger.info("rank %d/%d: chunk %d of %d encoded (%d texts).", rank, world_size, index, num_chunks,
                            len(texts))
            bar.update()
    seconds = time.perf_counter() - start
    barrier()
    if rank == 0:
        write_manifest(folder, run, dimension, num_chunks)
    barrier()
    return ShardRun(folder, scan.count, num_chunks, encoded, skipped, texts_encoded, seconds)


def _plan(embedder: MgteEmbedder, corpus: Corpus, folder: Path, settings: dict, rank: int, world_size: int,
          overwrite: bool) -> tuple[CorpusScan, dict, list[Path]]:
    """Scan the corpus, build the run identity and check the folder; the same `ValueError` on every rank.

    Returns the scan, the run identity and what `overwrite` lets this run delete first.
    """
    problem, scan, run, foreign = None, None, None, []
    try:
        scan = scan_corpus(corpus, rank, world_size)
        if scan.count == 0:
            raise ValueError("The corpus holds no documents; nothing to encode.")
        run = {"model": model_identity(embedder.model, embedder.tokenizer), **settings,
               "corpus": {"count": scan.count, "sha256": scan.sha256}}
        foreign = check_folder(folder, run, overwrite=overwrite)
    except ValueError as err:
        problem = str(err)
    _raise_if_any(problem, scan.duplicates if scan else {})
    return scan, run, foreign


def _raise_if_any(problem: str | None, duplicates: dict[str, list[int]]) -> None:
    """Share every rank's problem and duplicate ids, then raise the same `ValueError` on every rank."""
    reports = [(problem, duplicates)]
    if is_distributed():
        reports = [None] * get_world_size()
        dist.all_gather_object(reports, (problem, duplicates))
    problems = [p for p, _ in reports if p]
    if problems:
        raise ValueError(problems[0])
    found = {doc_id: rows for _, dups in reports for doc_id, rows in dups.items()}
    if found:
        examples = "; ".join(f"{doc_id!r} at rows {rows}" for doc_id, rows in list(found.items())[:MAX_REPORTED])
        raise ValueError(f"Document ids must be unique across the corpus; repeated: {examples} (0-based rows). "
                         "Nothing was written.")


__all__ = ["DEFAULT_CHUNK_SIZE", "ShardRun", "encode_to_shards"]
