"""`mgte-hf export`: ONNX export of an embedding model (dense + sparse outputs) or a reranker (logits)."""

from __future__ import annotations

import argparse

from . import CliError


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
    p.add_argument("--opset", type=int, default=18, help="ONNX opset version, 18 or newer (default: %(default)s)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime-versus-torch check")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.export import MIN_OPSET, export_onnx, load_for_export
    from mgte_hf.modeling import MgteForEmbedding
    from mgte_hf.outputs import check_output

    from .common import model_files

    if args.opset < MIN_OPSET:
        raise CliError(f"--opset {args.opset}: the exporter writes opset {MIN_OPSET} or newer.")
    check_output(args.out, overwrite=args.overwrite, inputs=model_files(args.src), what="OUT")  # before any work
    model = load_for_export(args.src)
    path = export_onnx(model, args.out, dimension=args.dimension, opset=args.opset, check=not args.no_check,
                       overwrite=args.overwrite)
    outputs = "dense, sparse" if isinstance(model, MgteForEmbedding) else "logits"
    print(f"{args.src} ({type(model).__name__}) -> {path} (outputs: {outputs})")
    return 0
