"""The corpus side of sharding: one streamed scan (count, sha256, duplicate ids) and the fixed-size chunks.

Duplicate ids are found from a 64-bit hash per id, each rank keeping the hashes with hash mod world_size == rank:
8 bytes per document divided among the processes (800 MB for 10^8 documents in one process). Equal hashes are then
resolved exactly by a second look at those ids.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np


MAX_REPORTED = 5  # duplicate ids named in an error


@dataclass
class CorpusScan:
    """What the scan learns: the size, a sha256 of the records, and this rank's share of the duplicate ids."""

    count: int
    sha256: str
    duplicates: dict[str, list[int]] = field(default_factory=dict)  # id -> rows (0-based), at most MAX_REPORTED


def scan_corpus(corpus: Iterable[tuple[str, str]], rank: int = 0, world_size: int = 1) -> CorpusScan:
    """Stream the corpus once: count it, hash it, and find the duplicate ids whose hash falls to `rank`."""
    digest = hashlib.sha256()
    hashes = array("Q")
    count = 0
    for doc_id, text in corpus:
        for part in (doc_id.encode("utf-8"), text.encode("utf-8")):
            digest.update(len(part).to_bytes(8, "little") + part)  # length-prefixed: unambiguous
        h = id_hash(doc_id)
        if h % world_size == rank:
            hashes.append(h)
        count += 1
    ordered = np.sort(np.frombuffer(hashes, dtype=np.uint64))
    clashes = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    return CorpusScan(count, digest.hexdigest(), exact_duplicates(corpus, clashes) if clashes else {})


def exact_duplicates(corpus: Iterable[tuple[str, str]], hashes: set[int]) -> dict[str, list[int]]:
    """Ids (with their rows) that occur more than once among the ids whose `id_hash` is in `hashes`."""
    rows: dict[str, list[int]] = {}
    for row, (doc_id, _) in enumerate(corpus):
        if id_hash(doc_id) in hashes:
            rows.setdefault(doc_id, []).append(row)
    repeated = {doc_id: found for doc_id, found in rows.items() if len(found) > 1}
    return dict(list(repeated.items())[:MAX_REPORTED])


def id_hash(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


def chunks(corpus: Iterable[tuple[str, str]], chunk_size: int) -> Iterator[tuple[int, list[str], list[str]]]:
    """`(chunk index, ids, texts)` of consecutive `chunk_size` records (the last may be shorter)."""
    ids: list[str] = []
    texts: list[str] = []
    index = 0
    for doc_id, text in corpus:
        ids.append(doc_id)
        texts.append(text)
        if len(ids) == chunk_size:
            yield index, ids, texts
            ids, texts, index = [], [], index + 1
    if ids:
        yield index, ids, texts


__all__ = ["MAX_REPORTED", "CorpusScan", "chunks", "exact_duplicates", "id_hash", "scan_corpus"]
