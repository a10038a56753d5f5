"""The `mgte-hf` command line. Each sub-command lives in its own module exposing `add_parser(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys


COMMAND_MODULES = (
    "info", "convert", "export", "encode", "rerank", "search", "encode_corpus", "search_shards", "data", "evaluate", "demo",
    "serve",
)


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgte-hf",
        description="mGTE models: encode (dense + sparse), rerank, search, convert checkpoints, data and evaluation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details (and show tracebacks)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (CliError, ValueError, TypeError, OSError) as err:  # user errors: one line, exit status 2
        if args.verbose:
            raise
        message = str(err).strip() or type(err).__name__
        print(f"mgte-hf {args.command}: error: {message.splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
