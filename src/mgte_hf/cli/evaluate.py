"""`mgte-hf evaluate`: BM25 / dense / sparse / hybrid / rerank retrieval on a BEIR set → Markdown, JSON, PNG."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import CliError
from .common import add_quantize_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate retrieval systems on a BEIR set",
                       description="Evaluate BM25, dense (Matryoshka dimensions × max lengths), sparse, hybrid and "
                                   "reranked retrieval on a BEIR set; writes report.md, report.json and report.png.")
    p.add_argument("--dataset", required=True,
                   help="a BEIR folder, or the name of a set built by `mgte-hf data build` (e.g. gnome-de-en)")
    p.add_argument("--model", help="an MgteForEmbedding checkpoint folder (needed by all systems but bm25)")
    p.add_argument("--output", required=True, help="folder for the report files")
    p.add_argument("--systems", help="comma-separated: bm25,dense,sparse,hybrid,rerank (default: bm25 alone "
                                     "without --model, else bm25,dense,sparse,hybrid, plus rerank with --reranker)")
    p.add_argument("--dims", help="comma-separated Matryoshka dimensions for dense (default: the model's)")
    p.add_argument("--max-lengths", default="512", help="comma-separated document token limits (default: 512)")
    p.add_argument("--hybrid-weights", default="1.0:0.1",
                   help="comma-separated DENSE:SPARSE weight pairs for hybrid (default: 1.0:0.1)")
    p.add_argument("--reranker", help="an MgteForSequenceClassification checkpoint folder for rerank")
    p.add_argument("--rerank-top-k", type=int, default=100, help="hybrid candidates to rerank (default: 100)")
    p.add_argument("--rerank-weights", metavar="ALPHAS",
                   help="comma-separated first-stage weights to blend the reranker with, one rerank system each "
                        "(rerank_a0.8: 0.2 * minmax(reranker) + 0.8 * minmax(hybrid)); the pairs are scored once "
                        "(default: the reranker alone)")
    p.add_argument("--top-k", type=int, default=100, help="documents retrieved per query (default: 100)")
    p.add_argument("--metrics", default="ndcg@10,recall@100,mrr@10", help="NAME@K list (ndcg, recall, mrr, map)")
    p.add_argument("--max-queries", type=int, help="evaluate a seeded random sample of this many queries")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--split", default="test", help="qrels split (default: test)")
    p.add_argument("--batch-tokens", type=int, help="padded-token budget per forward")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", help="model dtype, e.g. float32, bfloat16 (default: float32; bfloat16 with --quantize)")
    add_quantize_argument(p)
    p.add_argument("--cache", help="data cache for set names and the BM25 tokenizer (default: $MGTE_DATA)")
    p.add_argument("--unknown-docs", choices=("keep", "drop", "error"), default="keep",
                   help="judgements naming documents absent from the corpus: keep them as relevant and never "
                        "retrieved (trec_eval's convention, the default), drop them, or stop with an error")
    p.add_argument("--overwrite", action="store_true", help="replace the report files in --output if they exist")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.evaluation import load_beir
    from mgte_hf.evaluation.retrieval import RetrievalEvaluator
    from mgte_hf.outputs import check_output

    systems = _systems(args)
    for suffix in ("json", "md", "png"):  # before any work: the report must be writable
        check_output(Path(args.output) / f"report.{suffix}", overwrite=args.overwrite, what="--output file")
    dataset = load_beir(resolve_dataset(args.dataset, args.cache), split=args.split, unknown_docs=args.unknown_docs)
    embedder = _embedder(args) if any(s != "bm25" for s in systems) else None
    tokenizer = None
    if embedder is None:
        from mgte_hf.data import cache_root, tokenizer_dir
        from mgte_hf.evaluation.bm25 import xlmr_subword_tokenizer

        tokenizer = xlmr_subword_tokenizer(tokenizer_dir(cache_root(args.cache)))
    evaluator = RetrievalEvaluator(
        dataset, systems=systems, dims=_numbers(args.dims, "--dims"),
        max_lengths=_numbers(args.max_lengths, "--max-lengths"),
        hybrid_weights=_weights(args.hybrid_weights), reranker=_reranker(args), rerank_top_k=args.rerank_top_k,
        rerank_first_stage_weights=_numbers(args.rerank_weights, "--rerank-weights", float),
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()], top_k=args.top_k, tokenizer=tokenizer,
        max_queries=args.max_queries, seed=args.seed, batch_tokens=args.batch_tokens,
        show_progress_bar=not args.quiet)
    report = evaluator.run(embedder)
    paths = report.save(args.output, overwrite=args.overwrite)
    print(report.to_markdown())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def resolve_dataset(name: str, cache: str | None) -> Path:
    """A BEIR folder path as given, else a set of the data cache (`<cache>/beir/<name>`)."""
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        return path
    from mgte_hf.data import beir_dir, cache_root

    root = cache_root(cache)
    candidate = beir_dir(root, name)
    if candidate.is_dir():
        return candidate
    built = sorted(p.name for p in (root / "beir").iterdir()) if (root / "beir").is_dir() else []
    raise CliError(f"no BEIR folder {name!r}, and no such set in {root / 'beir'} (sets there: "
                   f"{', '.join(built) or 'none; run `mgte-hf data build`'}).")


def _systems(args: argparse.Namespace) -> list[str]:
    from mgte_hf.evaluation.retrieval import SYSTEMS

    if args.systems:
        systems = [s.strip() for s in args.systems.split(",") if s.strip()]
        unknown = [s for s in systems if s not in SYSTEMS]
        if unknown or not systems:
            raise CliError(f"--systems: unknown system {', '.join(map(repr, unknown)) or 'list (empty)'}; choose "
                           f"from {', '.join(SYSTEMS)}.")
    elif args.model:
        systems = ["bm25", "dense", "sparse", "hybrid"] + (["rerank"] if args.reranker else [])
    else:
        systems = ["bm25"]
    if any(s != "bm25" for s in systems) and not args.model:
        raise CliError(f"the systems {[s for s in systems if s != 'bm25']} need --model DIR.")
    if "rerank" in systems and not args.reranker:
        raise CliError("the rerank system needs --reranker DIR.")
    return systems


def _embedder(args: argparse.Namespace):
    from mgte_hf.inference import MgteEmbedder

    kwargs = {"batch_tokens": args.batch_tokens} if args.batch_tokens else {}
    return MgteEmbedder.from_pretrained(args.model, device=args.device, dtype=args.dtype, quantize=args.quantize,
                                        **kwargs)


def _reranker(args: argparse.Namespace):
    """The reranker folder, or with `--quantize` the reranker loaded quantized."""
    if args.reranker is None or args.quantize is None:
        return args.reranker
    from mgte_hf.inference import MgteReranker

    return MgteReranker.from_pretrained(args.reranker, device=args.device, dtype=args.dtype, quantize=args.quantize)


def _numbers(text: str | None, flag: str, kind: type = int) -> list | None:
    """A comma-separated list of `kind` (`int` or `float`), or `None` when the flag was not given."""
    if text is None:
        return None
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        what = "integers" if kind is int else "numbers"
        raise CliError(f"{flag} takes comma-separated {what}, got {text!r}.") from err


def _weights(text: str) -> list[tuple[float, float]]:
    pairs = []
    for item in text.split(","):
        dense, sep, sparse = item.partition(":")
        try:
            if not sep:
                raise ValueError
            pairs.append((float(dense), float(sparse)))
        except ValueError as err:
            raise CliError(f"--hybrid-weights takes DENSE:SPARSE pairs such as 1.0:0.1,1.0:0.3, got "
                           f"{item!r}.") from err
    return pairs
