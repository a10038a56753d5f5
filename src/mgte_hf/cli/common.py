"""What the `mgte-hf` commands share: the model options and loading, reading text files, printing hits."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import CliError


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
    add_compile_argument(p)


def add_compile_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile", action="store_true",
                   help="run the model through torch.compile (faster bf16 on CPU; the first batch compiles)")


def add_record_arguments(p: argparse.ArgumentParser) -> None:
    """How documents are read from a corpus file (`mgte_hf.corpus`): the text and id fields, or line numbers."""
    p.add_argument("--text-field", "--field", dest="text_field", default="text",
                   help="JSONL field (TSV column) holding the text (default: text)")
    p.add_argument("--id-field", default="id",
                   help="JSONL field (TSV column) holding the id (default: id); every document needs one")
    p.add_argument("--line-ids", action="store_true",
                   help="number the documents by line instead of reading ids (a .txt file always is)")


def add_overwrite_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true", help=f"replace {what} if it exists")


def model_files(folder: str) -> list[Path]:
    """The files of a model folder: inputs that no output may replace."""
    path = Path(folder)
    return [p for p in path.iterdir() if p.is_file()] if path.is_dir() else []


def read_documents(path: str, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """`(ids, texts)` of a corpus file or datasets folder, with the record options (unique ids, one error per bad
    line naming it)."""
    from mgte_hf.corpus import read_corpus

    return read_corpus(path, None if args.line_ids else args.id_field, args.text_field)


def load(cls: type, path: str, args: argparse.Namespace, **kwargs):
    """`cls.from_pretrained(path, ...)` with the shared options; a missing or unreadable folder is a `CliError`."""
    from transformers.utils import logging as hf_logging

    if not Path(path).is_dir():
        raise CliError(f"model folder {path!r} does not exist.")
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' weight-loading bars: noise next to our own
    try:
        return cls.from_pretrained(path, device=args.device, dtype=args.dtype, max_length=args.max_length,
                                   batch_tokens=args.batch_tokens, truncation=args.truncation,
                                   compile=getattr(args, "compile", False), **kwargs)
    except OSError as err:
        raise CliError(f"cannot load {path}: {str(err).splitlines()[0]}") from err
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def one_line(text: str, width: int = 100) -> str:
    """A text shortened to one display line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_hits(queries: Sequence[str], hits: Sequence[Sequence[Any]], *, as_json: bool, texts: bool) -> None:
    """Per query a "query: ..." line, then "rank  score  id  [text]" lines; or one JSON object per query.

    Args:
        queries: the query texts.
        hits: each query's hits (`id`, `score`, `index`, and `document` when `texts`), best first.
        as_json: print `{"query", "hits": [{"rank", "id", "score", "text" or "row"}]}` lines instead.
        texts: the hits carry their document text (else their row is given in JSON).
    """
    for query, row in zip(queries, hits, strict=True):
        if as_json:
            records = [{"rank": r, "id": h.id, "score": h.score, **({"text": h.document} if texts else {"row": h.index})}
                       for r, h in enumerate(row, 1)]
            print(json.dumps({"query": query, "hits": records}, ensure_ascii=False))
            continue
        print(f"query: {query}")
        for rank, hit in enumerate(row, 1):
            print(f"{rank}\t{hit.score:.4f}\t{hit.id}" + (f"\t{one_line(hit.document)}" if texts else ""))
