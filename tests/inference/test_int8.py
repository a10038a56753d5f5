"""`quantize="int8"` on `MgteEmbedder` / `MgteReranker`: quality against float32 and the settings it refuses."""

import numpy as np
import pytest
import torch

import tiny
from inference.folders import SPREAD
from mgte_hf import MgteForEmbedding, MgteForSequenceClassification
from mgte_hf.inference import MgteEmbedder, MgteReranker
from mgte_hf.quantization import Int8Linear, is_quantized, top_terms_overlap
from tiny import SENTENCES


# Wider than the shared tiny model, with spread weights (std 0.2) so that texts get distinct vectors and weights; a
# short trained context is irrelevant here, so positions cover the sentences.
QUALITY_MODEL = dict(hidden_size=64, intermediate_size=128, max_position_embeddings=128, **SPREAD)


@pytest.fixture(scope="module")
def quality_model(xlmr_tokenizer):
    return tiny.make_model(MgteForEmbedding, vocab_size=len(xlmr_tokenizer), **QUALITY_MODEL)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_int8_embeddings_agree_with_float32(quality_model, xlmr_tokenizer, dtype):
    reference = MgteEmbedder(quality_model, xlmr_tokenizer).encode(SENTENCES)
    embedder = MgteEmbedder.from_pretrained(quality_model, xlmr_tokenizer, dtype=dtype, quantize="int8")
    result = embedder.encode(SENTENCES)
    cosines = (reference.dense * result.dense).sum(axis=1)
    between_texts = reference.dense @ reference.dense.T
    np.fill_diagonal(between_texts, -1)
    assert cosines.min() >= 0.995 and between_texts.max() < 0.99, "the issue's bound; closer than any other text"
    assert (np.argmax(result.dense @ reference.dense.T, axis=1) == np.arange(len(SENTENCES))).all()
    overlap = top_terms_overlap(reference.sparse, result.sparse)  # texts with terms; near-zero weights may flip
    assert len(overlap) >= len(SENTENCES) - 1 and np.mean(overlap) >= 0.9
    lexical, lexical_int8 = (embedder.lexical_matching_scores(r, r).ravel() for r in (reference, result))
    assert np.corrcoef(lexical, lexical_int8)[0, 1] >= 0.99
    assert quality_model.dtype == torch.float32 and not is_quantized(quality_model), "the caller's model is left as is"


def test_int8_reranker_keeps_the_ranking(xlmr_tokenizer):
    model = tiny.make_model(MgteForSequenceClassification, seed=3, vocab_size=len(xlmr_tokenizer), num_labels=1,
                            **QUALITY_MODEL)
    pairs = [(SENTENCES[0], doc) for doc in SENTENCES[1:]]
    reference = MgteReranker(model, xlmr_tokenizer).compute_score(pairs)
    scores = MgteReranker(model, xlmr_tokenizer, quantize="int8").compute_score(pairs)
    assert np.corrcoef(reference, scores)[0, 1] >= 0.98 and np.argmax(scores) == np.argmax(reference)


def test_from_folder_defaults_to_cpu_and_bfloat16(embedder_dir):
    embedder = MgteEmbedder.from_pretrained(embedder_dir, quantize="int8")
    assert embedder.quantize == "int8" and embedder.device.type == "cpu" and embedder.model.dtype == torch.bfloat16
    assert isinstance(embedder.model.new.encoder.layer[0].mlp.down_proj, Int8Linear)
    assert embedder.encode(SENTENCES[:3]).dense.shape == (3, 32)
    assert MgteEmbedder.from_pretrained(embedder_dir, dtype="float32", quantize="int8").model.dtype == torch.float32
    assert MgteEmbedder.from_pretrained(embedder_dir).quantize is None


def test_int8_composes_with_compile(embedder_dir, monkeypatch):
    """`quantize="int8", compile=True`: the quantized model through torch.compile(fullgraph=True) (on dynamo's eager
    backend here: the tracing, fullgraph and dynamic shapes of the real thing; inductor itself is in
    test_quantization) gives the eager int8 results, for several batches and a single input."""
    from functools import partial

    eager = MgteEmbedder.from_pretrained(embedder_dir, quantize="int8")
    monkeypatch.setattr(torch, "compile", partial(torch.compile, backend="eager"))
    compiled = MgteEmbedder.from_pretrained(embedder_dir, quantize="int8", compile=True)
    assert compiled.compiled and compiled.quantize == "int8"
    texts = [*SENTENCES[:5], "Hund"]
    got, expected = compiled.encode(texts, batch_tokens=48), eager.encode(texts, batch_tokens=48)
    np.testing.assert_allclose(got.dense, expected.dense, atol=1e-6)
    assert [sorted(w) for w in got.sparse] == [sorted(w) for w in expected.sparse]
    np.testing.assert_allclose(compiled.encode("Hund").dense, eager.encode("Hund").dense, atol=1e-6)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"quantize": "int4"}, ValueError, "quantize must be None or one of 'int8'"),
    ({"quantize": "int8", "device": "cuda"}, ValueError, "runs on the CPU"),
    ({"quantize": "int8", "dtype": "float16"}, ValueError, "bfloat16 or float32, not torch.float16"),
])
def test_bad_settings_are_refused_before_loading(reranker_dir, kwargs, error, message):
    with pytest.raises(error, match=message):
        MgteReranker.from_pretrained(reranker_dir, **kwargs)


def test_a_quantized_model_refuses_training(reranker_dir):
    reranker = MgteReranker.from_pretrained(reranker_dir, quantize="int8")
    reranker.model.train()
    with pytest.raises(RuntimeError, match="inference only.*train the float model"):
        reranker.compute_score([("a", "b")])
