"""`mgte-hf export`: ONNX export of an embedding model (dense + sparse outputs) or a reranker (logits)."""

from __future__ import annotations

import argparse


DESCRIPTION = """\
Export a checkpoint folder (mgte, released 'new' or transformers 'gte' layout) to ONNX, float32, with dynamic batch
and sequence axes. Inputs: input_ids, attention_mask. Outputs: dense (normalised) and sparse (token weights) for an
embedding model; logits for a reranker (sequence-classification checkpoint). The file is checked with onnxruntime
against torch unless --no-check."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export an embedding model or reranker to ONNX", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="checkpoint folder")
    p.add_argument("out", metavar="OUT", help="the .onnx file to write")
    p.add_argument("--dimension", type=int, help="truncate the dense output to this allowed size (embedding models)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset version (default: %(default)s)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime-versus-torch check")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mgte_hf.cli import CliError
    from mgte_hf.export import export_onnx, load_for_export
    from mgte_hf.modeling import MgteForEmbedding

    if Path(args.out).exists() and not args.overwrite:
        raise CliError(f"{args.out} exists; pass --overwrite to replace it.")
    model = load_for_export(args.src)
    path = export_onnx(model, args.out, dimension=args.dimension, opset=args.opset, check=not args.no_check)
    outputs = "dense, sparse" if isinstance(model, MgteForEmbedding) else "logits"
    print(f"{args.src} ({type(model).__name__}) -> {path} (outputs: {outputs})")
    return 0
