"""SWORD zText reading and verse numbering on a module written by the test (the real binary layout), OSIS text
extraction, the aligned verse → chapter sets, and the built cache when present."""

from __future__ import annotations

import struct
import zlib

import pytest

from mgte_hf.data.bible import osis_to_text, parse_verses, read_module, read_ztext, verse_sets
from mgte_hf.data.cache import beir_dir, cache_root, load_manifest


def ztext(entries: list[str], per_block: int = 3) -> dict[str, bytes]:
    """A one-testament zText module (`nt.*`): entries in zlib blocks of `per_block`, empty entries of size 0."""
    bzs, bzv, bzz = b"", b"", b""
    for b, start in enumerate(range(0, len(entries), per_block)):
        raw, offset = b"", 0
        for entry in entries[start:start + per_block]:
            data = entry.encode("utf-8")
            bzv += struct.pack("<IIH", b, offset, len(data))
            raw += data
            offset += len(data)
        packed = zlib.compress(raw)
        bzs += struct.pack("<III", len(bzz), len(packed), len(raw))
        bzz += packed
    return {"nt.bzs": bzs, "nt.bzv": bzv, "nt.bzz": bzz}


ENGLISH = [
    "",
    '<milestone type="x-importer" subType="x-osis2mod" n="$Rev: 3769 $"/>',
    '<div canonical="true" osisID="Matt" sID="g1" type="book"/> <title type="main">Matthew</title>',
    '<chapter n="1" osisID="Matt.1" sID="Matt.1"/>',
    '<w lemma="strong:G1">In</w> <w>the</w> <w>beginning</w><note placement="foot">a note</note> was &amp; is.',
    '<title type="psalm">A Psalm</title><l level="1" sID="l1"/>Line one.<l eID="l1"/>'
    '<l sID="l2"/>Line two<l eID="l2"/>',
    '<div sID="p1" type="x-p"/><chapter n="2" osisID="Matt.2" sID="Matt.2"/>',
    "Second chapter, first verse.",
    "",
    "Second chapter, third verse.",
    '<div canonical="true" osisID="Mark" sID="g2" type="book"/> <title>Mark</title>',
    '<chapter n="1" osisID="Mark.1" sID="Mark.1"/>',
    'The end. <div canonical="true" eID="g2" osisID="Mark" type="book"/> <div type="glossary"/> Abba means father.',
]


def test_read_ztext_round_trips_the_binary_layout():
    assert list(read_ztext(ztext(ENGLISH), "nt")) == ENGLISH


def test_osis_to_text():
    assert osis_to_text(ENGLISH[4]) == "In the beginning was & is."
    assert osis_to_text(ENGLISH[5]) == "Line one. Line two"  # title dropped, poetry lines kept apart
    assert osis_to_text('<q who="Jesus">Hi</q>, <transChange type="added">he</transChange> said') == "Hi, he said"


def test_verse_numbering_from_chapter_headings():
    verses = parse_verses(iter(ENGLISH))
    assert verses == {
        ("Matt", 1, 1): "In the beginning was & is.",
        ("Matt", 1, 2): "Line one. Line two",
        ("Matt", 2, 1): "Second chapter, first verse.",
        ("Matt", 2, 2): "",
        ("Matt", 2, 3): "Second chapter, third verse.",  # Mark's book heading is not a verse of Matt 2
        ("Mark", 1, 1): "The end.",  # the glossary after the book's end is cut
    }
    assert ("Matt", 2, 2) not in read_module(ztext(ENGLISH))  # empty verses are dropped


def test_aligned_sets_keep_the_common_verses():
    spanish = list(ENGLISH)
    spanish[4] = "En el principio."
    spanish[9] = ""  # Matt 2:3 missing in this translation
    texts = {"en": read_module(ztext(ENGLISH)), "es": read_module(ztext(spanish, per_block=5))}
    sets = {s.name: s for s in verse_sets(texts)}
    assert sorted(sets) == ["bible-en", "bible-en-es", "bible-es", "bible-es-en"]
    es_en = sets["bible-es-en"]
    assert list(es_en.queries) == ["Matt.1.1", "Matt.1.2", "Matt.2.1", "Mark.1.1"]
    assert es_en.queries["Matt.1.1"] == "En el principio."
    assert es_en.qrels["Matt.2.1"] == {"Matt.2": 1}
    assert es_en.corpus["Matt.2"]["text"] == "Second chapter, first verse."  # only aligned verses in a chapter
    assert es_en.corpus["Matt.1"]["text"] == "In the beginning was & is. Line one. Line two"


def test_built_bible_sets_when_the_cache_has_them():
    manifest = load_manifest()
    if "bible" not in manifest["sources"]:
        pytest.skip("no Bible sets in the data cache; run `mgte-hf data build --only bible` (needs Debian's mirror)")
    counts = manifest["sources"]["bible"]["counts"]
    assert counts["bible-es-en"]["documents"] == 1189 and counts["bible-es-en"]["queries"] > 30_000
    assert (beir_dir(cache_root(), "bible-es-en") / "qrels" / "test.tsv").is_file()
