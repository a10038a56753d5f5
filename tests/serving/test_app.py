"""Every route of the server through real clients on a real socket (huggingface_hub's InferenceClient, the openai
client, httpx), checked against `MgteEmbedder` and `MgteReranker` on the same texts."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import openai
import pytest
from huggingface_hub import InferenceClient, constants
from huggingface_hub.errors import HfHubHTTPError

from mgte_hf.inference import MgteEmbedder
from tiny import SENTENCES

from .conftest import serve


TEXTS = SENTENCES[:6]
QUERY = "Which fox is quick?"
ATOL = 1e-5


@contextmanager
def loopback_client(url: str) -> Iterator[InferenceClient]:
    """An InferenceClient on the test server. In offline mode (the suite's) it refuses every URL, loopback included,
    so offline mode is lifted while it runs: its requests go to `url` only (a URL model needs no Hub look-up)."""
    offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield InferenceClient(base_url=url)
    finally:
        constants.HF_HUB_OFFLINE = offline


def post(url: str, path: str, body, **kwargs) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30, **kwargs)


def metric(url: str, name: str) -> float:
    """The sum of a metric's samples named `name` (over all labels) on `/metrics`."""
    text = httpx.get(url + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in " {")


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def assert_sparse_equal(rows: list[list[dict]], expected: list[dict[int, float]]) -> None:
    assert len(rows) == len(expected)
    for row, weights in zip(rows, expected):
        assert [v["index"] for v in row] == sorted(weights), "ids ascending, the same tokens as encode"
        np.testing.assert_allclose([v["value"] for v in row], [weights[i] for i in sorted(weights)], atol=ATOL)


# ============================================================================================== routes
def test_embed_through_inference_client_and_http(server, embedder):
    with loopback_client(server.url) as client:
        vectors = client.feature_extraction(TEXTS)  # POST / (TEI's main task route)
        small = client.feature_extraction(TEXTS[0], dimensions=8)
    np.testing.assert_allclose(vectors, embedder.encode(TEXTS).dense, atol=ATOL)
    np.testing.assert_allclose(small, embedder.encode(TEXTS[:1], dimension=8).dense, atol=ATOL)
    response = post(server.url, "/embed", {"inputs": TEXTS[:3], "dimensions": 16, "normalize": True})
    assert response.status_code == 200
    np.testing.assert_allclose(response.json(), embedder.encode(TEXTS[:3], dimension=16).dense, atol=ATOL)
    tokens = sum(len(ids) for ids in embedder.tokenizer(TEXTS[:3])["input_ids"])
    assert response.headers["x-compute-tokens"] == str(tokens)
    assert {"x-total-time", "x-queue-time", "x-inference-time", "x-tokenization-time"} <= set(response.headers)


def test_embed_token_id_inputs(server, embedder):
    ids = embedder.tokenizer(TEXTS[:2])["input_ids"]
    single = post(server.url, "/embed", {"inputs": ids[0]}).json()
    batch = post(server.url, "/embed", {"inputs": [ids[0], TEXTS[1]]}).json()
    expected = embedder.encode(TEXTS[:2]).dense
    np.testing.assert_allclose(single, expected[:1], atol=ATOL)
    np.testing.assert_allclose(batch, expected, atol=ATOL)


def test_embed_sparse_equals_the_embedders_weights(server, embedder):
    response = post(server.url, "/embed_sparse", {"inputs": TEXTS})
    expected = embedder.encode(TEXTS, dense=False).sparse
    assert response.status_code == 200 and any(expected), "the tiny model gives some texts sparse weights"
    assert_sparse_equal(response.json(), expected)
    single = post(server.url, "/embed_sparse", {"inputs": TEXTS[2]}).json()
    assert_sparse_equal(single, expected[2:3])


def test_rerank_sorted_raw_and_sigmoid_scores(server, reranker):
    pairs = [(QUERY, t) for t in TEXTS]
    for raw in (True, False):
        response = post(server.url, "/rerank", {"query": QUERY, "texts": TEXTS, "raw_scores": raw,
                                                "return_text": True})
        assert response.status_code == 200
        ranks = response.json()
        expected = reranker.compute_score(pairs, normalize=not raw)
        assert [r["index"] for r in ranks] == list(np.argsort(-expected, kind="stable"))
        np.testing.assert_allclose([r["score"] for r in ranks], expected[[r["index"] for r in ranks]], atol=ATOL)
        assert [r["text"] for r in ranks] == [TEXTS[r["index"]] for r in ranks]
    plain = post(server.url, "/rerank", {"query": QUERY, "texts": TEXTS[:2]}).json()
    assert all(set(r) == {"index", "score"} for r in plain), "no text unless return_text"


def test_similarity_through_inference_client(server, embedder):
    with loopback_client(server.url) as client:
        scores = client.sentence_similarity(QUERY, TEXTS)  # POST / with {"inputs": {"source_sentence", ...}}
    np.testing.assert_allclose(scores, embedder.dense_scores(QUERY, TEXTS)[0], atol=ATOL)
    again = post(server.url, "/similarity", {"inputs": {"source_sentence": QUERY, "sentences": TEXTS}}).json()
    np.testing.assert_allclose(again, scores, atol=ATOL)


def test_openai_client_float_base64_dimensions_and_usage(server, embedder):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    expected = embedder.encode(TEXTS).dense
    default = client.embeddings.create(input=TEXTS, model="tiny-mgte")  # the client asks for base64
    as_float = client.embeddings.create(input=TEXTS, model="tiny-mgte", encoding_format="float")
    for result in (default, as_float):
        assert [d.index for d in result.data] == list(range(len(TEXTS)))
        np.testing.assert_allclose([d.embedding for d in result.data], expected, atol=ATOL)
    tokens = sum(len(ids) for ids in embedder.tokenizer(TEXTS)["input_ids"])
    assert default.usage.prompt_tokens == default.usage.total_tokens == tokens
    assert default.model == "tiny-mgte"
    small = client.embeddings.create(input=TEXTS[0], model="tiny-mgte", dimensions=8)
    np.testing.assert_allclose(small.data[0].embedding, embedder.encode(TEXTS[:1], dimension=8).dense[0], atol=ATOL)
    raw = post(server.url, "/embeddings", {"input": TEXTS[0], "encoding_format": "base64"}).json()  # TEI's alias
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, expected[0], atol=ATOL)
    assert raw["object"] == "list" and raw["data"][0]["object"] == "embedding"
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(input=TEXTS[0], model="tiny-mgte", dimensions=12)


def test_tokenize_info_health_metrics(server, embedder):
    tokens = post(server.url, "/tokenize", {"inputs": ["Hello world", TEXTS[0]]}).json()
    ids = embedder.tokenizer(["Hello world", TEXTS[0]])["input_ids"]
    assert [[t["id"] for t in row] for row in tokens] == ids
    assert tokens[0][0] == {"id": 0, "text": "<s>", "special": True, "start": None, "stop": None}
    assert tokens[0][1:3] == [{"id": 35378, "text": "Hello", "special": False, "start": 0, "stop": 5},
                              {"id": 8999, "text": "world", "special": False, "start": 6, "stop": 11}]
    bare = post(server.url, "/tokenize", {"inputs": "Hello world", "add_special_tokens": False}).json()
    assert [t["id"] for t in bare[0]] == [35378, 8999]
    assert post(server.url, "/decode", {"ids": ids[0]}).json() == ["Hello world"]
    assert post(server.url, "/decode", {"ids": ids, "skip_special_tokens": False}).json() == [
        "<s> Hello world</s>", f"<s> {TEXTS[0]}</s>"]
    info = httpx.get(server.url + "/info").json()
    assert info["model_id"] == "tiny-mgte" and info["model_type"] == {"embedding": {"pooling": "cls"}}
    assert info["max_input_length"] == embedder.max_length and info["max_client_batch_size"] == 32
    assert info["model_dtype"] == "float32" and info["matryoshka_dimensions"] == [8, 16]
    assert httpx.get(server.url + "/health").status_code == 200
    assert httpx.get(server.url + "/").status_code == 200
    before = metric(server.url, "te_request_success_total")
    post(server.url, "/embed", {"inputs": TEXTS[:2]})
    assert metric(server.url, "te_request_success_total") == before + 1
    assert metric(server.url, "te_batch_next_size_count") >= 1
    assert metric(server.url, "te_request_queue_duration_count") >= 1


# ============================================================================================== concurrency
def test_64_concurrent_requests_equal_serial_and_are_batched(embedder, reranker):
    requests = [("/embed", {"inputs": SENTENCES[i % 20]}) if i % 3 == 0 else
                ("/embed_sparse", {"inputs": [SENTENCES[i % 20], SENTENCES[(i + 1) % 20]]}) if i % 3 == 1 else
                ("/rerank", {"query": SENTENCES[i % 20], "texts": SENTENCES[:3], "raw_scores": True})
                for i in range(64)]

    async def send_all(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(client.post(path, json=body) for path, body in requests))

    with serve(embedder, reranker, max_wait_ms=20) as running:
        responses = asyncio.run(send_all(running.url))
        batches, sequences = metric(running.url, "te_batch_next_size_count"), metric(running.url,
                                                                                     "te_batch_next_size_sum")
    assert [r.status_code for r in responses] == [200] * 64
    texts = sum(len(body["inputs"]) if path == "/embed_sparse" else 3 if path == "/rerank" else 1
                for path, body in requests)
    assert sequences == texts, "every text ran once"
    assert sequences / batches > 4, "requests arriving together share batches"
    for (path, body), response in zip(requests, responses):
        if path == "/embed":
            np.testing.assert_allclose(response.json(), embedder.encode(body["inputs"]).dense, atol=ATOL)
        elif path == "/embed_sparse":
            assert_sparse_equal(response.json(), embedder.encode(body["inputs"], dense=False).sparse)
        else:
            scores = reranker.compute_score([(body["query"], t) for t in body["texts"]])
            got = {r["index"]: r["score"] for r in response.json()}
            np.testing.assert_allclose([got[i] for i in range(3)], scores, atol=ATOL)


# ============================================================================================== refusals
BAD_BODIES = [
    ("/embed", b'{"inputs": "a"', 422, "not valid JSON"),
    ("/embed", b'["a"]', 422, "must be a JSON object"),
    ("/embed", b"{}", 422, "`inputs` is required"),
    ("/embed", b'{"inputs": null}', 422, "`inputs` must be a string or a list of strings"),
    ("/embed", b'{"inputs": [null]}', 422, "item 0 is null"),
    ("/embed", b'{"inputs": ["a", 3]}', 422, "item 1 is the number 3"),
    ("/embed", b'{"inputs": "a", "normalize": "yes"}', 422, "`normalize` must be true or false"),
    ("/embed", b'{"inputs": "a", "normalize": false}', 422, "`normalize` must be true"),
    ("/embed", b'{"inputs": "a", "dimensions": 12}', 422, "must be one of [8, 16, 32]"),
    ("/embed", b'{"inputs": "a", "dimensions": "8"}', 422, "`dimensions` must be an integer"),
    ("/embed", b'{"inputs": "a", "prompt_name": "query"}', 422, "no prompts"),
    ("/embed", b'{"inputs": "a", "truncation_direction": "left"}', 422, '"right"'),
    ("/embed", b'{"inputs": [[0, 999999, 2]]}', 422, "token id 999999, outside"),
    ("/embed", b'{"inputs": []}', 400, "`inputs` cannot be empty"),
    ("/embed_sparse", b'{"inputs": 7}', 422, "got the number 7"),
    ("/rerank", b'{"texts": ["a"]}', 422, "`query` is required"),
    ("/rerank", b'{"query": "q", "texts": "a"}', 422, "`texts` must be a list of strings"),
    ("/rerank", b'{"query": "q", "texts": []}', 400, "`texts` cannot be empty"),
    ("/similarity", b'{"inputs": {"source_sentence": "q"}}', 422, "`inputs.sentences` is required"),
    ("/tokenize", b'{"inputs": [1, 2]}', 422, "`inputs` must be"),
    ("/decode", b'{"ids": "Hello"}', 422, "`ids` must be a list of token ids"),
    ("/decode", b'{"ids": [0, -4]}', 422, "token id -4, outside"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_BODIES)
def test_bad_bodies_get_json_errors(server, path, body, status, message):
    response = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()
    assert set(error) == {"error", "error_type"} and message in error["error"], error


def test_openai_route_errors_have_its_shape(server):
    response = post(server.url, "/v1/embeddings", {"input": None})
    assert response.status_code == 422
    assert response.json()["code"] == 422 and "`input` must be" in response.json()["message"]


def test_oversized_batch_and_payload_get_413(embedder, reranker):
    with serve(embedder, reranker, max_client_batch_size=4, payload_limit=2000) as running:
        for path, body in (("/embed", {"inputs": TEXTS[:5]}), ("/rerank", {"query": QUERY, "texts": TEXTS[:5]}),
                           ("/v1/embeddings", {"input": TEXTS[:5]})):
            response = post(running.url, path, body)
            assert response.status_code == 413, path
            assert "batch size 5 > maximum allowed batch size 4" in response.text
        response = post(running.url, "/embed", {"inputs": "x" * 3000})
        assert response.status_code == 413 and "payload limit of 2000" in response.json()["error"]
        assert post(running.url, "/embed", {"inputs": TEXTS[:4]}).status_code == 200


def test_truncate_cuts_and_otherwise_over_long_texts_are_refused(embedder, reranker):
    long = " ".join(SENTENCES)  # well over 32 tokens
    with serve(embedder, reranker, max_input_length=32, max_batch_tokens=64) as running:
        refused = post(running.url, "/embed", {"inputs": ["short", long]})
        assert refused.status_code == 413 and refused.json()["error_type"] == "Validation"
        assert "inputs[1] has" in refused.json()["error"] and '"truncate": true' in refused.json()["error"]
        cut = post(running.url, "/embed", {"inputs": ["short", long], "truncate": True})
        np.testing.assert_allclose(cut.json(), embedder.encode(["short", long], max_length=32).dense, atol=ATOL)
        assert cut.headers["x-compute-tokens"] == str(len(embedder.tokenizer("short")["input_ids"]) + 32)
        sparse = post(running.url, "/embed_sparse", {"inputs": long, "truncate": True}).json()
        assert_sparse_equal(sparse, embedder.encode(long, dense=False, max_length=32).sparse)
        assert post(running.url, "/rerank", {"query": QUERY, "texts": [long]}).status_code == 413
        ranked = post(running.url, "/rerank", {"query": QUERY, "texts": [long], "truncate": True,
                                               "raw_scores": True}).json()
        expected = reranker.compute_score([(QUERY, long)], max_length=32)
        np.testing.assert_allclose([ranked[0]["score"]], expected, atol=ATOL)
        assert post(running.url, "/v1/embeddings", {"input": long}).status_code == 413
    with serve(embedder, max_input_length=32, max_batch_tokens=64, auto_truncate=True) as running:
        auto = post(running.url, "/v1/embeddings", {"input": long}).json()
        np.testing.assert_allclose(auto["data"][0]["embedding"], embedder.encode(long, max_length=32).dense[0],
                                   atol=ATOL)
        assert post(running.url, "/embed", {"inputs": long, "truncate": False}).status_code == 413


def test_without_a_reranker_rerank_answers_424(embedder):
    with serve(embedder) as running:
        response = post(running.url, "/rerank", {"query": QUERY, "texts": TEXTS[:2]})
        assert response.status_code == 424 and "--reranker" in response.json()["error"]
        assert httpx.get(running.url + "/info").json()["reranker_id"] is None


def test_a_full_queue_answers_429_and_the_queued_requests_finish(embedder):
    with serve(embedder, max_concurrent_requests=2, max_wait_ms=1500) as running:
        results = {}

        def send(i: int) -> None:
            results[i] = post(running.url, "/embed", {"inputs": TEXTS[i]})

        threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        wait_for(lambda: metric(running.url, "te_requests_in_flight") == 2)
        refused = post(running.url, "/embed", {"inputs": TEXTS[2]})
        assert refused.status_code == 429 and refused.json()["error_type"] == "Overloaded"
        assert refused.headers["retry-after"] == "1"
        with loopback_client(running.url) as client, pytest.raises(HfHubHTTPError, match="429"):
            client.feature_extraction(TEXTS[2])
        for thread in threads:
            thread.join(30)
        for i in range(2):
            assert results[i].status_code == 200
            np.testing.assert_allclose(results[i].json(), embedder.encode(TEXTS[i:i + 1]).dense, atol=ATOL)
        assert post(running.url, "/embed", {"inputs": TEXTS[2]}).status_code == 200, "room again"


def test_graceful_shutdown_finishes_the_requests_in_flight(embedder):
    with serve(embedder, max_wait_ms=1500) as running:
        result = {}
        thread = threading.Thread(target=lambda: result.update(r=post(running.url, "/embed", {"inputs": TEXTS})))
        thread.start()
        wait_for(lambda: metric(running.url, "te_requests_in_flight") == 1)
        engine = running.engine
        running.stop()  # as on SIGTERM: the queued request still runs before the workers stop
        thread.join(30)
        assert result["r"].status_code == 200
        np.testing.assert_allclose(result["r"].json(), embedder.encode(TEXTS).dense, atol=ATOL)
        assert not engine.healthy, "the workers stopped after the queue drained"
        with pytest.raises(httpx.ConnectError):
            httpx.get(running.url + "/health")


def test_health_is_503_once_the_workers_stopped(embedder):
    with serve(embedder) as running:
        running.engine.embed_batcher.close()
        health = httpx.get(running.url + "/health")
        assert health.status_code == 503 and health.json() == {"error": "unhealthy", "error_type": "Unhealthy"}
        refused = post(running.url, "/embed", {"inputs": TEXTS[0]})
        assert refused.status_code == 503 and "shutting down" in refused.json()["error"]


def test_a_failing_forward_answers_424_and_the_server_goes_on(embedder, monkeypatch):
    with serve(embedder) as running:
        real = embedder.encode_tokenized

        def broken(*args, **kwargs):
            raise RuntimeError("out of memory")

        monkeypatch.setattr(embedder, "encode_tokenized", broken)
        response = post(running.url, "/embed", {"inputs": TEXTS[0]})
        assert response.status_code == 424 and "Inference failed: out of memory" in response.json()["error"]
        monkeypatch.setattr(embedder, "encode_tokenized", real)
        assert post(running.url, "/embed", {"inputs": TEXTS[0]}).status_code == 200


def test_a_bfloat16_embedder_serves_its_own_vectors(embedder_dir, xlmr_tokenizer):
    half = MgteEmbedder.from_pretrained(embedder_dir, xlmr_tokenizer, device="cpu", dtype="bfloat16")
    with serve(half) as running:
        vectors = post(running.url, "/embed", {"inputs": TEXTS[:2]}).json()
        assert httpx.get(running.url + "/info").json()["model_dtype"] == "bfloat16"
    np.testing.assert_allclose(vectors, half.encode(TEXTS[:2]).dense, atol=ATOL)
