"""`--ablations`: the longest-document queries, the revNTK retraining and the three tables."""

from __future__ import annotations

from transformers import AutoTokenizer

from demo.micro import beir, micro_config
from mgte_hf.demo.ablations import long_document_queries
from mgte_hf.demo.data import load_eval_sets
from mgte_hf.demo.retrieval import embedder_of, evaluate


def test_long_document_queries_keep_the_corpus(tiny_tokenizer):
    dataset = beir("x", ["a", "b", "c"], ["short", "a much longer document with many words in it", "tiny"],
                   [1, 0, 1])
    long = long_document_queries(dataset, tiny_tokenizer, min_tokens=15)
    assert list(long.queries) == ["q0", "q2"] and long.corpus == dataset.corpus
    assert long.qrels == {"q0": {"d1": 1}, "q2": {"d1": 1}} and len(dataset.queries) == 3  # input untouched
    assert not long_document_queries(dataset, tiny_tokenizer, min_tokens=500).queries


def test_ablation_tables(demo_run, tiny_cache):
    result, out = demo_run
    config = micro_config()
    ablations = result.ablations
    assert set(ablations) == {"rev_ntk", "long_documents", "matryoshka"}
    rev_ntk = ablations["rev_ntk"]
    assert rev_ntk["models"] == ["revNTK ×4", "no revNTK"] and rev_ntk["lengths"] == [16, 48]
    assert (out / "checkpoints" / "contrastive-no-revntk" / "model.safetensors").is_file()
    long_sets = rev_ntk["queries"]
    assert long_sets == ablations["long_documents"]["queries"] and long_sets["bible-es-en"] == 5
    assert set(ablations["matryoshka"]["ndcg"]) == {"16", "32"}
    # the full-width Matryoshka figure is the report's dense figure; the long-document figures are the evaluator's
    for name, scores in result.metrics.items():
        assert ablations["matryoshka"]["ndcg"]["32"][name] == scores["dense"]["ndcg@10"]
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    dataset = long_document_queries(load_eval_sets(tiny_cache, config)["bible-es-en"], tokenizer, 16)
    found = evaluate(dataset, config, tokenizer, ["sparse"], embedder_of(out / "checkpoints" / "trm", tokenizer, 48),
                     max_lengths=[16, 48])
    assert ablations["long_documents"]["metrics"]["bible-es-en"]["sparse"]["48"] == found["sparse_L48"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "| set (queries) | revNTK ×4 L16 | revNTK ×4 L48 | no revNTK L16 | no revNTK L48 |" in report
    assert "| dimension | bytes per document | MiB per million documents | gnome-de-en | bible-es-en |" in report
