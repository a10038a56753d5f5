"""Prometheus metrics of the server, named as text-embeddings-inference names them (`te_...`).

Each server has its own registry, so that several apps in one process (tests) count separately. Counters are
exposed with Prometheus' `_total` suffix.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


DURATION_BUCKETS = tuple(1e-5 * 1.5**k for k in range(1, 36))  # 15 µs … 14 min, geometric (TEI's buckets)
SIZE_BUCKETS = tuple(2.0**k for k in range(13))  # 1 … 4096 sequences
TOKEN_BUCKETS = tuple(2.0**k for k in range(21))  # 1 … 1 M tokens
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Request counts and durations (per request), batch sizes and tokens (per batch), and the queue size."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_count = Counter("te_request_count", "Requests received, by route.", ["route"], registry=r)
        self.request_success = Counter("te_request_success", "Requests answered with 200, by route and method "
                                       "(single input or batch).", ["route", "method"], registry=r)
        self.request_failure = Counter("te_request_failure", "Requests refused or failed, by route and error type.",
                                       ["route", "err"], registry=r)
        self.request_duration = Histogram("te_request_duration", "Seconds from a parsed body to the answer.",
                                          buckets=DURATION_BUCKETS, registry=r)
        self.tokenization_duration = Histogram("te_request_tokenization_duration", "Seconds of tokenization per "
                                               "request.", buckets=DURATION_BUCKETS, registry=r)
        self.queue_duration = Histogram("te_request_queue_duration", "Seconds an input waited in the queue (mean "
                                        "over a request's inputs).", buckets=DURATION_BUCKETS, registry=r)
        self.inference_duration = Histogram("te_request_inference_duration", "Seconds of the forward an input ran "
                                            "in (mean over a request's inputs).", buckets=DURATION_BUCKETS, registry=r)
        self.input_length = Histogram("te_request_input_length", "Tokens of each input (after truncation).",
                                      buckets=TOKEN_BUCKETS, registry=r)
        self.batch_size = Histogram("te_batch_next_size", "Sequences in each batch run.", buckets=SIZE_BUCKETS,
                                    registry=r)
        self.batch_tokens = Histogram("te_batch_next_tokens", "Tokens in each batch run.", buckets=TOKEN_BUCKETS,
                                      registry=r)
        self.batch_duration = Histogram("te_batch_inference_duration", "Seconds of each batch's forward.",
                                        buckets=DURATION_BUCKETS, registry=r)
        self.queue_size = Gauge("te_queue_size", "Sequences waiting in a batcher's queue.", ["batcher"], registry=r)
        self.in_flight = Gauge("te_requests_in_flight", "Requests admitted and not yet answered.", registry=r)

    def record_batch(self, size: int, tokens: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_tokens.observe(tokens)
        self.batch_duration.observe(seconds)

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "DURATION_BUCKETS", "SIZE_BUCKETS", "TOKEN_BUCKETS", "Metrics"]
