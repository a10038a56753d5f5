"""GNOME Help: Mallard page parsing on committed pages, and the monolingual / cross-lingual sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from mgte_hf.data.gnome import HelpPage, help_set, parse_page, read_pages


SAMPLES = Path(__file__).resolve().parents[1] / "data" / "data_pipeline"


def test_topic_page_gives_title_and_body_without_info():
    page = parse_page((SAMPLES / "gnome_C_a11y-bouncekeys.page").read_bytes())
    assert page.id == "a11y-bouncekeys" and page.title == "Turn on bounce keys"
    assert page.body.startswith("Turn on bounce keys to ignore key presses that are rapidly repeated.")
    assert "Shaun McCance" not in page.body and "Ignore quickly-repeated" not in page.body  # <info> dropped
    assert "Quickly turn bounce keys on and off" in page.body  # section and note titles stay
    assert "  " not in page.body


def test_translated_page_and_guide_pages():
    german = parse_page((SAMPLES / "gnome_de_a11y-bouncekeys.page").read_bytes())
    assert german.id == "a11y-bouncekeys" and german.title != "Turn on bounce keys"
    assert "Mario Blättermann" not in german.body  # translator credits live in <info>
    assert parse_page((SAMPLES / "gnome_C_a11y.page").read_bytes()) is None  # a guide page is no topic


def test_read_pages_from_package_files():
    files = {f"usr/share/help/{lang}/gnome-help/a11y-bouncekeys.page":
             (SAMPLES / f"gnome_{lang}_a11y-bouncekeys.page").read_bytes() for lang in ("C", "de")}
    files["usr/share/help/C/gnome-help/a11y.page"] = (SAMPLES / "gnome_C_a11y.page").read_bytes()
    assert list(read_pages(files, "en")) == ["a11y-bouncekeys"]
    assert read_pages(files, "de")["a11y-bouncekeys"].title == "Springende Tasten aktivieren"
    with pytest.raises(FileNotFoundError, match="'ja'"):
        read_pages(files, "ja")


def test_cross_lingual_set_skips_untranslated_titles():
    en = {i: HelpPage(i, f"Title {i}", f"Body {i}") for i in "abc"}
    de = {"a": HelpPage("a", "Titel a", "Text a"), "b": HelpPage("b", "Title b", "Text b")}
    mono = help_set(de, de, "de", "de")
    assert mono.name == "gnome-de" and list(mono.queries) == ["a", "b"]
    cross = help_set(de, en, "de", "en")
    assert cross.name == "gnome-de-en" and list(cross.corpus) == ["a", "b", "c"]  # every English page
    assert cross.queries == {"a": "Titel a"} and cross.qrels == {"a": {"a": 1}}
    assert cross.query_metadata["a"] == {"lang": "de"} and cross.corpus["c"]["metadata"] == {"lang": "en"}
