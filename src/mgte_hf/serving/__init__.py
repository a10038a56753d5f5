"""`mgte-hf serve`: an HTTP server speaking text-embeddings-inference's API (dense, sparse, rerank, OpenAI
embeddings) with dynamic batching on the packed forward.

`create_app` and `Engine` need the `serve` extra (starlette, uvicorn, prometheus-client); they are imported on first
use, so that `ServerConfig` (and the command line) work without it.
"""

from .config import ServerConfig


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Engine":
        from .engine import Engine

        return Engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Engine", "ServerConfig", "create_app"]
