"""A real `torchrun --nproc_per_node 2` (gloo, CPU) of `encode-corpus` equals the single-process shards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from inference.folders import save_embedder
from mgte_hf.inference import MgteEmbedder
from mgte_hf.shards import JsonlCorpus, ShardReader, encode_to_shards
from tiny import SENTENCES


TOLERANCE = 1e-6
COUNT, CHUNK = 3000, 250  # 12 chunks: 6 per rank


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_process_torchrun_equals_one_process(tmp_path, tiny_tokenizer, one_thread):
    model = save_embedder(tmp_path / "model", tiny_tokenizer)
    texts = [f"{SENTENCES[i % 20]} {SENTENCES[(i // 20) % 20].lower()} {i}" for i in range(COUNT)]
    ids = [f"doc-{(i * 7919) % COUNT}" for i in range(COUNT)]  # unique, not sorted: order must be the corpus's
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": d, "body": t}) + "\n" for d, t in zip(ids, texts, strict=True)),
                      encoding="utf-8")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "mgte_hf", "encode-corpus", "--model", str(model), "--input", str(corpus),
           "--output-dir", str(tmp_path / "two"), "--id-field", "_id", "--text-field", "body",
           "--chunk-size", str(CHUNK), "--dimension", "16", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for rank in (0, 1):  # each rank did its own half: chunks c with c mod 2 == rank
        assert f"rank {rank}/2: encoded 6 chunks ({COUNT // 2} texts" in proc.stderr, proc.stderr[-3000:]

    embedder = MgteEmbedder.from_pretrained(model, device="cpu")
    encode_to_shards(embedder, JsonlCorpus(corpus, "_id", "body"), tmp_path / "one", chunk_size=CHUNK, dimension=16)
    one, two = ShardReader(tmp_path / "one", verify=True), ShardReader(tmp_path / "two", verify=True)
    assert one.manifest["run"] == two.manifest["run"] and len(two) == COUNT and two.dimension == 16
    (one_ids, one_emb), (two_ids, two_emb) = one.embeddings(), two.embeddings()
    assert two_ids == one_ids == ids
    np.testing.assert_allclose(two_emb.dense, one_emb.dense, atol=TOLERANCE, rtol=0)
    for a, b in zip(two_emb.sparse, one_emb.sparse, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose(list(a.values()), [b[t] for t in a], atol=TOLERANCE, rtol=0)
