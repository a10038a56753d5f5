"""`mgte-hf serve` as a real process: it answers, and SIGTERM finishes the request in flight before it exits;
limits that cannot work are refused before it listens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from mgte_hf.cli import main
from tiny import REPO, SENTENCES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def in_flight(url: str) -> float:
    text = httpx.get(url + "/metrics").text
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith("te_requests_in_flight "))


def test_sigterm_finishes_the_request_in_flight(embedder, embedder_dir, reranker_dir):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "mgte_hf", "serve", "--model", str(embedder_dir), "--reranker", str(reranker_dir),
         "--port", str(port), "--max-wait-ms", "2000", "--model-id", "tiny"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
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
    assert f"on http://127.0.0.1:{port}" in err


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
