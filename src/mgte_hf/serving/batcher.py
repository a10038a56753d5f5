"""Dynamic batching: requests from the event loop queue their token sequences; one worker thread cuts batches.

A batch is cut when the queued sequences fill the token budget (real tokens: the forward is packed, without
padding), when `max_batch_requests` sequences are queued, or when the oldest queued sequence has waited
`max_wait` seconds, whichever comes first. A worker that was busy finds its next batch already waiting, so under load
batches form without any wait. The forward runs in the worker thread, so the event loop stays free to accept,
tokenize and answer requests. Sequences of one request may land in different batches; the request's future resolves
once all of them are done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .metrics import Metrics


logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One request's sequences in a batcher; `future` resolves to one result per sequence, in input order.

    Attributes:
        options: what the batch function needs to know about this request (e.g. dense and/or sparse).
        queue_seconds, inference_seconds: summed over the sequences (divide by their count for the mean).
    """

    lengths: list[int]
    options: Any
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future = field(init=False)
    results: list[Any] = field(init=False)
    remaining: int = field(init=False)
    queue_seconds: float = 0.0
    inference_seconds: float = 0.0
    failed: bool = False

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()
        self.results = [None] * len(self.lengths)
        self.remaining = len(self.lengths)

    @property
    def abandoned(self) -> bool:
        """Failed, or cancelled by its client (a closed connection): its queued sequences are skipped."""
        return self.failed or self.future.done()

    def _finish(self) -> None:  # on the event loop
        if not self.future.done():
            self.future.set_result(self.results)

    def _fail(self, error: BaseException) -> None:  # on the event loop
        if not self.future.done():
            self.future.set_exception(error)


@dataclass(eq=False)
class Item:
    """One sequence of a job, as queued."""

    job: Job
    index: int
    length: int
    enqueued: float


BatchFunction = Callable[[list[Item]], Sequence[Any]]


class DynamicBatcher:
    """A queue of sequences and the worker thread that runs them in batches through `run_batch`.

    Args:
        run_batch: computes one result per item of a batch (called in the worker thread, under `compute_lock`).
        max_batch_tokens: token budget of one batch (a longer single sequence is refused by `submit`).
        max_wait: seconds the oldest queued sequence may wait for more to join its batch.
        max_batch_requests: most sequences in one batch (`None`: no limit beyond the budget).
        compute_lock: held around each forward; batchers sharing one run one forward at a time.
        metrics: where batch sizes, tokens and the queue size are recorded.
        name: the worker thread's name.
    """

    def __init__(
        self,
        run_batch: BatchFunction,
        *,
        max_batch_tokens: int,
        max_wait: float,
        max_batch_requests: int | None = None,
        compute_lock: threading.Lock | None = None,
        metrics: Metrics | None = None,
        name: str = "mgte-batcher",
    ):
        if max_batch_tokens < 1 or max_wait < 0 or (max_batch_requests is not None and max_batch_requests < 1):
            raise ValueError(f"need max_batch_tokens >= 1, max_wait >= 0 and max_batch_requests >= 1 or None; got "
                             f"{max_batch_tokens}, {max_wait}, {max_batch_requests}.")
        self.run_batch = run_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait
        self.max_batch_requests = max_batch_requests
        self.compute_lock = compute_lock or threading.Lock()
        self.metrics = metrics
        self._queue: deque[Item] = deque()
        self._queued_tokens = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)

    # ------------------------------------------------------------------------------------------------ event loop side
    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closed

    def submit(self, lengths: list[int], options: Any = None) -> Job:
        """Queue one request's sequences (their token counts); await `job.future` for the results.

        Must be called from the running event loop, which the results are handed back to.
        """
        if not lengths:
            raise ValueError("a job needs at least one sequence.")
        too_long = max(lengths)
        if too_long > self.max_batch_tokens:
            raise ValueError(f"a sequence of {too_long} tokens exceeds max_batch_tokens={self.max_batch_tokens}.")
        job = Job(lengths, options, asyncio.get_running_loop())
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is shutting down.")
            self._queue.extend(Item(job, i, n, now) for i, n in enumerate(lengths))
            self._queued_tokens += sum(lengths)
            self._record_queue()
            self._cond.notify()
        return job

    def close(self, timeout: float | None = None) -> None:
        """Stop taking jobs, run what is queued (without waiting for more), then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------------------------------------ worker side
    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._run(batch)

    def _next_batch(self) -> list[Item] | None:
        """The next batch (empty when every queued item was abandoned), or `None` once closed and drained."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._queue[0].enqueued + self.max_wait
            while not (self._closed or self._full()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, tokens = [], 0
            while self._queue:
                item = self._queue[0]
                if batch and (tokens + item.length > self.max_batch_tokens or
                              (self.max_batch_requests is not None and len(batch) >= self.max_batch_requests)):
                    break
                self._queue.popleft()
                self._queued_tokens -= item.length
                if not item.job.abandoned:
                    batch.append(item)
                    tokens += item.length
            self._record_queue()
            return batch

    def _full(self) -> bool:
        return self._queued_tokens >= self.max_batch_tokens or (
            self.max_batch_requests is not None and len(self._queue) >= self.max_batch_requests)

    def _run(self, batch: list[Item]) -> None:
        start = time.monotonic()
        try:
            with self.compute_lock:
                results = self.run_batch(batch)
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} sequences gave {len(results)} results.")
        except Exception as err:  # the requests fail with the error; the worker goes on
            logger.exception("inference failed on a batch of %d sequences", len(batch))
            for job in {id(item.job): item.job for item in batch}.values():
                job.failed = True
                job.loop.call_soon_threadsafe(job._fail, err)
            return
        seconds = time.monotonic() - start
        if self.metrics is not None:
            self.metrics.record_batch(len(batch), sum(item.length for item in batch), seconds)
        for item, result in zip(batch, results):
            job = item.job
            job.results[item.index] = result
            job.queue_seconds += start - item.enqueued
            job.inference_seconds += seconds
            job.remaining -= 1
            if job.remaining == 0:
                job.loop.call_soon_threadsafe(job._finish)

    def _record_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_size.labels(self._thread.name).set(len(self._queue))


__all__ = ["BatchFunction", "DynamicBatcher", "Item", "Job"]
