"""`MgteEmbeddingFunction`: pymilvus' model-function layout (as its BGE-M3 function), used with a raw pymilvus
client on Milvus Lite; mGTE's hybrid score is WeightedRanker(1.0, 0.1, norm_score=False) over its two fields."""

import inspect

import numpy as np
import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusClient, WeightedRanker
from scipy.sparse import csr_array

from mgte_hf import MgteEmbeddingFunction
from tiny import SENTENCES


def test_the_layout_of_pymilvus_model_functions(embedder, embedder_dir):
    ef = MgteEmbeddingFunction(embedder_dir, device="cpu", dimension=16)
    assert ef.dim == {"dense": 16, "sparse": embedder.model.config.vocab_size}
    docs = ef.encode_documents(SENTENCES[:5])
    expected = embedder.encode_corpus(SENTENCES[:5], dimension=16)
    assert isinstance(docs["dense"], list) and [v.shape for v in docs["dense"]] == [(16,)] * 5
    np.testing.assert_allclose(np.stack(docs["dense"]), expected.dense, atol=1e-6)
    assert isinstance(docs["sparse"], csr_array) and docs["sparse"].shape == (5, ef.dim["sparse"])
    for row, weights in enumerate(expected.sparse):
        part = docs["sparse"][[row]]
        assert dict(zip(part.indices.tolist(), part.data.tolist(), strict=True)) == pytest.approx(weights)
    assert ef(SENTENCES[:2])["sparse"].shape == (2, ef.dim["sparse"])
    only = MgteEmbeddingFunction(embedder, return_sparse=False).encode_queries(["fox"])
    assert set(only) == {"dense"} and only["dense"][0].shape == (32,)
    with pytest.raises(ValueError, match="Nothing to return"):
        MgteEmbeddingFunction(embedder, return_dense=False, return_sparse=False)
    with pytest.raises(TypeError, match="configure loading a folder"):
        MgteEmbeddingFunction(embedder, device="cpu")


def test_the_interface_of_pymilvus_bge_m3_function(embedder):
    """The methods, their parameters and the settings of pymilvus-model's BGEM3EmbeddingFunction (the real class),
    so code written against it runs unchanged."""
    from pymilvus.model.base import BaseEmbeddingFunction
    from pymilvus.model.hybrid import BGEM3EmbeddingFunction

    ef = MgteEmbeddingFunction(embedder)
    abstract = {name for name, f in vars(BaseEmbeddingFunction).items() if getattr(f, "__isabstractmethod__", False)}
    assert abstract == {"__call__", "encode_queries"}
    for name in (*abstract, "encode_documents"):
        ours, theirs = inspect.signature(getattr(ef, name)), inspect.signature(getattr(BGEM3EmbeddingFunction, name))
        assert list(ours.parameters) == list(theirs.parameters)[1:], name  # theirs: unbound, with self
    assert isinstance(inspect.getattr_static(BGEM3EmbeddingFunction, "dim"), property)
    assert isinstance(inspect.getattr_static(MgteEmbeddingFunction, "dim"), property)
    assert set(ef.dim) <= {"dense", "sparse", "colbert_vecs"} and set(ef.dim) >= {"dense", "sparse"}
    settings = set(inspect.signature(MgteEmbeddingFunction).parameters)
    assert {"return_dense", "return_sparse"} <= settings & set(inspect.signature(BGEM3EmbeddingFunction).parameters)


def test_in_place_of_bge_m3_with_a_raw_pymilvus_client(embedder, tmp_path):
    ef = MgteEmbeddingFunction(embedder)
    client = MilvusClient(str(tmp_path / "raw.db"))
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=ef.dim["dense"])
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    params = client.prepare_index_params()
    params.add_index("dense", index_type="FLAT", metric_type="IP")
    params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection("docs", schema=schema, index_params=params)
    docs = ef.encode_documents(SENTENCES)
    client.insert("docs", [{"pk": i, "dense": docs["dense"][i], "sparse": docs["sparse"][[i]]}
                          for i in range(len(SENTENCES))])
    query = ef.encode_queries([SENTENCES[4]])
    requests = [AnnSearchRequest([query["dense"][0]], "dense", {"metric_type": "IP"}, limit=20),
                AnnSearchRequest([query["sparse"][[0]]], "sparse", {"metric_type": "IP"}, limit=20)]
    hits = client.hybrid_search("docs", requests, WeightedRanker(1.0, 0.1, norm_score=False), limit=5)[0]
    exact = embedder.hybrid_scores([SENTENCES[4]], SENTENCES)[0]  # 1.0·dense + 0.1·sparse
    np.testing.assert_allclose([h["distance"] for h in hits], np.sort(exact)[::-1][:5], atol=1e-5)
    assert [h["pk"] for h in hits] == np.argsort(-exact, kind="stable")[:5].tolist()
