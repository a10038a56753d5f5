"""Collators: MLM masking (80/10/10, never special tokens, packed == padded), contrastive and reranker groups."""

from __future__ import annotations

import copy

import pytest
import torch

from mgte_hf import MgteForMaskedLM
from mgte_hf.training.collators import IGNORE_INDEX, ContrastiveCollator, MLMCollator, RerankerCollator
from tiny import SENTENCES, make_model


def _examples(n: int = 4, negatives: int = 2) -> list[dict]:
    return [{"query": SENTENCES[i], "positive": SENTENCES[i + 1],
             "negatives": [SENTENCES[i + 2 + j] for j in range(negatives)]} for i in range(n)]


# ------------------------------------------------------------------------------------------------ MLM
@pytest.fixture(scope="module")
def xlmr_rows(xlmr_tokenizer) -> list[list[int]]:
    """Token ids of every test sentence, with special tokens also inside the sequences (never to be masked)."""
    rows = xlmr_tokenizer(SENTENCES)["input_ids"]
    cls, sep = xlmr_tokenizer.cls_token_id, xlmr_tokenizer.sep_token_id
    return [row[:-1] + [sep, cls] + row[1:] for row in rows]  # <s> A </s> <s> A </s>


def test_mlm_packed_batch_layout_and_rate(xlmr_tokenizer, xlmr_rows):
    collator = MLMCollator(xlmr_tokenizer, seed=0)
    batch = collator([{"input_ids": row} for row in xlmr_rows])
    original = torch.tensor([t for row in xlmr_rows for t in row])[None, :]
    assert set(batch) == {"input_ids", "labels", "seqlens"}
    assert batch["input_ids"].shape == batch["labels"].shape == original.shape  # (1, T): no padding at all
    assert batch["seqlens"].tolist() == [len(row) for row in xlmr_rows]
    selected = batch["labels"] != IGNORE_INDEX
    assert torch.equal(batch["labels"][selected], original[selected])  # labels only at masked positions
    assert torch.equal(batch["input_ids"][~selected], original[~selected])  # the rest untouched
    special = torch.isin(original, torch.tensor(xlmr_tokenizer.all_special_ids))
    assert not bool((selected & special).any())
    start = 0
    for row in xlmr_rows:  # exactly round(0.3 · maskable) per sequence
        maskable = sum(t not in xlmr_tokenizer.all_special_ids for t in row)
        assert int(selected[0, start : start + len(row)].sum()) == max(1, round(0.3 * maskable))
        start += len(row)


def test_mlm_80_10_10_statistics(xlmr_tokenizer, xlmr_rows):
    rows = xlmr_rows * 50  # ~8600 selected tokens: each share within ±0.02 is > 4 standard deviations
    batch = MLMCollator(xlmr_tokenizer, seed=1, pack=False)([{"input_ids": row} for row in rows])
    original = batch["labels"]
    selected = original != IGNORE_INDEX
    inputs = batch["input_ids"][selected]
    masked = inputs == xlmr_tokenizer.mask_token_id
    kept = inputs == original[selected]
    randomised = ~masked & ~kept
    n = int(selected.sum())
    assert n > 8000
    assert abs(float(masked.sum()) / n - 0.8) < 0.02
    assert abs(float(randomised.sum()) / n - 0.1) < 0.02
    assert abs(float(kept.sum()) / n - 0.1) < 0.02
    assert not bool(torch.isin(inputs[randomised], torch.tensor(xlmr_tokenizer.all_special_ids)).any())
    assert int(inputs[randomised].max()) < len(xlmr_tokenizer)


def test_mlm_padded_never_masks_padding_and_is_seeded(xlmr_tokenizer, xlmr_rows):
    features = [{"input_ids": row} for row in xlmr_rows[:6]]
    before = copy.deepcopy(features)
    first = MLMCollator(xlmr_tokenizer, pack=False, seed=3)(features)
    assert features == before  # the caller's examples are not modified
    again = MLMCollator(xlmr_tokenizer, pack=False, seed=3)(features)
    other = MLMCollator(xlmr_tokenizer, pack=False, seed=4)(features)
    assert torch.equal(first["input_ids"], again["input_ids"]) and torch.equal(first["labels"], again["labels"])
    assert not torch.equal(first["labels"], other["labels"])
    padding = first["attention_mask"] == 0
    assert bool(padding.any())
    assert bool((first["labels"][padding] == IGNORE_INDEX).all())
    assert bool((first["input_ids"][padding] == xlmr_tokenizer.pad_token_id).all())


def test_mlm_packed_loss_equals_padded_loss(tiny_tokenizer):
    """The packed batch feeds the unpadded forward (`seqlens=`) and gives the padded batch's loss."""
    features = [{"text": s} for s in SENTENCES[:5]]
    packed = MLMCollator(tiny_tokenizer, max_length=16, seed=0)(features)
    padded = MLMCollator(tiny_tokenizer, max_length=16, seed=0, pack=False)(features)
    model = make_model(MgteForMaskedLM)
    loss_packed = model(**packed).loss
    loss_padded = model(**padded).loss
    assert torch.isfinite(loss_packed)
    torch.testing.assert_close(loss_packed, loss_padded, rtol=1e-5, atol=1e-6)
    assert int(packed["seqlens"].max()) <= 16


def test_mlm_truncation_keeps_final_special_token(tiny_tokenizer):
    ids = tiny_tokenizer(" ".join(SENTENCES[:3]))["input_ids"]
    batch = MLMCollator(tiny_tokenizer, max_length=8, pack=False, seed=0)([{"input_ids": ids}])
    assert batch["input_ids"].shape == (1, 8)
    assert batch["labels"][0, -1] == IGNORE_INDEX and batch["input_ids"][0, -1] == tiny_tokenizer.sep_token_id


@pytest.mark.parametrize(("features", "match"), [
    ([{"input_ids": [0, 5, 2]}, {"input_ids": []}], "example 1 has no tokens"),
    ([{"input_ids": [0, 5, 2]}, {"input_ids": [0, 99999, 2]}], "example 1 holds the token id 99999"),
    ([{"input_ids": [0, 5, 2]}, {"tokens": [1]}], "example 1 needs 'input_ids' or a 'text'"),
    ([], "empty batch"),
])
def test_mlm_bad_input(tiny_tokenizer, features, match):
    with pytest.raises(ValueError, match=match):
        MLMCollator(tiny_tokenizer)(features)


def test_mlm_bad_arguments(tiny_tokenizer):
    with pytest.raises(ValueError, match="mlm_probability"):
        MLMCollator(tiny_tokenizer, mlm_probability=1.5)
    with pytest.raises(ValueError, match="sum to at most 1"):
        MLMCollator(tiny_tokenizer, mask_replace_prob=0.9, random_replace_prob=0.2)


# ------------------------------------------------------------------------------------------------ contrastive
def test_contrastive_groups_positive_first(xlmr_tokenizer):
    features = _examples(3, negatives=2)
    for f, scores in zip(features, ([3.0, 1.0, 0.5], [2.0, 0.1, 0.2], [1.0, 0.0, -1.0]), strict=True):
        f["teacher_scores"] = scores
    batch = ContrastiveCollator(xlmr_tokenizer, query_max_length=32, passage_max_length=64)(features)
    assert batch["query"]["input_ids"].shape[0] == 3
    assert batch["passages"]["input_ids"].shape[0] == 9
    assert set(batch["query"]) == set(batch["passages"]) == {"input_ids", "attention_mask"}
    decoded = xlmr_tokenizer.batch_decode(batch["passages"]["input_ids"], skip_special_tokens=True)
    expected = [p for f in features for p in (f["positive"], *f["negatives"])]
    assert decoded == expected
    assert batch["teacher_scores"].shape == (3, 3)
    assert batch["teacher_scores"][1].tolist() == pytest.approx([2.0, 0.1, 0.2])


def test_contrastive_num_negatives_truncation_and_label_format(tiny_tokenizer):
    features = _examples(2, negatives=3)
    features[1] = {"query": features[1]["query"], "passages": [SENTENCES[9], SENTENCES[10], SENTENCES[11]],
                   "label": 2, "teacher_scores": [0.1, 0.2, 0.9]}
    batch = ContrastiveCollator(tiny_tokenizer, query_max_length=4, num_negatives=1)(
        [{**features[0], "teacher_scores": [1.0, 0.5, 0.4, 0.3]}, features[1]])
    assert batch["query"]["input_ids"].shape == (2, 4)  # truncated to query_max_length
    assert batch["passages"]["input_ids"].shape[0] == 4
    decoded = tiny_tokenizer.batch_decode(batch["passages"]["input_ids"], skip_special_tokens=True)
    assert decoded[2:] == [SENTENCES[11], SENTENCES[9]]  # label 2 moved first, then the first other passage
    torch.testing.assert_close(batch["teacher_scores"], torch.tensor([[1.0, 0.5], [0.9, 0.1]]))


@pytest.mark.parametrize(("change", "match"), [
    ({"positive": ""}, "example 1 .* has no positive"),
    ({"negatives": ["a"]}, "groups of unequal size: example 1 has 1 negatives"),
    ({"negatives": "not a list"}, "example 1 'negatives' must be a list"),
    ({"positive": None, "passages": ["a", "b", "c"], "label": 3}, "example 1: label 3 is out of range"),
    ({"teacher_scores": [1.0, 2.0]}, "example 1: teacher_scores must hold one finite score per passage"),
    ({"query": None}, "example 1 needs a non-empty 'query'"),
])
def test_contrastive_bad_input(tiny_tokenizer, change, match):
    features = _examples(2)
    features[1] = {k: v for k, v in {**features[1], **change}.items() if v is not None}
    before = copy.deepcopy(features)
    with pytest.raises(ValueError, match=match):
        ContrastiveCollator(tiny_tokenizer)(features)
    assert features == before


def test_contrastive_teacher_scores_all_or_none(tiny_tokenizer):
    features = _examples(2)
    features[0]["teacher_scores"] = [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="example 1 differs from example 0 in having teacher_scores"):
        ContrastiveCollator(tiny_tokenizer)(features)
    with pytest.raises(ValueError, match="example 0 has 2 negatives, fewer than num_negatives=3"):
        ContrastiveCollator(tiny_tokenizer, num_negatives=3)(features)


# ------------------------------------------------------------------------------------------------ reranker
def test_reranker_pairs_in_xlmr_format(xlmr_tokenizer):
    features = _examples(2, negatives=3)
    batch = RerankerCollator(xlmr_tokenizer, max_length=64, group_size=3)(features)
    assert batch["group_size"] == 3
    assert batch["input_ids"].shape[0] == 6 and batch["attention_mask"].shape == batch["input_ids"].shape
    cls, sep = xlmr_tokenizer.cls_token_id, xlmr_tokenizer.sep_token_id
    for row, (query, doc) in enumerate([(f["query"], p) for f in features for p in (f["positive"], *f["negatives"][:2])]):
        ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        q_ids = xlmr_tokenizer(query, add_special_tokens=False)["input_ids"]
        d_ids = xlmr_tokenizer(doc, add_special_tokens=False)["input_ids"]
        assert ids == [cls, *q_ids, sep, sep, *d_ids, sep]  # <s> q </s></s> d </s>, positive first


def test_reranker_truncation_and_errors(tiny_tokenizer):
    batch = RerankerCollator(tiny_tokenizer, max_length=10)(_examples(2))
    assert batch["input_ids"].shape == (6, 10) and batch["group_size"] == 3
    with pytest.raises(ValueError, match="example 0 has 2 negatives, fewer than num_negatives=4"):
        RerankerCollator(tiny_tokenizer, group_size=5)(_examples(2))
    features = _examples(2)
    features[1]["negatives"] = features[1]["negatives"][:1]
    with pytest.raises(ValueError, match="groups of unequal size"):
        RerankerCollator(tiny_tokenizer)(features)
    with pytest.raises(ValueError, match="group_size must be an integer >= 1"):
        RerankerCollator(tiny_tokenizer, group_size=0)
