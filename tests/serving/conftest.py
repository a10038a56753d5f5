"""Tiny mGTE embedder and reranker with the real XLM-R tokenizer, and a real uvicorn server on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import uvicorn

from inference.folders import SPREAD, save_embedder, save_reranker
from mgte_hf.inference import MgteEmbedder, MgteReranker
from mgte_hf.serving import ServerConfig, create_app


@dataclass
class Running:
    """A server running in a thread: its base URL, the uvicorn server and the app's engine."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def engine(self):
        return self.server.config.app.state.engine

    def stop(self, timeout: float = 30.0) -> None:
        """What SIGTERM does: stop accepting, finish the requests in flight, run the app's shutdown."""
        self.server.should_exit = True
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the server did not stop"


@contextmanager
def serve(embedder: MgteEmbedder, reranker: MgteReranker | None = None, **config) -> Iterator[Running]:
    """Serve `create_app(embedder, reranker, ServerConfig(**config))` on 127.0.0.1 at a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(embedder, reranker, ServerConfig(model_id="tiny-mgte", reranker_id="tiny-reranker", **config))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    running = Running(f"http://127.0.0.1:{port}", server, thread)
    try:
        yield running
    finally:
        if thread.is_alive():
            running.stop()
        sock.close()


@pytest.fixture(scope="session")
def embedder_dir(tmp_path_factory, xlmr_tokenizer):
    return save_embedder(tmp_path_factory.mktemp("served-embedder"), xlmr_tokenizer, **SPREAD)


@pytest.fixture(scope="session")
def reranker_dir(tmp_path_factory, xlmr_tokenizer):
    return save_reranker(tmp_path_factory.mktemp("served-reranker"), xlmr_tokenizer, **SPREAD)


@pytest.fixture(scope="session")
def embedder(embedder_dir, xlmr_tokenizer):
    return MgteEmbedder.from_pretrained(embedder_dir, xlmr_tokenizer, device="cpu")  # loading XLM-R again takes s


@pytest.fixture(scope="session")
def reranker(reranker_dir, xlmr_tokenizer):
    return MgteReranker.from_pretrained(reranker_dir, xlmr_tokenizer, device="cpu")


@pytest.fixture(scope="module")
def server(embedder, reranker):
    """The default server: both models, TEI's default limits."""
    with serve(embedder, reranker) as running:
        yield running
