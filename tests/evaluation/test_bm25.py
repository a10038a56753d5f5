"""BM25 over sub-word ids: mechanics on a small corpus, and the reference figures of SOURCES.md on the built
GNOME Help sets (the whole reference table is a slow test)."""

from __future__ import annotations

import pytest

from mgte_hf.data.cache import beir_dir, cache_root
from mgte_hf.evaluation.bm25 import bm25_search, subword_tokens, xlmr_subword_tokenizer
from mgte_hf.evaluation.retrieval import RetrievalEvaluator


DOCS = ["the cat sat on the mat", "dogs chase the cat", "a bird sings in the tree", "fish swim in the sea"]

# shared/data/SOURCES.md: BM25 (k1=0.9, b=0.4) over XLM-R ids, nDCG@10 (and Recall@100 where given)
REFERENCE = {
    "gnome-en": (0.758, 0.992), "gnome-de": (0.775, 0.988), "gnome-ja": (0.740, 0.940), "gnome-ru": (0.703, 0.984),
    "gnome-de-en": (0.158, None), "gnome-es-en": (0.158, None), "gnome-ja-en": (0.076, None),
    "gnome-ru-en": (0.079, None), "gnome-zh_CN-en": (0.055, None),
    "bible-es-en": (0.098, 0.361), "bible-en-es": (0.106, 0.370),
    "ddtp-de": (0.692, None), "ddtp-ja": (0.742, None), "ddtp-de-en": (0.398, None), "ddtp-ja-en": (0.360, None),
}


@pytest.fixture(scope="module")
def xlmr(xlmr_tokenizer_json):
    """The real XLM-R tokenizer as a Rust tokenizer (what BM25 needs; loads in about a second)."""
    return xlmr_subword_tokenizer()


def test_subword_tokens_are_ids_without_specials(tiny_tokenizer):
    tokens = subword_tokens(tiny_tokenizer, ["the cat", ""])
    assert tokens[1] == [] and all(t.isdigit() for t in tokens[0])
    assert [int(t) for t in tokens[0]] == tiny_tokenizer("the cat", add_special_tokens=False)["input_ids"]


def test_bm25_search_finds_the_matching_document(tiny_tokenizer):
    indices, scores = bm25_search(DOCS, ["bird tree", "fish sea", "zzzz"], tiny_tokenizer, top_k=10)
    assert indices.shape == (3, 4)  # top_k is capped at the corpus size
    assert indices[0, 0] == 2 and indices[1, 0] == 3
    assert all(scores[i, 0] >= scores[i, 1] for i in range(2))
    with pytest.raises(ValueError, match="at least one document"):
        bm25_search([], ["q"], tiny_tokenizer)


def reference_check(names: list[str], tokenizer) -> dict[str, tuple[float, float]]:
    figures = {}
    for name in names:
        folder = beir_dir(cache_root(), name)
        if not folder.is_dir():
            pytest.skip(f"{folder} missing; run `mgte-hf data build` (needs Debian's mirror)")
        report = RetrievalEvaluator(folder, systems=["bm25"], tokenizer=tokenizer, show_progress_bar=False).run()
        metrics = report.systems[0].metrics
        figures[name] = (metrics["ndcg@10"], metrics["recall@100"])
    for name, (ndcg, recall) in figures.items():
        ref_ndcg, ref_recall = REFERENCE[name]
        assert ndcg == pytest.approx(ref_ndcg, abs=0.03), name
        if ref_recall is not None:
            assert recall == pytest.approx(ref_recall, abs=0.04), name  # Bible corpus: 1189 chapters here, 1180 there
    return figures


def test_bm25_matches_the_reference_on_gnome(xlmr):
    assert subword_tokens(xlmr, ["Hello world"]) == [["35378", "8999"]]  # the known XLM-R ids
    reference_check(["gnome-en", "gnome-de-en"], xlmr)


@pytest.mark.slow  # ~2 min: 31 k Bible queries twice, four DDTP samples
def test_bm25_matches_the_whole_reference_table(xlmr):
    reference_check(list(REFERENCE), xlmr)
