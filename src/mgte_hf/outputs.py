"""Writing outputs safely: files replaced atomically, folders built aside and moved into place.

    write_atomic(path, text)                       # readers see the old file or the new one, never half of one
    with staged_folder("out/", overwrite=False) as tmp:
        ...                                        # write into tmp; on success it becomes out/, on error it vanishes

A file is written to `<name>.partial` beside it and renamed over it (`sync=True` also flushes it and its folder to
disk, so a crash right after the call cannot lose it). A folder is built in a hidden temporary folder beside its
destination and renamed into place when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .hashing import sha256_bytes


PARTIAL_SUFFIX = ".partial"


def write_synced(path: Path, data: bytes) -> dict[str, int | str]:
    """Write `data` to `path` and flush it to disk; returns its `{"sha256", "bytes"}` record."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"sha256": sha256_bytes(data), "bytes": len(data)}


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, content: bytes | str | Iterable[str], *, sync: bool = False) -> Path:
    """Replace `path` with `content` (bytes, a text, or lines of text written one by one) in one rename.

    Args:
        path: the file; its folder must exist.
        content: bytes, or text written as UTF-8 with `\\n` line ends.
        sync: flush the file and the folder to disk before returning.
    """
    path = Path(path)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    if isinstance(content, str):
        content = content.encode("utf-8")
    with open(partial, "wb") as f:
        if isinstance(content, bytes):
            f.write(content)
        else:
            for line in content:
                f.write(line.encode("utf-8"))
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(partial, path)
    if sync:
        fsync_dir(path.parent)
    return path


@contextmanager
def staged_folder(dst: str | os.PathLike, *, overwrite: bool = False, protect: Path | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside `dst`; on success it replaces `dst`, on error it is removed.

    Refuses a non-empty `dst` unless `overwrite`, and a `dst` that is `protect` (the source) or contains it.
    """
    dst = Path(dst).resolve()
    if protect is not None and (dst == protect.resolve() or dst in protect.resolve().parents):
        raise ValueError(f"The output folder {dst} must not be the source folder or contain it.")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())) and not overwrite:
        raise FileExistsError(f"{dst} exists and is not empty; choose another folder or pass overwrite=True.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        yield tmp
        if dst.is_dir():
            shutil.rmtree(dst)
        elif dst.exists():
            dst.unlink()
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


__all__ = ["PARTIAL_SUFFIX", "fsync_dir", "staged_folder", "write_atomic", "write_synced"]
