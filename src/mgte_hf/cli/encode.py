"""`mgte-hf encode`: dense vectors (.npy) and sparse lexical weights (JSONL) of texts.

Also home of what `rerank` and `search` share: reading text files, the model options and loading the models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import CliError


EXAMPLES = """examples:
  mgte-hf encode --model gte-multilingual-base --text "hello world" --output-sparse -
  mgte-hf encode --model DIR --input corpus.jsonl --field text --id-field _id \\
      --output-dense corpus.npy --output-sparse corpus.sparse.jsonl --dimension 256

Row i of the .npy matrix is the i-th text of the input; the sparse JSONL has one line per text:
  {"id": ..., "sparse": {"<token id>": weight, ...}}   (--sparse-tokens keys by token string instead)
A .txt input holds one text per non-empty line (id: the line number); a .jsonl input one JSON object per line.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="dense vectors (.npy) and sparse weights (JSONL) of texts",
                       description="Encode texts with an mGTE embedding model: the dense (Matryoshka) vectors and "
                                   "the sparse lexical weights, from one forward pass.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", metavar="TEXT", help="a text to encode (repeat for more)")
    source.add_argument("--input", metavar="FILE", help="FILE.txt (one text per line) or FILE.jsonl")
    add_record_arguments(p)
    p.add_argument("--output-dense", metavar="X.npy", help="write the (N, dimension) float32 matrix here")
    p.add_argument("--output-sparse", metavar="X.jsonl", help="write the sparse weights here ('-': standard output)")
    p.add_argument("--sparse-tokens", action="store_true", help="key sparse weights by token string, not token id")
    p.add_argument("--dimension", type=int, help="dense size (Matryoshka truncation); default: the model's full size")
    p.set_defaults(func=run)


# ============================================================================================== shared options
def add_model_arguments(p: argparse.ArgumentParser, *, name: str = "--model", what: str = "embedding model") -> None:
    """`--model` plus the batching, length, device and dtype options of the inference classes."""
    from mgte_hf.inference import DEFAULT_BATCH_TOKENS, DEFAULT_MAX_LENGTH

    p.add_argument(name, required=True, metavar="DIR",
                   help=f"folder of the {what} with its tokenizer (ours or the released layout)")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                   help=f"token limit per input (default {DEFAULT_MAX_LENGTH})")
    p.add_argument("--truncation", choices=("warn", "error"), default="warn",
                   help="longer inputs: truncate with a warning (default) or stop with an error")
    p.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS,
                   help=f"padded tokens per forward pass (default {DEFAULT_BATCH_TOKENS})")
    p.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda when available)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="compute dtype (default float32)")


def add_record_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    p.add_argument("--id-field", default="id", help="JSONL field holding the id (default: id; else the line number)")


def load(cls: type, path: str, args: argparse.Namespace, **kwargs):
    """`cls.from_pretrained(path, ...)` with the shared options; a missing or unreadable folder is a `CliError`."""
    from transformers.utils import logging as hf_logging

    if not Path(path).is_dir():
        raise CliError(f"model folder {path!r} does not exist.")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' weight-loading bars: noise next to our own
    try:
        return cls.from_pretrained(path, device=args.device, dtype=args.dtype, max_length=args.max_length,
                                   batch_tokens=args.batch_tokens, truncation=args.truncation, **kwargs)
    except OSError as err:
        raise CliError(f"cannot load {path}: {str(err).splitlines()[0]}") from err
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def read_records(path: str, field: str = "text", id_field: str = "id") -> tuple[list, list[str]]:
    """(ids, texts) of a .txt file (one text per non-empty line, id = line number) or a .jsonl file."""
    file = Path(path)
    if not file.is_file():
        raise CliError(f"input file {path!r} does not exist.")
    if file.suffix not in (".txt", ".jsonl"):
        raise CliError(f"{path}: expected a .txt or .jsonl file.")
    ids, texts = [], []
    with open(file, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            if file.suffix == ".txt":
                ids.append(number)
                texts.append(line.rstrip("\n"))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CliError(f"{path}:{number}: not valid JSON ({err.msg}).") from err
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise CliError(f"{path}:{number}: expected a JSON object with a string field {field!r} "
                               "(choose it with --field).")
            ids.append(record.get(id_field, number))
            texts.append(record[field])
    if not texts:
        raise CliError(f"{path} holds no text.")
    return ids, texts


def one_line(text: str, width: int = 100) -> str:
    """A text shortened to one display line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# ============================================================================================== encode
def run(args: argparse.Namespace) -> int:
    from mgte_hf.inference import MgteEmbedder

    if not (args.output_dense or args.output_sparse):
        raise CliError("nothing to write: give --output-dense X.npy and/or --output-sparse X.jsonl.")
    if args.output_dense and not args.output_dense.endswith(".npy"):
        raise CliError(f"--output-dense {args.output_dense!r} must end in .npy.")
    if args.input:
        ids, texts = read_records(args.input, args.field, args.id_field)
    else:
        ids, texts = list(range(1, len(args.text) + 1)), args.text
    embedder = load(MgteEmbedder, args.model, args, dimension=args.dimension)
    result = embedder.encode(texts, dense=bool(args.output_dense), sparse=bool(args.output_sparse))
    if args.output_dense:
        Path(args.output_dense).parent.mkdir(parents=True, exist_ok=True)
        np.save(args.output_dense, result.dense)
    if args.output_sparse:
        rows = result.sparse_tokens() if args.sparse_tokens else [{str(t): w for t, w in r.items()}
                                                                  for r in result.sparse]
        lines = "".join(json.dumps({"id": i, "sparse": row}, ensure_ascii=False) + "\n" for i, row in zip(ids, rows,
                                                                                                         strict=True))
        if args.output_sparse == "-":
            print(lines, end="")
        else:
            Path(args.output_sparse).parent.mkdir(parents=True, exist_ok=True)
            Path(args.output_sparse).write_text(lines, encoding="utf-8")
    written = [f"{args.output_dense} {tuple(result.dense.shape)}" if args.output_dense else "",
               args.output_sparse if args.output_sparse not in (None, "-") else ""]
    plural = "s" if len(texts) != 1 else ""
    print(f"encoded {len(texts)} text{plural}" + "".join(f" → {w}" for w in written if w), file=sys.stderr)
    return 0
