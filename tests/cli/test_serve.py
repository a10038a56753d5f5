"""`mgte-hf serve` as a real process: it answers, and SIGTERM finishes the request in flight before it exits;
limits that cannot work are refused before it listens."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from benchmarks.serve_load import free_port, start_server

from mgte_hf.cli import main
from mgte_hf.inference import MgteEmbedder, MgteReranker
from tiny import SENTENCES


def in_flight(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("te_requests_in_flight "))


def serve(model: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`mgte-hf serve --model MODEL ARGS` as a process on a free loopback port, once /health answers; and its URL."""
    port = free_port()
    return start_server(model, port, *args), f"http://127.0.0.1:{port}"


def test_sigterm_finishes_the_request_in_flight(embedder, embedder_dir, reranker_dir):
    process, url = serve(embedder_dir, "--reranker", str(reranker_dir), "--max-wait-ms", "2000", "--model-id", "tiny")
    try:
        assert httpx.get(url + "/info").json()["model_id"] == "tiny"
        result = {}
        sender = threading.Thread(target=lambda: result.update(
            r=httpx.post(url + "/embed", json={"inputs": SENTENCES[:4]}, timeout=60)))
        sender.start()
        while in_flight(url) < 1:
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)  # the request waits in the batcher for up to 2 s
        sender.join(60)
        # uvicorn shuts down gracefully, then re-raises the signal so that the parent sees how the server ended.
        assert process.wait(60) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    assert result["r"].status_code == 200
    np.testing.assert_allclose(result["r"].json(), embedder.encode(SENTENCES[:4]).dense, atol=1e-5)
    _, err = process.communicate()
    assert f"on {url}" in err


def test_quantize_int8_serves_the_int8_models(embedder_dir, reranker_dir):
    process, url = serve(embedder_dir, "--reranker", str(reranker_dir), "--quantize", "int8")
    try:
        info = httpx.get(url + "/info").json()
        vectors = httpx.post(url + "/embed", json={"inputs": SENTENCES[:3]}, timeout=60).json()
        ranked = httpx.post(url + "/rerank", json={"query": SENTENCES[0], "texts": SENTENCES[1:4], "raw_scores": True},
                            timeout=60).json()
    finally:
        process.terminate()
        process.wait(60)
    assert info["quantize"] == "int8" and info["model_dtype"] == "bfloat16"
    embedder = MgteEmbedder.from_pretrained(embedder_dir, quantize="int8")
    np.testing.assert_allclose(vectors, embedder.encode(SENTENCES[:3]).dense, atol=1e-5)
    scores = MgteReranker.from_pretrained(reranker_dir, quantize="int8").compute_score(
        [(SENTENCES[0], text) for text in SENTENCES[1:4]])
    np.testing.assert_allclose([r["score"] for r in sorted(ranked, key=lambda r: r["index"])], scores, atol=1e-5)


def test_quantize_int8_on_a_gpu_is_refused_before_listening(embedder_dir, capsys):
    assert main(["serve", "--model", str(embedder_dir), "--quantize", "int8", "--device", "cuda"]) == 2
    assert "runs on the CPU" in capsys.readouterr().err


def test_limits_that_cannot_work_are_refused(embedder_dir, capsys):
    code = main(["serve", "--model", str(embedder_dir), "--max-batch-tokens", "100"])
    err = capsys.readouterr().err
    assert code == 2 and "max_input_length (8192) must not exceed max_batch_tokens (100)" in err
    code = main(["serve", "--model", str(embedder_dir.parent / "missing")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--max-client-batch-size", "--max-concurrent-requests"])
def test_non_positive_limits_are_refused(embedder_dir, capsys, flag):
    assert main(["serve", "--model", str(embedder_dir), flag, "0"]) == 2
    assert "must be a positive integer" in capsys.readouterr().err
