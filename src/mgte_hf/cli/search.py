"""`mgte-hf search`: index a corpus (dense + sparse) and query it, optionally reranking; save and reuse indexes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CliError
from .common import (
    add_model_arguments,
    add_overwrite_argument,
    add_record_arguments,
    load,
    model_files,
    print_hits,
    read_documents,
)


EXAMPLES = """examples:
  mgte-hf search --model gte-multilingual-base --corpus docs.txt --query "capital of Germany"
  mgte-hf search --model DIR --corpus corpus.jsonl --id-field _id --index-dir my-index     # build and save
  mgte-hf search --model DIR --index-dir my-index --query "q1" --query "q2" --mode sparse  # load and query
  mgte-hf search --model DIR --index-dir my-index --query "q" --reranker RERANKER_DIR --rerank-top-k 50
  mgte-hf search --model DIR --uri index.db --collection docs --query "q"   # a Milvus collection (mgte-hf index)

Output per query: a "query: ..." line, then "rank  score  id  text" lines (--json: one JSON object per query).
Hybrid score = dense-weight * cosine + sparse-weight * lexical (defaults 1.0 and 0.1, as the released helper).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="index a corpus (dense + sparse) and search it",
                       description="Build an in-memory hybrid index of a corpus with an mGTE embedding model (or "
                                   "load a saved one) and search it: dense, sparse or hybrid, optionally reranked.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--corpus", metavar="FILE", help="FILE.txt (one document per line) or FILE.jsonl to index")
    add_record_arguments(p)
    p.add_argument("--index-dir", metavar="DIR",
                   help="load the index saved in DIR; with --corpus, build the index and save it there")
    p.add_argument("--uri", help="search a Milvus collection built by `mgte-hf index`: a Milvus Lite folder "
                   "(index.db) or a server URL (http://host:19530)")
    p.add_argument("--collection", default="docs", help="the Milvus collection with --uri (default: docs)")
    p.add_argument("--query", action="append", metavar="TEXT", help="a query (repeat for more)")
    p.add_argument("--mode", choices=("dense", "sparse", "hybrid"), default="hybrid", help="scores (default hybrid)")
    p.add_argument("--top-k", type=int, default=10, help="hits per query (default 10)")
    p.add_argument("--dense-weight", type=float, default=1.0, help="hybrid weight of the dense score (default 1.0)")
    p.add_argument("--sparse-weight", type=float, default=0.1, help="hybrid weight of the lexical score (default 0.1)")
    p.add_argument("--dimension", type=int, help="dense size when building (default: the model's full size)")
    p.add_argument("--reranker", metavar="DIR", help="rerank the first-stage hits with this reranker folder")
    p.add_argument("--rerank-top-k", type=int, help="first-stage hits the reranker re-scores (default: --top-k)")
    p.add_argument("--first-stage-weight", type=float, default=0.0, metavar="ALPHA",
                   help="blend the reranker with the first stage: (1 - ALPHA) * minmax(reranker) + ALPHA * "
                        "minmax(first stage), per query (default 0: the reranker alone; choose ALPHA with "
                        "`mgte-hf evaluate --rerank-weights`)")
    p.add_argument("--json", action="store_true", help="print one JSON object per query")
    p.add_argument("--allow-other-model", action="store_true",
                   help="query a saved index with a model other than the one that built it (warns)")
    add_overwrite_argument(p, "the saved index in --index-dir (with --corpus)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.index import INDEX_META, HybridIndex
    from mgte_hf.inference import MgteEmbedder
    from mgte_hf.outputs import check_output

    if args.uri:
        return run_milvus(args)
    index_dir = Path(args.index_dir) if args.index_dir is not None else None
    saved = index_dir is not None and (index_dir / INDEX_META).is_file()
    if args.corpus:
        if saved and not args.overwrite:
            raise CliError(f"{index_dir} already holds an index: drop --corpus to query it, pass --overwrite to "
                           "build it again, or pick a new --index-dir.")
        if index_dir is not None:  # before any work: refuse a folder that would be replaced or holds the inputs
            check_output(index_dir, overwrite=args.overwrite, inputs=[args.corpus, *model_files(args.model)],
                         folder=True, what="--index-dir")
    elif index_dir is None:
        raise CliError("give --corpus FILE to index, or --index-dir DIR of a saved index.")
    elif not saved:
        state = "does not exist" if not index_dir.exists() else f"holds no saved index (no {INDEX_META})"
        raise CliError(f"--index-dir {index_dir} {state}; give --corpus FILE as well to build an index there.")
    if not args.query and not (args.corpus and index_dir is not None):
        raise CliError("nothing to do: give --query TEXT, and/or --index-dir DIR to save the index.")
    reranker = _reranker(args)
    embedder = load(MgteEmbedder, args.model, args, dimension=args.dimension)
    if not args.corpus:
        index = HybridIndex.load(index_dir, embedder, allow_other_model=args.allow_other_model)
        if args.dimension is not None and args.dimension != index.dimension:
            raise CliError(f"--dimension {args.dimension} differs from the saved index's {index.dimension}.")
    else:
        ids, documents = read_documents(args.corpus, args)
        index = HybridIndex(embedder)
        index.add(documents, ids=ids)
        if index_dir is not None:
            index.save(index_dir, overwrite=args.overwrite)
            print(f"saved an index of {len(index)} documents to {index_dir}", file=sys.stderr)
    if not args.query:
        return 0
    hits = index.search(args.query, top_k=args.top_k, mode=args.mode, dense_weight=args.dense_weight,
                        sparse_weight=args.sparse_weight, reranker=reranker, rerank_top_k=args.rerank_top_k)
    print_hits(args.query, hits, as_json=args.json, texts=True)
    return 0


def _reranker(args: argparse.Namespace):
    from mgte_hf.inference import MgteReranker

    if args.reranker is None:
        if args.first_stage_weight:
            raise CliError("--first-stage-weight blends a reranker with the first stage: give --reranker DIR too.")
        return None
    return load(MgteReranker, args.reranker, args, first_stage_weight=args.first_stage_weight)


def run_milvus(args: argparse.Namespace) -> int:
    """Search a Milvus collection (`--uri`)."""
    from mgte_hf.inference import MgteEmbedder
    from mgte_hf.milvus import MilvusIndex

    if args.corpus or args.index_dir:
        raise CliError("--uri searches a Milvus collection: build or extend it with `mgte-hf index`, not --corpus or "
                       "--index-dir.")
    if not args.query:
        raise CliError("nothing to do: give --query TEXT.")
    reranker = _reranker(args)
    embedder = load(MgteEmbedder, args.model, args, dimension=args.dimension)
    index = MilvusIndex(embedder, uri=args.uri, collection=args.collection, dimension=args.dimension,
                        allow_other_model=args.allow_other_model)
    hits = index.search(args.query, top_k=args.top_k, mode=args.mode, dense_weight=args.dense_weight,
                        sparse_weight=args.sparse_weight, reranker=reranker, rerank_top_k=args.rerank_top_k)
    print_hits(args.query, hits, as_json=args.json, texts=index.holds_texts)
    return 0
