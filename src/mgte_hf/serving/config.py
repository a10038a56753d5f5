"""`ServerConfig`: the server's limits (importable without the server's dependencies, for the command line)."""

from __future__ import annotations

from dataclasses import dataclass

from ..inference.common import DEFAULT_BATCH_TOKENS


@dataclass(frozen=True)
class ServerConfig:
    """The server's limits, as text-embeddings-inference names them.

    Attributes:
        model_id: the name `/info` and `/v1/embeddings` report.
        reranker_id: the reranker's name, when one is served.
        max_batch_tokens: token budget of one batch (real tokens: batches are packed).
        max_wait_ms: how long the oldest queued input waits for others to join its batch.
        max_batch_requests: most inputs in one batch (`None`: only the token budget limits a batch).
        max_concurrent_requests: requests admitted at once (queued, tokenizing or running); more get 429.
        max_client_batch_size: most inputs in one request; more get 413.
        max_input_length: tokens per input (special tokens included); `None`: the models' `max_length`.
        auto_truncate: the default of a request's `truncate` (and the behaviour of `/v1/embeddings`).
        payload_limit: most bytes in a request body; more get 413.
    """

    model_id: str = "mgte"
    reranker_id: str | None = None
    max_batch_tokens: int = DEFAULT_BATCH_TOKENS
    max_wait_ms: float = 2.0
    max_batch_requests: int | None = None
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 32
    max_input_length: int | None = None
    auto_truncate: bool = False
    payload_limit: int = 2_000_000


__all__ = ["ServerConfig"]
