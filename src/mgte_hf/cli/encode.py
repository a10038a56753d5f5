"""`mgte-hf encode`: dense vectors (.npy) and sparse lexical weights (JSONL) of texts."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np

from . import CliError
from .common import (
    add_model_arguments,
    add_overwrite_argument,
    add_record_arguments,
    load,
    model_files,
    read_documents,
)


EXAMPLES = """examples:
  mgte-hf encode --model gte-multilingual-base --text "hello world" --output-sparse -
  mgte-hf encode --model DIR --input corpus.jsonl --text-field text --id-field _id \\
      --output-dense corpus.npy --output-sparse corpus.sparse.jsonl --dimension 256

Row i of the .npy matrix is the i-th text of the input; the sparse JSONL has one line per text:
  {"id": "...", "sparse": {"<token id>": weight, ...}}   (--sparse-tokens keys by token string instead)
A .txt input holds one text per non-empty line (id: the line number); a .jsonl input one JSON object per line with
its id (--id-field) and text (--text-field); a .tsv input a header row naming those columns. Ids must be unique.
Existing output files are replaced only with --overwrite; an output that is an input is always refused.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="dense vectors (.npy) and sparse weights (JSONL) of texts",
                       description="Encode texts with an mGTE embedding model: the dense (Matryoshka) vectors and "
                                   "the sparse lexical weights, from one forward pass.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", metavar="TEXT", help="a text to encode (repeat for more)")
    source.add_argument("--input", metavar="FILE", help="FILE.txt (one text per line), FILE.jsonl or FILE.tsv")
    add_record_arguments(p)
    p.add_argument("--output-dense", metavar="X.npy", help="write the (N, dimension) float32 matrix here")
    p.add_argument("--output-sparse", metavar="X.jsonl", help="write the sparse weights here ('-': standard output)")
    p.add_argument("--sparse-tokens", action="store_true", help="key sparse weights by token string, not token id")
    p.add_argument("--dimension", type=int, help="dense size (Matryoshka truncation); default: the model's full size")
    add_overwrite_argument(p, "the output files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.inference import MgteEmbedder
    from mgte_hf.outputs import check_output, write_atomic

    if not (args.output_dense or args.output_sparse):
        raise CliError("nothing to write: give --output-dense X.npy and/or --output-sparse X.jsonl.")
    if args.output_dense and not args.output_dense.endswith(".npy"):
        raise CliError(f"--output-dense {args.output_dense!r} must end in .npy.")
    outputs = {flag: path for flag, path in (("--output-dense", args.output_dense),
                                             ("--output-sparse", args.output_sparse)) if path and path != "-"}
    if len({Path(p).expanduser().resolve() for p in outputs.values()}) < len(outputs):
        raise CliError("--output-dense and --output-sparse name the same file; give two files.")
    inputs = [args.input] if args.input else []
    inputs += model_files(args.model)
    for flag, path in outputs.items():  # before any work: nothing is encoded for an output that cannot be written
        check_output(path, overwrite=args.overwrite, inputs=inputs, what=flag)
    if args.input:
        ids, texts = read_documents(args.input, args)
    else:
        ids, texts = [str(i) for i in range(1, len(args.text) + 1)], args.text
    embedder = load(MgteEmbedder, args.model, args, dimension=args.dimension)
    result = embedder.encode(texts, dense=bool(args.output_dense), sparse=bool(args.output_sparse))
    if args.output_dense:
        buffer = io.BytesIO()
        np.save(buffer, result.dense, allow_pickle=False)
        Path(args.output_dense).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.output_dense, buffer.getvalue())
    if args.output_sparse:
        rows = result.sparse_tokens() if args.sparse_tokens else [{str(t): w for t, w in r.items()}
                                                                  for r in result.sparse]
        lines = (json.dumps({"id": i, "sparse": row}, ensure_ascii=False) + "\n" for i, row in zip(ids, rows,
                                                                                                   strict=True))
        if args.output_sparse == "-":
            print("".join(lines), end="")
        else:
            Path(args.output_sparse).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(args.output_sparse, lines)
    written = [f"{args.output_dense} {tuple(result.dense.shape)}" if args.output_dense else "",
               args.output_sparse if args.output_sparse not in (None, "-") else ""]
    plural = "s" if len(texts) != 1 else ""
    print(f"encoded {len(texts)} text{plural}" + "".join(f" → {w}" for w in written if w), file=sys.stderr)
    return 0
