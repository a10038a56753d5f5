"""`mgte-hf index`: build a Milvus collection (Milvus Lite folder or server) from encode-corpus shards or from texts."""

from __future__ import annotations

import argparse
import sys

from . import CliError
from .common import add_model_arguments, add_overwrite_argument, add_record_arguments, load, model_files


EXAMPLES = """examples:
  mgte-hf index --model DIR --shards shards/ --uri index.db --collection docs                 # Milvus Lite
  mgte-hf index --model DIR --shards shards/ --corpus corpus.jsonl --id-field _id --uri index.db  # with texts
  mgte-hf index --model DIR --shards shards/ --uri http://milvus:19530 --collection docs --index HNSW
  mgte-hf index --model DIR --corpus docs.jsonl --uri index.db                                # encode texts
  mgte-hf search --model DIR --uri index.db --collection docs --query "capital of Germany"

--shards loads the shards of `mgte-hf encode-corpus` chunk by chunk (bounded memory). Run the same command again
after a crash or a kill: the chunks already loaded (recorded in the collection with their sha256) are skipped and
the rows of a half-written chunk replaced, so the collection ends with exactly the corpus rows. With --corpus the
texts are stored too (needed for reranking); the corpus must be the one the shards were encoded from. --corpus
alone encodes the texts and adds them to the collection, 4096 at a time (ids must be new; it does not resume: after
a failure, run it again with --overwrite, or encode-corpus and load the shards).
--overwrite drops the collection first; a collection of another model, dimension or shard run is refused without it.
"""
ADD_BATCH = 4096  # documents encoded and added at a time with --corpus alone


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build a Milvus collection from encode-corpus shards or from texts",
                       description="Load the dense + sparse shards of encode-corpus (resumable), or encode a corpus, "
                                   "into a Milvus collection: a Milvus Lite folder (path ending in .db) or a Milvus "
                                   "server (http://host:19530).",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--uri", required=True, help="a Milvus Lite folder (index.db) or a server URL (http://host:19530)")
    p.add_argument("--collection", default="docs", help="the collection (default: docs)")
    p.add_argument("--shards", metavar="DIR", help="the shard folder of encode-corpus to load")
    p.add_argument("--corpus", metavar="PATH",
                   help="corpus.jsonl, .tsv or .txt, or a datasets folder: the texts to store or encode")
    add_record_arguments(p)
    p.add_argument("--split", help="the split to read from a saved DatasetDict")
    p.add_argument("--dimension", type=int, help="dense size when encoding texts (default: the model's full size)")
    p.add_argument("--index", metavar="FLAT|HNSW", help="dense index of a new collection (default FLAT: exact)")
    p.add_argument("--max-id-bytes", type=int,
                   help="the longest document id (UTF-8 bytes) a new collection takes (default: MilvusIndex's, 512)")
    p.add_argument("--token", default="", help="the server's credentials (user:password or an API key)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a server (default 5)")
    p.add_argument("--allow-other-model", action="store_true",
                   help="extend a collection (or load shards) of a model other than --model (warns)")
    add_overwrite_argument(p, "the collection (dropped, then built again)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.corpus import open_corpus
    from mgte_hf.inference import MgteEmbedder
    from mgte_hf.milvus import MilvusIndex, is_server, load_shards
    from mgte_hf.outputs import check_output
    from mgte_hf.shards import ShardReader
    from mgte_hf.shards.corpus import chunks

    if not args.shards and not args.corpus:
        raise CliError("give --shards DIR (encode-corpus output) and/or --corpus FILE (texts).")
    if not is_server(args.uri):  # the Lite folder is extended in place, but never over an input
        inputs = [p for p in (args.shards, args.corpus) if p] + model_files(args.model)
        check_output(args.uri, overwrite=True, inputs=inputs, folder=True, what="--uri")
    corpus = None
    if args.corpus:
        try:
            corpus = open_corpus(args.corpus, None if args.line_ids else args.id_field, args.text_field, args.split)
        except FileNotFoundError as err:
            raise CliError(f"--corpus: {err}") from err
    dimension = args.dimension
    if args.shards:
        try:
            dimension = ShardReader(args.shards).dimension
        except FileNotFoundError as err:
            raise CliError(f"--shards: {err}") from err
        if args.dimension is not None and args.dimension != dimension:
            raise CliError(f"--dimension {args.dimension} differs from the shards' {dimension}; drop it.")
    embedder = load(MgteEmbedder, args.model, args, dimension=dimension)
    sizes = {} if args.max_id_bytes is None else {"max_id_bytes": args.max_id_bytes}
    index = MilvusIndex(embedder, uri=args.uri, collection=args.collection, dimension=dimension, index=args.index,
                        token=args.token, timeout=args.timeout, allow_other_model=args.allow_other_model, **sizes,
                        overwrite=args.overwrite)
    if args.shards:
        result = load_shards(index, args.shards, corpus=corpus)
        print(f"loaded {len(result.loaded)} chunks, {result.skipped} already loaded; {result.count} documents in "
              f"{result.num_chunks} chunks → {args.uri} ({args.collection}), {result.seconds:.1f} s", file=sys.stderr)
        return 0
    added = 0
    for _, ids, texts in chunks(corpus, ADD_BATCH):
        index.add(texts, ids=ids)
        added += len(ids)
    print(f"added {added} documents → {args.uri} ({args.collection}), now {len(index)}", file=sys.stderr)
    return 0
