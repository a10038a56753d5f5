"""ONNX export keeps both outputs of the embedder (and the reranker's logits), with dynamic batch and sequence axes."""

from __future__ import annotations

import argparse

import onnx
import onnxruntime
import pytest
import torch

from mgte_hf import MgteForEmbedding, MgteForMaskedLM, MgteForSequenceClassification, MgteModel
from mgte_hf.cli import export as export_cli
from mgte_hf.export import check_onnx, export_onnx, load_for_export
from tiny import make_model, random_batch


def _run(path, ids, mask) -> dict[str, torch.Tensor]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    return {o.name: torch.from_numpy(v) for o, v in zip(session.get_outputs(), outputs)}


@pytest.fixture(scope="module")
def embedding_onnx(tmp_path_factory):
    model = make_model(MgteForEmbedding, num_hidden_layers=1)  # one layer: the export's cost is tracing
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "embedding.onnx", dimension=16)
    return model, path


def test_graph_has_both_outputs_and_dynamic_axes(embedding_onnx):
    _, path = embedding_onnx
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in graph.output] == ["dense", "sparse"]
    for value in (*graph.input, graph.output[1]):
        assert all(d.dim_param and not d.dim_value for d in value.type.tensor_type.shape.dim), value.name


@pytest.mark.parametrize(("lengths", "left"), [([3, 17, 8, 1], False), ([20, 6], True), ([12], False)])
def test_onnxruntime_matches_torch(lengths, left, embedding_onnx):
    model, path = embedding_onnx
    ids, mask = random_batch(lengths, left=left, seed=len(lengths))
    got = _run(path, ids, mask)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask, dimension=16)
    assert got["dense"].shape == (len(lengths), 16)
    torch.testing.assert_close(got["dense"], want.dense, atol=1e-4, rtol=0)
    torch.testing.assert_close(got["sparse"] * mask, want.sparse, atol=1e-4, rtol=0)
    assert torch.linalg.vector_norm(got["dense"], dim=-1).sub(1).abs().max() < 1e-5


def test_check_detects_a_different_model(embedding_onnx):
    model, path = embedding_onnx
    other = make_model(MgteForEmbedding, seed=1, num_hidden_layers=1)
    assert max(check_onnx(path, model, dimension=16).values()) < 1e-4
    with pytest.raises(ValueError, match="The ONNX file .* was built with another model: weights_sha256"):
        check_onnx(path, other, dimension=16)  # its recorded identity says so before any number is compared
    assert max(check_onnx(path, other, dimension=16, allow_other_model=True).values()) > 1e-3


def test_cli_exports_a_reranker(tmp_path, capsys):
    model = make_model(MgteForSequenceClassification, num_labels=1, num_hidden_layers=1)
    model.save_pretrained(tmp_path / "reranker")
    parser = argparse.ArgumentParser()
    export_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["export", str(tmp_path / "reranker"), str(tmp_path / "rr.onnx")])
    assert args.func(args) == 0
    assert "outputs: logits" in capsys.readouterr().out

    ids, mask = random_batch([9, 2, 14], left=True)
    got = _run(tmp_path / "rr.onnx", ids, mask)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got["logits"], want, atol=1e-4, rtol=0)


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="float32"):
        export_onnx(make_model(MgteForEmbedding).half(), tmp_path / "a.onnx")
    with pytest.raises(TypeError, match="MgteForMaskedLM"):
        export_onnx(make_model(MgteForMaskedLM), tmp_path / "b.onnx")
    with pytest.raises(ValueError, match="dimension=12"):
        export_onnx(make_model(MgteForEmbedding), tmp_path / "c.onnx", dimension=12)
    with pytest.raises(ValueError, match="reranker"):
        export_onnx(make_model(MgteForSequenceClassification, num_labels=1), tmp_path / "d.onnx", dimension=8)
    make_model(MgteModel).save_pretrained(tmp_path / "encoder")
    with pytest.raises(ValueError, match="classifier"):
        load_for_export(tmp_path / "encoder")
    assert not list(tmp_path.glob("*.onnx"))
