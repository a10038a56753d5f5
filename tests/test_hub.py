"""Self-contained Hub folders: they load offline in a process without mgte_hf; pushing them uses huggingface_hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from mgte_hf import MgteForEmbedding, MgteForMaskedLM, MgteForSequenceClassification
from mgte_hf.hub import push_to_hub, save_hub_folder
from tiny import SENTENCES, make_model


EVAL_TABLE = {"MIRACL-tiny (nDCG@10)": {"dense": 0.5123, "sparse": 0.4011, "hybrid": 0.55}}
TEXTS = SENTENCES[:4]
PAIRS = [(SENTENCES[0], s) for s in SENTENCES[1:4]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_tokenizer):
    """An embedding and a reranker Hub folder, with what our own forward gives on TEXTS and PAIRS."""
    root = tmp_path_factory.mktemp("hub")
    embedder = make_model(MgteForEmbedding, max_position_embeddings=512)
    with torch.no_grad():
        embedder.classifier.weight.mul_(30.0)
    reranker = make_model(MgteForSequenceClassification, num_labels=1, max_position_embeddings=512)
    save_hub_folder(embedder, tiny_tokenizer, root / "embedding", repo_id="acme/mgte-tiny", eval_table=EVAL_TABLE,
                    language=["en", "de"])
    save_hub_folder(reranker, tiny_tokenizer, root / "reranker", kind="reranker")

    texts = tiny_tokenizer(TEXTS, padding=True, return_tensors="pt")
    pairs = tiny_tokenizer([q for q, _ in PAIRS], [d for _, d in PAIRS], padding=True, return_tensors="pt")
    with torch.no_grad():
        emb = embedder(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"], dimension=8)
        full = embedder(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"])
        logits = reranker(input_ids=pairs["input_ids"], attention_mask=pairs["attention_mask"]).logits
    expected = {"text_ids": texts["input_ids"], "text_mask": texts["attention_mask"], "dense8": emb.dense,
                "dense": full.dense, "sparse": full.sparse, "pair_ids": pairs["input_ids"],
                "pair_mask": pairs["attention_mask"], "logits": logits.view(-1)}
    save_file({k: v.contiguous() for k, v in expected.items()}, root / "expected.safetensors")
    return root


def test_folder_content(folders):
    emb = folders / "embedding"
    for name in ("config.json", "model.safetensors", "modeling_mgte.py", "configuration_mgte.py",
                 "attention_mgte.py", "tokenizer.json", "modules.json", "1_Pooling/config.json",
                 "sparse/modules.json", "sparse/mgte_sparse.py", "README.md"):
        assert (emb / name).is_file(), name
    assert not list(emb.rglob("*.bin")) and not list(emb.rglob("*.pt"))  # safetensors only
    assert json.loads((emb / "config.json").read_text())["model_type"] == "mgte"
    assert json.loads((folders / "reranker" / "config_sentence_transformers.json").read_text())["model_type"] == \
        "CrossEncoder"


def test_model_card(folders):
    card = (folders / "embedding" / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: sentence-similarity" in card and "- de" in card
    assert 'AutoModelForTextEncoding.from_pretrained("acme/mgte-tiny", trust_remote_code=True)' in card
    assert "one of [8, 16, 32]" in card  # the allowed dimensions
    assert "SparseEncoder" in card and "lexical" in card and "--to new" in card and "text-embeddings-router" in card
    assert "| MIRACL-tiny (nDCG@10) | 0.5123 | 0.4011 | 0.55 |" in card
    rr = (folders / "reranker" / "README.md").read_text()
    assert "pipeline_tag: text-ranking" in rr and "CrossEncoder" in rr and "Evaluation" not in rr


FRESH = textwrap.dedent("""
    import json, sys
    sys.modules["mgte_hf"] = None  # the folders must not need mgte-hf
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoModelForTextEncoding
    from sentence_transformers import CrossEncoder, SentenceTransformer, SparseEncoder

    root, texts, pairs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    x = load_file(root + "/expected.safetensors")
    diff = lambda a, b: float((torch.as_tensor(a) - b).abs().max())
    out = {}
    model = AutoModelForTextEncoding.from_pretrained(root + "/embedding", trust_remote_code=True).eval()
    with torch.no_grad():
        got = model(input_ids=x["text_ids"], attention_mask=x["text_mask"], dimension=8)
    out["transformers_dense"], out["transformers_sparse"] = diff(got.dense, x["dense8"]), diff(got.sparse, x["sparse"])
    reranker = AutoModelForSequenceClassification.from_pretrained(root + "/reranker", trust_remote_code=True).eval()
    with torch.no_grad():
        out["transformers_logits"] = diff(reranker(input_ids=x["pair_ids"], attention_mask=x["pair_mask"]).logits.view(-1), x["logits"])
    out["st_dense"] = diff(SentenceTransformer(root + "/embedding", trust_remote_code=True).encode(texts), x["dense"])
    sparse = SparseEncoder(root + "/embedding/sparse", trust_remote_code=True).encode(texts, convert_to_tensor=True)
    out["st_sparse_nonzero"] = int(sparse.coalesce().values().gt(0).sum())
    out["st_cross_encoder"] = diff(CrossEncoder(root + "/reranker", trust_remote_code=True).predict(pairs), x["logits"])
    print(json.dumps(out))
""")


def test_fresh_process_loads_the_folders_offline_without_mgte_hf(folders):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", FRESH, str(folders), json.dumps(TEXTS), json.dumps(PAIRS)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result.pop("st_sparse_nonzero") > len(TEXTS)
    assert max(result.values()) < 1e-5, result


class FakeHfApi:
    """Stands in for huggingface_hub.HfApi: records the calls and what the upload would send."""

    def __init__(self):
        self.calls = []
        self.sent = {}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"me/{repo_id}")

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        root = kwargs["folder_path"]
        for dirpath, _, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    self.sent[os.path.relpath(path, root)] = f.read()
        return SimpleNamespace(commit_url="https://hub/commit/1", pr_url="https://hub/pr/7")


def test_push_sends_the_folder(folders):
    api = FakeHfApi()
    url = push_to_hub(folders / "embedding", "mgte-tiny", private=True, token="tok", api=api)
    assert url == "https://hub/commit/1"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]  # no branch without a revision
    assert api.calls[0][2] == {"token": "tok", "private": True, "exist_ok": True}
    upload = api.calls[1][2]
    assert upload["repo_id"] == "me/mgte-tiny" and upload["revision"] is None and upload["create_pr"] is False
    on_disk = {str(p.relative_to(folders / "embedding")): p.read_bytes()
               for p in (folders / "embedding").rglob("*") if p.is_file()}
    assert api.sent == on_disk


def test_push_to_a_branch_as_pull_request(folders):
    api = FakeHfApi()
    url = push_to_hub(folders / "reranker", "acme/rr", revision="v2", create_pr=True, commit_message="v2", api=api)
    assert url == "https://hub/pr/7"
    assert api.calls[1] == ("create_branch", "acme/rr", {"branch": "v2", "token": None, "exist_ok": True})
    upload = api.calls[2][2]
    assert (upload["revision"], upload["create_pr"], upload["commit_message"]) == ("v2", True, "v2")


def test_push_builds_an_hfapi_with_the_token(folders, monkeypatch):
    import huggingface_hub

    made = []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda token=None: made.append(token) or FakeHfApi())
    push_to_hub(folders / "reranker", "acme/rr", token="secret")
    assert made == ["secret"]


def test_push_refuses_an_incomplete_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    api = FakeHfApi()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        push_to_hub(tmp_path, "acme/x", api=api)
    assert api.calls == []


def test_save_hub_folder_errors(tmp_path, tiny_tokenizer):
    with pytest.raises(ValueError, match="reranker"):
        save_hub_folder(make_model(MgteForEmbedding), tiny_tokenizer, tmp_path / "a", kind="reranker")
    with pytest.raises(TypeError, match="MgteForMaskedLM"):
        save_hub_folder(make_model(MgteForMaskedLM), tiny_tokenizer, tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "old.txt").write_text("x")
    with pytest.raises(FileExistsError):
        save_hub_folder(make_model(MgteForEmbedding), tiny_tokenizer, tmp_path / "c")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["old.txt"]
    save_hub_folder(make_model(MgteForEmbedding), tiny_tokenizer, tmp_path / "c", overwrite=True)
    assert not (tmp_path / "c" / "old.txt").exists() and (tmp_path / "c" / "README.md").is_file()
