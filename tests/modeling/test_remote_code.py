"""Saved folders carry their own code: they load offline in a process where mgte_hf cannot be imported."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mgte_hf
from mgte_hf import MgteForEmbedding, MgteForMaskedLM, MgteForSequenceClassification, MgteForTokenClassification
from mgte_hf.modeling import AUTO_MAP
from tiny import make_model, random_batch


MODELING_DIR = Path(mgte_hf.__file__).parent / "modeling"
ALLOWED_TOP_LEVEL = {"torch", "transformers", "safetensors", "__future__", "dataclasses", "importlib", "math", "numbers",
                     "os", "shutil", "pathlib", "warnings"}


@pytest.mark.parametrize("name", ["configuration_mgte.py", "attention_mgte.py", "modeling_mgte.py"])
def test_modeling_files_import_only_torch_transformers_and_siblings(name):
    tree = ast.parse((MODELING_DIR / name).read_text())
    guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for n in ast.walk(t)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in guarded:
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert (MODELING_DIR / f"{node.module}.py").exists()
                continue
            assert getattr(node, "level", 0) == 0, "only single-dot sibling imports are found by transformers"
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for module in modules:
                assert module.split(".")[0] in ALLOWED_TOP_LEVEL, f"{name} imports {module}"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One folder per head, each with inputs and our outputs for the fresh process to compare against."""
    root = tmp_path_factory.mktemp("remote")
    ids, mask = random_batch([6, 3, 9])
    folders = {}
    for cls, kw in ((MgteForMaskedLM, {}), (MgteForSequenceClassification, {"num_labels": 1}),
                    (MgteForTokenClassification, {"num_labels": 1}), (MgteForEmbedding, {})):
        model = make_model(cls, **kw)
        folder = root / cls.__name__
        model.save_pretrained(folder)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask)
        key = "dense" if cls is MgteForEmbedding else "logits"
        (folder / "expected.json").write_text(json.dumps({"ids": ids.tolist(), "mask": mask.tolist(),
                                                          "key": key, "out": getattr(out, key).tolist()}))
        folders[cls.__name__] = folder
    return folders


def test_saved_folder_layout(saved):
    folder = saved["MgteForMaskedLM"]
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "configuration_mgte.py", "attention_mgte.py",
            "modeling_mgte.py"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mgte" and config["auto_map"] == AUTO_MAP


FRESH = r"""
import json, sys, torch
sys.path[:] = [p for p in sys.path if "mgte" not in p.lower() and not p.endswith("src")]
try:
    import mgte_hf
    sys.exit("mgte_hf must not be importable here")
except ImportError:
    pass
import transformers
results = {}
for folder, auto in json.loads(sys.argv[1]):
    model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    exp = json.load(open(folder + "/expected.json"))
    with torch.no_grad():
        out = model(input_ids=torch.tensor(exp["ids"]), attention_mask=torch.tensor(exp["mask"]))
    if auto == "AutoModel":
        results[auto] = list(out.last_hidden_state.shape)
    else:
        results[auto] = (getattr(out, exp["key"]) - torch.tensor(exp["out"])).abs().max().item()
print(json.dumps(results))
"""

AUTO_FOR = {
    "MgteForMaskedLM": "AutoModelForMaskedLM",
    "MgteForSequenceClassification": "AutoModelForSequenceClassification",
    "MgteForTokenClassification": "AutoModelForTokenClassification",
    "MgteForEmbedding": "AutoModelForTextEncoding",
}


def test_fresh_process_loads_every_auto_class_with_trust_remote_code(saved):
    """One fresh interpreter (-I: no PYTHONPATH, no user site; mgte paths removed) loads each head offline."""
    jobs = [[str(saved[name]), auto] for name, auto in AUTO_FOR.items()] + [[str(saved["MgteForEmbedding"]),
                                                                              "AutoModel"]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run([sys.executable, "-I", "-c", FRESH, json.dumps(jobs)], capture_output=True, text=True,
                            env=env, cwd=saved["MgteForEmbedding"].parent, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results.pop("AutoModel") == [3, 9, 32]
    assert set(results) == set(AUTO_FOR.values())
    for auto, diff in results.items():
        assert diff <= 1e-6, auto  # same code, same weights; BLAS may round a last bit differently


def test_auto_classes_resolve_without_trust_remote_code_when_imported(saved):
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForTextEncoding

    assert type(AutoConfig.from_pretrained(saved["MgteForMaskedLM"])) is mgte_hf.MgteConfig
    assert type(AutoModelForMaskedLM.from_pretrained(saved["MgteForMaskedLM"])) is MgteForMaskedLM
    assert type(AutoModel.from_pretrained(saved["MgteForEmbedding"])) is mgte_hf.MgteModel
    assert type(AutoModelForTextEncoding.from_pretrained(saved["MgteForEmbedding"])) is MgteForEmbedding


def test_reload_round_trip_is_identical(saved):
    model = MgteForMaskedLM.from_pretrained(saved["MgteForMaskedLM"]).eval()
    exp = json.loads((saved["MgteForMaskedLM"] / "expected.json").read_text())
    with torch.no_grad():
        out = model(input_ids=torch.tensor(exp["ids"]), attention_mask=torch.tensor(exp["mask"])).logits
    assert (out - torch.tensor(exp["out"])).abs().max().item() == 0.0
    assert model.lm_head.decoder.weight.data_ptr() == model.new.embeddings.word_embeddings.weight.data_ptr()


def test_damaged_weights_give_a_clear_error(saved, tmp_path):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(saved["MgteForEmbedding"], folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    for damaged in (data[: len(data) // 2], b"not a safetensors file"):
        weights.write_bytes(damaged)
        with pytest.raises(ValueError, match="truncated or corrupt"):
            MgteForEmbedding.from_pretrained(folder)


def test_pickle_checkpoints_are_refused(saved, tmp_path):
    model = make_model(MgteForEmbedding)
    with pytest.raises(ValueError, match="safetensors only"):
        model.save_pretrained(tmp_path / "x", safe_serialization=False)
    with pytest.raises(ValueError, match="safetensors only"):
        MgteForEmbedding.from_pretrained(saved["MgteForEmbedding"], use_safetensors=False)
