"""Opening a Milvus: a server by URL, or Milvus Lite (the same engine inside this process) on a local `.db` folder.

    client = connect("index.db")                                    # Milvus Lite, created if missing
    client = connect("http://milvus.internal:19530", token="root:Milvus", timeout=5)

Every failure to reach the engine is a `ConnectionError` that says what to do: a server that does not answer within
`timeout` seconds, a Lite folder held by another process (Milvus Lite lets one process open a folder), a Lite path
whose parent folder is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from pymilvus import MilvusClient

SERVER_SCHEMES = ("http://", "https://", "tcp://")
LITE_SUFFIX = ".db"
DEFAULT_TIMEOUT = 5.0  # seconds to reach a server


def is_server(uri: str) -> bool:
    """A URI naming a Milvus server (`http://`, `https://`, `tcp://`); anything else is a Milvus Lite path."""
    return uri.lower().startswith(SERVER_SCHEMES)


def connect(uri: str, *, token: str = "", timeout: float = DEFAULT_TIMEOUT) -> MilvusClient:
    """A `MilvusClient` on a server (`uri` starts with http:// or https://) or on a Milvus Lite `.db` folder.

    Args:
        uri: `http://host:19530` (a standalone server or a cluster) or a path ending in `.db` (Milvus Lite).
        token: the server's credentials (`"user:password"` or an API key); unused by Milvus Lite.
        timeout: seconds to wait for a server before giving up.

    Raises:
        ConnectionError: the server does not answer, or the Lite folder is open in another process.
        ValueError: a Lite path that does not end in `.db`, or is a file rather than a Milvus Lite folder.
    """
    from pymilvus import MilvusClient, MilvusException

    if not isinstance(uri, str) or not uri:
        raise ValueError(f"uri must be a server URL (http://host:19530) or a Milvus Lite path ending in .db; got "
                         f"{uri!r}.")
    if is_server(uri):
        try:
            return MilvusClient(uri=uri, token=token, timeout=timeout)
        except MilvusException as err:
            raise ConnectionError(f"No Milvus server answers at {uri} (waited up to {timeout:g} s): {err.message}. "
                                  "Start the server, or check the host and port (Milvus listens on 19530 by "
                                  "default).") from err
    path = Path(uri).expanduser()
    if path.suffix != LITE_SUFFIX:
        raise ValueError(f"{uri!r} is neither a server URL (http://host:19530) nor a Milvus Lite path: a Lite index "
                         f"is a folder whose name ends in {LITE_SUFFIX}, e.g. {path.with_suffix(LITE_SUFFIX)}.")
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a Milvus Lite data folder (this Milvus Lite keeps a folder); "
                         "choose another path.")
    if not path.parent.is_dir():
        raise ConnectionError(f"Cannot create the Milvus Lite index {path}: the folder {path.parent} does not exist.")
    with _lite_failures() as failures:
        try:
            return MilvusClient(uri=str(path))
        except MilvusException as err:
            reasons = [*failures, err]
            if any(type(reason).__name__ == "DataDirLockedError" for reason in reasons):
                raise ConnectionError(
                    f"{path} is open in another process (Milvus Lite lets one process open an index folder at a "
                    "time). Close that process, or serve the folder to several processes with `milvus-lite server "
                    f"--data-dir {path} --port 19530` and connect to http://127.0.0.1:19530.") from err
            raise ConnectionError(f"Cannot open the Milvus Lite index {path}: {reasons[0]}") from err


class _Failures(logging.Handler):
    """Collects the exceptions Milvus Lite logs when it cannot start (it logs them and passes no cause on)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


@contextmanager
def _lite_failures() -> Iterator[list[BaseException]]:
    """While opening a Lite folder: Milvus Lite's start-up errors, taken from its log (no traceback printed)."""
    log = logging.getLogger("milvus_lite.server_manager")
    handler, propagate = _Failures(), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield handler.errors
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


class _LiteGaps(logging.Filter):
    """Drops the traceback Milvus Lite's gRPC server logs for a call it does not implement (pymilvus asks it for a
    timestamp while waiting for an index; the index is built all the same)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], NotImplementedError))


@contextmanager
def quiet_lite_gaps() -> Iterator[None]:
    """While creating indexes: no traceback in the log for the calls Milvus Lite does not implement."""
    log, gaps = logging.getLogger("grpc._server"), _LiteGaps()
    log.addFilter(gaps)
    try:
        yield
    finally:
        log.removeFilter(gaps)


__all__ = ["DEFAULT_TIMEOUT", "connect", "is_server", "quiet_lite_gaps"]
