"""The dynamic batcher with a recording batch function: how batches are cut, results, failures, cancel, close."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mgte_hf.serving.batcher import DynamicBatcher, Item


class Recorder:
    """A batch function that records each batch as (job options, index) pairs and echoes them back."""

    def __init__(self, fail_on: str | None = None, gate: threading.Event | None = None):
        self.batches: list[list[tuple[str, int]]] = []
        self.fail_on = fail_on
        self.gate = gate

    def __call__(self, items: list[Item]) -> list[tuple[str, int]]:
        if self.gate is not None:
            self.gate.wait(10)
        batch = [(item.job.options, item.index) for item in items]
        self.batches.append(batch)
        if any(name == self.fail_on for name, _ in batch):
            raise RuntimeError(f"{self.fail_on} broke the forward")
        return batch


def run(coroutine):
    return asyncio.run(coroutine)


def batcher(recorder: Recorder, **options) -> DynamicBatcher:
    options = {"max_batch_tokens": 100, "max_wait": 0.05, **options}
    b = DynamicBatcher(recorder, **options)
    b.start()
    return b


def test_jobs_arriving_together_share_a_batch_cut_by_the_token_budget():
    recorder = Recorder()
    b = batcher(recorder, max_wait=0.2)

    async def main():
        jobs = [b.submit([30, 30], "a"), b.submit([30], "b"), b.submit([50], "c")]
        return [await job.future for job in jobs]

    results = run(main())
    b.close()
    assert results == [[("a", 0), ("a", 1)], [("b", 0)], [("c", 0)]], "one result per sequence, in order"
    assert recorder.batches == [[("a", 0), ("a", 1), ("b", 0)], [("c", 0)]], "90 tokens fit, 140 do not"


def test_a_lone_job_waits_at_most_max_wait():
    b = batcher(Recorder(), max_wait=0.3)

    async def main():
        start = time.monotonic()
        job = b.submit([10], "a")
        await job.future
        return time.monotonic() - start, job

    seconds, job = run(main())
    b.close()
    assert 0.25 < seconds < 2.0
    assert job.queue_seconds == pytest.approx(0.3, abs=0.1) and job.inference_seconds >= 0


def test_a_full_budget_does_not_wait():
    b = batcher(Recorder(), max_wait=5.0)

    async def main():
        start = time.monotonic()
        await b.submit([60, 40], "a").future
        return time.monotonic() - start

    seconds = run(main())
    b.close()
    assert seconds < 2.0


def test_max_batch_requests_caps_the_batch():
    recorder = Recorder()
    b = batcher(recorder, max_batch_requests=1, max_wait=0.0)

    async def main():
        return await b.submit([5, 5, 5], "a").future

    assert run(main()) == [("a", 0), ("a", 1), ("a", 2)]
    b.close()
    assert [len(batch) for batch in recorder.batches] == [1, 1, 1]


def test_a_failing_batch_fails_its_jobs_only():
    recorder = Recorder(fail_on="bad")
    b = batcher(recorder, max_wait=0.0, max_batch_requests=1)

    async def main():
        bad, good = b.submit([5, 5], "bad"), b.submit([5], "good")
        with pytest.raises(RuntimeError, match="bad broke the forward"):
            await bad.future
        return await good.future

    assert run(main()) == [("good", 0)]
    b.close()
    assert ("bad", 1) not in [x for batch in recorder.batches for x in batch], "a failed job's rest is skipped"


def test_cancelled_jobs_are_skipped_and_close_drains_the_queue():
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    b = batcher(recorder, max_wait=0.0, max_batch_requests=1)

    async def main():
        first = b.submit([5], "first")  # the worker blocks on it until the gate opens
        await asyncio.sleep(0.1)
        gone, kept = b.submit([5], "gone"), b.submit([5], "kept")
        gone.future.cancel()
        gate.set()
        return await first.future, await kept.future

    assert run(main()) == ([("first", 0)], [("kept", 0)])
    b.close()
    assert ("gone", 0) not in [x for batch in recorder.batches for x in batch]
    assert not b.alive


def test_close_runs_what_is_queued_then_refuses():
    recorder = Recorder()
    b = batcher(recorder, max_wait=30.0)

    async def main():
        job = b.submit([5], "queued")
        await asyncio.sleep(0.05)
        closer = threading.Thread(target=b.close)
        closer.start()  # no 30 s wait: closing cuts the batch at once
        result = await job.future
        closer.join(5)
        with pytest.raises(RuntimeError, match="shutting down"):
            b.submit([5], "late")
        return result

    assert run(main()) == [("queued", 0)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_batch_tokens"):
        DynamicBatcher(Recorder(), max_batch_tokens=0, max_wait=0.0)
    b = batcher(Recorder())

    async def main():
        with pytest.raises(ValueError, match="exceeds max_batch_tokens=100"):
            b.submit([101], "long")
        with pytest.raises(ValueError, match="at least one"):
            b.submit([], "empty")

    run(main())
    b.close()
