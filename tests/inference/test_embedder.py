import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tiny
from inference.folders import SPREAD
from mgte_hf import MgteForEmbedding, MgteForSequenceClassification, scoring, token_weights_to_dicts
from mgte_hf.inference import EmbeddingResult, MgteEmbedder
from mgte_hf.inference.common import tokenize
from mgte_hf.tokenizer import kept_tokenizer_state, special_token_ids
from tiny import SENTENCES


TEXTS = [SENTENCES[0], "Hund", SENTENCES[3] + " " + SENTENCES[4], SENTENCES[1], "a b"]


def model_forward(model, tokenizer, texts, dimension=None, **tok_kwargs):
    """The reference: the model's own padded forward, sparse dicts via token_weights_to_dicts."""
    with kept_tokenizer_state(tokenizer):  # the session's shared tokenizer keeps its settings
        batch = tokenizer(texts, padding=True, return_tensors="pt", **tok_kwargs)
    with torch.no_grad():
        out = model(**batch, dimension=dimension)
    sparse = token_weights_to_dicts(out.sparse, batch["input_ids"], batch["attention_mask"],
                                    special_token_ids(tokenizer))
    return out.dense.numpy(), sparse


def assert_sparse_close(actual, expected, atol=1e-5):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a.keys() == e.keys()
        np.testing.assert_allclose([a[k] for k in e], [e[k] for k in e], atol=atol)


@pytest.mark.parametrize("batch_tokens", [16384, 24])  # one batch, and many (order restored)
def test_encode_equals_the_model_forward(embedder, tiny_tokenizer, batch_tokens):
    result = embedder.encode(TEXTS, dimension=16, batch_tokens=batch_tokens)
    dense, sparse = model_forward(embedder.model, tiny_tokenizer, TEXTS, dimension=16)
    assert result.dense.shape == (len(TEXTS), 16) and result.dense.dtype == np.float32
    np.testing.assert_allclose(result.dense, dense, atol=1e-5)
    assert_sparse_close(result.sparse, sparse)
    assert all(result.sparse), "every non-empty text has lexical weights"


def test_same_inputs_give_the_same_bytes_and_order_is_restored(embedder):
    first, second = embedder.encode(TEXTS, batch_tokens=24), embedder.encode(TEXTS, batch_tokens=24)
    assert first.dense.tobytes() == second.dense.tobytes() and first.sparse == second.sparse
    reversed_ = embedder.encode(TEXTS[::-1], batch_tokens=24)
    np.testing.assert_allclose(reversed_.dense[::-1], first.dense, atol=1e-6)
    chunks = EmbeddingResult.concatenate([embedder.encode(TEXTS[:2]), embedder.encode(TEXTS[2:])])
    np.testing.assert_allclose(chunks.dense, first.dense, atol=1e-6)
    assert_sparse_close(chunks.sparse, first.sparse, atol=1e-6)


def test_encode_tokenized_equals_encode_on_the_same_ids(embedder, tiny_tokenizer):
    tokenized = tokenize(tiny_tokenizer, TEXTS, max_length=8, truncation="warn")
    result = embedder.encode_tokenized(tokenized, dimension=8, batch_tokens=24)
    expected = embedder.encode(TEXTS, dimension=8, max_length=8, batch_tokens=24)
    np.testing.assert_array_equal(result.dense, expected.dense)
    assert result.sparse == expected.sparse
    dense_only = embedder.encode_tokenized(tokenized, sparse=False, convert_to="torch")
    assert dense_only.sparse is None and dense_only.dense.shape == (len(TEXTS), 32)
    with pytest.raises(ValueError, match="Nothing to compute"):
        embedder.encode_tokenized(tokenized, dense=False, sparse=False)


def test_dimension_truncates_then_renormalises_and_refuses_other_sizes(embedder):
    full = embedder.encode(TEXTS, sparse=False, convert_to="torch").dense
    small = embedder.encode(TEXTS, sparse=False, dimension=8, convert_to="torch").dense
    assert isinstance(small, torch.Tensor) and small.shape == (len(TEXTS), 8)
    torch.testing.assert_close(small.norm(dim=1), torch.ones(len(TEXTS)))
    # truncating the normalised full vector and renormalising gives the same direction
    torch.testing.assert_close(small, F.normalize(full[:, :8], dim=-1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"dimension=12 is not allowed.*\[8, 16, 32\]"):
        embedder.encode(TEXTS, dimension=12)
    with pytest.raises(ValueError, match="not allowed"):
        MgteEmbedder(embedder.model, embedder.tokenizer, dimension=64)


def test_sparse_ids_tokens_and_ignored_ids(embedder, tiny_tokenizer):
    result = embedder.encode(TEXTS, dense=False)
    assert result.dense is None and len(result) == len(TEXTS)
    specials = set(special_token_ids(tiny_tokenizer))
    assert not specials & {t for row in result.sparse for t in row}
    tokens = result.sparse_tokens()
    for ids, strings in zip(result.sparse, tokens, strict=True):
        assert list(strings) == tiny_tokenizer.convert_ids_to_tokens(list(ids))
        assert list(strings.values()) == list(ids.values())
    # config.sparse_ignore_token_ids wins over the tokenizer's specials
    dropped = next(iter(result.sparse[0]))
    model = MgteForEmbedding(embedder.model.config.__class__(**{
        **embedder.model.config.to_dict(), "sparse_ignore_token_ids": [0, 1, 2, 3, dropped]}))
    model.load_state_dict(embedder.model.state_dict())
    again = MgteEmbedder(model, tiny_tokenizer).encode(TEXTS[:1], dense=False).sparse[0]
    kept = {k: v for k, v in result.sparse[0].items() if k != dropped}
    assert dropped not in again and again == pytest.approx(kept, abs=1e-6)


def test_over_long_texts_truncate_with_one_counting_warning(embedder, tiny_tokenizer, caplog):
    texts = [SENTENCES[0], "Hund", SENTENCES[1]]
    with caplog.at_level(logging.WARNING, logger="mgte_hf"):
        result = embedder.encode(texts, max_length=8)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Truncated 2 of 3 texts to max_length=8 tokens."]
    dense, sparse = model_forward(embedder.model, tiny_tokenizer, texts, truncation=True, max_length=8)
    np.testing.assert_allclose(result.dense, dense, atol=1e-5)
    assert_sparse_close(result.sparse, sparse)
    with pytest.raises(ValueError, match=r"2 of 3 texts exceed max_length=8 tokens \(the first, index 0"):
        embedder.encode(texts, max_length=8, truncation="error")
    with pytest.raises(ValueError, match="max_length must be an integer >= 3"):
        embedder.encode(texts, max_length=2)


def test_bad_input(embedder, caplog):
    with pytest.raises(TypeError, match="texts must be a string or a list of strings, got NoneType"):
        embedder.encode(None)
    with pytest.raises(TypeError, match=r"texts\[1\] is a int, not a str"):
        embedder.encode(["fine", 3])
    with pytest.raises(TypeError, match=r"texts\[0\] is a NoneType"):
        embedder.encode([None])
    with pytest.raises(ValueError, match="Nothing to compute"):
        embedder.encode(TEXTS, dense=False, sparse=False)
    with pytest.raises(ValueError, match="convert_to must be one of"):
        embedder.encode(TEXTS, convert_to="list")
    with pytest.raises(ValueError, match="batch_tokens must be a positive integer"):
        embedder.encode(TEXTS, batch_tokens=0)
    with pytest.raises(ValueError, match="truncation must be one of"):
        embedder.encode(TEXTS, truncation=True)
    empty = embedder.encode([], dimension=8)
    assert empty.dense.shape == (0, 8) and empty.sparse == []
    single = embedder.encode(TEXTS[0])
    np.testing.assert_allclose(single.dense, embedder.encode(TEXTS[:1]).dense, atol=1e-6)
    texts = ["", "  ", "Hund"]
    before = list(texts)
    with caplog.at_level(logging.WARNING, logger="mgte_hf"):
        blank = embedder.encode(texts)
    assert texts == before, "the caller's list is untouched"
    assert "2 of 3 texts are empty or blank" in caplog.text
    assert blank.sparse[0] == {} and blank.sparse[2] and np.isfinite(blank.dense).all()


def test_scores_use_mgte_hf_scoring(embedder):
    queries, docs = embedder.encode_queries(TEXTS[:2]), embedder.encode_corpus(TEXTS)
    dense = embedder.dense_scores(queries, docs)
    np.testing.assert_allclose(dense, queries.dense @ docs.dense.T, atol=1e-6)
    lexical = embedder.lexical_matching_scores(queries, docs, convert_to="torch")
    torch.testing.assert_close(lexical, scoring.lexical_matching_scores(queries.sparse, docs.sparse))
    assert lexical[0, 0] == pytest.approx(scoring.lexical_matching_score(queries.sparse[0], docs.sparse[0]))
    hybrid = embedder.hybrid_scores(queries, docs)
    np.testing.assert_allclose(hybrid, dense + 0.1 * lexical.numpy(), atol=1e-6)
    np.testing.assert_allclose(embedder.hybrid_scores(TEXTS[:2], TEXTS, 0.5, 2.0), 0.5 * dense + 2.0 * lexical.numpy(),
                               atol=1e-5)
    with pytest.raises(ValueError, match="without sparse weights"):
        embedder.lexical_matching_scores(queries, embedder.encode(TEXTS, sparse=False))


def test_encode_corpus_joins_titles(embedder):
    records = [{"title": "Fox", "text": SENTENCES[0]}, {"text": SENTENCES[1]}, "plain"]
    result = embedder.encode_corpus(records)
    expected = embedder.encode([f"Fox {SENTENCES[0]}", SENTENCES[1], "plain"])
    np.testing.assert_array_equal(result.dense, expected.dense)
    with pytest.raises(TypeError, match=r"corpus\[0\] has no string 'text'"):
        embedder.encode_corpus([{"title": "x"}])


def test_progress_bar(embedder, capsys):
    embedder.encode(TEXTS, show_progress_bar=True)
    assert "Encoding" in capsys.readouterr().err
    embedder.encode(TEXTS)  # auto: short inputs show no bar
    assert "Encoding" not in capsys.readouterr().err


def test_from_pretrained(embedder_dir, embedder, tiny_tokenizer, fixture_dir):
    half = MgteEmbedder.from_pretrained(embedder_dir, device="cpu", dtype="bfloat16")
    assert half.model.dtype == torch.bfloat16
    result = half.encode(TEXTS)
    assert result.dense.dtype == np.float32
    np.testing.assert_allclose(result.dense, embedder.encode(TEXTS).dense, atol=5e-2)
    with pytest.raises(ValueError, match="Pass tokenizer="):
        MgteEmbedder.from_pretrained(embedder.model)
    with pytest.raises(TypeError, match="Expected a MgteForEmbedding"):
        MgteEmbedder.from_pretrained(MgteForSequenceClassification(embedder.model.config), tokenizer=tiny_tokenizer)
    # the released "new" layout (NewForTokenClassification, sparse head) with a separate tokenizer
    released = MgteEmbedder.from_pretrained(fixture_dir / "token_cls", tokenizer=tiny_tokenizer, device="cpu")
    result = released.encode(TEXTS)
    dense, sparse = model_forward(released.model, tiny_tokenizer, TEXTS)
    np.testing.assert_allclose(result.dense, dense, atol=1e-5)
    assert_sparse_close(result.sparse, sparse)


def test_real_xlmr_tokenizer(xlmr_tokenizer):
    model = tiny.make_model(MgteForEmbedding, vocab_size=len(xlmr_tokenizer), **SPREAD)
    with torch.no_grad():
        model.classifier.bias.fill_(3.0)  # every token gets a positive weight
    text = "Berlin is the capital of Germany."
    result = MgteEmbedder(model, xlmr_tokenizer).encode([text, "Berlin"])
    tokens = result.sparse_tokens()
    assert "▁Berlin" in tokens[0] and set(tokens[0]) <= set(xlmr_tokenizer.tokenize(text))
    assert not {0, 1, 2, 3} & set(result.sparse[0]), "<s> <pad> </s> <unk> carry no weight"
    dense, sparse = model_forward(model, xlmr_tokenizer, [text, "Berlin"])
    np.testing.assert_allclose(result.dense, dense, atol=1e-5)
    assert_sparse_close(result.sparse, sparse)


def test_compiled_embedder_gives_the_same_results(embedder_dir, embedder, monkeypatch):
    """`compile=True` runs the model through torch.compile (here on dynamo's eager backend: the tracing, fullgraph and
    dynamic shapes of the real thing without C++ code generation) and gives the eager results."""
    from functools import partial

    monkeypatch.setattr(torch, "compile", partial(torch.compile, backend="eager"))
    compiled = MgteEmbedder.from_pretrained(embedder_dir, device="cpu", compile=True)
    texts = [*TEXTS, "Hund"]  # several batches and a single-input one below
    got, expected = compiled.encode(texts, batch_tokens=24), embedder.encode(texts, batch_tokens=24)
    np.testing.assert_allclose(got.dense, expected.dense, atol=1e-6)
    assert_sparse_close(got.sparse, expected.sparse, atol=1e-6)
    assert compiled.encode("Hund", dimension=16).dense.shape == (1, 16)
