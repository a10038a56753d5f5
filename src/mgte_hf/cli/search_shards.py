"""`mgte-hf search-shards`: dense, sparse or hybrid search across the shards written by `mgte-hf encode-corpus`."""

from __future__ import annotations

import argparse

from . import CliError
from .common import add_model_arguments, load, print_hits


EXAMPLES = """examples:
  mgte-hf search-shards --model DIR --index-dir shards/ --query "capital of Germany"
  mgte-hf search-shards --model DIR --index-dir shards/ --query "q1" --query "q2" --mode sparse --top-k 5 --json

Output per query: a "query: ..." line, then "rank  score  id" lines (--json: one JSON object per query). Shards hold
no texts: look the ids up in the corpus. The model must be the one that wrote the shards (checked by sha256).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search-shards", help="search the shards of encode-corpus (dense, sparse or hybrid)",
                       description="Search the dense (memory-mapped) and sparse shards written by encode-corpus "
                                   "and merge the per-shard top-k; equal to an in-memory search of the corpus.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--index-dir", required=True, metavar="DIR", help="the shard folder of encode-corpus")
    p.add_argument("--query", action="append", required=True, metavar="TEXT", help="a query (repeat for more)")
    p.add_argument("--mode", choices=("dense", "sparse", "hybrid"), default="hybrid", help="scores (default hybrid)")
    p.add_argument("--top-k", type=int, default=10, help="hits per query (default 10)")
    p.add_argument("--dense-weight", type=float, default=1.0, help="hybrid weight of the dense score (default 1.0)")
    p.add_argument("--sparse-weight", type=float, default=0.1, help="hybrid weight of the lexical score (default 0.1)")
    p.add_argument("--verify", action="store_true", help="check every shard file's sha256 first")
    p.add_argument("--json", action="store_true", help="print one JSON object per query")
    p.add_argument("--allow-other-model", action="store_true",
                   help="query with a model other than the one that wrote the shards (warns)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.inference import MgteEmbedder
    from mgte_hf.shards import ShardedIndex

    embedder = load(MgteEmbedder, args.model, args)
    try:
        index = ShardedIndex(args.index_dir, embedder, verify=args.verify, allow_other_model=args.allow_other_model)
    except FileNotFoundError as err:
        raise CliError(f"--index-dir: {err}") from err
    hits = index.search(args.query, top_k=args.top_k, mode=args.mode, dense_weight=args.dense_weight,
                        sparse_weight=args.sparse_weight)
    print_hits(args.query, hits, as_json=args.json, texts=False)
    return 0
