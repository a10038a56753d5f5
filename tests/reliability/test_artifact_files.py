"""Reliability: index and shard files carry checksums; a damaged or edited file is refused with its name (issue:
garbled or truncated index files raised bare JSON/safetensors errors; edited files were accepted)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from mgte_hf.corpus import JsonlCorpus
from mgte_hf.hashing import file_record
from mgte_hf.index import HybridIndex
from mgte_hf.shards import ShardedIndex, ShardReader, encode_to_shards
from tiny import SENTENCES


@pytest.fixture(scope="module")
def saved(embedder, tmp_path_factory):
    index = HybridIndex(embedder)
    index.add(SENTENCES[:8], ids=[f"s{i}" for i in range(8)])
    return index.save(tmp_path_factory.mktemp("index") / "idx")


@pytest.fixture
def folder(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "idx")


@pytest.mark.parametrize(("damage", "message"), [
    (lambda f: (f / "index.safetensors").write_bytes((f / "index.safetensors").read_bytes()[:-40]),
     r"damaged: .*index.safetensors has \d+ bytes, not the"),
    (lambda f: (f / "index.safetensors").write_bytes(_flip((f / "index.safetensors").read_bytes())),
     r"damaged: .*index.safetensors does not match its recorded sha256"),
    (lambda f: (f / "documents.jsonl").write_text((f / "documents.jsonl").read_text().replace('"s1"', '"s0"')),
     r"damaged: .*documents.jsonl does not match its recorded sha256"),
    (lambda f: (f / "index.json").write_text("{not json"), r"index.json is damaged \(not valid JSON"),
    (lambda f: (f / "index.json").write_text(json.dumps({**json.loads((f / "index.json").read_text()), "version": 1})),
     r"index.json is a version-1 index; .* rebuild the index"),
    (lambda f: (f / "documents.jsonl").unlink(), r"documents.jsonl is missing"),
])
def test_a_damaged_index_file_is_refused_by_name(folder, damage, message):
    damage(folder)
    with pytest.raises(ValueError, match=message):
        HybridIndex.load(folder)


def test_an_edited_index_with_fresh_checksums_is_still_checked(folder):
    """Someone edits the tensors and writes matching checksums: the structure is checked too."""
    tensors = load_file(str(folder / "index.safetensors"))
    tensors["term_ids"] = tensors["term_ids"].flip(0).contiguous()  # unsorted
    tensors["dense"][2, 0] = float("nan")
    save_file(tensors, str(folder / "index.safetensors"))
    meta = json.loads((folder / "index.json").read_text())
    meta["files"]["index.safetensors"] = file_record(folder / "index.safetensors")
    (folder / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="dense holds NaN.*term_ids are not strictly increasing"):
        HybridIndex.load(folder)
    documents = [json.loads(line) for line in (folder / "documents.jsonl").read_text().splitlines()]
    documents[1]["id"] = "s0"
    (folder / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in documents))
    meta["files"]["documents.jsonl"] = file_record(folder / "documents.jsonl")
    save_file({**tensors, "term_ids": tensors["term_ids"].flip(0).contiguous(),
               "dense": torch.nn.functional.normalize(tensors["dense"].nan_to_num(1.0))},
              str(folder / "index.safetensors"))
    meta["files"]["index.safetensors"] = file_record(folder / "index.safetensors")
    (folder / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"documents.jsonl:2 repeats the id 's0'"):
        HybridIndex.load(folder)


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


def test_damaged_shards_are_refused_by_name(embedder, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(SENTENCES[:8])))
    folder = tmp_path / "shards"
    encode_to_shards(embedder, JsonlCorpus(corpus), folder, chunk_size=3)
    dense = folder / "chunk-000001" / "dense.npy"
    dense.write_bytes(_flip(dense.read_bytes()))
    index = ShardedIndex(folder, embedder)  # opening reads the manifests only
    with pytest.raises(ValueError, match=r"chunk-000001/dense.npy does not match its recorded sha256"):
        index.search("q", mode="dense")
    (folder / "manifest.json").write_text("{garbled")
    with pytest.raises(ValueError, match=r"manifest.json is damaged or not an mgte-hf-shards manifest"):
        ShardReader(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="No finished shards"):
        ShardReader(folder)
