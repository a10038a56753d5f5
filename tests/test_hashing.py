"""sha256 of files and the identity of a model (`mgte_hf.hashing`)."""

import hashlib

from inference.folders import SPREAD
from mgte_hf import MgteForEmbedding
from mgte_hf.hashing import file_record, identity_differences, model_identity, sha256_bytes, sha256_file
from tiny import make_model


def test_file_hashes(tmp_path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 5000  # over one read block
    path.write_bytes(data)
    assert sha256_file(path) == sha256_bytes(data) == hashlib.sha256(data).hexdigest()
    assert file_record(path) == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def test_model_identity_tells_weights_config_tokenizer_and_dtype_apart(tiny_tokenizer):
    model = make_model(MgteForEmbedding, vocab_size=len(tiny_tokenizer), **SPREAD)
    same = make_model(MgteForEmbedding, vocab_size=len(tiny_tokenizer), **SPREAD)
    ours = model_identity(model, tiny_tokenizer)
    assert ours == model_identity(same, tiny_tokenizer)  # same seed, same weights
    assert set(ours) == {"weights_sha256", "config_sha256", "tokenizer_sha256", "dtype"}
    other = make_model(MgteForEmbedding, seed=1, vocab_size=len(tiny_tokenizer), **SPREAD)  # same shape
    assert identity_differences(model_identity(other, tiny_tokenizer), ours)[0].startswith("weights_sha256: ")
    same.config.rope_theta = 500.0
    assert [d.split(":")[0] for d in identity_differences(model_identity(same, tiny_tokenizer), ours)] == [
        "config_sha256"]
    same.config._name_or_path = "elsewhere"  # bookkeeping: not part of the identity
    same.config.rope_theta = model.config.rope_theta
    assert model_identity(same, tiny_tokenizer) == ours
    assert model_identity(model.half(), tiny_tokenizer)["dtype"] == "float16"


def test_identity_differences_walk_nested_records():
    ours = {"model": {"weights_sha256": "a" * 64, "dtype": "float32"}, "dimension": 16}
    theirs = {"model": {"weights_sha256": "b" * 64, "dtype": "float32"}, "dimension": 32}
    assert identity_differences(ours, theirs) == [
        "dimension: 16 (this run) vs 32 (on disk)", f"model.weights_sha256: {'a' * 12}… (this run) vs {'b' * 12}… "
                                                    "(on disk)"]
    assert identity_differences(ours, None) == ["run: None"]
