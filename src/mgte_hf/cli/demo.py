"""`mgte-hf demo`: train, evaluate and package a small mGTE end to end on real multilingual data, on a CPU."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from . import CliError


EXAMPLES = """examples:
  mgte-hf demo                      # the full run, about 20 minutes on 2 CPU cores (data fetched on first use)
  mgte-hf demo --quick              # a smoke run of about 3 minutes
  mgte-hf demo --output runs/demo --cache /data/mgte

Writes OUTPUT/report.md (metrics table, targets, stage times), OUTPUT/results.json, OUTPUT/ndcg.png, the stage
checkpoints in OUTPUT/checkpoints/ and the Hub-ready folders OUTPUT/hub/mgte-demo-trm and OUTPUT/hub/mgte-demo-reranker
(checked in a fresh process with transformers trust_remote_code and sentence-transformers).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train, evaluate and package a small mGTE end to end (CPU, minutes)",
                       description="MLM → contrastive → TRM → reranker on UDHR and Debian package descriptions, "
                                   "evaluated on GNOME Help and the Bible against BM25, packaged for the Hub.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the smoke run (about 3 minutes) instead of the full one")
    p.add_argument("--output", default="demo-output", metavar="DIR", help="output folder (default: demo-output)")
    p.add_argument("--cache", metavar="DIR", help="data cache (default: $MGTE_DATA or ~/.cache/mgte-data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf.demo import DemoConfig, run_demo

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise CliError(f"--output {output} is a file; give a folder (it is created when absent).")
    logging.getLogger("mgte_hf.demo").setLevel(logging.INFO)  # one line per stage with its time
    config = DemoConfig.quick() if args.quick else DemoConfig.full()
    try:
        result = run_demo(output, args.cache, config, quiet=args.no_progress)
    except RuntimeError as err:  # a fetch, a training stage or the fresh-process check failed
        raise CliError(str(err)) from err
    print(result.files["report"].read_text(encoding="utf-8"))
    print(f"report: {result.files['report']}  chart: {result.files['chart']}")
    print(f"Hub folders: {result.files['hub_trm']}  {result.files['hub_reranker']}")
    return 0
