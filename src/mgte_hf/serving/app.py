"""The ASGI app (Starlette): text-embeddings-inference's routes over an `MgteEmbedder` and an optional
`MgteReranker`.

    app = create_app(MgteEmbedder.from_pretrained(DIR), MgteReranker.from_pretrained(RERANKER_DIR))
    uvicorn.run(app, host="127.0.0.1", port=8080)

Routes: `POST /embed`, `/embed_sparse`, `/rerank`, `/similarity`, `/tokenize`, `/decode`, `/v1/embeddings` (and
`/embeddings`), `POST /` (embed, or similarity for a `{"inputs": {"source_sentence", "sentences"}}` body, as
`InferenceClient.sentence_similarity` sends), `GET /info`, `/health` (and `GET /`), `/metrics`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..inference import MgteEmbedder, MgteReranker
from .config import ServerConfig
from .engine import Engine, Timings
from .metrics import CONTENT_TYPE
from .schemas import (
    ApiError,
    DecodeRequest,
    EmbedRequest,
    EmbedSparseRequest,
    Inputs,
    OpenAIEmbeddingsRequest,
    RerankRequest,
    SimilarityRequest,
    TokenizeRequest,
    bad_request,
    describe_validation_errors,
)


def package_version() -> str:
    """mgte-hf's installed version (what `/info` reports)."""
    from importlib.metadata import version

    return version("mgte-hf")


Body = TypeVar("Body", bound=BaseModel)


@dataclass
class Answer:
    """A route's successful result: the JSON payload and what its timing headers and metrics report."""

    payload: Any
    method: str = "single"  # "single" (one input) or "batch", as TEI counts requests
    tokens: int = 0
    characters: int = 0
    timings: Timings = field(default_factory=Timings)


Handler = Callable[[Engine, Request], Awaitable[Answer]]
Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(embedder: MgteEmbedder, reranker: MgteReranker | None = None,
               config: ServerConfig | None = None) -> Starlette:
    """The server's app; its lifespan starts the worker threads and, at shutdown, finishes what is queued."""
    engine = Engine(embedder, reranker, config)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        engine.start()
        try:
            yield
        finally:
            engine.close()

    def post(path: str, handler: Handler, route: str, *, openai: bool = False) -> Route:
        return Route(path, _endpoint(engine, handler, route, openai=openai), methods=["POST"])

    routes = [
        post("/embed", _embed, "embed"),
        post("/embed_sparse", _embed_sparse, "embed_sparse"),
        post("/rerank", _rerank, "rerank"),
        post("/similarity", _similarity, "similarity"),
        post("/tokenize", _tokenize, "tokenize"),
        post("/decode", _decode, "decode"),
        post("/v1/embeddings", _openai_embeddings, "openai", openai=True),
        post("/embeddings", _openai_embeddings, "openai", openai=True),
        post("/", _main_task, "main"),
        Route("/", _health(engine), methods=["GET"]),
        Route("/health", _health(engine), methods=["GET"]),
        Route("/info", _info(engine), methods=["GET"]),
        Route("/metrics", _metrics(engine), methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.engine = engine
    return app


# ============================================================================================== plumbing
def _endpoint(engine: Engine, handler: Handler, route: str, *, openai: bool) -> Endpoint:
    """A route: run `handler`, answer its payload with TEI's timing headers, count it; errors as TEI's JSON."""
    metrics = engine.metrics

    async def endpoint(request: Request) -> Response:
        start = time.perf_counter()
        metrics.request_count.labels(route).inc()
        try:
            answer = await handler(engine, request)
        except ApiError as err:
            metrics.request_failure.labels(route, err.error_type.lower()).inc()
            headers = {"Retry-After": "1"} if err.status == 429 else None
            return JSONResponse(err.openai_body() if openai else err.body(), err.status, headers=headers)
        total = time.perf_counter() - start
        metrics.request_success.labels(route, answer.method).inc()
        metrics.request_duration.observe(total)
        t = answer.timings
        metrics.tokenization_duration.observe(t.tokenization)
        metrics.queue_duration.observe(t.queue)
        metrics.inference_duration.observe(t.inference)
        headers = {"x-compute-type": engine.embedder.device.type, "x-compute-time": _ms(total),
                   "x-compute-characters": str(answer.characters), "x-compute-tokens": str(answer.tokens),
                   "x-total-time": _ms(total), "x-tokenization-time": _ms(t.tokenization),
                   "x-queue-time": _ms(t.queue), "x-inference-time": _ms(t.inference)}
        return JSONResponse(answer.payload, headers=headers)

    return endpoint


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


async def _parse(engine: Engine, request: Request, model: type[Body]) -> Body:
    """The JSON body validated as `model`: 413 over the payload limit, 422 for what is not valid."""
    raw = await _read(engine, request)
    try:
        return model.model_validate_json(raw)
    except ValidationError as err:
        raise bad_request(describe_validation_errors(err.errors(), _loads(raw))) from None


async def _read(engine: Engine, request: Request) -> bytes:
    limit = engine.config.payload_limit
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(f"the request body has {declared} bytes, more than the payload limit of {limit}; split the "
                       "request.", "Validation")
    raw = await request.body()
    if len(raw) > limit:
        raise ApiError(f"the request body has {len(raw)} bytes, more than the payload limit of {limit}; split the "
                       "request.", "Validation")
    return raw


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _as_batch(inputs: Inputs) -> tuple[list[str | list[int]], str]:
    """TEI's `Input`: one text or one token-id list is a single input; a list of them is a batch."""
    if isinstance(inputs, str) or (inputs and all(isinstance(x, int) for x in inputs)):
        return [inputs], "single"
    return list(inputs), "batch"


def _characters(inputs: list[str | list[int]]) -> int:
    return sum(len(x) for x in inputs)


# ============================================================================================== embeddings
async def _embed(engine: Engine, request: Request) -> Answer:
    return await _embed_body(engine, await _parse(engine, request, EmbedRequest))


async def _embed_body(engine: Engine, req: EmbedRequest) -> Answer:
    inputs, method = _as_batch(req.inputs)
    engine.check_options(req.prompt_name, req.truncation_direction)
    if not req.normalize:
        raise bad_request("`normalize` must be true: mGTE's dense vector is defined L2-normalised (the model's own "
                          "output); omit it or send true.")
    dimension = engine.check_dimension(req.dimensions)
    engine.check_batch(inputs)
    with engine.admit():
        embedded = await engine.embed(inputs, truncate=engine.truncate(req.truncate), dense=True)
    vectors = engine.dense_vectors(embedded, dimension)
    return Answer(vectors.tolist(), method, sum(embedded.lengths), _characters(inputs), embedded.timings)


async def _embed_sparse(engine: Engine, request: Request) -> Answer:
    req = await _parse(engine, request, EmbedSparseRequest)
    inputs, method = _as_batch(req.inputs)
    engine.check_options(req.prompt_name, req.truncation_direction)
    engine.check_batch(inputs)
    with engine.admit():
        embedded = await engine.embed(inputs, truncate=engine.truncate(req.truncate), dense=False, sparse=True)
    payload = [[{"index": token, "value": weight} for token, weight in sorted(row.items())]
               for row in embedded.sparse]
    return Answer(payload, method, sum(embedded.lengths), _characters(inputs), embedded.timings)


async def _similarity(engine: Engine, request: Request) -> Answer:
    return await _similarity_body(engine, await _parse(engine, request, SimilarityRequest))


async def _similarity_body(engine: Engine, req: SimilarityRequest) -> Answer:
    """Cosine of the source sentence with each sentence (TEI's `/similarity`; `InferenceClient.sentence_similarity`
    sends this body to `/`)."""
    params = req.parameters
    if params is not None:
        engine.check_options(params.prompt_name, params.truncation_direction)
    if not req.inputs.sentences:
        raise ApiError("`inputs.sentences` cannot be empty.", "Empty")
    texts = [req.inputs.source_sentence, *req.inputs.sentences]
    engine.check_batch(texts)
    with engine.admit():
        embedded = await engine.embed(texts, truncate=engine.truncate(params and params.truncate), dense=True)
    vectors = engine.dense_vectors(embedded, engine.full_dimension)  # (1 + N, H), unit length
    scores = vectors[1:] @ vectors[0]  # (N,)
    return Answer(scores.tolist(), "batch", sum(embedded.lengths), _characters(texts), embedded.timings)


async def _main_task(engine: Engine, request: Request) -> Answer:
    """`POST /`: TEI's route for the model's main task: embed, or similarity for a similarity body."""
    raw = await _read(engine, request)
    body = _loads(raw)
    if isinstance(body, dict) and isinstance(body.get("inputs"), dict):
        model: type[BaseModel] = SimilarityRequest
        run = _similarity_body
    else:
        model, run = EmbedRequest, _embed_body
    try:
        req = model.model_validate_json(raw)
    except ValidationError as err:
        raise bad_request(describe_validation_errors(err.errors(), body)) from None
    return await run(engine, req)


async def _openai_embeddings(engine: Engine, request: Request) -> Answer:
    """OpenAI's embeddings API: `{object: "list", data: [{object, embedding, index}], model, usage}`."""
    req = await _parse(engine, request, OpenAIEmbeddingsRequest)
    inputs, method = _as_batch(req.input)
    dimension = engine.check_dimension(req.dimensions)
    engine.check_batch(inputs, "input")
    with engine.admit():
        embedded = await engine.embed(inputs, truncate=engine.config.auto_truncate, dense=True)
    vectors = engine.dense_vectors(embedded, dimension)
    data = [{"object": "embedding", "embedding": _encode_vector(v, req.encoding_format), "index": i}
            for i, v in enumerate(vectors)]
    tokens = sum(embedded.lengths)
    payload = {"object": "list", "data": data, "model": engine.config.model_id,
               "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return Answer(payload, method, tokens, _characters(inputs), embedded.timings)


def _encode_vector(vector: torch.Tensor, encoding_format: str) -> list[float] | str:
    """A float list, or base64 of the little-endian float32 bytes (what OpenAI's clients decode)."""
    if encoding_format == "float":
        return vector.tolist()
    return base64.b64encode(vector.numpy().astype("<f4").tobytes()).decode("ascii")


# ============================================================================================== rerank, tokenize
async def _rerank(engine: Engine, request: Request) -> Answer:
    req = await _parse(engine, request, RerankRequest)
    engine.check_options(truncation_direction=req.truncation_direction)
    engine.check_batch(req.texts, "texts")
    with engine.admit():
        scored = await engine.rerank(req.query, req.texts, truncate=engine.truncate(req.truncate))
    scores = scored.logits if req.raw_scores else torch.sigmoid(scored.logits)  # (N,)
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    payload = [{"index": i, "score": float(scores[i]), **({"text": req.texts[i]} if req.return_text else {})}
               for i in order]
    characters = len(req.query) * len(req.texts) + _characters(req.texts)
    return Answer(payload, "batch", sum(scored.lengths), characters, scored.timings)


async def _tokenize(engine: Engine, request: Request) -> Answer:
    req = await _parse(engine, request, TokenizeRequest)
    engine.check_options(req.prompt_name)
    texts, method = ([req.inputs], "single") if isinstance(req.inputs, str) else (req.inputs, "batch")
    engine.check_batch(texts)
    tokens = await engine.tokens(texts, req.add_special_tokens)
    return Answer(tokens, method, sum(len(t) for t in tokens), _characters(texts))


async def _decode(engine: Engine, request: Request) -> Answer:
    req = await _parse(engine, request, DecodeRequest)
    ids, method = _as_batch(req.ids)
    engine.check_batch(ids, "ids")
    texts = await engine.texts(ids, req.skip_special_tokens)
    return Answer(texts, method, sum(len(x) for x in ids))


# ============================================================================================== info, health
def _info(engine: Engine) -> Endpoint:
    model = engine.embedder.model
    c = engine.config
    info = {
        "model_id": c.model_id, "model_sha": None, "model_dtype": str(model.dtype).removeprefix("torch."),
        "model_type": {"embedding": {"pooling": "cls"}},
        "max_concurrent_requests": c.max_concurrent_requests, "max_input_length": engine.max_input_length,
        "max_batch_tokens": c.max_batch_tokens, "max_batch_requests": c.max_batch_requests,
        "max_client_batch_size": c.max_client_batch_size, "auto_truncate": c.auto_truncate,
        "tokenization_workers": 1, "version": package_version(), "sha": None, "docker_label": None,
        # Beyond TEI's fields: what else this server offers.
        "dimensions": engine.full_dimension, "matryoshka_dimensions": model.config.matryoshka_dimensions,
        "sparse": True, "reranker_id": c.reranker_id if engine.reranker is not None else None,
        "max_wait_ms": c.max_wait_ms,
    }

    async def endpoint(request: Request) -> Response:
        return JSONResponse(info)

    return endpoint


def _health(engine: Engine) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        if engine.healthy:
            return Response(status_code=200)
        return JSONResponse(ApiError("unhealthy", "Unhealthy").body(), 503)

    return endpoint


def _metrics(engine: Engine) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return Response(engine.metrics.render(), media_type=CONTENT_TYPE)

    return endpoint


__all__ = ["Answer", "create_app"]
