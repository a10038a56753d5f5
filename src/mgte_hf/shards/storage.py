"""Shards on disk: the file formats, one chunk written and verified, the folder checked, the top manifest.

    manifest.json          written last, by rank 0: run identity, counts, sha256 of every chunk's manifest
    chunk-000000/          one folder per chunk, written as chunk-000000.tmp/ and renamed when complete
        manifest.json      run identity, first_row, count, nnz, sha256 and size of each file below
        ids.jsonl          one JSON string per line, in corpus order
        dense.npy          (count, dimension) float32, L2-normalised
        sparse_indptr.npy  (count + 1,) int64: CSR row pointers
        sparse_indices.npy (nnz,) int32 token ids, ascending within a row
        sparse_values.npy  (nnz,) float32 weights

Every file is fsynced; the chunk folder and the top manifest are renamed into place only when complete.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..hashing import identity_differences, sha256_file
from ..inference.embedder import EmbeddingResult
from ..outputs import fsync_dir, write_atomic, write_synced


logger = logging.getLogger(__name__)

SHARDS_FORMAT = "mgte-hf-shards"
SHARDS_VERSION = 1
MANIFEST = "manifest.json"
CHUNK_FILES = ("ids.jsonl", "dense.npy", "sparse_indptr.npy", "sparse_indices.npy", "sparse_values.npy")


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def npy_bytes(array_: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array_, allow_pickle=False)
    return buffer.getvalue()


def chunk_name(index: int) -> str:
    return f"chunk-{index:06d}"


def read_json(path: Path) -> Any:
    """The JSON object in `path`, or `None` when it is missing or unreadable."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def sparse_to_csr(rows: Sequence[Mapping[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`{token_id: weight}` rows → CSR `(indptr (n+1,) int64, indices (nnz,) int32, values (nnz,) float32)`.

    Token ids are ascending within each row, so equal dicts give equal bytes.
    """
    items = [sorted(row.items()) for row in rows]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in items], out=indptr[1:])
    indices = np.fromiter((t for r in items for t, _ in r), dtype=np.int32, count=int(indptr[-1]))
    values = np.fromiter((w for r in items for _, w in r), dtype=np.float32, count=int(indptr[-1]))
    return indptr, indices, values


def csr_to_sparse(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray) -> list[dict[int, float]]:
    """CSR arrays → one `{token_id: weight}` per row (the inverse of `sparse_to_csr`)."""
    ids, weights = indices.tolist(), values.tolist()
    return [dict(zip(ids[a:b], weights[a:b])) for a, b in zip(indptr[:-1].tolist(), indptr[1:].tolist())]


def write_chunk(folder: Path, index: int, first_row: int, ids: list[str], result: EmbeddingResult,
                 run: dict) -> None:
    """Write one chunk into `chunk-N.tmp/` (every file fsynced, the manifest last) and rename it into place."""
    final = folder / chunk_name(index)
    tmp = folder / f"{chunk_name(index)}.tmp"
    tmp.mkdir()
    indptr, indices, values = sparse_to_csr(result.sparse)
    payload = {
        "ids.jsonl": "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in ids).encode("utf-8"),
        "dense.npy": npy_bytes(np.ascontiguousarray(result.dense, dtype=np.float32)),
        "sparse_indptr.npy": npy_bytes(indptr),
        "sparse_indices.npy": npy_bytes(indices),
        "sparse_values.npy": npy_bytes(values),
    }
    files = {name: write_synced(tmp / name, data) for name, data in payload.items()}
    manifest = {"format": SHARDS_FORMAT, "version": SHARDS_VERSION, "run": run, "chunk": index,
                "first_row": first_row, "count": len(ids), "nnz": int(indptr[-1]), "files": files}
    write_synced(tmp / MANIFEST, json_bytes(manifest))
    fsync_dir(tmp)
    if final.exists():  # a damaged copy that failed verification
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(folder)


def finished_chunk(folder: Path, index: int, run: dict) -> dict | None:
    """The manifest of chunk `index` when it is complete and every file matches its sha256, else `None`."""
    path = folder / chunk_name(index)
    if not path.is_dir():
        return None
    manifest = read_json(path / MANIFEST)
    problem = None
    if not isinstance(manifest, dict) or manifest.get("run") != run or set(manifest.get("files", ())) != set(
            CHUNK_FILES):
        problem = "its manifest is missing or broken"
    else:
        bad = [n for n, entry in manifest["files"].items()
               if not (path / n).is_file() or sha256_file(path / n) != entry["sha256"]]
        problem = f"{bad[0]} does not match its sha256" if bad else None
    if problem:
        logger.warning("%s: %s; encoding the chunk again.", path, problem)
        return None
    return manifest


def check_folder(folder: Path, run: dict, *, overwrite: bool = False) -> list[Path]:
    """Refuse a folder that holds anything this run would replace and did not write (nothing is touched).

    A manifest or chunk of another run, a chunk folder without an mgte-hf manifest and a temporary chunk folder
    holding other files are refused unless `overwrite`; with it they are returned, to be deleted before encoding.
    Chunks of this run (finished, damaged or half written) are this run's to repair.
    """
    if not folder.exists():
        return []
    if not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder; choose another output folder.")
    foreign = []
    for path in [folder / MANIFEST, *sorted(folder.glob("chunk-*"))]:
        what = _foreign(path, run)
        if what is None:
            continue
        if not overwrite:
            raise ValueError(f"{folder} holds {what} at {path.relative_to(folder)}. Nothing was written: use a new "
                             "output folder, or pass overwrite=True (--overwrite) to replace it.")
        foreign.append(path)
    return foreign


def _foreign(path: Path, run: dict) -> str | None:
    """What makes `path` (the top manifest, or an entry named chunk-*) something this run did not write."""
    if path.name == MANIFEST:
        if not path.exists():
            return None
        manifest = read_json(path)
    elif path.name.endswith(".tmp") and path.is_dir():  # a chunk being written: only our own files inside
        others = sorted(p.name for p in path.iterdir() if p.name not in (*CHUNK_FILES, MANIFEST))
        return f"a temporary chunk folder with other files ({', '.join(others)})" if others else None
    elif not path.is_dir():
        return "a file named like a chunk folder"
    elif not (path / MANIFEST).is_file():
        return f"a chunk folder without an {SHARDS_FORMAT} manifest"
    else:
        manifest = read_json(path / MANIFEST)
        path = path / MANIFEST
    if not isinstance(manifest, dict) or manifest.get("format") != SHARDS_FORMAT:
        return f"a file that is not an {SHARDS_FORMAT} manifest"
    if manifest.get("run") != run:
        return "shards of another run (" + "; ".join(identity_differences(run, manifest.get("run"))) + ")"
    return None


def remove(paths: list[Path]) -> None:
    """Delete files and folders (the foreign entries `check_folder` returned under `overwrite`)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def write_manifest(folder: Path, run: dict, dimension: int, num_chunks: int) -> dict:
    """Rank 0, after every chunk is done: the top-level manifest with every chunk's counts and manifest sha256."""
    chunks = []
    for index in range(num_chunks):
        path = folder / chunk_name(index) / MANIFEST
        manifest = read_json(path)
        if not isinstance(manifest, dict) or manifest.get("run") != run:
            raise RuntimeError(f"{path} is missing or not of this run after all ranks finished: every rank must write "
                               "to the same folder (on several nodes, a shared filesystem); run again to complete it.")
        chunks.append({"name": chunk_name(index), "first_row": manifest["first_row"], "count": manifest["count"],
                       "nnz": manifest["nnz"], "manifest_sha256": sha256_file(path)})
    top = {"format": SHARDS_FORMAT, "version": SHARDS_VERSION, "run": run, "count": run["corpus"]["count"],
           "dimension": dimension, "nnz": sum(c["nnz"] for c in chunks),
           "dtypes": {"dense": "float32", "sparse_indptr": "int64", "sparse_indices": "int32",
                      "sparse_values": "float32"},
           "chunks": chunks}
    write_atomic(folder / MANIFEST, json_bytes(top), sync=True)
    return top


__all__ = [
    "CHUNK_FILES",
    "MANIFEST",
    "SHARDS_FORMAT",
    "SHARDS_VERSION",
    "check_folder",
    "chunk_name",
    "csr_to_sparse",
    "finished_chunk",
    "json_bytes",
    "npy_bytes",
    "read_json",
    "remove",
    "sparse_to_csr",
    "write_chunk",
    "write_manifest",
]
