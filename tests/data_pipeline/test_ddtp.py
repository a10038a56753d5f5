"""DDTP parsing (Translation-<lang> records), dedupe, the pair filter and the BM25 sanity sets, on records written
here in Debian's format."""

from __future__ import annotations

from mgte_hf.data.ddtp import (
    Description,
    dedupe,
    parse_long_description,
    parse_translation,
    sanity_set,
    training_pairs,
)


GERMAN = """Package: frobnicator
Description-md5: 0123456789abcdef0123456789abcdef
Description-de: Werkzeug zum Frobnizieren von Dateien
 Frobnicator frobniziert Dateien schnell
 und zuverlässig.
 .
 Beispiel:
   frob --all datei.txt
 .
 Dieses Paket enthält das Programm.

Package: frobnicator-dev
Description-md5: 0123456789abcdef0123456789abcdef
Description-de: Werkzeug zum Frobnizieren von Dateien
 Frobnicator frobniziert Dateien schnell
 und zuverlässig.

Package: libfoo-doc
Description-md5: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
Description-de: Dokumentation
 Die Dokumentation von libfoo.

Package: libbar-doc
Description-md5: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
Description-de: Dokumentation
 Die Dokumentation von libbar.

Package: broken
Description-md5: cccccccccccccccccccccccccccccccc
"""


def test_long_description_markup():
    lines = [" First line", " continues.", " .", " Example:", "   frob --all", " .", " Last."]
    assert parse_long_description(lines) == "First line continues.\nExample:\nfrob --all\nLast."
    assert parse_long_description([]) == ""


def test_parse_translation_records():
    records = list(parse_translation(GERMAN, "de"))
    assert [r.package for r in records] == ["frobnicator", "frobnicator-dev", "libfoo-doc", "libbar-doc"]
    first = records[0]
    assert first.lang == "de" and first.md5 == "0123456789abcdef0123456789abcdef"
    assert first.synopsis == "Werkzeug zum Frobnizieren von Dateien"
    assert first.description == ("Frobnicator frobniziert Dateien schnell und zuverlässig.\nBeispiel:\n"
                                 "frob --all datei.txt\nDieses Paket enthält das Programm.")
    assert first.text.startswith(first.synopsis + "\n")


def test_dedupe_and_pair_filter():
    records = dedupe(list(parse_translation(GERMAN, "de")))
    assert [r.package for r in records] == ["frobnicator", "libfoo-doc", "libbar-doc"]  # one per (md5, lang)
    pairs = training_pairs(records)
    assert [r.package for r in pairs] == ["frobnicator"]  # "Dokumentation" is shared by two descriptions
    assert len(training_pairs(records, max_synopsis_share=2)) == 3


def test_sanity_sets_monolingual_and_cross_lingual():
    de = [Description(f"p{i}", f"m{i}", "de", f"Kurz {i}", f"Lang {i}") for i in range(6)]
    english = {f"m{i}": Description(f"p{i}", f"m{i}", "en", f"Short {i}", f"Long {i}") for i in range(4)}
    mono = sanity_set(de, english, "de", cross=False, n_docs=3)
    assert mono.name == "ddtp-de" and len(mono.corpus) == 3
    assert all(mono.qrels[q] == {q: 1} and mono.corpus[q]["text"] == f"Lang {q[1:]}" for q in mono.queries)
    cross = sanity_set(de, english, "de", cross=True, n_docs=10)
    assert cross.name == "ddtp-de-en" and sorted(cross.queries) == ["m0", "m1", "m2", "m3"]  # only with English
    assert cross.corpus["m2"]["text"] == "Long 2" and cross.queries["m2"] == "Kurz 2"
    assert list(sanity_set(de, english, "de", cross=False, n_docs=3).queries) == list(mono.queries)  # seeded
