"""`mgte-hf demo`: train, evaluate and package a small mGTE end to end on real multilingual data, on a CPU."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from . import CliError
from .common import add_overwrite_argument


EXAMPLES = """examples:
  mgte-hf demo                      # the full run, about 16 minutes on 2 quiet CPU cores (data fetched on first use)
  GOMP_SPINCOUNT=30000 mgte-hf demo # as `make demo` runs it: OpenMP threads spin briefly, then sleep (fast when
                                    # the machine is quiet, not slowed down by other jobs when it is not)
  mgte-hf demo --quick              # the smoke run, a minute or two
  mgte-hf demo --ablations          # also revNTK, 512 vs 2048 tokens and Matryoshka size tables (a few more minutes)
  mgte-hf demo --output runs/demo --cache /data/mgte --time-limit 120
  mgte-hf demo --overwrite          # run again into the same folder (one that is not empty is otherwise refused)

Every stage runs a fixed number of steps on fixed samples with a fixed thread count, so two runs on the same machine
write the same report (its "This run" section aside: seconds, CPU seconds, load and the digest of the rest).

Writes OUTPUT/report.md (tables, targets, stages), OUTPUT/results.json, OUTPUT/ndcg.png, the stage checkpoints in
OUTPUT/checkpoints/ and the Hub-ready folders OUTPUT/hub/mgte-demo-trm and OUTPUT/hub/mgte-demo-reranker (checked
in a fresh process with transformers trust_remote_code and sentence-transformers).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, evaluate and package a small mGTE end to end (CPU, minutes)",
                       description="MLM → contrastive → TRM → reranker on UDHR and Debian package descriptions, "
                                   "evaluated on GNOME Help and the Bible against BM25, packaged for the Hub.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the smoke run instead of the full one")
    p.add_argument("--ablations", action="store_true",
                   help="also run the ablations: contrastive with and without revNTK, the TRM at 512 vs 2048 tokens "
                        "on the longest documents, Matryoshka dimensions against the index size")
    p.add_argument("--output", default="demo-output", metavar="DIR", help="output folder (default: demo-output)")
    p.add_argument("--cache", metavar="DIR", help="data cache (default: $MGTE_DATA or ~/.cache/mgte-data)")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop with an error after this many minutes, 0 for no limit (default: 120, --quick 30); "
                        "a guard only: it never shortens a stage")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_overwrite_argument(p, "the files of an earlier run in --output (a folder that is not empty is refused)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.demo import DemoConfig, run_demo
    from mgte_hf.outputs import check_output

    check_output(args.output, overwrite=args.overwrite, folder=True, what="--output")  # before any work
    config = DemoConfig.quick() if args.quick else DemoConfig.full()
    if args.time_limit is not None:
        if args.time_limit < 0:
            raise CliError(f"--time-limit must be >= 0 minutes (0 for none), got {args.time_limit:g}.")
        config = dataclasses.replace(config, time_limit=args.time_limit * 60 or None)
    logging.getLogger("mgte_hf.demo").setLevel(logging.INFO)  # one line per stage with its time
    try:
        result = run_demo(args.output, args.cache, config, ablations=args.ablations, quiet=args.no_progress,
                          overwrite=args.overwrite)
    except RuntimeError as err:  # a fetch, a training stage, the time guard or the fresh-process check failed
        raise CliError(str(err)) from err
    print(result.files["report"].read_text(encoding="utf-8"))
    print(f"report: {result.files['report']}  chart: {result.files['chart']}")
    print(f"Hub folders: {result.files['hub_trm']}  {result.files['hub_reranker']}")
    return 0
