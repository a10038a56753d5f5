"""fp32, bf16 and int8 inference side by side, each against its own GEMM bound: `python -m benchmarks.int8`.

One process, one set of weights (the base shape, `--layers` deep): our packed encoder in fp32, in bf16, and in bf16
with int8 linear layers (`mgte_hf.quantization.quantize_model`, quantized from the fp32 weights). Each workload's
forwards and three GEMM probes run in turns (so under the same load): the fp32 and bf16 probes are the
(4096×768)·(768×3072) product of `benchmarks.measure`; the int8 probe is the same product through the kernel the int8
layers use (`Int8Linear.int8_matmul` on int8 activations, bf16 out). A dtype's bound share is the encoder's FLOPs per
second over its own probe's rate. Agreement: the smallest cosine of each dtype's CLS vectors to fp32's. The CPU's
matrix-unit flags and the load average go with every figure: on a shared machine they explain the spread.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mgte_hf import MgteModel
from mgte_hf.quantization import (
    Int8Linear,
    cpu_matrix_units,
    quantize_activation,
    quantize_model,
    top_terms_overlap,
)

from .competitors import base_config, build_encoder, ours_forward
from .measure import GEMM_SHAPE, encoder_flops, gemm_probe, interleaved_times, keep_freed_memory, load_average
from .workloads import Workload, make_workload, token_ids


logger = logging.getLogger("benchmarks")

DTYPES = ("fp32", "bf16", "int8")
INT8_WORKLOADS = ("uniform", "skewed")
INT8_MATRIX_UNITS = ("amx_int8", "avx512_vnni", "avx_vnni")
TARGET_VS_BF16 = 1.5  # the int8 speed target, where the CPU has int8 matrix units
TARGET_COSINE = 0.995
TARGET_NDCG_DELTA = 0.005


def int8_gemm_probe(products: int = 10) -> tuple[Callable[[], None], int]:
    """The reference GEMM `products` times through `Int8Linear.int8_matmul` (bf16 out), and the FLOPs of one call."""
    m, k, n = GEMM_SHAPE
    g = torch.Generator().manual_seed(0)
    layer = Int8Linear(nn.Linear(k, n)).eval()
    x_int8, x_scale = quantize_activation(torch.randn(m, k, generator=g))

    def run() -> None:
        for _ in range(products):
            layer.int8_matmul(x_int8, x_scale, torch.bfloat16)

    return run, 2 * m * k * n * products


def build_models(fp32: MgteModel) -> dict[str, MgteModel]:
    """The fp32 encoder, its bf16 copy and its int8 copy (quantized from fp32, bf16 outside the int8 layers)."""
    return {"fp32": fp32, "bf16": copy.deepcopy(fp32).to(torch.bfloat16),
            "int8": quantize_model(fp32).to(torch.bfloat16)}


def workload_section(workload: Workload, models: dict[str, MgteModel], repeats: int, gemm_repeats: int,
                     seed: int = 0) -> dict:
    """Tokens/s, bound share and agreement of each dtype on one workload, probes timed in the same turns."""
    config = models["fp32"].config
    seqs = token_ids(workload.lengths, config.vocab_size, seed)
    fns: dict[str, Callable[[], object]] = {dtype: ours_forward(model, seqs) for dtype, model in models.items()}
    probes = {"fp32": gemm_probe(torch.float32, gemm_repeats), "bf16": gemm_probe(torch.bfloat16, gemm_repeats),
              "int8": int8_gemm_probe(gemm_repeats)}
    fns.update({f"gemm-{dtype}": probe for dtype, (probe, _) in probes.items()})
    load_before = load_average()
    outputs = {dtype: fns[dtype]() for dtype in DTYPES}  # warm-up, kept for the agreement
    for dtype in DTYPES:
        probes[dtype][0]()
    times = interleaved_times(fns, repeats)
    flops = encoder_flops(workload.lengths, config)
    reference = F.normalize(outputs["fp32"].float(), dim=-1)
    section = {"description": workload.description, "real_tokens": workload.real_tokens, "flops": flops,
               "load_before": load_before, "load_after": load_average(), "dtypes": {}}
    for dtype in DTYPES:
        median, best = statistics.median(times[dtype]), min(times[dtype])
        rate = probes[dtype][1] / statistics.median(times[f"gemm-{dtype}"])
        cosine = (F.normalize(outputs[dtype].float(), dim=-1) * reference).sum(-1).min()
        section["dtypes"][dtype] = {
            "times_s": times[dtype], "median_s": median, "tokens_per_s": workload.real_tokens / median,
            "best_tokens_per_s": workload.real_tokens / best, "gemm_flops_per_s": rate,
            "bound_share": flops / median / rate, "min_cosine_vs_fp32": float(cosine),
        }
    dtypes = section["dtypes"]
    section["int8_vs_bf16"] = dtypes["int8"]["tokens_per_s"] / dtypes["bf16"]["tokens_per_s"]
    section["bf16_vs_fp32"] = dtypes["bf16"]["tokens_per_s"] / dtypes["fp32"]["tokens_per_s"]
    return section


def int8_section(layers: int = 2, workloads: tuple[str, ...] = INT8_WORKLOADS, repeats: int = 3,
                 gemm_repeats: int = 10, seed: int = 0, threads: int | None = None) -> dict:
    """The whole comparison as a report dict (what `format_int8` prints)."""
    if threads is not None:
        torch.set_num_threads(threads)
    units = cpu_matrix_units()
    report = {"layers": layers, "threads": torch.get_num_threads(), "repeats": repeats, "torch": torch.__version__,
              "cpu_matrix_units": units, "int8_matrix_units": any(u in units for u in INT8_MATRIX_UNITS),
              "workloads": {}}
    models = build_models(build_encoder(base_config(layers), seed, torch.float32))
    for name in workloads:
        logger.info("int8 comparison: %s", name)
        report["workloads"][name] = workload_section(make_workload(name, seed), models, repeats, gemm_repeats, seed)
    return report


def format_int8(report: dict) -> str:
    """The table of an `int8_section` report, with the targets."""
    units = ", ".join(report["cpu_matrix_units"]) or "none"
    lines = [f"int8 inference — {report['layers']} layers of the base shape, {report['threads']} threads, torch "
             f"{report['torch']}; CPU matrix units: {units}"]
    header = (f"{'workload':<10}{'dtype':<6}{'tokens/s':>10}{'best':>10}{'GEMM GFLOP/s':>14}{'bound %':>9}"
              f"{'min cos':>10}")
    lines += ["", header, "-" * len(header)]
    for name, section in report["workloads"].items():
        for dtype, e in section["dtypes"].items():
            lines.append(f"{name:<10}{dtype:<6}{e['tokens_per_s']:>10.1f}{e['best_tokens_per_s']:>10.1f}"
                         f"{e['gemm_flops_per_s'] / 1e9:>14.0f}{100 * e['bound_share']:>9.1f}"
                         f"{e['min_cosine_vs_fp32']:>10.5f}")
        lines.append(f"{'':<10}{section['description']}: int8/bf16 {section['int8_vs_bf16']:.2f}x, bf16/fp32 "
                     f"{section['bf16_vs_fp32']:.2f}x; load {_load(section['load_before'])} → "
                     f"{_load(section['load_after'])}")
    lines += ["", "targets:"]
    for name, section in report["workloads"].items():
        speed = section["int8_vs_bf16"]
        where = ("" if report["int8_matrix_units"] else
                 " (this CPU has no int8 matrix units: the target does not apply)")
        lines.append(f"  {name:<8} int8 / bf16 tokens/s {speed:.2f} >= {TARGET_VS_BF16}: "
                     f"{'met' if speed >= TARGET_VS_BF16 else 'NOT met'}{where}")
        cosine = section["dtypes"]["int8"]["min_cosine_vs_fp32"]
        lines.append(f"  {name:<8} int8 min cosine vs fp32 {cosine:.5f} >= {TARGET_COSINE}: "
                     f"{'met' if cosine >= TARGET_COSINE else 'NOT met'}")
    return "\n".join(lines)


def demo_quality(demo_output: Path, cache: str | None = None) -> dict:
    """The demo's TRM model (`<demo_output>/hub/mgte-demo-trm`) on the demo's evaluation sets, float32 against int8.

    The sets, their sampling and the hybrid weight are the run's own (`results.json`). Per set: nDCG@10 of dense,
    sparse and hybrid retrieval for both, the smallest dense cosine over the corpus and queries, and the top-10
    sparse terms' overlap (`top_terms_overlap`: mean, and the share of texts whose top terms are all kept).
    """
    from mgte_hf.data import cache_root
    from mgte_hf.demo import DemoConfig, evaluate_embedder, load_eval_sets
    from mgte_hf.inference import MgteEmbedder

    results = json.loads((demo_output / "results.json").read_text())
    saved = results["config"]
    config = dataclasses.replace(DemoConfig(), eval_sets=tuple(saved["eval_sets"]), seed=saved["seed"],
                                 bible_chapters=saved["bible_chapters"], eval_max_length=saved["eval_max_length"])
    sets = load_eval_sets(cache_root(cache), config)
    folder = demo_output / "hub" / "mgte-demo-trm"
    embedders = {"fp32": MgteEmbedder.from_pretrained(folder, device="cpu"),
                 "bf16": MgteEmbedder.from_pretrained(folder, device="cpu", dtype="bfloat16"),
                 "int8": MgteEmbedder.from_pretrained(folder, quantize="int8"),
                 "int8-fp32": MgteEmbedder.from_pretrained(folder, quantize="int8", dtype="float32")}
    metrics = {name: evaluate_embedder(embedder, sets, config.eval_max_length, sparse=True,
                                       sparse_weight=results["sparse_weight"])[0]
               for name, embedder in embedders.items()}
    report = {"model": str(folder), "sparse_weight": results["sparse_weight"], "sets": {}}
    for name, dataset in sets.items():
        texts = list(dataset.doc_texts()) + list(dataset.queries.values())
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
        report["sets"][name] = entry
    return report


def format_demo_quality(report: dict) -> str:
    lines = [f"quality on the demo's evaluation sets ({report['model']}; hybrid sparse weight "
             f"{report['sparse_weight']:g}); nDCG@10 and agreement with fp32 (int8: bf16 around the int8 layers, "
             "int8-fp32: fp32 around them)"]
    for name, entry in report["sets"].items():
        lines.append(f"  {name} ({entry['texts']} texts)")
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


def _load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.1f}" for x in load)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=2, help="encoder layers (tokens/s scale as 1/layers)")
    parser.add_argument("--workloads", default=",".join(INT8_WORKLOADS), help="comma-separated, e.g. uniform,skewed")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per dtype (the median is kept)")
    parser.add_argument("--gemm-repeats", type=int, default=10, help="reference GEMMs per probe turn")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="tune glibc to reuse freed memory (see measure.keep_freed_memory)")
    parser.add_argument("--demo", type=Path, metavar="DIR",
                        help="also compare fp32 and int8 on the evaluation sets of this `mgte-hf demo` output")
    parser.add_argument("--no-speed", dest="speed", action="store_false", help="skip the speed comparison")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.keep_freed_memory:
        keep_freed_memory()
    workloads = tuple(w.strip() for w in args.workloads.split(",") if w.strip())
    report = {}
    if args.speed:
        report = int8_section(args.layers, workloads, args.repeats, args.gemm_repeats, args.seed, args.threads)
        report["allocator"] = "glibc, freed memory kept" if args.keep_freed_memory else "as installed"
        print(format_int8(report))
    if args.demo:
        report["demo_quality"] = demo_quality(args.demo)
        print(format_demo_quality(report["demo_quality"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
