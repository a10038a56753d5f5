"""The Prometheus registry of one server."""

from __future__ import annotations

from mgte_hf.serving.metrics import Metrics


def test_batches_and_requests_are_exposed_per_registry():
    first, second = Metrics(), Metrics()
    first.record_batch(size=3, tokens=40, seconds=0.01)
    first.request_count.labels("embed").inc()
    text = first.render().decode()
    assert "te_batch_next_size_sum 3.0" in text and "te_batch_next_tokens_sum 40.0" in text
    assert 'te_request_count_total{route="embed"} 1.0' in text
    assert "te_batch_next_size_sum 0.0" in second.render().decode(), "each server counts for itself"
