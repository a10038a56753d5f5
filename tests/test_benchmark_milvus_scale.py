"""The helpers of `benchmarks.milvus_scale` on tiny vectors: the drawn corpus follows the real one's statistics, the
shards it writes load and search, recall and the report. Speed itself is shown by running the benchmark."""

from __future__ import annotations

import json

import numpy as np
from benchmarks import milvus_scale

from mgte_hf.shards import ShardReader, sparse_to_csr


def real_set(work, count=400, dimension=8, seed=0):
    """A stand-in for the encoded real documents and queries in `work/real/`."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(count, dimension)) + 2.0  # a mean far from 0, as trained vectors have
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    sparse = [{int(t): float(rng.uniform(0.1, 2.0)) for t in rng.choice(60, size=rng.integers(1, 12), replace=False)}
              for _ in range(count)]
    milvus_scale.save_vectors(work / "real" / "docs", dense, sparse_to_csr(sparse))
    milvus_scale.save_vectors(work / "real" / "queries", dense[:5], sparse_to_csr(sparse[:5]))
    (work / "real" / "model.json").write_text(json.dumps({"identity": {"weights_sha256": "x"}}))
    return dense, sparse


def test_a_drawn_corpus_follows_the_real_statistics(tmp_path):
    dense, sparse = real_set(tmp_path)
    assert milvus_scale.corpus_of(300, tmp_path) == tmp_path / "corpus-300"  # a prefix of the real vectors
    head, (indptr, _, _) = milvus_scale.load_vectors(tmp_path / "corpus-300")
    np.testing.assert_array_equal(head, dense[:300].astype(np.float32))
    assert len(indptr) == 301
    drawn, (indptr, indices, values) = milvus_scale.load_vectors(milvus_scale.corpus_of(5000, tmp_path))
    assert drawn.shape == (5000, 8)
    np.testing.assert_allclose(np.linalg.norm(drawn, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(drawn.mean(axis=0), dense.mean(axis=0), atol=0.02)
    counts = np.diff(indptr)
    real_counts = [len(row) for row in sparse]
    assert counts.min() >= 1 and counts.max() <= max(real_counts) and abs(counts.mean() - np.mean(real_counts)) < 1
    rows = [indices[a:b] for a, b in zip(indptr[:-1], indptr[1:], strict=True)]
    assert all((np.diff(row) > 0).all() for row in rows), "distinct terms, ascending"
    assert set(indices.tolist()) <= {t for row in sparse for t in row} and (values >= 0.1).all()


def test_shards_load_into_milvus_and_search(tmp_path):
    real_set(tmp_path)
    folder = milvus_scale.shards_of(300, tmp_path)
    assert len(ShardReader(folder, verify=True)) == 300
    result = milvus_scale.measure("milvus-flat", 300, tmp_path, queries=3)
    assert result["size"] == 300 and result["queries"] == 3 and result["peak_rss_mib"] > 0
    assert [row[0] for row in result["hits"]["dense"]] == ["doc-0", "doc-1", "doc-2"], "a document finds itself"
    exact = milvus_scale.measure("hybrid-index", 300, tmp_path, queries=3)
    assert [exact["hits"][m] for m in ("dense", "sparse")] == [result["hits"][m] for m in ("dense", "sparse")]
    assert milvus_scale.recall([["a", "b"], ["c", "d"]], [["b", "x"], ["c", "d"]]) == 0.75
    result["recall"] = {m: milvus_scale.recall(result["hits"][m], exact["hits"][m]) for m in milvus_scale.MODES}
    report = milvus_scale.table([exact, {**result, "engine": "milvus-hnsw"}, {"engine": "x", "size": 9, "error": "e"}])
    assert "| 300 | hybrid-index |" in report and "| 1.000 / " in report and "| 9 | x | e |" in report
    milvus_scale.chart([exact, result], tmp_path / "chart.png")
    assert (tmp_path / "chart.png").stat().st_size > 1000
