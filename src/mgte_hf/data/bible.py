"""The Bible, World English Bible ↔ Reina-Valera 1909 (Debian `sword-text-web`, `sword-text-sparv`; public domain),
as verse → chapter retrieval sets, monolingual and cross-lingual.

SWORD zText modules (`modules/texts/ztext/<mod>/{ot,nt}.{bzs,bzv,bzz}`): `.bzs` holds 12-byte block records
`<III` (offset, compressed size, size), `.bzv` 10-byte verse records `<IIH` (block, offset, size) in
versification order, `.bzz` the zlib blocks. The index interleaves headings with verses: per testament two header
entries, then per book a book heading, per chapter a chapter heading (it carries `<chapter osisID="Gen.1" sID=…/>`)
followed by the chapter's verses. Text is OSIS: `<note>` and `<title>` are dropped, then every tag.
WEB uses NRSVA versification and RV1909 KJV; only (chapter, verse) keys present in both are kept, so both sides
hold the same verses. A query is a verse; its one relevant document is its chapter (the aligned verses, joined).
"""

from __future__ import annotations

import html
import logging
import re
import struct
import zlib
from collections.abc import Iterator, Mapping

from .beir import BeirDataset, write_beir
from .cache import BuildContext, beir_dir, length_stats
from .fetchers import DebianArchive, deb_files


logger = logging.getLogger(__name__)

NAME = "bible"
BUILD_VERSION = 2
LICENCE = "public domain (World English Bible; Reina-Valera 1909)"
MODULES = {"en": ("sword-text-web", "engWEB2015eb"), "es": ("sword-text-sparv", "spaRV1909eb")}

_CHAPTER = re.compile(r'<chapter\b[^>]*\bosisID="([^".]+)\.(\d+)"[^>]*\bsID=')
_BOOK_END = re.compile(r'<div\b(?=[^>]*\beID=)(?=[^>]*\btype="book")[^>]*>')  # what follows is back matter
_NOTE = re.compile(r"<note\b[^>]*/>|<note\b.*?</note>", re.DOTALL)
_TITLE = re.compile(r"<title\b[^>]*/>|<title\b.*?</title>", re.DOTALL)
_BREAK = re.compile(r"</?(?:div|p|l|lg|lb|chapter|item|list|milestone|speaker|table|row|cell)\b[^>]*>")  # block-level
_TAG = re.compile(r"<[^>]+>")  # inline (w, q, transChange, …): the words around it are already spaced

VerseKey = tuple[str, int, int]  # (OSIS book, chapter, verse)


def read_ztext(module: Mapping[str, bytes], testament: str) -> Iterator[str]:
    """Every index entry of one testament (`"ot"` or `"nt"`) of a zText module, as OSIS text, in index order.

    Args:
        module: the module's files by name (`"ot.bzs"`, `"ot.bzv"`, `"ot.bzz"`, …).
        testament: `"ot"` or `"nt"`.
    """
    blocks_raw, verses_raw, data = (module[f"{testament}.{ext}"] for ext in ("bzs", "bzv", "bzz"))
    blocks = [struct.unpack_from("<III", blocks_raw, i) for i in range(0, len(blocks_raw) - 11, 12)]
    cached: tuple[int, bytes] = (-1, b"")
    for i in range(0, len(verses_raw) - 9, 10):
        block, offset, size = struct.unpack_from("<IIH", verses_raw, i)
        if size == 0:
            yield ""
            continue
        if cached[0] != block:
            start, length, _ = blocks[block]
            cached = (block, zlib.decompress(data[start:start + length]))
        yield cached[1][offset:offset + size].decode("utf-8", errors="replace")


def osis_to_text(osis: str) -> str:
    """OSIS markup → plain text: notes and titles removed, tags stripped, entities decoded, spaces collapsed."""
    text = _TAG.sub("", _BREAK.sub(" ", _TITLE.sub(" ", _NOTE.sub(" ", osis))))
    return " ".join(html.unescape(text).split())


def parse_verses(entries: Iterator[str]) -> dict[VerseKey, str]:
    """Number the verses of one testament from its chapter headings; returns `{(book, chapter, verse): text}`.

    Entries before the first chapter heading are headers. When a new book starts, the entry just before its first
    chapter heading was that book's heading, not the last verse of the previous chapter, and is dropped. Back
    matter after a book's closing `<div type="book" eID=…/>` (WEB appends its glossary to Rev 22:21) is cut.
    """
    verses: dict[VerseKey, str] = {}
    book, chapter, verse = None, 0, 0
    for entry in entries:
        marker = _CHAPTER.search(entry)
        if marker is None:
            if book is not None:
                verse += 1
                verses[(book, chapter, verse)] = osis_to_text(_BOOK_END.split(entry, 1)[0])
            continue
        new_book, new_chapter = marker.group(1), int(marker.group(2))
        if new_book != book and book is not None:
            verses.pop((book, chapter, verse), None)  # the next book's heading
        expected = chapter + 1 if new_book == book else 1
        if new_chapter != expected:
            logger.warning("chapter marker %s.%d where %s.%d was expected; verse numbers may be off",
                           new_book, new_chapter, new_book, expected)
        book, chapter, verse = new_book, new_chapter, 0
    return verses


def read_module(module: Mapping[str, bytes]) -> dict[VerseKey, str]:
    """All non-empty verses of a zText module (its files by name), keyed by (book, chapter, verse)."""
    verses = {}
    for testament in ("ot", "nt"):
        if f"{testament}.bzv" in module:
            verses.update(parse_verses(read_ztext(module, testament)))
    return {k: v for k, v in verses.items() if v}


def chapters_of(verses: dict[VerseKey, str], keys: list[VerseKey]) -> dict[str, str]:
    """`{"Gen.1": chapter text}` from the given verse keys (in order)."""
    out: dict[str, list[str]] = {}
    for key in keys:
        out.setdefault(f"{key[0]}.{key[1]}", []).append(verses[key])
    return {cid: " ".join(parts) for cid, parts in out.items()}


def verse_sets(texts: dict[str, dict[VerseKey, str]]) -> list[BeirDataset]:
    """For languages X, Y (both orders and each alone): verse in X → its chapter in Y, over the aligned verses."""
    langs = sorted(texts)
    keys = [k for k in texts[langs[0]] if all(k in texts[lang] for lang in langs[1:])]
    chapters = {lang: chapters_of(texts[lang], keys) for lang in langs}
    sets = []
    for q_lang in langs:
        for d_lang in langs:
            corpus = {cid: {"title": "", "text": t, "metadata": {"lang": d_lang}}
                      for cid, t in chapters[d_lang].items()}
            queries = {f"{b}.{c}.{v}": texts[q_lang][(b, c, v)] for b, c, v in keys}
            qrels = {f"{b}.{c}.{v}": {f"{b}.{c}": 1} for b, c, v in keys}
            name = f"bible-{q_lang}" if q_lang == d_lang else f"bible-{q_lang}-{d_lang}"
            sets.append(BeirDataset(corpus, queries, qrels, name=name,
                                    query_metadata={q: {"lang": q_lang} for q in queries}))
    return sets


def fetch(ctx: BuildContext) -> dict:
    archive = DebianArchive(ctx.raw("apt"))
    release = archive.ensure_lists()
    debs, versions = [], []
    for package, _ in MODULES.values():
        deb, info = archive.download(package, ctx.raw("debs"))
        debs.append(deb)
        versions.append(f"{package} {info['version']}")
    return {"package": "Debian " + ", ".join(versions), "release": release, "archives": debs}


def build(ctx: BuildContext, fetched: dict) -> dict:
    texts = {}
    for (lang, (_, module)), deb in zip(MODULES.items(), fetched["archives"]):
        prefix = f"usr/share/sword/modules/texts/ztext/{module}/"
        files = deb_files(deb, lambda name, prefix=prefix: name.startswith(prefix))
        texts[lang] = read_module({name[len(prefix):]: data for name, data in files.items()})
    files, counts, tokens = [], {lang: {"verses": len(v)} for lang, v in texts.items()}, {}
    for dataset in verse_sets(texts):
        folder = write_beir(dataset, beir_dir(ctx.root, dataset.name), overwrite=True)  # the cache is ours
        files += [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / "test.tsv"]
        counts[dataset.name] = dataset.stats()
        if "-" not in dataset.name[len("bible-"):]:  # monolingual: one set per language for the statistics
            tokens[f"{dataset.name}/chapters"] = length_stats(ctx.tokenizer, dataset.doc_texts())
            tokens[f"{dataset.name}/verses"] = length_stats(ctx.tokenizer, list(dataset.queries.values()))
    return {"files": files, "counts": counts, "tokens": tokens}
