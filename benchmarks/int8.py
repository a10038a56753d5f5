"""int8 quality on the demo's evaluation sets: `python -m benchmarks.int8 DEMO_OUTPUT_OR_TRM_MODEL`.

The demo's TRM model (`<DEMO_OUTPUT>/hub/mgte-demo-trm`, written by `mgte-hf demo`, or a TRM checkpoint) in fp32,
bf16 and int8 (`quantize="int8"`: bf16 around the int8 layers), on the run's own evaluation sets: nDCG@10 of dense,
sparse and hybrid retrieval and, on the first `AGREEMENT_TEXTS` documents and queries, the smallest dense cosine to
fp32 and how many of each text's top-10 sparse terms are kept. Speed: the dtype section of `benchmarks.run` (int8 eager and compiled against bf16, each
against its own GEMM bound).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from mgte_hf.data import cache_root
from mgte_hf.demo import DemoConfig
from mgte_hf.demo.data import load_eval_sets
from mgte_hf.demo.retrieval import evaluate
from mgte_hf.inference import MgteEmbedder
from mgte_hf.quantization import top_terms_overlap
from mgte_hf.scoring import DEFAULT_SPARSE_WEIGHT


logger = logging.getLogger("benchmarks")

TARGET_NDCG_DELTA = 0.005  # |nDCG@10 - fp32's| for int8
AGREEMENT_TEXTS = 100  # documents and as many queries per set, compared with fp32's vectors
ALONE_TEXTS = 32  # texts encoded one per batch: int8 activation scales are per batch, so vectors depend on it


def demo_settings(path: Path) -> tuple[Path, DemoConfig, float]:
    """The TRM model folder, the evaluation settings and the hybrid sparse weight of `path`: a demo output folder
    (its `hub/mgte-demo-trm` and `results.json`: the run's sets, sampling and weight) or a TRM model folder (the
    demo's default sets and sampling, the library's default sparse weight)."""
    results = path / "results.json"
    if not results.is_file():
        return path, DemoConfig(), DEFAULT_SPARSE_WEIGHT
    run = json.loads(results.read_text())
    saved = run["config"]
    config = dataclasses.replace(DemoConfig(), eval_sets=tuple(saved["eval_sets"]), seed=saved["seed"],
                                 bible_chapters=saved["bible_chapters"], eval_max_length=saved["eval_max_length"])
    return path / "hub" / "mgte-demo-trm", config, run["sparse_weight"]


def demo_quality(path: Path, cache: str | None = None) -> dict:
    """A demo TRM model (see `demo_settings`) on the demo's evaluation sets in fp32, bf16 and int8.

    Per set: nDCG@10 of dense, sparse and hybrid retrieval, the smallest dense cosine over `AGREEMENT_TEXTS`
    documents and as many queries,
    and the top-10 sparse terms' overlap (`top_terms_overlap`: mean, and the share of texts whose top terms are all
    kept); and how far int8 vectors move when a text is encoded alone rather than in its batch.
    """
    folder, config, sparse_weight = demo_settings(path)
    sets = load_eval_sets(cache_root(cache), config)
    embedders = {"fp32": MgteEmbedder.from_pretrained(folder, device="cpu"),
                 "bf16": MgteEmbedder.from_pretrained(folder, device="cpu", dtype="bfloat16"),
                 "int8": MgteEmbedder.from_pretrained(folder, quantize="int8")}
    tokenizer = embedders["fp32"].tokenizer
    metrics = {dtype: {name: evaluate(dataset, config, tokenizer, ["dense", "sparse", "hybrid"], embedder,
                                      hybrid_weights=[(1.0, sparse_weight)])
                       for name, dataset in sets.items()}
               for dtype, embedder in embedders.items()}
    report = {"model": str(folder), "sparse_weight": sparse_weight, "sets": {}}
    for name, dataset in sets.items():
        texts = dataset.doc_texts()[:AGREEMENT_TEXTS] + list(dataset.queries.values())[:AGREEMENT_TEXTS]
        encoded = {dtype: e.encode(texts, max_length=config.eval_max_length) for dtype, e in embedders.items()}
        entry = {"texts": len(texts), "ndcg@10": {kind: {dtype: metrics[dtype][name][kind]["ndcg@10"]
                                                         for dtype in metrics} for kind in metrics["fp32"][name]},
                 "agreement": {}}
        for dtype in list(embedders)[1:]:
            overlap = top_terms_overlap(encoded["fp32"].sparse, encoded[dtype].sparse)
            entry["agreement"][dtype] = {
                "min_cosine": float((encoded["fp32"].dense * encoded[dtype].dense).sum(axis=1).min()),
                "top10_overlap_mean": sum(overlap) / len(overlap),
                "top10_identical_share": sum(o == 1.0 for o in overlap) / len(overlap)}
        alone = embedders["int8"].encode(texts[:ALONE_TEXTS], max_length=config.eval_max_length, batch_tokens=1)
        entry["int8_alone_vs_batched_min_cosine"] = float((alone.dense * encoded["int8"].dense[:ALONE_TEXTS]).sum(1).min())
        report["sets"][name] = entry
    return report


def format_demo_quality(report: dict) -> str:
    lines = [f"quality on the demo's evaluation sets ({report['model']}; hybrid sparse weight "
             f"{report['sparse_weight']:g}); nDCG@10 and agreement with fp32 (int8: bf16 around the int8 layers)"]
    for name, entry in report["sets"].items():
        lines.append(f"  {name} ({entry['texts']} texts; int8 alone vs in its batch: min cosine "
                     f"{entry['int8_alone_vs_batched_min_cosine']:.5f} over {ALONE_TEXTS} texts)")
        for dtype in ("fp32", *entry["agreement"]):
            ndcg = ", ".join(f"{kind} {v[dtype]:.4f}" + (f" ({v[dtype] - v['fp32']:+.4f})" if dtype != "fp32" else "")
                             for kind, v in entry["ndcg@10"].items())
            line = f"    {dtype:<10}{ndcg}"
            if dtype != "fp32":
                a = entry["agreement"][dtype]
                worst = max(abs(v[dtype] - v["fp32"]) for v in entry["ndcg@10"].values())
                line += (f"; min cosine {a['min_cosine']:.5f}, top-10 terms kept {100 * a['top10_overlap_mean']:.1f} % "
                         f"(all for {100 * a['top10_identical_share']:.1f} % of texts); |ΔnDCG| <= "
                         f"{TARGET_NDCG_DELTA}: {'met' if worst <= TARGET_NDCG_DELTA else 'NOT met'}")
            lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, metavar="DEMO_OUTPUT_OR_TRM_MODEL",
                        help="the output folder of an `mgte-hf demo` run, or a TRM model folder")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = demo_quality(args.path)
    print(format_demo_quality(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
