"""Loading never gives a wrong model without a word: a missing folder, weights that do not fit the config, bytes
overwritten inside the weights, and a reranker loaded as an embedding model are refused with what to do."""

import json
import shutil
import struct

import pytest
import torch

from mgte_hf import MgteForEmbedding, MgteForSequenceClassification, MgteModel
from tiny import make_model


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder")
    make_model(MgteModel).save_pretrained(folder)
    return folder


def copy_of(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "copy")


@pytest.mark.parametrize("path", ["/no/such/model", "./missing-model", "../missing/model", "a/b/c"])
def test_a_missing_folder_is_named_as_missing(path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MgteModel.from_pretrained(path)


def test_weights_that_do_not_fit_the_config_name_each_tensor(encoder_dir, tmp_path):
    folder = copy_of(encoder_dir, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] += 16
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"encoder\.layer\.0\.mlp\.down_proj\.weight is \(32, 48\) in the file but "
                                         r"\(32, 64\) for the config"):
        MgteModel.from_pretrained(folder)
    model = MgteModel.from_pretrained(folder, ignore_mismatched_sizes=True)  # on purpose: re-initialised
    assert model.encoder.layer[0].mlp.down_proj.weight.shape == (32, 64)


def test_overwritten_bytes_that_load_as_nan_are_refused(encoder_dir, tmp_path):
    folder = copy_of(encoder_dir, tmp_path)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    header = struct.unpack("<Q", data[:8])[0]
    data[8 + header + 64: 8 + header + 72] = b"\xff" * 8  # two fp32 NaNs inside the first tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="NaN or inf"):
        MgteModel.from_pretrained(folder)


def test_a_reranker_is_not_loaded_as_an_embedding_model(tmp_path):
    make_model(MgteForSequenceClassification, num_labels=1).save_pretrained(tmp_path / "reranker")
    with pytest.raises(ValueError, match="holds a reranker"):
        MgteForEmbedding.from_pretrained(tmp_path / "reranker")
    assert MgteForSequenceClassification.from_pretrained(tmp_path / "reranker").config.num_labels == 1


def test_loading_info_is_returned_as_transformers_returns_it(encoder_dir):
    model, info = MgteForEmbedding.from_pretrained(encoder_dir, output_loading_info=True)
    assert isinstance(model, MgteForEmbedding) and "classifier.weight" in info["missing_keys"]
    assert torch.isfinite(model.classifier.weight).all()
