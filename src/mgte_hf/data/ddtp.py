"""Debian package descriptions and their translations (DDTP): MLM text, (synopsis → description) pairs and
cross-lingual pairs.

The `Translation-<lang>` indexes of Debian `main` are fetched with a private `apt-get update` and decompressed with
`apt-helper cat-file`. A record is `Package:`, `Description-md5:` and `Description-<lang>: <synopsis>` followed by
the long description (indented lines, ` .` for a blank line); the md5 (of the English original) joins the
translations. Outputs under `ddtp/`:

- `descriptions.jsonl`: one row per (md5, language): package, synopsis, description.
- `mlm.jsonl`: `{"lang", "text"}` (synopsis and description) for masked-LM pre-training.
- `pairs.jsonl`: `{"lang", "query": synopsis, "positive": description}` — mGTE's weakly supervised (title, body)
  pairs — without synopses shared by several descriptions (`-dev`/`-dbg`/`-doc` boilerplate).
- `crosslingual.jsonl`: `{"md5", "lang", "text", "en_text"}`: a translation and its English original.
- `beir/ddtp-<lang>` and `beir/ddtp-<lang>-en`: 5 000-description samples (synopsis → description), a sanity
  check against the BM25 figures of SOURCES.md. DDTP is a *training* source: these are not evaluation sets.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from tqdm.auto import tqdm

from .beir import BeirDataset, write_beir
from .cache import BuildContext, beir_dir, length_stats, write_jsonl
from .fetchers import DEBIAN_LANGUAGES, DebianArchive, apt_cat_file


logger = logging.getLogger(__name__)

NAME = "ddtp"
BUILD_VERSION = 2
LICENCE = "the licences of the Debian packages described (DFSG-free); translations by the Debian DDTP team"
SANITY_LANGUAGES = ("de", "ja")
SANITY_DOCS = 5000


@dataclass(frozen=True)
class Description:
    """One package description in one language."""

    package: str
    md5: str
    lang: str
    synopsis: str
    description: str

    @property
    def text(self) -> str:
        return f"{self.synopsis}\n{self.description}".strip()


def parse_long_description(lines: list[str]) -> str:
    """Debian's long-description markup → text: ` .` is a paragraph break, lines of a paragraph are joined by a
    space, and verbatim lines (two leading spaces) keep their own line."""
    paragraphs: list[list[str]] = [[]]
    for raw in lines:
        line = raw[1:] if raw.startswith(" ") else raw
        if line.strip() == ".":
            paragraphs.append([])
        elif line.startswith(" "):  # verbatim (preformatted) line
            paragraphs[-1].append("\n" + line.strip())
        else:
            paragraphs[-1].append(line.strip())
    texts = [" ".join(p).replace(" \n", "\n").strip() for p in paragraphs]
    return "\n".join(t for t in texts if t)


def parse_translation(text: str, lang: str) -> Iterator[Description]:
    """Records of one decompressed `Translation-<lang>` index (paragraphs separated by blank lines)."""
    key = f"Description-{lang}:"
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        body: list[str] = []
        in_description = False
        for line in block.splitlines():
            if in_description and line.startswith(" "):
                body.append(line)
            elif line.startswith(key):
                fields["synopsis"] = line[len(key):].strip()
                in_description = True
            elif ":" in line and not line.startswith(" "):
                name, _, value = line.partition(":")
                fields[name] = value.strip()
                in_description = False
        if "Package" in fields and "Description-md5" in fields and fields.get("synopsis"):
            yield Description(fields["Package"], fields["Description-md5"], lang, fields["synopsis"],
                              parse_long_description(body))


def dedupe(records: list[Description]) -> list[Description]:
    """Keep the first record of each (md5, lang): packages sharing a description count once."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in records:
        if (r.md5, r.lang) not in seen:
            seen.add((r.md5, r.lang))
            out.append(r)
    return out


def training_pairs(records: list[Description], max_synopsis_share: int = 1) -> list[Description]:
    """Records usable as (synopsis → description) pairs: a description, and a synopsis that at most
    `max_synopsis_share` descriptions of the same language use."""
    share = Counter((r.lang, r.synopsis.casefold()) for r in records)
    return [r for r in records if r.description and share[(r.lang, r.synopsis.casefold())] <= max_synopsis_share]


def sanity_set(pairs: list[Description], english: dict[str, Description], lang: str, cross: bool,
               n_docs: int = SANITY_DOCS, seed: int = 0) -> BeirDataset:
    """A BEIR sample: queries = synopses in `lang`; corpus = their descriptions (in English when `cross`)."""
    pool = [p for p in pairs if p.lang == lang and (not cross or p.md5 in english)]
    sample = random.Random(seed).sample(pool, min(n_docs, len(pool)))
    corpus, queries, qrels = {}, {}, {}
    for p in sample:
        target = english[p.md5] if cross else p
        corpus[p.md5] = {"title": "", "text": target.description, "metadata": {"lang": target.lang}}
        queries[p.md5] = p.synopsis
        qrels[p.md5] = {p.md5: 1}
    name = f"ddtp-{lang}-en" if cross else f"ddtp-{lang}"
    return BeirDataset(corpus, queries, qrels, name=name, query_metadata={q: {"lang": lang} for q in queries})


def fetch(ctx: BuildContext) -> dict:
    archive = DebianArchive(ctx.raw("apt"))
    release = archive.ensure_lists(refresh=ctx.force)
    return {"package": f"Debian {archive.suite} main i18n Translation-* ({release['release_date']})",
            "release": release, "archives": [archive.translation_file(lang) for lang in DEBIAN_LANGUAGES],
            "languages": DEBIAN_LANGUAGES}


def build(ctx: BuildContext, fetched: dict) -> dict:
    records: list[Description] = []
    for lang, path in zip(tqdm(fetched["languages"], desc="ddtp: parse", disable=not ctx.progress),
                          fetched["archives"]):
        records.extend(parse_translation(apt_cat_file(path), lang))
    records = dedupe(records)
    pairs = training_pairs(records)
    english = {r.md5: r for r in records if r.lang == "en"}
    crosslingual = [r for r in records if r.lang != "en" and r.md5 in english]
    out = ctx.root / NAME
    files = [
        write_jsonl(out / "descriptions.jsonl", (vars(r) for r in records)),
        write_jsonl(out / "mlm.jsonl", ({"lang": r.lang, "text": r.text} for r in records)),
        write_jsonl(out / "pairs.jsonl", ({"lang": r.lang, "md5": r.md5, "query": r.synopsis,
                                           "positive": r.description} for r in pairs)),
        write_jsonl(out / "crosslingual.jsonl", ({"md5": r.md5, "lang": r.lang, "text": r.text,
                                                  "en_text": english[r.md5].text} for r in crosslingual)),
    ]
    for lang in ctx.option(NAME, "sanity_languages", SANITY_LANGUAGES):
        for cross in (False, True):
            dataset = sanity_set(pairs, english, lang, cross)
            folder = write_beir(dataset, beir_dir(ctx.root, dataset.name), overwrite=True)  # the cache is ours
            files += [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / "test.tsv"]
    counts = {"descriptions": len(records), "pairs": len(pairs), "crosslingual_pairs": len(crosslingual),
              "by_language": dict(Counter(r.lang for r in records).most_common())}
    tokens = {"descriptions": length_stats(ctx.tokenizer, [r.text for r in records])}
    return {"files": files, "counts": counts, "tokens": tokens}
