"""`mgte-hf rerank`: score documents against a query with an mGTE reranker and print them best first."""

from __future__ import annotations

import argparse
import json

from .common import add_model_arguments, add_record_arguments, load, one_line, read_documents


EXAMPLES = """examples:
  mgte-hf rerank --model gte-multilingual-reranker-base --query "what is mGTE?" --documents docs.txt --top-k 5
  mgte-hf rerank --model DIR --query "..." --documents corpus.jsonl --id-field _id --normalize --json

Output: one line per document, "rank  score  id  text" (--json: one JSON object per line). Scores are raw
relevance logits; --normalize applies a sigmoid.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rerank", help="rank documents for a query with a reranker (cross-encoder)",
                       description="Score (query, document) pairs with an mGTE reranker and print the documents "
                                   "best first.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, what="reranker")
    p.add_argument("--query", required=True, help="the query text")
    p.add_argument("--documents", required=True, metavar="FILE",
                   help="FILE.txt (one document per line), FILE.jsonl or FILE.tsv")
    add_record_arguments(p)
    p.add_argument("--top-k", type=int, help="print only the best K documents (default: all)")
    p.add_argument("--normalize", action="store_true", help="sigmoid scores in (0, 1) instead of raw logits")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.inference import MgteReranker

    ids, documents = read_documents(args.documents, args)
    reranker = load(MgteReranker, args.model, args)
    results = reranker.rank(args.query, documents, top_k=args.top_k, normalize=args.normalize)
    for rank, result in enumerate(results, 1):
        doc_id = ids[result.index]
        if args.json:
            print(json.dumps({"rank": rank, "id": doc_id, "score": result.score, "text": result.document},
                             ensure_ascii=False))
        else:
            print(f"{rank}\t{result.score:.4f}\t{doc_id}\t{one_line(result.document)}")
    return 0
