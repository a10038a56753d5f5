"""The demo's samples: seeded, answerable, and leaving the caller's data alone."""

from __future__ import annotations

import json

import pytest

from demo.micro import beir, micro_config
from mgte_hf.demo.data import chapter_sample, load_demo_data, load_eval_sets, pairs_dataset, restricted, udhr_pairs


def test_missing_eval_set_names_the_fix(tiny_cache):
    with pytest.raises(FileNotFoundError, match="gnome-xx.*mgte-hf data build"):
        load_eval_sets(tiny_cache, micro_config(eval_sets=("gnome-xx",)))


def test_missing_training_text_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="mgte-hf data build"):
        load_demo_data(tmp_path, micro_config())


def test_samples_depend_on_the_seed_only(tiny_cache):
    first, again = load_demo_data(tiny_cache, micro_config()), load_demo_data(tiny_cache, micro_config())
    other = load_demo_data(tiny_cache, micro_config(seed=1))
    assert (first.mlm, first.contrastive, first.finetune, first.dev) == (again.mlm, again.contrastive,
                                                                           again.finetune, again.dev)
    assert (first.contrastive, first.finetune) != (other.contrastive, other.finetune)
    assert len(first.finetune) == 8 and len(first.dev) == 6
    assert not {r["query"] for r in first.dev} & {r["query"] for r in first.finetune}  # held out


def test_chapter_sample_keeps_only_answerable_queries():
    dataset = beir("bible-es-en", ["a", "b", "c", "d"], ["w", "x", "y", "z"], [0, 1, 2, 3])
    before = json.dumps(dataset.qrels)
    sample = chapter_sample(dataset, 2, seed=0)
    assert len(sample.corpus) == 2 and len(sample.queries) == 2
    assert all(set(sample.qrels[q]) <= set(sample.corpus) for q in sample.queries)
    assert json.dumps(dataset.qrels) == before  # the input is untouched
    assert chapter_sample(dataset, 2, seed=0).corpus == sample.corpus != chapter_sample(dataset, 2, seed=3).corpus


def test_restricted_drops_queries_with_a_missing_document():
    dataset = beir("x", ["a", "b"], ["w", "x", "y"], [0, 2])
    dataset.qrels["q0"]["d1"] = 1  # q0 needs d0 and d1
    kept = restricted(dataset, {"d0", "d2"})
    assert list(kept.queries) == ["q1"] and set(kept.corpus) == {"d0", "d2"}


def test_pairs_dataset_shares_repeated_positives():
    rows = [{"query": "a", "positive": "P"}, {"query": "b", "positive": "Q"}, {"query": "c", "positive": "P"}]
    dataset = pairs_dataset(rows, "dev")
    assert dataset.doc_texts() == ["P", "Q"]
    assert dataset.qrels == {"q0": {"d0": 1}, "q1": {"d1": 1}, "q2": {"d0": 1}}


def test_udhr_pairs_point_every_article_to_the_english_one():
    units = [{"code": "eng", "unit": 1, "text": "E1"}, {"code": "eng", "unit": 2, "text": "E2"},
             {"code": "deu_1996", "unit": 2, "text": "D2"}, {"code": "deu_1996", "unit": 3, "text": "D3"}]
    assert udhr_pairs(units) == [{"query": "D2", "positive": "E2"}]  # article 3 has no English counterpart
