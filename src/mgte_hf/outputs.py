"""Writing outputs safely, under one policy for every command and `save` of the package.

    check_output(path, overwrite=False, inputs=[source])   # before any work: refuse what must not be replaced
    write_atomic(path, text)                                # readers see the old file or the new one, never half
    with staged_folder("out/", overwrite=False) as tmp:
        ...                                                 # write into tmp; on success it becomes out/

The policy: an existing file, or a non-empty folder, is never replaced or deleted without `overwrite=True`
(`--overwrite`); an output that is one of the inputs (or, for a folder, holds one) is refused even then; writes go
to a temporary name beside the target and are renamed over it when complete. A file is written to
`<name>.partial` (`sync=True` also flushes it and its folder to disk, so a crash right after the call cannot lose
it); a folder is built in a hidden temporary folder beside its destination.
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


def check_output(path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = (),
                 folder: bool = False, what: str = "output") -> Path:
    """Refuse an output that would destroy something: returns the path when it may be written.

    Args:
        path: the file (or, with `folder=True`, the folder) about to be written.
        overwrite: allow replacing an existing file or a non-empty folder.
        inputs: files and folders the command reads; an output equal to one of them (or a folder output holding
            one) is refused even with `overwrite`.
        folder: `path` is a folder (an existing empty folder is not in the way).
        what: how the output is named in messages (e.g. "--output-sparse").

    Raises:
        ValueError: the output is an input, or is a folder where a file is expected (or the reverse).
        FileExistsError: it exists (a non-empty folder, for folders) and `overwrite` is false.
    """
    target = Path(path).expanduser().resolve()
    for source in inputs:
        source = Path(source).expanduser().resolve()
        if target == source or (folder and target in source.parents):
            relation = "is" if target == source else "holds"
            raise ValueError(f"{what} {path} {relation} the input {source}: writing it would destroy the input. "
                             "Choose another output.")
    if not target.exists():
        return target
    if folder and not target.is_dir():
        raise ValueError(f"{what} {path} is a file, not a folder; choose a folder.")
    if not folder and target.is_dir():
        raise ValueError(f"{what} {path} is a folder, not a file; choose a file name.")
    if (not folder or any(target.iterdir())) and not overwrite:
        kind = "is not empty" if folder else "exists"
        raise FileExistsError(f"{what} {path} {kind}; choose another one, or pass --overwrite (overwrite=True) to "
                              "replace it.")
    return target


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
def staged_folder(dst: str | os.PathLike, *, overwrite: bool = False,
                  inputs: Iterable[str | os.PathLike] = (), what: str = "output folder") -> Iterator[Path]:
    """Yield an empty temporary folder beside `dst`; on success it replaces `dst`, on error it is removed.

    `dst` is checked first (`check_output`): a non-empty `dst` needs `overwrite`; a `dst` that is or holds one of
    `inputs` is refused. A replaced `dst` is moved aside until the new folder is in place, then deleted.
    """
    dst = check_output(dst, overwrite=overwrite, inputs=inputs, folder=True, what=what)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    old = None
    try:
        yield tmp
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
            os.replace(dst, old)  # an empty `old` folder is replaced by the one moved aside
        os.replace(tmp, dst)
    except BaseException:
        if old is not None and not dst.exists():
            os.replace(old, dst)  # the old folder back in place
        raise
    finally:
        for leftover in (tmp, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover)


__all__ = ["PARTIAL_SUFFIX", "check_output", "fsync_dir", "staged_folder", "write_atomic", "write_synced"]
