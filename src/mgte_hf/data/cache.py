"""The data cache: its layout, the manifest (versions, sha256, counts, token statistics) and the build context.

Layout under the cache root (`$MGTE_DATA`, default `~/.cache/mgte-data`)::

    manifest.json                  what was fetched and built, with sha256 of every file
    tokenizers/xlm-roberta/        the real XLM-R tokenizer
    raw/                           downloaded archives (npm tarball, Debian lists and .deb files) and their unpacking
    udhr/ ddtp/                    training text (MLM units, pairs)
    beir/<set>/                    evaluation sets in BEIR format
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import statistics
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

from mgte_hf.hashing import file_record, sha256_file
from mgte_hf.outputs import write_atomic
from mgte_hf.tokenizer import data_home, token_counts


logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


def cache_root(cache: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache` when given, else `mgte_hf.tokenizer.data_home()`."""
    return Path(cache).expanduser() if cache is not None else data_home()


def tokenizer_dir(root: Path) -> Path:
    return root / "tokenizers" / "xlm-roberta"


def beir_dir(root: Path, name: str) -> Path:
    return root / "beir" / name


def load_manifest(cache: str | os.PathLike | None = None) -> dict:
    """The manifest of a cache (an empty one when the cache was never built)."""
    path = cache_root(cache) / MANIFEST_NAME
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "sources": {}}
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} has manifest format {manifest.get('format')!r}, this version reads "
                         f"{MANIFEST_FORMAT}; rebuild with `mgte-hf data build --force`.")
    return manifest


def save_manifest(root: Path, manifest: dict) -> None:
    write_atomic(root / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def record_files(root: Path, paths: Iterable[Path]) -> dict[str, dict]:
    """`{path relative to root: {"sha256", "bytes"}}` for the given files."""
    return {p.relative_to(root).as_posix(): file_record(p) for p in sorted(paths)}


def changed_files(root: Path, files: dict[str, dict]) -> list[str]:
    """Files of a manifest record that are missing or whose size or sha256 differ (empty list: all verified)."""
    bad = []
    for rel, rec in files.items():
        path = root / rel
        if not path.is_file() or path.stat().st_size != rec["bytes"] or sha256_file(path) != rec["sha256"]:
            bad.append(rel)
    return bad


def length_stats(tokenizer: PreTrainedTokenizerBase | Tokenizer, texts: Sequence[str], max_texts: int = 5000) -> dict:
    """Token-length statistics (no special tokens): count, total, mean, median, p90, max.

    Beyond `max_texts` texts they come from a seeded random sample of that size (`"sampled"` says how many), and
    the total is estimated as mean × count (`"estimated": true`); the build stays quick on 2 cores.
    """
    if not texts:
        return {"texts": 0, "tokens": 0}
    sample = texts if len(texts) <= max_texts else random.Random(0).sample(list(texts), max_texts)
    ordered = sorted(token_counts(tokenizer, sample, special_tokens=False))
    mean = statistics.fmean(ordered)
    stats = {"texts": len(texts), "tokens": sum(ordered) if len(sample) == len(texts) else round(mean * len(texts)),
             "mean": round(mean, 1), "median": statistics.median(ordered),
             "p90": ordered[int(0.9 * (len(ordered) - 1))], "max": ordered[-1]}
    if len(sample) < len(texts):
        stats.update(sampled=len(sample), estimated=True)
    return stats


@dataclass
class BuildContext:
    """What every builder gets: the cache root, the options and the (lazily loaded) real tokenizer.

    Attributes:
        root: the cache folder.
        force: fetch and build again even when the manifest says it is done.
        progress: show progress bars.
        options: per-source options, e.g. `{"gnome": {"languages": ["de", "ja"]}}`.
    """

    root: Path
    force: bool = False
    progress: bool = True
    options: dict[str, dict] = field(default_factory=dict)

    @cached_property
    def tokenizer(self) -> Tokenizer:
        """The real XLM-R tokenizer as a Rust `tokenizers.Tokenizer` (loads in ~1 s; token counts only)."""
        return Tokenizer.from_file(str(tokenizer_dir(self.root) / "tokenizer.json"))

    def raw(self, *parts: str) -> Path:
        path = self.root.joinpath("raw", *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def option(self, source: str, name: str, default):
        return self.options.get(source, {}).get(name, default)


@contextmanager
def locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the cache so that two builds never write it at once."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("another build holds %s; waiting for it", root / ".lock")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    """Write rows as JSON lines, atomically (a killed build never leaves a truncated file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, (json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
