"""`mgte-hf serve`: an HTTP server with text-embeddings-inference's API over an mGTE embedder (and reranker)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CliError
from .common import add_compile_argument, load


EXAMPLES = """examples:
  mgte-hf serve --model gte-multilingual-base --reranker gte-multilingual-reranker-base --port 8080
  curl 127.0.0.1:8080/embed -H 'Content-Type: application/json' -d '{"inputs": ["hello", "world"]}'

Routes (text-embeddings-inference's request and response shapes): POST /embed, /embed_sparse, /rerank,
/similarity, /tokenize, /v1/embeddings (OpenAI), / (embed); GET /info, /health, /metrics (Prometheus).
Requests arriving together are batched by --max-batch-tokens (real tokens: the forward is packed) or after
--max-wait-ms; SIGINT/SIGTERM stop taking connections and finish the requests in flight.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from mgte_hf.serving.config import ServerConfig

    d = ServerConfig()
    p = sub.add_parser("serve", help="serve embeddings, sparse weights and rerank scores over HTTP (TEI's API)",
                       description="Serve an mGTE embedding model (dense + sparse) and optionally a reranker over "
                                   "HTTP, with text-embeddings-inference's routes and dynamic batching.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR", help="folder of the embedding model with its tokenizer")
    p.add_argument("--reranker", metavar="DIR", help="folder of a reranker to serve on /rerank")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--model-id", help="name reported by /info and /v1/embeddings (default: the folder's name)")
    p.add_argument("--max-batch-tokens", type=int, default=d.max_batch_tokens,
                   help=f"tokens in one batch (default {d.max_batch_tokens})")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help=f"how long a queued input waits for others to join its batch (default {d.max_wait_ms})")
    p.add_argument("--max-batch-requests", type=int,
                   help="most inputs in one batch (default: no limit; 1 turns dynamic batching off)")
    p.add_argument("--max-concurrent-requests", type=int, default=d.max_concurrent_requests,
                   help=f"requests in flight at once; more get 429 (default {d.max_concurrent_requests})")
    p.add_argument("--max-client-batch-size", type=int, default=d.max_client_batch_size,
                   help=f"inputs in one request; more get 413 (default {d.max_client_batch_size})")
    p.add_argument("--max-input-length", type=int,
                   help="tokens per input, special tokens included (default: the model's, 8192)")
    p.add_argument("--auto-truncate", action="store_true",
                   help="truncate over-long inputs unless a request says \"truncate\": false (default: refuse them)")
    p.add_argument("--payload-limit", type=int, default=d.payload_limit,
                   help=f"bytes in one request body; more get 413 (default {d.payload_limit})")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda when available)")
    p.add_argument("--dtype", help="compute dtype, passed to the models' from_pretrained, e.g. float32 (default) "
                                   "or bfloat16")
    add_compile_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from mgte_hf.inference import DEFAULT_MAX_LENGTH, MgteEmbedder, MgteReranker
    from mgte_hf.serving import ServerConfig, create_app

    # The shared loader's options: the server checks lengths itself and batches by --max-batch-tokens.
    args.max_length = args.max_input_length or DEFAULT_MAX_LENGTH
    args.batch_tokens = args.max_batch_tokens
    args.truncation = "error"
    embedder = load(MgteEmbedder, args.model, args)
    reranker = load(MgteReranker, args.reranker, args) if args.reranker else None
    config = ServerConfig(
        model_id=args.model_id or Path(args.model).resolve().name,
        reranker_id=Path(args.reranker).resolve().name if args.reranker else None,
        max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms,
        max_batch_requests=args.max_batch_requests, max_concurrent_requests=args.max_concurrent_requests,
        max_client_batch_size=args.max_client_batch_size, max_input_length=args.max_input_length,
        auto_truncate=args.auto_truncate, payload_limit=args.payload_limit)
    try:
        app = create_app(embedder, reranker, config)
    except ValueError as err:
        raise CliError(str(err)) from err
    print(f"mgte-hf serve: {config.model_id}" + (f" + {config.reranker_id}" if reranker else "") +
          f" on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning",
                access_log=args.verbose)
    return 0
