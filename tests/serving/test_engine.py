"""The engine without HTTP: limits checked at start, tokenization with the length policy, Matryoshka vectors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from mgte_hf.serving import Engine, ServerConfig
from mgte_hf.serving.schemas import ApiError
from tiny import SENTENCES


def test_limits_are_checked_when_the_engine_is_built(embedder, reranker):
    with pytest.raises(ValueError, match=r"max_input_length \(8192\) must not exceed max_batch_tokens \(4096\)"):
        Engine(embedder, reranker, ServerConfig(max_batch_tokens=4096))
    with pytest.raises(ValueError, match="max_client_batch_size must be a positive integer"):
        Engine(embedder, config=ServerConfig(max_client_batch_size=0))
    engine = Engine(embedder, reranker, ServerConfig(max_input_length=64, max_batch_tokens=64))
    assert engine.max_input_length == 64 and engine.full_dimension == 32


def test_embed_rerank_and_dimensions_without_http(embedder, reranker):
    engine = Engine(embedder, reranker, ServerConfig(max_wait_ms=0))
    engine.start()

    async def main():
        embedded = await engine.embed(SENTENCES[:3], truncate=False, dense=True, sparse=True)
        scored = await engine.rerank("query", SENTENCES[:3], truncate=False)
        return embedded, scored

    try:
        embedded, scored = asyncio.run(main())
    finally:
        engine.close()
    expected = embedder.encode(SENTENCES[:3], dimension=16)
    np.testing.assert_allclose(engine.dense_vectors(embedded, 16), expected.dense, atol=1e-5)
    assert [sorted(row) for row in embedded.sparse] == [sorted(row) for row in expected.sparse]
    assert embedded.lengths == [len(ids) for ids in embedder.tokenizer(SENTENCES[:3])["input_ids"]]
    np.testing.assert_allclose(scored.logits, reranker.compute_score([("query", t) for t in SENTENCES[:3]]),
                               atol=1e-5)
    assert embedded.timings.queue >= 0 and embedded.timings.inference > 0


def test_checks(embedder):
    engine = Engine(embedder, config=ServerConfig(max_client_batch_size=2))
    assert engine.check_dimension(None) == 32 and engine.check_dimension(8) == 8
    with pytest.raises(ApiError, match="one of"):
        engine.check_dimension(12)
    with pytest.raises(ApiError) as empty:
        engine.check_batch([])
    assert empty.value.status == 400
    with pytest.raises(ApiError) as large:
        engine.check_batch(["a"] * 3)
    assert large.value.status == 413
    assert engine.truncate(None) is False and engine.truncate(True) is True
    with pytest.raises(ApiError, match="no prompts"):
        engine.check_options(prompt_name="query")
    engine.check_options(truncation_direction="Right")
