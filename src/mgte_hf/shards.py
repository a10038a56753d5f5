"""Corpora bigger than one machine: sharded, resumable encoding over `torch.distributed` ranks, and shard search.

    embedder = MgteEmbedder.from_pretrained("path/to/gte-multilingual-base")
    encode_to_shards(embedder, JsonlCorpus("corpus.jsonl", id_field="_id"), "shards/")  # every rank calls this
    index = ShardedIndex("shards/", embedder)
    index.search("capital of Germany", top_k=10, mode="hybrid")  # [ShardHit(id=..., score=..., index=...)]

Launch it once per process (`torchrun --nproc_per_node K -m mgte_hf encode-corpus ...` or `accelerate launch`):
the rank and world size come from `torch.distributed` when a process group is initialised, else 1 process.

The corpus is streamed twice and never held whole: a scan (count, sha256 of the records, duplicate ids), then the
encoding pass, which holds one chunk. Chunk c is records [c·N, (c+1)·N) (N = `chunk_size`) and belongs to rank
c mod world_size. Its files do not depend on the rank or the number of ranks, so 1 and K processes write the same
shards, and a run stopped at any point (even SIGKILL) and started again with the same arguments, with any number of
processes, skips the chunks already done (each verified by sha256) and ends with byte-identical files.

On disk (`OUT/`), every file written to a temporary name, fsynced and renamed:

    manifest.json          written last, by rank 0: run identity, counts, sha256 of every chunk's manifest
    chunk-000000/          one folder per chunk, written as chunk-000000.tmp/ and renamed when complete
        manifest.json      run identity, first_row, count, nnz, sha256 and size of each file below
        ids.jsonl          one JSON string per line, in corpus order
        dense.npy          (count, dimension) float32, L2-normalised
        sparse_indptr.npy  (count + 1,) int64: CSR row pointers
        sparse_indices.npy (nnz,) int32 token ids, ascending within a row
        sparse_values.npy  (nnz,) float32 weights

Run identity: sha256 of the model weights (state dict, in the model's dtype), of its config and of its tokenizer, the
dtype, dimension, max_length, truncation, chunk_size and the corpus (count and sha256 of its (id, text) records). A
folder that holds shards of another identity is refused before anything is written. `batch_tokens`, the device and
the number of processes are not part of it: they change the speed, not the meaning (different `batch_tokens` can
change float rounding, so byte-identity needs the same arguments).

Duplicate ids are found in the scan from a 64-bit hash per id, each rank keeping the hashes with hash mod
world_size == rank: 8 bytes per document divided among the processes (800 MB for 10^8 documents in one process).
Equal hashes are then resolved exactly by a second look at those ids.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import logging
import os
import shutil
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from . import scoring
from .index import QUERY_CHUNK, SEARCH_MODES, Postings
from .inference.common import check_choice, check_positive_int, check_texts, show_progress
from .inference.embedder import EmbeddingResult, MgteEmbedder
from .training.distributed import get_rank, get_world_size, is_distributed


logger = logging.getLogger(__name__)

SHARDS_FORMAT = "mgte-hf-shards"
SHARDS_VERSION = 1
DEFAULT_CHUNK_SIZE = 4096
MANIFEST = "manifest.json"
CHUNK_FILES = ("ids.jsonl", "dense.npy", "sparse_indptr.npy", "sparse_indices.npy", "sparse_values.npy")
READ_BATCH = 1024  # rows per `datasets` read
MAX_REPORTED = 5  # duplicate ids named in an error
# Config keys that are bookkeeping, not behaviour: they change with the folder, library version or saving.
_CONFIG_BOOKKEEPING = ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures", "auto_map")


# ============================================================================================== corpus readers
class JsonlCorpus:
    """A JSON-lines corpus read line by line: one object per non-blank line with a string/int id and a string text.

    Iterating yields `(id, text)` with the id as a string; a bad line raises `ValueError` naming file and line.
    """

    def __init__(self, path: str | os.PathLike, id_field: str = "id", text_field: str = "text"):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"corpus file {self.path} does not exist.")
        self.id_field, self.text_field = id_field, text_field

    def __iter__(self) -> Iterator[tuple[str, str]]:
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{self.path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{where}: not valid JSON ({err.msg}).") from err
                if not isinstance(record, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}.")
                yield _check_record(record, self.id_field, self.text_field, where)


class DatasetCorpus:
    """A `datasets.Dataset` (memory-mapped) or `datasets.IterableDataset`, read in batches of `READ_BATCH` rows.

    Iterating yields `(id, text)` with the id as a string.
    """

    def __init__(self, dataset: Any, id_field: str = "id", text_field: str = "text"):
        import datasets

        if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            raise ValueError(f"Got a dataset with splits {list(dataset)}; choose one (split=, or --split).")
        if not isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
            raise TypeError(f"Expected a datasets.Dataset or IterableDataset, got {type(dataset).__name__}.")
        missing = [f for f in (id_field, text_field) if dataset.column_names is not None and
                   f not in dataset.column_names]
        if missing:
            raise ValueError(f"The dataset has no column {missing[0]!r} (columns: {dataset.column_names}); choose "
                             "the id and text columns with id_field= and text_field=.")
        self.dataset, self.id_field, self.text_field = dataset, id_field, text_field

    def __iter__(self) -> Iterator[tuple[str, str]]:
        row = 0
        for batch in self.dataset.iter(batch_size=READ_BATCH):
            size = len(next(iter(batch.values())))
            missing = [None] * size  # a column absent from this batch: `_check_record` names it
            for doc_id, text in zip(batch.get(self.id_field, missing), batch.get(self.text_field, missing)):
                yield _check_record({self.id_field: doc_id, self.text_field: text}, self.id_field, self.text_field,
                                    f"dataset row {row}")
                row += 1


Corpus = JsonlCorpus | DatasetCorpus


def open_corpus(source: Any, id_field: str = "id", text_field: str = "text", split: str | None = None) -> Corpus:
    """A corpus reader for a `.jsonl` file, a folder written by `datasets`' `save_to_disk`, or a `datasets` object.

    Args:
        source: a path or a `datasets` Dataset / IterableDataset / DatasetDict.
        id_field, text_field: the fields holding the id and the text.
        split: the split to read when the source has several.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_file():
            if path.suffix != ".jsonl":
                raise ValueError(f"{path}: expected a .jsonl file (or a folder saved with datasets' save_to_disk).")
            return JsonlCorpus(path, id_field, text_field)
        if not path.is_dir():
            raise FileNotFoundError(f"corpus {path} does not exist.")
        import datasets

        source = datasets.load_from_disk(str(path))
    if split is not None:
        if split not in source:
            raise ValueError(f"The dataset has no split {split!r}; it has {list(source)}.")
        source = source[split]
    return DatasetCorpus(source, id_field, text_field)


def _check_record(record: Mapping[str, Any], id_field: str, text_field: str, where: str) -> tuple[str, str]:
    """`(id, text)` of one record; a missing or mistyped field raises `ValueError` naming `where`."""
    for name, option in ((id_field, "id_field"), (text_field, "text_field")):
        if record.get(name) is None:
            raise ValueError(f"{where}: no {name!r} field (choose the field with {option}=).")
    doc_id, text = record[id_field], record[text_field]
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise ValueError(f"{where}: the id is a {type(doc_id).__name__}; ids must be strings or integers.")
    if not isinstance(text, str):
        raise ValueError(f"{where}: the text is a {type(text).__name__}, not a string.")
    return str(doc_id), text


# ============================================================================================== scan
@dataclass
class CorpusScan:
    """What the scan learns: the size, a sha256 of the records, and this rank's share of the duplicate ids."""

    count: int
    sha256: str
    duplicates: dict[str, list[int]] = field(default_factory=dict)  # id -> rows (0-based), at most MAX_REPORTED


def scan_corpus(corpus: Iterable[tuple[str, str]], rank: int = 0, world_size: int = 1) -> CorpusScan:
    """Stream the corpus once: count it, hash it, and find the duplicate ids whose hash falls to `rank`."""
    digest = hashlib.sha256()
    hashes = array("Q")
    count = 0
    for doc_id, text in corpus:
        for part in (doc_id.encode("utf-8"), text.encode("utf-8")):
            digest.update(len(part).to_bytes(8, "little") + part)  # length-prefixed: unambiguous
        h = _id_hash(doc_id)
        if h % world_size == rank:
            hashes.append(h)
        count += 1
    ordered = np.sort(np.frombuffer(hashes, dtype=np.uint64))
    clashes = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    return CorpusScan(count, digest.hexdigest(), exact_duplicates(corpus, clashes) if clashes else {})


def exact_duplicates(corpus: Iterable[tuple[str, str]], hashes: set[int]) -> dict[str, list[int]]:
    """Ids (with their rows) that occur more than once among the ids whose `_id_hash` is in `hashes`."""
    rows: dict[str, list[int]] = {}
    for row, (doc_id, _) in enumerate(corpus):
        if _id_hash(doc_id) in hashes:
            rows.setdefault(doc_id, []).append(row)
    repeated = {doc_id: found for doc_id, found in rows.items() if len(found) > 1}
    return dict(list(repeated.items())[:MAX_REPORTED])


def _id_hash(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


def _chunks(corpus: Iterable[tuple[str, str]], chunk_size: int) -> Iterator[tuple[int, list[str], list[str]]]:
    """`(chunk index, ids, texts)` of consecutive `chunk_size` records (the last may be shorter)."""
    ids: list[str] = []
    texts: list[str] = []
    index = 0
    for doc_id, text in corpus:
        ids.append(doc_id)
        texts.append(text)
        if len(ids) == chunk_size:
            yield index, ids, texts
            ids, texts, index = [], [], index + 1
    if ids:
        yield index, ids, texts


# ============================================================================================== identity
def model_identity(embedder: MgteEmbedder) -> dict[str, str]:
    """sha256 of the weights (names, dtypes, shapes, bytes), of the behavioural config and of the tokenizer."""
    model = embedder.model
    weights = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        weights.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}\n".encode())
        weights.update(flat.view(torch.uint8).numpy())
    config = {k: v for k, v in model.config.to_dict().items() if k not in _CONFIG_BOOKKEEPING}
    tokenizer = embedder.tokenizer
    if getattr(tokenizer, "is_fast", False):
        state = json.loads(tokenizer.backend_tokenizer.to_str())
        for key in ("truncation", "padding"):  # runtime settings any tokenizer call rewrites, not the vocabulary
            state.pop(key, None)
        vocab = json.dumps(state, sort_keys=True, ensure_ascii=False)
    else:
        vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return {
        "weights_sha256": weights.hexdigest(),
        "config_sha256": _sha256(json.dumps(config, sort_keys=True).encode()),
        "tokenizer_sha256": _sha256(vocab.encode("utf-8")),
        "dtype": str(model.dtype).removeprefix("torch."),
    }


def _differences(ours: Mapping, theirs: Any, prefix: str = "") -> list[str]:
    """`key: ours vs theirs` for every leaf that differs between two nested dicts."""
    if not isinstance(theirs, Mapping):
        return [f"{prefix or 'run'}: {theirs!r}"]
    out = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        if isinstance(a, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {_short(a)} (this run) vs {_short(b)} (on disk)")
    return out


def _short(value: Any) -> str:
    return f"{value[:12]}…" if isinstance(value, str) and len(value) == 64 else repr(value)


# ============================================================================================== files
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _npy_bytes(array_: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array_, allow_pickle=False)
    return buffer.getvalue()


def _write_synced(path: Path, data: bytes) -> dict[str, Any]:
    """Write `data` to `path`, flushed to disk; returns its sha256 and size."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"sha256": _sha256(data), "bytes": len(data)}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to `path.tmp`, fsync, rename over `path`, fsync the folder: readers see the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    _write_synced(tmp, data)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def chunk_name(index: int) -> str:
    return f"chunk-{index:06d}"


def _read_json(path: Path) -> Any:
    """The JSON object in `path`, or `None` when it is missing or unreadable."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


# ============================================================================================== writing
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


def _write_chunk(folder: Path, index: int, first_row: int, ids: list[str], result: EmbeddingResult,
                 run: dict) -> None:
    """Write one chunk into `chunk-N.tmp/` (every file fsynced, the manifest last) and rename it into place."""
    final = folder / chunk_name(index)
    tmp = folder / f"{chunk_name(index)}.tmp"
    tmp.mkdir()
    indptr, indices, values = sparse_to_csr(result.sparse)
    payload = {
        "ids.jsonl": "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in ids).encode("utf-8"),
        "dense.npy": _npy_bytes(np.ascontiguousarray(result.dense, dtype=np.float32)),
        "sparse_indptr.npy": _npy_bytes(indptr),
        "sparse_indices.npy": _npy_bytes(indices),
        "sparse_values.npy": _npy_bytes(values),
    }
    files = {name: _write_synced(tmp / name, data) for name, data in payload.items()}
    manifest = {"format": SHARDS_FORMAT, "version": SHARDS_VERSION, "run": run, "chunk": index,
                "first_row": first_row, "count": len(ids), "nnz": int(indptr[-1]), "files": files}
    _write_synced(tmp / MANIFEST, _json_bytes(manifest))
    _fsync_dir(tmp)
    if final.exists():  # a damaged copy that failed verification
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(folder)


def _finished_chunk(folder: Path, index: int, run: dict) -> dict | None:
    """The manifest of chunk `index` when it is complete and every file matches its sha256, else `None`."""
    path = folder / chunk_name(index)
    if not path.is_dir():
        return None
    manifest = _read_json(path / MANIFEST)
    problem = None
    if not isinstance(manifest, dict) or manifest.get("run") != run or set(manifest.get("files", ())) != set(
            CHUNK_FILES):
        problem = "its manifest is missing or broken"
    else:
        bad = [n for n, entry in manifest["files"].items()
               if not (path / n).is_file() or _sha256_file(path / n) != entry["sha256"]]
        problem = f"{bad[0]} does not match its sha256" if bad else None
    if problem:
        logger.warning("%s: %s; encoding the chunk again.", path, problem)
        return None
    return manifest


def _check_folder(folder: Path, run: dict) -> None:
    """Refuse a folder holding a manifest or chunks that are not of this run (nothing is touched)."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a folder; choose another output folder.")
    found = [(folder / MANIFEST, _read_json(folder / MANIFEST))] if (folder / MANIFEST).exists() else []
    found += [(p / MANIFEST, _read_json(p / MANIFEST)) for p in sorted(folder.glob("chunk-*"))
              if p.is_dir() and not p.name.endswith(".tmp") and (p / MANIFEST).is_file()]
    for path, manifest in found:
        if isinstance(manifest, dict) and manifest.get("format") == SHARDS_FORMAT and manifest.get("run") == run:
            continue
        what = (f"a file that is not an {SHARDS_FORMAT} manifest" if not isinstance(manifest, dict) or
                manifest.get("format") != SHARDS_FORMAT else
                "shards of another run (" + "; ".join(_differences(run, manifest.get("run"))) + ")")
        raise ValueError(f"{folder} holds {what} at {path.relative_to(folder)}. Nothing was written: use a new output "
                         "folder, or delete this one to encode again.")


def _write_manifest(folder: Path, run: dict, dimension: int, num_chunks: int) -> dict:
    """Rank 0, after every chunk is done: the top-level manifest with every chunk's counts and manifest sha256."""
    chunks = []
    for index in range(num_chunks):
        path = folder / chunk_name(index) / MANIFEST
        manifest = _read_json(path)
        if not isinstance(manifest, dict) or manifest.get("run") != run:
            raise RuntimeError(f"{path} is missing or not of this run after all ranks finished: every rank must write "
                               "to the same folder (on several nodes, a shared filesystem); run again to complete it.")
        chunks.append({"name": chunk_name(index), "first_row": manifest["first_row"], "count": manifest["count"],
                       "nnz": manifest["nnz"], "manifest_sha256": _sha256_file(path)})
    top = {"format": SHARDS_FORMAT, "version": SHARDS_VERSION, "run": run, "count": run["corpus"]["count"],
           "dimension": dimension, "nnz": sum(c["nnz"] for c in chunks),
           "dtypes": {"dense": "float32", "sparse_indptr": "int64", "sparse_indices": "int32",
                      "sparse_values": "float32"},
           "chunks": chunks}
    _write_atomic(folder / MANIFEST, _json_bytes(top))
    return top


# ============================================================================================== encoding
@dataclass
class ShardRun:
    """What one rank did: the chunks it encoded and those it found done; `seconds` of its encoding pass."""

    folder: Path
    count: int
    num_chunks: int
    encoded: list[int]
    skipped: list[int]
    texts_encoded: int
    seconds: float


def encode_to_shards(
    embedder: MgteEmbedder,
    corpus: Corpus,
    output_dir: str | os.PathLike,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    dimension: int | None = None,
    max_length: int | None = None,
    batch_tokens: int | None = None,
    show_progress_bar: bool | None = None,
) -> ShardRun:
    """Encode `corpus` (dense + sparse) into resumable shards in `output_dir`; call it on every rank.

    Args:
        embedder: the model; each rank's embedder sits on that rank's device.
        corpus: a `JsonlCorpus` or `DatasetCorpus` (see `open_corpus`); it is read twice, never held whole.
        output_dir: the shard folder (created); if it holds shards of another run, `ValueError` and nothing
            is written.
        chunk_size: documents per chunk (the unit of work, of resuming and of memory: one chunk's texts and
            tokens are held at a time).
        dimension: dense size; default `embedder.dimension`.
        max_length: token limit per document; default `embedder.max_length`.
        batch_tokens: padded-token budget per forward; default `embedder.batch_tokens`.
        show_progress_bar: a bar over this rank's chunks on rank 0; `None`: for corpora of 256 documents or more.

    Returns:
        A `ShardRun` of this rank.

    Raises:
        ValueError: an empty corpus, duplicate ids, a bad record, or a folder of another run (on every rank).
    """
    check_positive_int(chunk_size, "chunk_size")
    dimension = embedder.model.check_dimension(embedder.dimension if dimension is None else dimension)
    max_length = check_positive_int(embedder.max_length if max_length is None else max_length, "max_length")
    rank, world_size = get_rank(), get_world_size()
    folder = Path(output_dir)
    settings = {"dimension": dimension, "max_length": max_length, "truncation": embedder.truncation,
                "chunk_size": chunk_size}
    scan, run = _plan(embedder, corpus, folder, settings, rank, world_size)
    folder.mkdir(parents=True, exist_ok=True)
    num_chunks = -(-scan.count // chunk_size)
    own = [c for c in range(num_chunks) if c % world_size == rank]
    encoded, skipped, texts_encoded, start = [], [], 0, time.perf_counter()
    bar = tqdm(total=len(own), desc=f"Encoding chunks (rank {rank}/{world_size})", unit="chunk",
               disable=rank != 0 or not show_progress(show_progress_bar, scan.count))
    with bar:
        for index, ids, texts in _chunks(corpus, chunk_size) if own else ():
            if index > own[-1]:
                break
            if index % world_size != rank:
                continue
            shutil.rmtree(folder / f"{chunk_name(index)}.tmp", ignore_errors=True)  # left by a killed run
            if _finished_chunk(folder, index, run) is not None:
                skipped.append(index)
            else:
                result = embedder.encode(texts, dimension=dimension, max_length=max_length, batch_tokens=batch_tokens,
                                         show_progress_bar=False)
                _write_chunk(folder, index, index * chunk_size, ids, result, run)
                encoded.append(index)
                texts_encoded += len(texts)
                logger.info("rank %d/%d: chunk %d of %d encoded (%d texts).", rank, world_size, index, num_chunks,
                            len(texts))
            bar.update()
    seconds = time.perf_counter() - start
    _barrier()
    if rank == 0:
        _write_manifest(folder, run, dimension, num_chunks)
    _barrier()
    return ShardRun(folder, scan.count, num_chunks, encoded, skipped, texts_encoded, seconds)


def _plan(embedder: MgteEmbedder, corpus: Corpus, folder: Path, settings: dict, rank: int,
          world_size: int) -> tuple[CorpusScan, dict]:
    """Scan the corpus, build the run identity and check the folder; the same `ValueError` on every rank."""
    problem, scan, run = None, None, None
    try:
        scan = scan_corpus(corpus, rank, world_size)
        if scan.count == 0:
            raise ValueError("The corpus holds no documents; nothing to encode.")
        run = {"model": model_identity(embedder), **settings, "corpus": {"count": scan.count, "sha256": scan.sha256}}
        _check_folder(folder, run)
    except ValueError as err:
        problem = str(err)
    _raise_if_any(problem, scan.duplicates if scan else {})
    return scan, run


def _raise_if_any(problem: str | None, duplicates: dict[str, list[int]]) -> None:
    """Share every rank's problem and duplicate ids, then raise the same `ValueError` on every rank."""
    reports = [(problem, duplicates)]
    if is_distributed():
        reports = [None] * get_world_size()
        dist.all_gather_object(reports, (problem, duplicates))
    problems = [p for p, _ in reports if p]
    if problems:
        raise ValueError(problems[0])
    found = {doc_id: rows for _, dups in reports for doc_id, rows in dups.items()}
    if found:
        examples = "; ".join(f"{doc_id!r} at rows {rows}" for doc_id, rows in list(found.items())[:MAX_REPORTED])
        raise ValueError(f"Document ids must be unique across the corpus; repeated: {examples} (0-based rows). "
                         "Nothing was written.")


def _barrier() -> None:
    if is_distributed():
        dist.barrier()


# ============================================================================================== reading
@dataclass(frozen=True)
class ShardChunk:
    """One chunk on disk; arrays are memory-mapped (copy-on-write: pages are read when touched, never written)."""

    path: Path
    index: int
    first_row: int
    count: int
    nnz: int

    def ids(self) -> list[str]:
        return [json.loads(line) for line in (self.path / "ids.jsonl").read_text(encoding="utf-8").splitlines()]

    def dense(self) -> np.ndarray:
        """`(count, dimension)` float32, memory-mapped."""
        return np.load(self.path / "dense.npy", mmap_mode="c")

    def sparse_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`(indptr, indices, values)`, memory-mapped."""
        return tuple(np.load(self.path / f"sparse_{part}.npy", mmap_mode="c")
                     for part in ("indptr", "indices", "values"))

    def sparse(self) -> list[dict[int, float]]:
        """One `{token_id: weight}` per document."""
        return csr_to_sparse(*self.sparse_csr())


class ShardReader:
    """The shards written by `encode_to_shards`, in corpus order.

    Args:
        folder: the shard folder (its top-level manifest must exist: the run finished).
        verify: check every file's sha256 against the chunk manifests (reads everything once).
    """

    def __init__(self, folder: str | os.PathLike, *, verify: bool = False):
        self.folder = Path(folder)
        manifest = _read_json(self.folder / MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("format") != SHARDS_FORMAT:
            raise FileNotFoundError(f"No finished shards in {self.folder} ({MANIFEST} is missing or not an "
                                    f"{SHARDS_FORMAT} manifest); run encode_to_shards / `mgte-hf encode-corpus` "
                                    "(again) to finish them.")
        if manifest.get("version") != SHARDS_VERSION:
            raise ValueError(f"{self.folder} holds version {manifest.get('version')} shards; this mgte-hf reads "
                             f"version {SHARDS_VERSION}.")
        self.manifest = manifest
        self.chunks = [ShardChunk(self.folder / c["name"], i, c["first_row"], c["count"], c["nnz"])
                       for i, c in enumerate(manifest["chunks"])]
        for entry, chunk in zip(manifest["chunks"], self.chunks, strict=True):
            path = chunk.path / MANIFEST
            if not path.is_file() or _sha256_file(path) != entry["manifest_sha256"]:
                raise ValueError(f"{path} does not match the sha256 in {self.folder / MANIFEST}; encode again.")
            if verify and _finished_chunk(self.folder, chunk.index, manifest["run"]) is None:
                raise ValueError(f"{chunk.path} is damaged (see the warning above); run the encoding again to "
                                 "repair it.")

    @property
    def dimension(self) -> int:
        return self.manifest["dimension"]

    def __len__(self) -> int:
        return self.manifest["count"]

    def __iter__(self) -> Iterator[ShardChunk]:
        return iter(self.chunks)

    def embeddings(self) -> tuple[list[str], EmbeddingResult]:
        """All ids and one `EmbeddingResult` in memory (for corpora that fit, e.g. to fill a `HybridIndex`)."""
        ids = [i for chunk in self.chunks for i in chunk.ids()]
        dense = np.concatenate([chunk.dense() for chunk in self.chunks])
        return ids, EmbeddingResult(dense, [row for chunk in self.chunks for row in chunk.sparse()])


# ============================================================================================== search
@dataclass(frozen=True)
class ShardHit:
    """One retrieved document: its id, score and row (position in the corpus)."""

    id: str
    score: float
    index: int


def top_k_columns(scores: torch.Tensor, k: int) -> torch.Tensor:
    """`(Q, N)` scores → `(Q, k)` columns of the k best per row by (score desc, column asc), in ascending order.

    Exact under ties: of equal scores at the cut, the lower columns are kept.
    """
    kth = torch.topk(scores, k, dim=1).values[:, -1:]  # (Q, 1)
    above, tie = scores > kth, scores == kth
    need = k - above.sum(dim=1, keepdim=True)
    chosen = above | (tie & (tie.cumsum(dim=1) <= need))  # exactly k per row
    return chosen.nonzero()[:, 1].view(len(scores), k)


class ShardedIndex:
    """Dense, sparse or hybrid search across the shards of `encode_to_shards`, merged into one top-k.

    Results equal those of a `HybridIndex` holding the whole corpus: the same `mgte_hf.scoring` scores (sparse
    bit for bit, dense up to BLAS rounding) and order; ties rank the earlier document first, across chunks too. Dense matrices stay memory-mapped; the sparse postings of a chunk are built in memory
    on its first sparse or hybrid search (12 bytes per stored weight, about twice that while building).

    Args:
        folder: the shard folder.
        embedder: encodes query texts; it must be the model that wrote the shards (checked by sha256).
        verify: check every file's sha256 on opening.
    """

    def __init__(self, folder: str | os.PathLike, embedder: MgteEmbedder | None = None, *, verify: bool = False):
        self.reader = ShardReader(folder, verify=verify)
        if embedder is not None:
            differences = _differences(model_identity(embedder), self.reader.manifest["run"]["model"])
            if differences:
                raise ValueError(f"The shards in {self.reader.folder} were written by another model: "
                                 f"{'; '.join(differences)}. Query them with the model that wrote them.")
        self.embedder = embedder
        self._postings: dict[int, Postings] = {}
        self._ids: dict[int, list[str]] = {}
        self._first_rows = [chunk.first_row for chunk in self.reader.chunks]

    @property
    def dimension(self) -> int:
        return self.reader.dimension

    def __len__(self) -> int:
        return len(self.reader)

    def search(
        self,
        queries: str | Iterable[str],
        *,
        top_k: int = 10,
        mode: str = "hybrid",
        dense_weight: float = scoring.DEFAULT_DENSE_WEIGHT,
        sparse_weight: float = scoring.DEFAULT_SPARSE_WEIGHT,
        query_embeddings: EmbeddingResult | None = None,
        **encode_kwargs,
    ) -> list[ShardHit] | list[list[ShardHit]]:
        """The best documents for each query, best first (as `HybridIndex.search`, without texts or reranking).

        Args:
            queries: one query (→ one hit list) or a list (→ one hit list per query).
            top_k: hits per query (at most the corpus size).
            mode: `"dense"`, `"sparse"` or `"hybrid"`.
            dense_weight, sparse_weight: hybrid weights (`scoring.hybrid_scores`).
            query_embeddings: precomputed `EmbeddingResult` of the queries (skips the embedder).
            **encode_kwargs: passed to `embedder.encode_queries`.
        """
        single = isinstance(queries, str)
        queries = check_texts(queries, "queries")
        check_choice(mode, SEARCH_MODES, "mode")
        k = min(check_positive_int(top_k, "top_k"), len(self))
        if query_embeddings is None:
            if self.embedder is None:
                raise ValueError("This index has no embedder to encode query texts; pass query_embeddings, or open "
                                 "it with the MgteEmbedder that wrote the shards.")
            query_embeddings = self.embedder.encode_queries(queries, dimension=self.dimension, dense=mode != "sparse",
                                                            sparse=mode != "dense", convert_to="torch",
                                                            **encode_kwargs)
        self._check_queries(query_embeddings, len(queries), mode)
        hits = []
        for start in range(0, len(queries), QUERY_CHUNK):
            part = slice(start, start + QUERY_CHUNK)
            dense = None if mode == "sparse" else torch.as_tensor(query_embeddings.dense[part]).float()
            sparse = None if mode == "dense" else query_embeddings.sparse[part]
            scores, rows = self._top_k(dense, sparse, mode, k, dense_weight, sparse_weight)  # (q, k) each
            order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # ties: lower row first
            hits += [[self._hit(row, score) for row, score in zip(r, s)]
                     for r, s in zip(rows.gather(1, order).tolist(), scores.gather(1, order).tolist())]
        return hits[0] if single else hits

    def _top_k(self, dense: torch.Tensor | None, sparse: list[dict[int, float]] | None, mode: str, k: int,
               dense_weight: float, sparse_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Merge each chunk's top-k into a running top-k; candidates stay in ascending row order."""
        q = len(dense) if dense is not None else len(sparse)
        best_scores, best_rows = torch.zeros((q, 0)), torch.zeros((q, 0), dtype=torch.long)
        for index, chunk in enumerate(self.reader.chunks):
            scores = None if dense is None else scoring.dense_scores(dense, torch.from_numpy(chunk.dense()))
            if sparse is not None:
                postings = self._chunk_postings(index)
                lexical = torch.stack([postings.scores(query, chunk.count) for query in sparse])  # (q, count)
                scores = lexical if scores is None else scoring.hybrid_scores(scores, lexical, dense_weight,
                                                                              sparse_weight)
            cols = top_k_columns(scores, min(k, chunk.count))
            candidates = torch.cat([best_scores, scores.gather(1, cols)], dim=1)
            rows = torch.cat([best_rows, cols + chunk.first_row], dim=1)
            keep = top_k_columns(candidates, min(k, candidates.shape[1]))
            best_scores, best_rows = candidates.gather(1, keep), rows.gather(1, keep)
        return best_scores, best_rows

    def _chunk_postings(self, index: int) -> Postings:
        if index not in self._postings:
            indptr, indices, values = (torch.from_numpy(a) for a in self.reader.chunks[index].sparse_csr())
            rows = torch.repeat_interleave(torch.arange(len(indptr) - 1), indptr.diff())
            self._postings[index] = Postings.build(rows, indices.long(), values)
        return self._postings[index]

    def _hit(self, row: int, score: float) -> ShardHit:
        index = bisect.bisect_right(self._first_rows, row) - 1
        if index not in self._ids:
            self._ids[index] = self.reader.chunks[index].ids()
        return ShardHit(self._ids[index][row - self._first_rows[index]], score, row)

    def _check_queries(self, embeddings: EmbeddingResult, count: int, mode: str) -> None:
        if not isinstance(embeddings, EmbeddingResult):
            raise TypeError(f"query_embeddings must be an EmbeddingResult, got {type(embeddings).__name__}.")
        if len(embeddings) != count:
            raise ValueError(f"Got {len(embeddings)} query embeddings for {count} queries.")
        if mode != "sparse" and (embeddings.dense is None or embeddings.dense.shape[1] != self.dimension):
            raise ValueError(f"mode={mode!r} needs dense query embeddings of dimension {self.dimension}.")
        if mode != "dense" and embeddings.sparse is None:
            raise ValueError(f"mode={mode!r} needs sparse query embeddings.")


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SHARDS_FORMAT",
    "DatasetCorpus",
    "JsonlCorpus",
    "ShardChunk",
    "ShardHit",
    "ShardReader",
    "ShardRun",
    "ShardedIndex",
    "csr_to_sparse",
    "encode_to_shards",
    "exact_duplicates",
    "model_identity",
    "open_corpus",
    "scan_corpus",
    "sparse_to_csr",
    "top_k_columns",
]
