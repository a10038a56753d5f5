"""What the routes share: the limits, admission (429), tokenization with its length policy (413), and the
dynamic batchers that run `MgteEmbedder.encode_tokenized` and `MgteReranker.score_tokenized`.

One process holds the models; a single tokenization thread (a fast tokenizer is not safe to call from several
threads at once, since every call rewrites its truncation settings) and one worker thread per model keep the event
loop free. A compute lock makes the two models take turns, so that each forward has all the cores.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..inference import MgteEmbedder, MgteReranker
from ..inference.common import Tokenized, kept_tokenizer_state, tokenize
from ..modeling import dense_embedding
from .batcher import DynamicBatcher, Item
from .config import ServerConfig
from .metrics import Metrics
from .schemas import ApiError, bad_request


@dataclass
class Timings:
    """Seconds a request spent tokenizing, queued (mean over its inputs) and in forwards (mean over its inputs)."""

    tokenization: float = 0.0
    queue: float = 0.0
    inference: float = 0.0


@dataclass
class Embedded:
    """What `Engine.embed` gives for N inputs, in input order."""

    dense: list[torch.Tensor] | None  # N × (H,) L2-normalised full-size vectors
    sparse: list[dict[int, float]] | None  # N × {token_id: weight}
    lengths: list[int]  # tokens of each input, after truncation
    timings: Timings


@dataclass
class Scored:
    """What `Engine.rerank` gives for N documents, in input order."""

    logits: torch.Tensor  # (N,) float32 raw relevance scores
    lengths: list[int]
    timings: Timings


@dataclass(frozen=True)
class _EmbedJob:
    ids: list[list[int]]
    dense: bool
    sparse: bool


@dataclass(frozen=True)
class _RerankJob:
    ids: list[list[int]]
    token_types: list[list[int]] | None


class Engine:
    """The models behind the routes, their batchers and the server's limits."""

    def __init__(self, embedder: MgteEmbedder, reranker: MgteReranker | None = None,
                 config: ServerConfig | None = None):
        self.embedder = embedder
        self.reranker = reranker
        self.config = config or ServerConfig()
        c = self.config
        self.max_input_length = embedder.max_length if c.max_input_length is None else c.max_input_length
        if reranker is not None and c.max_input_length is None:
            self.max_input_length = min(self.max_input_length, reranker.max_length)
        for name, value in (("max_batch_tokens", c.max_batch_tokens), ("max_concurrent_requests",
                            c.max_concurrent_requests), ("max_client_batch_size", c.max_client_batch_size),
                            ("max_input_length", self.max_input_length), ("payload_limit", c.payload_limit)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.max_input_length > c.max_batch_tokens:
            raise ValueError(f"max_input_length ({self.max_input_length}) must not exceed max_batch_tokens "
                             f"({c.max_batch_tokens}): a batch must hold the longest input. Raise max_batch_tokens "
                             "or lower max_input_length.")
        self.metrics = Metrics()
        self.full_dimension = embedder.model.check_dimension(None)
        lock = threading.Lock()
        options = dict(max_batch_tokens=c.max_batch_tokens, max_wait=c.max_wait_ms / 1000,
                       max_batch_requests=c.max_batch_requests, compute_lock=lock, metrics=self.metrics)
        self.embed_batcher = DynamicBatcher(self._run_embed, name="embed", **options)
        self.rerank_batcher = None if reranker is None else DynamicBatcher(self._run_rerank, name="rerank", **options)
        self._tokenization = ThreadPoolExecutor(1, thread_name_prefix="mgte-tokenize")
        self._in_flight = 0

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for batcher in self._batchers():
            batcher.start()

    def close(self) -> None:
        """Finish what is queued, then stop the worker threads."""
        for batcher in self._batchers():
            batcher.close()
        self._tokenization.shutdown(wait=True)

    @property
    def healthy(self) -> bool:
        return all(batcher.alive for batcher in self._batchers())

    def _batchers(self) -> list[DynamicBatcher]:
        return [b for b in (self.embed_batcher, self.rerank_batcher) if b is not None]

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of `max_concurrent_requests` places for a request (on the event loop); 429 when none is free."""
        limit = self.config.max_concurrent_requests
        if self._in_flight >= limit:
            raise ApiError(f"Model is overloaded: {limit} requests are in flight (max_concurrent_requests); "
                           "retry later.", "Overloaded")
        self._in_flight += 1
        self.metrics.in_flight.set(self._in_flight)
        try:
            yield
        finally:
            self._in_flight -= 1
            self.metrics.in_flight.set(self._in_flight)

    # ------------------------------------------------------------------------------------------------ checks
    def check_batch(self, inputs: list, name: str = "inputs") -> None:
        if not inputs:
            raise ApiError(f"`{name}` cannot be empty.", "Empty")
        limit = self.config.max_client_batch_size
        if len(inputs) > limit:
            raise ApiError(f"batch size {len(inputs)} > maximum allowed batch size {limit} (max_client_batch_size); "
                           "split the request.", "Validation")

    def check_dimension(self, dimension: int | None) -> int:
        """The dense size a request asks for (`None`: the embedder's default); 422 for a size the model refuses."""
        if dimension is None:
            return self.embedder.dimension
        if not self.embedder.model.config.dimension_allowed(dimension):
            raise bad_request(f"`dimensions` {dimension} is not allowed for this model: it must be "
                              f"{self.embedder.model.config.describe_dimensions()}.")
        return dimension

    def truncate(self, requested: bool | None) -> bool:
        return self.config.auto_truncate if requested is None else requested

    @staticmethod
    def check_options(prompt_name: str | None = None, truncation_direction: str = "right") -> None:
        if prompt_name is not None:
            raise bad_request(f"`prompt_name` must be null: this model has no prompts (mGTE encodes queries and "
                              f"documents alike); got {prompt_name!r}.")
        if truncation_direction.lower() != "right":
            raise bad_request('`truncation_direction` must be "right": mGTE\'s tokenizer keeps the start of a text '
                              "(and its final </s>).")

    # ------------------------------------------------------------------------------------------------ requests
    async def embed(self, inputs: list[str | list[int]], *, truncate: bool, dense: bool = True,
                    sparse: bool = False) -> Embedded:
        """Tokenize (413 for an input over `max_input_length` unless `truncate`) and encode through the batcher."""
        start = time.perf_counter()
        ids = await self._in_tokenizer_thread(self._embedding_ids, inputs, truncate)
        timings = Timings(tokenization=time.perf_counter() - start)
        results = await self._run(self.embed_batcher, ids, _EmbedJob(ids, dense, sparse), timings)
        return Embedded([r[0] for r in results] if dense else None, [r[1] for r in results] if sparse else None,
                        [len(x) for x in ids], timings)

    async def rerank(self, query: str, texts: list[str], *, truncate: bool) -> Scored:
        """Tokenize the (query, text) pairs and score them through the batcher; 424 when no reranker is served."""
        if self.reranker is None or self.rerank_batcher is None:
            raise ApiError("model is not a re-ranker model: start the server with --reranker DIR to rank texts.",
                           "Backend")
        start = time.perf_counter()
        tokenized = await self._in_tokenizer_thread(self._pair_ids, query, texts, truncate)
        timings = Timings(tokenization=time.perf_counter() - start)
        results = await self._run(self.rerank_batcher, tokenized.input_ids,
                                  _RerankJob(tokenized.input_ids, tokenized.token_type_ids), timings)
        return Scored(torch.stack(results), [len(x) for x in tokenized.input_ids], timings)

    async def tokens(self, texts: list[str], add_special_tokens: bool) -> list[list[dict]]:
        """TEI's `/tokenize` answer: per text, `{id, text, special, start, stop}` per token (offsets in characters)."""
        return await self._in_tokenizer_thread(self._tokens, texts, add_special_tokens)

    async def texts(self, ids: list[list[int]], skip_special_tokens: bool) -> list[str]:
        """TEI's `/decode` answer: the text of each token-id list (422 for an id outside the vocabulary)."""
        vocab = len(self.embedder.tokenizer)
        for i, row in enumerate(ids):
            bad = next((t for t in row if not 0 <= t < vocab), None)
            if bad is not None:
                raise bad_request(f"ids[{i}] holds the token id {bad}, outside this tokenizer's vocabulary "
                                  f"(0 to {vocab - 1}).")
        return await self._in_tokenizer_thread(self.embedder.tokenizer.batch_decode, ids, skip_special_tokens)

    def dense_vectors(self, embedded: Embedded, dimension: int) -> torch.Tensor:
        """`(N, dimension)` vectors: the full-size ones truncated and renormalised (Matryoshka, as `encode` does)."""
        full = torch.stack(embedded.dense)  # (N, H)
        return full if dimension == self.full_dimension else dense_embedding(full, dimension)

    async def _run(self, batcher: DynamicBatcher, ids: list[list[int]], options, timings: Timings) -> list:
        try:
            job = batcher.submit([len(x) for x in ids], options)
        except RuntimeError as err:  # shutting down
            raise ApiError(f"the server is shutting down ({err})", "Unhealthy") from err
        for length in job.lengths:
            self.metrics.input_length.observe(length)
        try:
            results = await job.future
        except Exception as err:
            raise ApiError(f"Inference failed: {err}", "Backend") from err
        timings.queue = job.queue_seconds / len(ids)
        timings.inference = job.inference_seconds / len(ids)
        return results

    async def _in_tokenizer_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._tokenization, fn, *args)

    # ------------------------------------------------------------------------------------------------ tokenization
    def _embedding_ids(self, inputs: list[str | list[int]], truncate: bool) -> list[list[int]]:
        """Token ids of each input: texts through `common.tokenize`, id lists checked against the vocabulary."""
        limit = self.max_input_length
        at = [i for i, x in enumerate(inputs) if isinstance(x, str)]
        ids: list[list[int]] = [[] for _ in inputs]
        if at:
            tokenized = tokenize(self.embedder.tokenizer, [inputs[i] for i in at],
                                 max_length=limit if truncate else sys.maxsize, truncation="warn")
            for i, row in zip(at, tokenized.input_ids):
                ids[i] = row
        vocab = len(self.embedder.tokenizer)
        for i, x in enumerate(inputs):
            if isinstance(x, str):
                continue
            if not x:
                raise bad_request(f"inputs[{i}] is an empty list of token ids.")
            bad = next((t for t in x if not 0 <= t < vocab), None)
            if bad is not None:
                raise bad_request(f"inputs[{i}] holds the token id {bad}, outside this tokenizer's vocabulary "
                                  f"(0 to {vocab - 1}).")
            ids[i] = x[:limit] if truncate else x
        self._check_lengths([len(x) for x in ids], "inputs")
        return ids

    def _pair_ids(self, query: str, texts: list[str], truncate: bool) -> Tokenized:
        tokenized = tokenize(self.reranker.tokenizer, [query] * len(texts), texts,
                             max_length=self.max_input_length if truncate else sys.maxsize, truncation="warn",
                             with_token_types=self.reranker.uses_token_types)
        self._check_lengths([len(x) for x in tokenized.input_ids], "texts", " (with the query)")
        return tokenized

    def _check_lengths(self, lengths: list[int], name: str, what: str = "") -> None:
        limit = self.max_input_length
        over = next((i for i, n in enumerate(lengths) if n > limit), None)
        if over is not None:
            raise ApiError(f"{name}[{over}]{what} has {lengths[over]} tokens, more than max_input_length={limit}; "
                           'send "truncate": true to cut it, or shorten it.', "Validation")

    def _tokens(self, texts: list[str], add_special_tokens: bool) -> list[list[dict]]:
        tokenizer = self.embedder.tokenizer
        with kept_tokenizer_state(tokenizer):
            enc = tokenizer(texts, add_special_tokens=add_special_tokens, truncation=False, padding=False,
                            return_offsets_mapping=True, return_special_tokens_mask=True,
                            return_attention_mask=False, verbose=False)
        out = []
        for text, ids, offsets, special in zip(texts, enc["input_ids"], enc["offset_mapping"],
                                               enc["special_tokens_mask"]):
            pieces = tokenizer.convert_ids_to_tokens(ids)
            out.append([{"id": t, "text": piece, "special": True, "start": None, "stop": None} if s else
                        {"id": t, "text": text[a:b], "special": False, "start": a, "stop": b}
                        for t, piece, (a, b), s in zip(ids, pieces, offsets, special)])
        return out

    # ------------------------------------------------------------------------------------------------ worker side
    def _run_embed(self, items: list[Item]) -> list[tuple[torch.Tensor | None, dict[int, float] | None]]:
        """One forward for a batch: dense and/or sparse as any request in it asks, at the full size."""
        dense = any(item.job.options.dense for item in items)
        sparse = any(item.job.options.sparse for item in items)
        tokenized = Tokenized([item.job.options.ids[item.index] for item in items])
        result = self.embedder.encode_tokenized(tokenized, dense=dense, sparse=sparse, dimension=self.full_dimension,
                                                batch_tokens=self.config.max_batch_tokens, show_progress_bar=False,
                                                convert_to="torch")
        return [(result.dense[i] if dense else None, result.sparse[i] if sparse else None) for i in range(len(items))]

    def _run_rerank(self, items: list[Item]) -> torch.Tensor:
        jobs = [item.job.options for item in items]
        types = None if jobs[0].token_types is None else [job.token_types[item.index]
                                                          for job, item in zip(jobs, items)]
        tokenized = Tokenized([job.ids[item.index] for job, item in zip(jobs, items)], types)
        return self.reranker.score_tokenized(tokenized, batch_tokens=self.config.max_batch_tokens,
                                             show_progress_bar=False, convert_to="torch")  # (B,) logits


__all__ = ["Embedded", "Engine", "Scored", "Timings"]
