"""`mgte-hf index`: build a Milvus collection (Milvus Lite folder or server) from encode-corpus shards or from texts."""

from __future__ import annotations

import argparse
import sys

from . import CliError
from .common import add_model_arguments, load


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
alone encodes the texts and adds them (for corpora that need no resuming).
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
    p.add_argument("--corpus", metavar="PATH", help="corpus.jsonl or a datasets folder: the texts to store or encode")
    p.add_argument("--id-field", default="id", help="field holding the document id (default: id)")
    p.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    p.add_argument("--split", help="the split to read from a saved DatasetDict")
    p.add_argument("--dimension", type=int, help="dense size when encoding texts (default: the model's full size)")
    p.add_argument("--index", metavar="FLAT|HNSW", help="dense index of a new collection (default FLAT: exact)")
    p.add_argument("--token", default="", help="the server's credentials (user:password or an API key)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a server (default 5)")
    p.add_argument("--no-verify", action="store_true", help="skip checking each chunk file's sha256 before loading")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.corpus import open_corpus
    from mgte_hf.inference import MgteEmbedder
    from mgte_hf.milvus import MilvusIndex, load_shards
    from mgte_hf.shards import ShardReader
    from mgte_hf.shards.corpus import chunks

    if not args.shards and not args.corpus:
        raise CliError("give --shards DIR (encode-corpus output) and/or --corpus FILE (texts).")
    corpus = None
    if args.corpus:
        try:
            corpus = open_corpus(args.corpus, args.id_field, args.text_field, args.split)
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
    index = MilvusIndex(embedder, uri=args.uri, collection=args.collection, dimension=dimension, index=args.index,
                        token=args.token, timeout=args.timeout)
    if args.shards:
        result = load_shards(index, args.shards, corpus=corpus, verify=not args.no_verify)
        print(f"loaded {len(result.loaded)} chunks, {result.skipped} already loaded; {result.count} documents in "
              f"{result.num_chunks} chunks → {args.uri} ({args.collection}), {result.seconds:.1f} s", file=sys.stderr)
        return 0
    added = 0
    for _, ids, texts in chunks(corpus, ADD_BATCH):
        index.add(texts, ids=ids)
        added += len(ids)
    print(f"added {added} documents → {args.uri} ({args.collection}), now {len(index)}", file=sys.stderr)
    return 0
