"""GNOME Help as retrieval sets (Debian `gnome-user-docs`, CC-BY-SA-3.0), monolingual and cross-lingual.

The Mallard pages `/usr/share/help/<lang>/gnome-help/*.page` of the .deb (read from it, never installed): each topic
page gives a query (its `<title>`, often a task such as "Turn on bounce keys") and a document (the page body
without `<info>`, editorial `<comment>` and ITS rules). The page id links the languages: `gnome-<lang>` asks in
`<lang>` over the `<lang>` pages, `gnome-<lang>-en` asks in `<lang>` over the English pages (titles left
untranslated give no cross-lingual query).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from .beir import BeirDataset, write_beir
from .cache import BuildContext, beir_dir, length_stats
from .fetchers import DebianArchive, deb_files


logger = logging.getLogger(__name__)

NAME = "gnome"
BUILD_VERSION = 2
PACKAGE = "gnome-user-docs"
LICENCE = "CC-BY-SA-3.0 (GNOME Documentation Project)"
MALLARD = "{http://projectmallard.org/1.0/}"
_DROPPED = {f"{MALLARD}info", f"{MALLARD}comment", "{http://www.w3.org/2005/11/its}rules"}
MONOLINGUAL = ("en", "de", "es", "fr", "ja", "ru", "zh_CN")
CROSSLINGUAL = ("de", "es", "fr", "ja", "ru", "zh_CN")  # → en


@dataclass(frozen=True)
class HelpPage:
    """One Mallard topic page: id, title (the query) and body text (the document)."""

    id: str
    title: str
    body: str


def _text(element: ET.Element) -> str:
    return " ".join("".join(element.itertext()).split())


def _strip(element: ET.Element) -> None:
    for child in list(element):
        if child.tag in _DROPPED:
            element.remove(child)
        else:
            _strip(child)


def parse_page(data: bytes) -> HelpPage | None:
    """A topic page's id, title and body (title excluded from the body); None for guide pages and empty pages."""
    root = ET.fromstring(data)
    title = root.find(f"{MALLARD}title")
    if root.get("type", "topic") != "topic" or title is None:
        return None
    _strip(root)
    root.remove(title)
    page = HelpPage(root.get("id", ""), _text(title), _text(root))
    return page if page.id and page.title and page.body else None


def read_pages(files: Mapping[str, bytes], lang: str) -> dict[str, HelpPage]:
    """The topic pages of one language (`C` folder for English) among the package's files, by page id."""
    prefix = f"usr/share/help/{'C' if lang == 'en' else lang}/gnome-help/"
    names = sorted(n for n in files if n.startswith(prefix) and n.endswith(".page"))
    if not names:
        raise FileNotFoundError(f"{PACKAGE} has no GNOME Help pages for {lang!r} (looked in {prefix}).")
    pages = (parse_page(files[n]) for n in names)
    return {p.id: p for p in pages if p is not None}


def help_set(queries_from: dict[str, HelpPage], docs_from: dict[str, HelpPage], query_lang: str,
             doc_lang: str) -> BeirDataset:
    """Title in `query_lang` → page body in `doc_lang`; the corpus holds every `doc_lang` page.

    Across languages, a page whose title is the same in both (left untranslated) gives no query: it would test
    string matching, not translation.
    """
    cross = query_lang != doc_lang
    corpus = {i: {"title": "", "text": p.body, "metadata": {"lang": doc_lang}} for i, p in docs_from.items()}
    queries = {i: p.title for i, p in queries_from.items()
               if i in docs_from and not (cross and p.title == docs_from[i].title)}
    name = f"gnome-{query_lang}-{doc_lang}" if cross else f"gnome-{query_lang}"
    return BeirDataset(corpus, queries, {i: {i: 1} for i in queries}, name=name,
                       query_metadata={i: {"lang": query_lang} for i in queries})


def fetch(ctx: BuildContext) -> dict:
    archive = DebianArchive(ctx.raw("apt"))
    release = archive.ensure_lists()
    deb, info = archive.download(PACKAGE, ctx.raw("debs"))
    return {"package": f"Debian {PACKAGE} {info['version']}", "release": release, "archives": [deb]}


def build(ctx: BuildContext, fetched: dict) -> dict:
    files = deb_files(fetched["archives"][0], lambda name: name.endswith(".page") and "/gnome-help/" in name)
    mono = tuple(ctx.option(NAME, "languages", MONOLINGUAL))
    cross = tuple(ctx.option(NAME, "crosslingual", CROSSLINGUAL))
    pages = {lang: read_pages(files, lang) for lang in sorted({"en", *mono, *cross})}
    sets = [help_set(pages[lang], pages[lang], lang, lang) for lang in mono]
    sets += [help_set(pages[lang], pages["en"], lang, "en") for lang in cross]
    files, counts, tokens = [], {}, {}
    for dataset in sets:
        folder = write_beir(dataset, beir_dir(ctx.root, dataset.name), overwrite=True)  # the cache is ours
        files += [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / "test.tsv"]
        counts[dataset.name] = dataset.stats()
    for lang in mono:
        tokens[f"{lang}/documents"] = length_stats(ctx.tokenizer, [p.body for p in pages[lang].values()])
        tokens[f"{lang}/queries"] = length_stats(ctx.tokenizer, [p.title for p in pages[lang].values()])
    return {"files": files, "counts": counts, "tokens": tokens}
