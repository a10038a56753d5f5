import copy
import logging

import numpy as np
import pytest
import torch
from tokenizers import processors

import tiny
from inference.folders import SPREAD
from mgte_hf import MgteForSequenceClassification
from mgte_hf.inference import MgteReranker, RankResult
from mgte_hf.inference.common import tokenize
from mgte_hf.tokenizer import kept_tokenizer_state
from tiny import SENTENCES


QUERY = "Which fox is quick?"
DOCS = [SENTENCES[0], "Hund", SENTENCES[3], SENTENCES[1] + " " + SENTENCES[2]]


def model_logits(model, tokenizer, queries, documents, **tok_kwargs):
    with kept_tokenizer_state(tokenizer):  # the session's shared tokenizer keeps its settings
        batch = tokenizer(queries, documents, padding=True, return_tensors="pt", **tok_kwargs)
    with torch.no_grad():
        return model(**batch).logits.reshape(-1).numpy()


@pytest.mark.parametrize("batch_tokens", [16384, 40])
def test_compute_score_equals_the_model_forward(reranker, tiny_tokenizer, batch_tokens):
    pairs = [(QUERY, doc) for doc in DOCS]
    scores = reranker.compute_score(pairs, batch_tokens=batch_tokens)
    expected = model_logits(reranker.model, tiny_tokenizer, [QUERY] * len(DOCS), DOCS)
    assert scores.shape == (len(DOCS),) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    normalized = reranker.compute_score(pairs, normalize=True, convert_to="torch")
    torch.testing.assert_close(normalized, torch.sigmoid(torch.from_numpy(expected)), atol=1e-6, rtol=0)


def test_score_tokenized_equals_compute_score_on_the_same_ids(reranker, tiny_tokenizer):
    tokenized = tokenize(tiny_tokenizer, [QUERY] * len(DOCS), DOCS, max_length=12, truncation="warn",
                         with_token_types=reranker.uses_token_types)
    scores = reranker.score_tokenized(tokenized, normalize=True, batch_tokens=40)
    expected = reranker.compute_score([(QUERY, doc) for doc in DOCS], normalize=True, max_length=12, batch_tokens=40)
    np.testing.assert_array_equal(scores, expected)
    assert not reranker.uses_token_types, "XLM-R layout: one segment"


def test_xlmr_pair_format(xlmr_tokenizer):
    """The real tokenizer packs `<s> q </s></s> d </s>`, and the scores equal the padded forward on it."""
    model = tiny.make_model(MgteForSequenceClassification, seed=3, vocab_size=len(xlmr_tokenizer), num_labels=1,
                            **SPREAD)
    reranker = MgteReranker(model, xlmr_tokenizer)
    queries, docs = ["what is mGTE?", "Hund"], ["mGTE is a multilingual retrieval model.", "Der Hund bellt."]
    scores = reranker.compute_score(list(zip(queries, docs, strict=True)))
    np.testing.assert_allclose(scores, model_logits(model, xlmr_tokenizer, queries, docs), atol=1e-5)
    ids = xlmr_tokenizer(queries[0], docs[0])["input_ids"]
    q = xlmr_tokenizer(queries[0], add_special_tokens=False)["input_ids"]
    d = xlmr_tokenizer(docs[0], add_special_tokens=False)["input_ids"]
    assert ids == [0, *q, 2, 2, *d, 2]


def test_token_types_reach_models_with_segments(tiny_tokenizer):
    """type_vocab_size 2 (the BERT-style layout): the second segment's token types are passed on."""
    tokenizer = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer.__class__.from_str(
        tiny_tokenizer.backend_tokenizer.to_str()), **tiny_tokenizer.special_tokens_map)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s>:1 $B:1 </s>:1", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    model = tiny.make_model(MgteForSequenceClassification, seed=4, vocab_size=len(tokenizer), num_labels=1,
                            type_vocab_size=2, **SPREAD)
    scores = MgteReranker(model, tokenizer).compute_score([(QUERY, doc) for doc in DOCS])
    expected = model_logits(model, tokenizer, [QUERY] * len(DOCS), DOCS, return_token_type_ids=True)
    without_types = model_logits(model, tokenizer, [QUERY] * len(DOCS), DOCS, return_token_type_ids=False)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert not np.allclose(scores, without_types, atol=1e-4), "token types must change the scores"


def test_rank_sorts_best_first(reranker):
    results = reranker.rank(QUERY, DOCS)
    scores = reranker.compute_score([(QUERY, d) for d in DOCS])
    assert [r.index for r in results] == sorted(range(len(DOCS)), key=lambda i: -scores[i])
    assert all(isinstance(r, RankResult) and r.document == DOCS[r.index] for r in results)
    np.testing.assert_allclose([r.score for r in results], sorted(scores, reverse=True), atol=1e-6)
    top = reranker.rank(QUERY, DOCS, top_k=2, normalize=True)
    assert [r.index for r in top] == [r.index for r in results[:2]] and 0 < top[0].score < 1
    assert reranker.rank(QUERY, []) == []


def test_rank_keeps_ties_in_input_order(reranker):
    """A zero classifier weight makes every logit the bias: all scores tie exactly."""
    model = copy.deepcopy(reranker.model)
    with torch.no_grad():
        model.classifier.weight.zero_()
    results = MgteReranker(model, reranker.tokenizer).rank(QUERY, DOCS[::-1])
    assert [r.index for r in results] == list(range(len(DOCS)))
    assert len({r.score for r in results}) == 1


def test_bad_input(reranker):
    with pytest.raises(TypeError, match="pairs must be a list of"):
        reranker.compute_score(None)
    with pytest.raises(TypeError, match=r"pairs\[0\] is a str, not a \(query, document\) pair"):
        reranker.compute_score(("query", "document"))
    with pytest.raises(TypeError, match=r"pairs\[1\] has 3 items, not 2"):
        reranker.compute_score([("q", "d"), ("q", "d", "e")])
    with pytest.raises(TypeError, match=r"pairs\[0\]\[1\] is a NoneType, not a str"):
        reranker.compute_score([("q", None)])
    with pytest.raises(TypeError, match="query must be a str"):
        reranker.rank(None, DOCS)
    with pytest.raises(TypeError, match=r"documents\[0\] is a int"):
        reranker.rank(QUERY, [1])
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        reranker.rank(QUERY, DOCS, top_k=0)
    with pytest.raises(ValueError, match="max_length must be an integer >= 6"):
        reranker.compute_score([("q", "d")], max_length=5)
    assert reranker.compute_score([]).shape == (0,)
    pairs = [["q", "d"]]
    reranker.compute_score(pairs)
    assert pairs == [["q", "d"]]


def test_over_long_pairs(reranker, tiny_tokenizer, caplog):
    pairs = [(QUERY, DOCS[3]), (QUERY, "Hund")]
    with caplog.at_level(logging.WARNING, logger="mgte_hf"):
        scores = reranker.compute_score(pairs, max_length=30)
    assert "Truncated 1 of 2 pairs to max_length=30 tokens." in caplog.text
    expected = model_logits(reranker.model, tiny_tokenizer, [QUERY] * 2, [DOCS[3], "Hund"], truncation=True,
                            max_length=30)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    with pytest.raises(ValueError, match="1 of 2 pairs exceed max_length=30"):
        reranker.compute_score(pairs, max_length=30, truncation="error")


def test_from_pretrained_and_model_checks(reranker_dir, reranker, tiny_tokenizer):
    wrapped = MgteReranker.from_pretrained(reranker.model, tokenizer=reranker_dir, dtype=torch.float32)
    assert wrapped.model is reranker.model and len(wrapped.tokenizer) == len(tiny_tokenizer)
    two_labels = tiny.make_model(MgteForSequenceClassification, vocab_size=len(tiny_tokenizer), num_labels=2)
    with pytest.raises(ValueError, match="num_labels=2"):
        MgteReranker(two_labels, tiny_tokenizer)
    with pytest.raises(TypeError, match="model must be an MgteForSequenceClassification"):
        MgteReranker(object(), tiny_tokenizer)


def test_interpolation_with_the_first_stage(reranker):
    logits = reranker.compute_score([(QUERY, doc) for doc in DOCS], convert_to="torch")
    first = torch.tensor([4.0, 3.0, 2.0, 1.0])  # the retriever's order: DOCS as given
    assert torch.equal(reranker.interpolate(logits, first), logits.double())  # weight 0: the logits, untouched
    half = MgteReranker(reranker.model, reranker.tokenizer, first_stage_weight=0.5)
    span = logits.max() - logits.min()
    expected = 0.5 * (logits.double() - logits.min()) / span + 0.5 * torch.tensor([1.0, 2 / 3, 1 / 3, 0.0],
                                                                                  dtype=torch.float64)
    torch.testing.assert_close(half.interpolate(logits, first), expected)
    only_first = MgteReranker(reranker.model, reranker.tokenizer, first_stage_weight=1.0)
    assert [r.index for r in only_first.rank(QUERY, DOCS, first_stage_scores=first.tolist())] == [0, 1, 2, 3]
    ranked = half.rank(QUERY, DOCS, first_stage_scores=first.tolist())
    assert [r.index for r in ranked] == torch.sort(expected, descending=True, stable=True).indices.tolist()
    np.testing.assert_allclose([r.score for r in ranked], sorted(expected.tolist(), reverse=True), atol=1e-6)
    # a constant list carries no order: it counts as zeros
    torch.testing.assert_close(half.interpolate(torch.ones(3), torch.tensor([1.0, 2.0, 3.0])),
                               torch.tensor([0.0, 0.25, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="3 first-stage scores for 4 candidates"):
        half.interpolate(logits, [1.0, 2.0, 3.0])
    # an explicit weight overrides the reranker's own, without another reranker
    torch.testing.assert_close(reranker.interpolate(logits, first, 0.5), expected)
    assert torch.equal(half.interpolate(logits, first, 0.0), logits.double())
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"first_stage_weight must be a number in \[0, 1\]"):
            MgteReranker(reranker.model, reranker.tokenizer, first_stage_weight=bad)
        with pytest.raises(ValueError, match=r"first_stage_weight must be a number in \[0, 1\]"):
            half.interpolate(logits, first, bad)


def test_compiled_reranker_gives_the_same_scores(reranker_dir, reranker, monkeypatch):
    from functools import partial

    monkeypatch.setattr(torch, "compile", partial(torch.compile, backend="eager"))
    compiled = MgteReranker.from_pretrained(reranker_dir, device="cpu", compile=True)
    pairs = [(SENTENCES[0], SENTENCES[1]), (SENTENCES[2], SENTENCES[3] + " " + SENTENCES[4]), ("a", "b")]
    np.testing.assert_allclose(compiled.compute_score(pairs), reranker.compute_score(pairs), atol=1e-6)
