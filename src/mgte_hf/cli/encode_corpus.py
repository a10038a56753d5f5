"""`mgte-hf encode-corpus`: encode a corpus into resumable dense + sparse shards, in one process or under torchrun.

Under `torchrun` or `accelerate launch` (WORLD_SIZE > 1 in the environment) it joins the process group itself
(NCCL on CUDA, gloo on CPU), each rank on `cuda:LOCAL_RANK` when CUDA is available.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from . import CliError
from .common import add_model_arguments, add_overwrite_argument, add_record_arguments, load


EXAMPLES = """examples:
  mgte-hf encode-corpus --model DIR --input corpus.jsonl --output-dir shards/ --id-field _id --dimension 256
  torchrun --nproc_per_node 8 -m mgte_hf encode-corpus --model DIR --input corpus.jsonl --output-dir shards/
  accelerate launch --num_processes 8 --module mgte_hf encode-corpus --model DIR --input data/ --output-dir shards/
  mgte-hf search-shards --model DIR --index-dir shards/ --query "capital of Germany"

Run the same command again after a crash or a kill: finished chunks are checked (sha256) and skipped, and the
output ends byte-identical to an uninterrupted run. --input is a .jsonl file (one object per line with the id and
text fields), a .tsv or .txt file, or a folder written by datasets' save_to_disk (--split for one with several
splits). A folder holding shards of another run is refused unless --overwrite.
"""
# Ranks meet after the scan and at the end, where the first to finish waits for the slowest: a resumed run can leave
# one rank far more chunks than another, so the wait may be long (the default NCCL timeout is 10 minutes).
PROCESS_GROUP_TIMEOUT = timedelta(hours=12)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode-corpus", help="encode a corpus into resumable shards (also under torchrun)",
                       description="Encode a corpus that does not fit in memory with an mGTE embedding model into "
                                   "chunked dense (.npy) + sparse (CSR .npy) shards with manifests, split across "
                                   "the ranks of torchrun / accelerate launch, resumable after a crash.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(p)


def configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from mgte_hf.shards import DEFAULT_CHUNK_SIZE

    add_model_arguments(p)
    p.add_argument("--input", required=True, metavar="PATH",
                   help="corpus.jsonl, .tsv or .txt, or a folder written by datasets' save_to_disk")
    p.add_argument("--split", help="the split to read from a saved DatasetDict")
    p.add_argument("--output-dir", required=True, metavar="DIR", help="the shard folder (created; resumed if present)")
    add_record_arguments(p)
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                   help=f"documents per chunk: the unit of work and of resuming (default {DEFAULT_CHUNK_SIZE})")
    p.add_argument("--dimension", type=int, help="dense size (Matryoshka truncation); default: the model's full size")
    add_overwrite_argument(p, "the shards of another run (and foreign chunk folders) in --output-dir")
    p.set_defaults(func=run)
    return p


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the process group that torchrun / accelerate launch describe in the environment (if WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def run(args: argparse.Namespace) -> int:
    from mgte_hf.corpus import open_corpus
    from mgte_hf.inference import MgteEmbedder
    from mgte_hf.inference.common import resolve_device
    from mgte_hf.shards import encode_to_shards

    if Path(args.output_dir).expanduser().resolve() == Path(args.input).expanduser().resolve():
        raise CliError(f"--output-dir {args.output_dir} is the --input; choose another folder.")
    try:
        corpus = open_corpus(args.input, None if args.line_ids else args.id_field, args.text_field, args.split)
    except FileNotFoundError as err:
        raise CliError(f"--input: {err}") from err
    if args.chunk_size < 1:
        raise CliError(f"--chunk-size must be a positive integer, got {args.chunk_size}.")
    device = resolve_device(args.device) if args.device else torch.device(
        f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu")
    with process_group(device):
        embedder = load(MgteEmbedder, args.model, argparse.Namespace(**{**vars(args), "device": device}),
                        dimension=args.dimension)
        result = encode_to_shards(embedder, corpus, args.output_dir, chunk_size=args.chunk_size,
                                  overwrite=args.overwrite)
        rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    rate = result.texts_encoded / result.seconds if result.seconds else 0.0
    print(f"rank {rank}/{world_size}: encoded {len(result.encoded)} chunks ({result.texts_encoded} texts, "
          f"{rate:.1f} texts/s), {len(result.skipped)} already done; {result.count} documents in "
          f"{result.num_chunks} chunks → {result.folder}", file=sys.stderr)
    return 0
