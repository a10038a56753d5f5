"""Sharded, resumable corpus encoding and shard search (`mgte_hf.shards`), on a tiny model and tokenizer folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from inference.folders import save_embedder
from mgte_hf.cli import main as cli_main
from mgte_hf.index import HybridIndex
from mgte_hf.inference import EmbeddingResult, MgteEmbedder
from mgte_hf.shards import (
    CHUNK_FILES,
    MANIFEST,
    DatasetCorpus,
    JsonlCorpus,
    ShardedIndex,
    ShardReader,
    csr_to_sparse,
    encode_to_shards,
    exact_duplicates,
    open_corpus,
    scan_corpus,
    sparse_to_csr,
)
from mgte_hf.shards.corpus import id_hash
from tiny import SENTENCES


TEXTS = [f"{SENTENCES[i % 20]} {SENTENCES[(i * 7 + 3) % 20].lower()} {i}" for i in range(103)]
IDS = [f"doc-{i}" for i in range(len(TEXTS))]
CHUNK = 10  # 103 documents → 10 chunks of 10 and one of 3
QUERIES = ["quick brown fox", "search engines rank documents", "many thousands of tokens 42"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a loaded 2-core machine run far faster on one thread; the subprocesses use one too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer):
    return save_embedder(tmp_path_factory.mktemp("shards-model"), tiny_tokenizer)


@pytest.fixture(scope="module")
def embedder(model_dir):
    return MgteEmbedder.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", IDS, TEXTS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, embedder, corpus_file):
    """The shards of an uninterrupted one-process run (chunk size 10)."""
    folder = tmp_path_factory.mktemp("reference") / "shards"
    encode_to_shards(embedder, JsonlCorpus(corpus_file), folder, chunk_size=CHUNK)
    return folder


def write_jsonl(path: Path, ids: list, texts: list, **extra) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for doc_id, text in zip(ids, texts, strict=True):
            f.write(json.dumps({"id": doc_id, "text": text, **extra}) + "\n")
    return path


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


# ============================================================================================== layout and content
def test_chunks_manifests_and_content_equal_in_memory_encoding(reference, embedder):
    top = json.loads((reference / MANIFEST).read_text())
    names = [f"chunk-{i:06d}" for i in range(11)]
    assert sorted(p.name for p in reference.iterdir()) == sorted([MANIFEST, *names])
    assert (top["count"], top["dimension"], [c["name"] for c in top["chunks"]]) == (103, 32, names)
    assert [(c["first_row"], c["count"]) for c in top["chunks"]] == [(10 * i, 10) for i in range(10)] + [(100, 3)]
    assert top["run"]["corpus"]["count"] == 103 and top["run"]["chunk_size"] == CHUNK
    assert set(top["run"]["model"]) == {"weights_sha256", "config_sha256", "tokenizer_sha256", "dtype"}
    for entry in top["chunks"]:
        chunk = reference / entry["name"]
        assert sorted(p.name for p in chunk.iterdir()) == sorted([MANIFEST, *CHUNK_FILES])
        assert hashlib.sha256((chunk / MANIFEST).read_bytes()).hexdigest() == entry["manifest_sha256"]
        manifest = json.loads((chunk / MANIFEST).read_text())
        assert manifest["run"] == top["run"] and manifest["nnz"] == entry["nnz"]
        for name, facts in manifest["files"].items():
            data = (chunk / name).read_bytes()
            assert (hashlib.sha256(data).hexdigest(), len(data)) == (facts["sha256"], facts["bytes"])
    assert top["nnz"] == sum(c["nnz"] for c in top["chunks"])

    ids, result = ShardReader(reference, verify=True).embeddings()
    expected = embedder.encode(TEXTS)
    assert ids == IDS
    np.testing.assert_allclose(result.dense, expected.dense, atol=1e-6, rtol=0)
    for got, want in zip(result.sparse, expected.sparse, strict=True):
        assert got.keys() == want.keys()
        np.testing.assert_allclose(list(got.values()), [want[t] for t in got], atol=1e-6, rtol=0)


def test_sparse_csr_round_trip():
    rows = [{7: 0.5, 3: 1.25}, {}, {300000: 2.0}]
    indptr, indices, values = sparse_to_csr(rows)
    assert indptr.tolist() == [0, 2, 2, 3] and indices.tolist() == [3, 7, 300000]  # ascending within a row
    assert (indptr.dtype, indices.dtype, values.dtype) == (np.int64, np.int32, np.float32)
    assert csr_to_sparse(indptr, indices, values) == rows


def test_dataset_corpora_give_the_same_shards(reference, embedder, tmp_path):
    dataset = datasets.Dataset.from_dict({"id": IDS, "text": TEXTS, "title": ["t"] * len(IDS)})
    dataset.save_to_disk(str(tmp_path / "saved"))
    sources = {"dataset": DatasetCorpus(dataset), "iterable": DatasetCorpus(dataset.to_iterable_dataset()),
               "saved": open_corpus(tmp_path / "saved")}
    for name, corpus in sources.items():
        encode_to_shards(embedder, corpus, tmp_path / f"out-{name}", chunk_size=CHUNK)
        assert folder_bytes(tmp_path / f"out-{name}") == folder_bytes(reference), name


# ============================================================================================== resuming
def test_rerun_skips_every_finished_chunk_and_changes_nothing(reference, embedder, corpus_file, tmp_path):
    folder = copy(reference, tmp_path)
    run = encode_to_shards(embedder, JsonlCorpus(corpus_file), folder, chunk_size=CHUNK)
    assert (run.encoded, run.skipped) == ([], list(range(11)))
    assert folder_bytes(folder) == folder_bytes(reference)


def test_resume_repairs_partial_damaged_and_missing_chunks(reference, embedder, corpus_file, tmp_path):
    folder = copy(reference, tmp_path)
    shutil.rmtree(folder / "chunk-000002")  # killed before its rename: only a half-written temporary folder
    (folder / "chunk-000002.tmp").mkdir()
    (folder / "chunk-000002.tmp" / "dense.npy").write_bytes(b"half")
    damaged = folder / "chunk-000003" / "dense.npy"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x00")  # a finished chunk whose file no longer matches
    (folder / "chunk-000005.tmp").mkdir()  # a stale temporary folder beside a finished chunk
    (folder / MANIFEST).unlink()  # killed before the final manifest
    (folder / f"{MANIFEST}.partial").write_text("{")  # its replacement, half written
    run = encode_to_shards(embedder, JsonlCorpus(corpus_file), folder, chunk_size=CHUNK)
    assert run.encoded == [2, 3] and len(run.skipped) == 9
    assert folder_bytes(folder) == folder_bytes(reference)


def test_resume_after_sigkill_is_byte_identical(model_dir, tmp_path, capsys):
    """A real `kill -9` of the CLI mid-run, then the same command again, gives the bytes of an uninterrupted run."""
    texts = [f"{SENTENCES[i % 20]} {i}" for i in range(300)]
    corpus = write_jsonl(tmp_path / "corpus.jsonl", list(range(300)), texts)
    killed = tmp_path / "killed"
    args = ["--model", str(model_dir), "--input", str(corpus), "--chunk-size", "5", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "mgte_hf", "encode-corpus", *args, "--output-dir", str(killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    finished = []
    while len(finished) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
        finished = [p for p in killed.glob("chunk-*") if not p.name.endswith(".tmp")] if killed.exists() else []
    os.kill(proc.pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    done = len([p for p in killed.glob("chunk-*") if not p.name.endswith(".tmp")])
    assert 3 <= done < 60 and not (killed / MANIFEST).exists()

    assert cli_main(["encode-corpus", *args, "--output-dir", str(killed)]) == 0  # the same command, started again
    assert f"{done} already done" in capsys.readouterr().err
    assert cli_main(["encode-corpus", *args, "--output-dir", str(tmp_path / "uninterrupted")]) == 0
    assert folder_bytes(killed) == folder_bytes(tmp_path / "uninterrupted")


# ============================================================================================== bad input
@pytest.mark.parametrize("line, message", [
    ("not json", ":2: not valid JSON"),
    ('["a list"]', ":2: expected a JSON object"),
    ('{"text": "no id"}', ":2: no 'id' field"),
    ('{"id": "x", "text": 3}', ":2: the text is a int"),
    ('{"id": true, "text": "t"}', ":2: the id is a bool"),
])
def test_bad_records_name_their_line(embedder, tmp_path, line, message):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text(json.dumps({"id": "a", "text": "fine"}) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        encode_to_shards(embedder, JsonlCorpus(corpus), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_corpus_and_duplicate_ids_write_nothing(embedder, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no documents"):
        encode_to_shards(embedder, JsonlCorpus(empty), tmp_path / "out")
    ids = ["a", "b", 7, "a", "7", "c"]  # the integer 7 and the string "7" are the same id
    corpus = write_jsonl(tmp_path / "dups.jsonl", ids, [f"text {i}" for i in range(6)])
    with pytest.raises(ValueError, match=r"unique.*'a' at rows \[0, 3\].*'7' at rows \[2, 4\]"):
        encode_to_shards(embedder, JsonlCorpus(corpus), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_duplicates_are_found_exactly_and_split_across_ranks():
    records = [(f"id{i}", "t") for i in range(50)] + [("id3", "again"), ("id40", "again"), ("id3", "thrice")]
    whole = scan_corpus(records)
    assert whole.duplicates == {"id3": [3, 50, 52], "id40": [40, 51]} and whole.count == 53
    shares = [scan_corpus(records, rank, 3) for rank in range(3)]
    assert {k: v for s in shares for k, v in s.duplicates.items()} == whole.duplicates
    assert {s.sha256 for s in shares} == {whole.sha256}
    assert scan_corpus(records[:50]).sha256 != whole.sha256
    # equal hashes of different ids (a 64-bit collision) are not reported: the ids themselves are compared
    assert exact_duplicates(records, {id_hash("id1"), id_hash("id2")}) == {}
    assert exact_duplicates(records, {id_hash("id40")}) == {"id40": [40, 51]}


def test_a_folder_of_another_run_is_refused_untouched(reference, embedder, corpus_file, tiny_tokenizer, tmp_path):
    folder = copy(reference, tmp_path)
    before = folder_bytes(folder)
    other = MgteEmbedder.from_pretrained(save_embedder(tmp_path / "other", tiny_tokenizer, seed=1), device="cpu")
    changed = write_jsonl(tmp_path / "changed.jsonl", IDS, [*TEXTS[:-1], "another text"])
    attempts = [
        (other, corpus_file, {}, "another run.*weights_sha256"),
        (embedder, corpus_file, {"dimension": 16}, "another run.*dimension: 16 .this run. vs 32"),
        (embedder, corpus_file, {"max_length": 64}, "another run.*max_length"),
        (embedder, changed, {}, "another run.*corpus.sha256"),
    ]
    for model, corpus, kwargs, message in attempts:
        with pytest.raises(ValueError, match=message):
            encode_to_shards(model, JsonlCorpus(corpus), folder, chunk_size=CHUNK, **kwargs)
    assert folder_bytes(folder) == before
    (folder / "chunk-000000" / MANIFEST).write_text('{"format": "mine"}')  # also a lone foreign chunk
    (folder / MANIFEST).unlink()
    before = folder_bytes(folder)
    with pytest.raises(ValueError, match="not an mgte-hf-shards manifest at chunk-000000"):
        encode_to_shards(embedder, JsonlCorpus(corpus_file), folder, chunk_size=CHUNK)
    assert folder_bytes(folder) == before


# ============================================================================================== search
def assert_same_hits(got: list, want: list, exact: bool) -> None:
    """Equal hit lists; unless `exact`, two hits may swap where their scores agree within 1e-6.

    Dense scores come from BLAS calls over differently shaped (and aligned) matrices, so a near-tie may round
    either way; sparse scores are computed by the same postings code and compare exactly, ties included.
    """
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose([h.score for h in g], [h.score for h in w], atol=1e-6, rtol=0)
        assert len({h.id for h in g}) == len(w)
        for a, b in zip(g, w, strict=True):
            assert (a.id, a.index) == (b.id, b.index) or (not exact and abs(a.score - b.score) <= 1e-6), (a, b)


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_shard_search_equals_in_memory_search(reference, embedder, mode):
    """The same vectors in one in-memory HybridIndex rank alike, to the full ranking (sparse ties included)."""
    ids, embeddings = ShardReader(reference).embeddings()
    memory = HybridIndex(embedder)
    memory.add(TEXTS, ids=ids, embeddings=embeddings)
    index = ShardedIndex(reference, embedder)
    assert (len(index), index.dimension) == (103, 32)
    for top_k in (5, len(TEXTS)):  # all 103: the full ranking, the sparse zeros included (ties: earlier first)
        got = index.search(QUERIES, top_k=top_k, mode=mode, dense_weight=0.7, sparse_weight=0.3)
        want = memory.search(QUERIES, top_k=top_k, mode=mode, dense_weight=0.7, sparse_weight=0.3)
        assert_same_hits(got, want, exact=mode == "sparse")
    single = index.search(QUERIES[0], top_k=1000, mode=mode, dense_weight=0.7, sparse_weight=0.3)  # top_k capped
    # encoded alone, the query's vector may differ from the batched one in the last bit: compare the best score
    assert len(single) == len(TEXTS) and abs(single[0].score - got[0][0].score) <= 1e-6


def test_shard_search_equals_a_single_process_run_end_to_end(reference, embedder):
    """Encoding the corpus into one in-memory index instead gives the same hits (vectors agree within 1e-6)."""
    memory = HybridIndex(embedder)
    memory.add(TEXTS, ids=IDS)
    index = ShardedIndex(reference, embedder)
    for mode in ("dense", "sparse", "hybrid"):
        assert_same_hits(index.search(QUERIES, top_k=10, mode=mode), memory.search(QUERIES, top_k=10, mode=mode),
                         exact=False)


def test_shard_search_merges_ties_across_chunks_in_row_order(reference):
    index = ShardedIndex(reference)
    unit = np.zeros((1, 32), dtype=np.float32)
    unit[0, 0] = 1.0
    flat = EmbeddingResult(unit, [{}])  # no shared token; with dense weight 0 every document scores exactly 0
    for mode in ("sparse", "hybrid"):
        hits = index.search("q", top_k=25, mode=mode, query_embeddings=flat, dense_weight=0.0)
        assert [h.index for h in hits] == list(range(25)) and [h.id for h in hits] == IDS[:25]


def test_shard_index_refusals(reference, tiny_tokenizer, tmp_path):
    other = MgteEmbedder.from_pretrained(save_embedder(tmp_path / "other", tiny_tokenizer, seed=1), device="cpu")
    with pytest.raises(ValueError, match="another model.*weights_sha256"):
        ShardedIndex(reference, other)
    with pytest.raises(ValueError, match="no embedder"):
        ShardedIndex(reference).search("q")
    with pytest.raises(ValueError, match="dimension 32"):
        ShardedIndex(reference).search("q", query_embeddings=EmbeddingResult(np.zeros((1, 8), np.float32), [{}]))
    unfinished = copy(reference, tmp_path)
    (unfinished / MANIFEST).unlink()
    with pytest.raises(FileNotFoundError, match="No finished shards"):
        ShardedIndex(unfinished)


def test_reader_verifies_checksums(reference, tmp_path):
    folder = copy(reference, tmp_path)
    values = folder / "chunk-000007" / "sparse_values.npy"
    values.write_bytes(values.read_bytes()[:-4] + b"\x00\x00\x80\x3f")
    reader = ShardReader(folder)  # opening alone reads manifests only
    with pytest.raises(ValueError, match="chunk-000007/sparse_values.npy does not match its recorded sha256"):
        ShardReader(folder, verify=True)
    reader.chunks[6].sparse_csr()  # an intact chunk reads
    with pytest.raises(ValueError, match="chunk-000007/sparse_values.npy does not match"):
        reader.chunks[7].sparse_csr()  # a damaged file is refused when first read
    with pytest.raises(ValueError, match="sparse_values.npy does not match"):
        ShardedIndex(folder).search("q", mode="sparse", query_embeddings=EmbeddingResult(None, [{5: 1.0}]))
    reader.chunks[7].dense()  # the chunk's other files are intact
    (folder / "chunk-000001" / MANIFEST).write_text("{}")
    with pytest.raises(ValueError, match="chunk-000001/manifest.json does not match"):
        ShardReader(folder)
