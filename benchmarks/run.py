"""Speed and memory of the packed mGTE encoder against transformers' `GteModel`: `python -m benchmarks.run`.

In one process, with the same weights, dtype and thread count: `GteModel` on one padded batch (SDPA), the same on
length-sorted mini-batches of 8, and our encoder with the automatic backend on the packed workload. Timed calls run
in turns (median of `--repeats`), after one untimed warm-up call each whose outputs are compared. The machine's bound
is the (4096×768)·(768×3072) GEMM rate, timed in the same turns (so under the same load), divided by the encoder's
FLOPs per real token. Peak memory: see `benchmarks.memory` (a fresh process per figure). The MLM training step is
measured at two depths and projected to 12 layers (see `train_section`).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from mgte_hf import MgteConfig, MgteForMaskedLM
from mgte_hf.modeling.modeling_mgte import dense_embedding

from .competitors import (
    FORWARD_COMPETITORS,
    base_config,
    build_encoder,
    gte_train_step,
    make_forward,
    mlm_labels,
    ours_compiled_forward,
    ours_train_step,
)
from .gte import gte_from_mgte, gte_mlm_from_mgte
from .measure import (
    encoder_flops,
    gemm_probe,
    interleaved_times,
    keep_freed_memory,
    load_average,
    matrix_unit_flags,
)
from .memory import measure_in_subprocess
from .profile_forward import category_shares, profile_call
from .workloads import WORKLOADS, Workload, make_workload, token_ids


logger = logging.getLogger("benchmarks")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CPU_WORKLOADS = ("skewed", "uniform", "long")
# The CPU targets: (section, quantity, comparison, threshold).
TARGETS = (
    ("skewed", "ours / gte-padded tokens/s", ">=", 8.0),
    ("skewed", "ours / gte-sorted tokens/s", ">=", 2.5),
    ("uniform", "ours / gte-padded tokens/s", ">=", 1.05),
    ("uniform", "ours share of the fp32 GEMM bound", ">=", 0.88),
    ("long", "ours extra peak memory, GiB (fp32)", "<=", 0.6),
    ("long", "ours tokens/s / ours uniform tokens/s", ">=", 0.45),
    ("dtypes", "ours bf16 / fp32 tokens/s at 512", ">=", 1.8),
    ("dtypes", "min cosine bf16 vs fp32 embeddings", ">=", 0.999),
    ("dtypes", "bf16 share of the bf16 GEMM bound, uniform", ">=", 0.70),
    ("dtypes", "bf16 share of the bf16 GEMM bound, skewed", ">=", 0.70),
    ("dtypes", "element-wise + copies share of the bf16 forward", "<=", 0.15),
    ("train", "padded / ours MLM step time, 12 layers (proj.)", ">=", 4.0),
)


def cosine_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Smallest row-wise cosine similarity of two `(B, H)` tensors."""
    return float(F.cosine_similarity(a.float(), b.float(), dim=-1).min())


def time_competitors(fns: dict[str, Callable[[], torch.Tensor]], repeats: int) -> tuple[dict, dict]:
    """Warm up each competitor once (keeping its output), then time them in turns."""
    outputs = {name: fn() for name, fn in fns.items()}
    return outputs, interleaved_times(fns, repeats)


def forward_section(workload: Workload, model, gte, args: argparse.Namespace) -> dict:
    """Throughput, ratios, bound share and (optionally) peak memory of the forward competitors on one workload."""
    config: MgteConfig = model.config
    seqs = token_ids(workload.lengths, config.vocab_size, args.seed)
    names = [n for n in FORWARD_COMPETITORS if not (n == "gte-sorted" and len(seqs) <= args.sorted_batch)]
    fns = {n: make_forward(n, model if n == "ours" else gte, seqs, args.sorted_batch) for n in names}
    fns["gemm"], gemm_flops = gemm_probe(model.dtype, args.gemm_repeats)
    outputs, times = time_competitors(fns, args.repeats)
    rate = gemm_flops / statistics.median(times.pop("gemm"))
    flops = encoder_flops(workload.lengths, config)
    section = {
        "description": workload.description, "sequences": len(seqs), "real_tokens": workload.real_tokens,
        "padded_tokens": workload.padded_tokens, "real_share_of_padded": workload.real_tokens / workload.padded_tokens,
        "flops": flops, "gemm_flops_per_s": rate, "bound_tokens_per_s": rate * workload.real_tokens / flops,
        "min_cosine_vs_gte_padded": cosine_agreement(outputs["ours"], outputs["gte-padded"]),
        "max_abs_diff_vs_gte_padded": float((outputs["ours"].float() - outputs["gte-padded"].float()).abs().max()),
        "competitors": {},
    }
    for name in names:
        median = statistics.median(times[name])
        section["competitors"][name] = {
            "times_s": times[name], "median_s": median, "tokens_per_s": workload.real_tokens / median,
            "bound_share": flops / median / rate,
        }
    for name, entry in section["competitors"].items():
        for ref in ("gte-padded", "gte-sorted"):
            if ref in section["competitors"]:
                entry[f"vs_{ref}"] = section["competitors"][ref]["median_s"] / entry["median_s"]
        if args.memory:
            figures = measure_in_subprocess(name, workload.name, config.num_hidden_layers, model.dtype, args.threads,
                                            args.seed, args.sorted_batch, args.keep_freed_memory)
            entry["extra_peak_mib"] = figures["extra_peak_mib"]
    return section


# The inference dtypes compared in `dtype_section`: name → (model dtype, GEMM probe dtype, compiled).
DTYPE_VARIANTS = {
    "ours-fp32": (torch.float32, torch.float32, False),
    "ours-bf16": (torch.bfloat16, torch.bfloat16, False),
    "ours-bf16-compiled": (torch.bfloat16, torch.bfloat16, True),
}


def dtype_section(model, args: argparse.Namespace) -> dict:
    """Each inference dtype on the uniform and skewed workloads, each as a share of its own dtype's GEMM bound (the
    probes timed in the same turns), its agreement with fp32, the CPU's matrix units, and where bf16's time goes."""
    models = {dtype: copy.deepcopy(model).to(dtype) for dtype in {v[0] for v in DTYPE_VARIANTS.values()}}
    section = {"cpu_flags": matrix_unit_flags(), "workloads": {}}
    for name in ("uniform", "skewed"):
        workload = make_workload(name, args.seed)
        seqs = token_ids(workload.lengths, model.config.vocab_size, args.seed)
        fns = {who: (ours_compiled_forward if compiled else partial(make_forward, "ours"))(models[dtype], seqs)
               for who, (dtype, _, compiled) in DTYPE_VARIANTS.items()}
        probes = {}
        for probe_dtype in {v[1] for v in DTYPE_VARIANTS.values()}:
            fns[f"gemm-{probe_dtype}"], probes[probe_dtype] = gemm_probe(probe_dtype, args.gemm_repeats)
        outputs, times = time_competitors(fns, args.repeats)
        rates = {dtype: flops / statistics.median(times.pop(f"gemm-{dtype}")) for dtype, flops in probes.items()}
        flops = encoder_flops(workload.lengths, model.config)
        reference = dense_embedding(outputs["ours-fp32"])
        entries = {}
        for who, (_, probe_dtype, _) in DTYPE_VARIANTS.items():
            median = statistics.median(times[who])
            entries[who] = {"times_s": times[who], "tokens_per_s": workload.real_tokens / median,
                            "gemm_flops_per_s": rates[probe_dtype], "bound_share": flops / median / rates[probe_dtype],
                            "min_cosine_vs_fp32": cosine_agreement(dense_embedding(outputs[who]), reference)}
        section["workloads"][name] = {"description": workload.description, "competitors": entries}
    uniform = section["workloads"]["uniform"]["competitors"]
    section["bf16_vs_fp32"] = uniform["ours-bf16"]["tokens_per_s"] / uniform["ours-fp32"]["tokens_per_s"]
    seqs = token_ids(make_workload("uniform", args.seed).lengths, model.config.vocab_size, args.seed)
    section["bf16_profile"] = category_shares(profile_call(make_forward("ours", models[torch.bfloat16], seqs)))
    return section


def train_step_times(layers: int, args: argparse.Namespace) -> dict:
    """Median time of one MLM training step (forward + backward, 30 % of tokens labelled) on the skewed batch."""
    torch.manual_seed(args.seed)
    ours = MgteForMaskedLM(base_config(layers, sparse_prediction=True)).to(DTYPES[args.dtype]).train()
    theirs = gte_mlm_from_mgte(ours)
    seqs = token_ids(make_workload("skewed", args.seed).lengths, ours.config.vocab_size, args.seed)
    labels = mlm_labels(seqs, seed=args.seed)
    fns = {"gte-padded": gte_train_step(theirs, seqs, labels, args.train_micro_batch),
           "ours": ours_train_step(ours, seqs, labels)}
    losses, times = time_competitors(fns, args.repeats)
    return {"times_s": times, "median_s": {name: statistics.median(t) for name, t in times.items()},
            "warmup_loss": {name: float(v) for name, v in losses.items()},
            "labelled_tokens": int(sum(int((lab != -100).sum()) for lab in labels))}


def train_section(args: argparse.Namespace, target_layers: int = 12) -> dict:
    """Packed vs padded MLM training step, measured at the `--train-layers` depths.

    A padded 12-layer step does not fit this machine's memory (≈ 80 GB of activations for 32 × 2048 tokens), and
    the step time is linear in depth: t(L) = fixed + L · per_layer, where `fixed` (embeddings, the MLM head over
    the labelled tokens, the loss) is the same work for both. Two measured depths give both terms per competitor,
    and so the step time and the ratio at `target_layers`.
    """
    by_depth = {layers: train_step_times(layers, args) for layers in args.train_layers}
    section = {"depths": by_depth, "measured_speedup": {
        layers: m["median_s"]["gte-padded"] / m["median_s"]["ours"] for layers, m in by_depth.items()}}
    if len(by_depth) >= 2:
        section["projected"] = project_depth({layers: m["median_s"] for layers, m in by_depth.items()}, target_layers)
    return section


def project_depth(medians: dict[int, dict[str, float]], target_layers: int) -> dict:
    """Fit t(L) = fixed + L · per_layer through the shallowest and deepest measured depths of each competitor."""
    (low, a), (high, b) = min(medians.items()), max(medians.items())
    out: dict = {"layers": target_layers}
    for name in a:
        per_layer = (b[name] - a[name]) / (high - low)
        fixed = a[name] - low * per_layer
        out[name] = {"per_layer_s": per_layer, "fixed_s": fixed, "step_s": fixed + target_layers * per_layer}
    out["speedup"] = out["gte-padded"]["step_s"] / out["ours"]["step_s"]
    return out


def target_values(report: dict) -> list[float | None]:
    """The measured value of each entry of `TARGETS` (None where the run skipped it)."""
    w = report["workloads"]

    def comp(name: str, who: str, key: str) -> float | None:
        return w.get(name, {}).get("competitors", {}).get(who, {}).get(key)

    long_mem = comp("long", "ours", "extra_peak_mib")
    long_tps, uniform_tps = comp("long", "ours", "tokens_per_s"), comp("uniform", "ours", "tokens_per_s")
    dtypes, train = report.get("dtypes"), report.get("train")

    def best_bf16(workload: str) -> float | None:
        if not dtypes:
            return None
        entries = dtypes["workloads"][workload]["competitors"]
        return max(entries[who]["bound_share"] for who in ("ours-bf16", "ours-bf16-compiled"))

    fp32 = report["dtype"] == "float32"
    return [
        comp("skewed", "ours", "vs_gte-padded"),
        comp("skewed", "ours", "vs_gte-sorted"),
        comp("uniform", "ours", "vs_gte-padded"),
        comp("uniform", "ours", "bound_share") if fp32 else None,
        long_mem / 1024 if long_mem is not None and fp32 else None,
        long_tps / uniform_tps if long_tps and uniform_tps else None,
        dtypes["bf16_vs_fp32"] if dtypes else None,
        dtypes["workloads"]["uniform"]["competitors"]["ours-bf16"]["min_cosine_vs_fp32"] if dtypes else None,
        best_bf16("uniform"),
        best_bf16("skewed"),
        (dtypes["bf16_profile"].get("element-wise", 0.0) + dtypes["bf16_profile"].get("data movement", 0.0)
         if dtypes else None),
        train["projected"]["speedup"] if train and "projected" in train else None,
    ]


def format_report(report: dict) -> str:
    """The human-readable table of a report."""
    lines = [f"mgte-hf benchmark — {report['layers']} layers, {report['dtype']}, {report['threads']} threads, "
             f"allocator {report['allocator']}, load average {report['load_before']} → {report['load_after']}"]
    if report["layers"] != 12:
        lines.append(f"(tokens/s of the 12-layer model ≈ these × {report['layers']}/12; ratios and shares carry "
                     "over)")
    header = (f"{'workload':<10}{'competitor':<12}{'real tok':>9}{'median s':>10}{'tokens/s':>10}{'vs padded':>10}"
              f"{'vs sorted':>10}{'bound %':>9}{'peak+ MiB':>10}")
    lines += ["", header, "-" * len(header)]
    for name, section in report["workloads"].items():
        for who, e in section["competitors"].items():
            ratios = f"{_num(e.get('vs_gte-padded'), 'x'):>10}{_num(e.get('vs_gte-sorted'), 'x'):>10}"
            lines.append(f"{name:<10}{who:<12}{section['real_tokens']:>9}{e['median_s']:>10.3f}"
                         f"{e['tokens_per_s']:>10.1f}{ratios}{100 * e['bound_share']:>9.1f}"
                         f"{_num(e.get('extra_peak_mib'), '', 0):>10}")
        lines.append(f"{'':<10}real/padded {100 * section['real_share_of_padded']:.1f} %, GEMM "
                     f"{section['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s → bound {section['bound_tokens_per_s']:.1f} "
                     f"tokens/s; ours vs gte-padded CLS: min cosine {section['min_cosine_vs_gte_padded']:.6f}, max "
                     f"|diff| {section['max_abs_diff_vs_gte_padded']:.2e}")
    if report.get("dtypes"):
        lines += ["", *_dtype_lines(report["dtypes"])]
    if report.get("train"):
        lines += ["", *_train_lines(report["train"])]
    lines += ["", "targets (CPU):"]
    for target in report["targets"]:
        verdict = "skipped" if target["value"] is None else ("met" if target["met"] else "NOT met")
        value = "—" if target["value"] is None else f"{target['value']:.3f}"
        lines.append(f"  {target['section']:<8}{target['quantity']:<48}{value:>8} {target['comparison']} "
                     f"{target['threshold']:<6} {verdict}")
    return "\n".join(lines)


def _dtype_lines(dtypes: dict) -> list[str]:
    flags = ", ".join(flag for flag, present in dtypes["cpu_flags"].items() if present) or "none listed"
    header = f"{'workload':<10}{'dtype':<22}{'tokens/s':>10}{'GEMM GF/s':>11}{'bound %':>9}{'cos vs fp32':>13}"
    lines = [f"inference dtypes, each against its own GEMM bound (CPU units: {flags})", header, "-" * len(header)]
    for name, section in dtypes["workloads"].items():
        for who, e in section["competitors"].items():
            lines.append(f"{name:<10}{who:<22}{e['tokens_per_s']:>10.1f}{e['gemm_flops_per_s'] / 1e9:>11.0f}"
                         f"{100 * e['bound_share']:>9.1f}{e['min_cosine_vs_fp32']:>13.6f}")
    profile = ", ".join(f"{name} {100 * share:.1f} %" for name, share in dtypes["bf16_profile"].items())
    lines.append(f"bf16 forward (uniform, eager) time by kind: {profile}")
    return lines


def _train_lines(train: dict) -> list[str]:
    lines = []
    for layers, m in train["depths"].items():
        med = m["median_s"]
        lines.append(f"MLM step (forward + backward, skewed batch, {m['labelled_tokens']} labelled tokens), {layers} "
                     f"layer(s): padded {med['gte-padded']:.2f} s, ours {med['ours']:.2f} s → "
                     f"{train['measured_speedup'][layers]:.2f}x")
    if "projected" in train:
        p = train["projected"]
        padded, ours = p["gte-padded"], p["ours"]
        fit = (f"padded {padded['fixed_s']:.2f} + L · {padded['per_layer_s']:.2f} s, "
               f"ours {ours['fixed_s']:.2f} + L · {ours['per_layer_s']:.2f} s")
        lines.append(f"  t(L) = fixed + L · per layer: {fit} → at {p['layers']} layers {padded['step_s']:.1f} s vs "
                     f"{ours['step_s']:.1f} s: {p['speedup']:.2f}x")
    return lines


def _num(value: float | None, suffix: str, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}{suffix}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (12 = the real model)")
    parser.add_argument("--workloads", default=",".join(CPU_WORKLOADS),
                        help=f"comma-separated, from {sorted(WORKLOADS)} (documents is meant for a GPU)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per competitor (the median is kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sorted-batch", type=int, default=8, help="mini-batch size of the length-sorted baseline")
    parser.add_argument("--train-layers", default="1,2",
                        help="depths of the MLM training-step comparison (two or more also project to 12 layers)")
    parser.add_argument("--train-micro-batch", type=int, default=8,
                        help="rows per micro-batch of the padded MLM step (same work, gradients accumulated)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip peak-memory measurements")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help="tune glibc to reuse freed memory (see measure.keep_freed_memory); default: as installed")
    parser.add_argument("--no-dtypes", dest="dtypes", action="store_false",
                        help="skip the inference-dtype comparison (fp32, bf16, bf16 compiled)")
    parser.add_argument("--no-train", dest="train", action="store_false", help="skip the MLM training step")
    parser.add_argument("--gemm-repeats", type=int, default=10,
                        help="reference GEMMs per turn of the bound measurement (timed in turns with the competitors)")
    parser.add_argument("--json", type=Path, help="also write the full report to this JSON file")
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {sorted(WORKLOADS)}.")
    try:
        args.train_layers = sorted({int(n) for n in args.train_layers.split(",") if n.strip()})
    except ValueError:
        args.train_layers = []
    if not args.train_layers or args.train_layers[0] < 1:
        parser.error("--train-layers takes positive depths, e.g. 1,2.")
    for name in ("layers", "threads", "repeats", "sorted_batch", "gemm_repeats", "train_micro_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1.")
    return args


def run(args: argparse.Namespace) -> dict:
    """Run every section the arguments ask for and return the report (written to `--json` after each section)."""
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    report = {
        "layers": args.layers, "dtype": args.dtype, "threads": args.threads, "repeats": args.repeats,
        "allocator": "glibc, freed memory kept" if args.keep_freed_memory else "as installed",
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "load_before": load_average(), "workloads": {},
    }
    model = build_encoder(base_config(args.layers), args.seed, DTYPES[args.dtype])
    gte = gte_from_mgte(model)
    for name in args.workloads:
        logger.info("workload %s", name)
        report["workloads"][name] = forward_section(make_workload(name, args.seed), model, gte, args)
        checkpoint(report, args.json)
    del gte
    if args.dtypes and args.dtype == "float32":
        logger.info("inference dtypes")
        report["dtypes"] = dtype_section(model, args)
        checkpoint(report, args.json)
    del model
    if args.train:
        logger.info("MLM training step")
        report["train"] = train_section(args)
    report["load_after"] = load_average()
    report["targets"] = [
        {"section": s, "quantity": q, "comparison": c, "threshold": t, "value": v,
         "met": None if v is None else (v >= t if c == ">=" else v <= t)}
        for (s, q, c, t), v in zip(TARGETS, target_values(report))
    ]
    checkpoint(report, args.json)
    return report


def checkpoint(report: dict, path: Path | None) -> None:
    """Write the report so far, so that a run stopped by a later section keeps what it measured."""
    if path is not None:
        path.write_text(json.dumps(report, indent=1))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    report = run(args)
    print(format_report(report))
    if args.json:
        logger.info("report written to %s", args.json)


if __name__ == "__main__":
    main()
