"""The ``vnstitch`` command line: a thin layer of subcommands over the library.

Theory of operation: each subcommand lives in its own module under :mod:`vnstitch.cli`
and exposes ``register(subparsers)``, which adds its parser and sets ``handler`` to a
function ``(args) -> int``. :func:`main` parses, dispatches, and turns any
:class:`~vnstitch.errors.VnstitchError` (bad input, failed operation) into one line on
stderr and exit code 2. Nothing is imported eagerly beyond argparse: a subcommand's heavy
dependencies load only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from vnstitch import __version__
from vnstitch.errors import VnstitchError

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMAND_MODULES = (
    "vnstitch.cli.demo",
    "vnstitch.cli.topology",
    "vnstitch.cli.allocate",
    "vnstitch.cli.routemgr",
    "vnstitch.cli.lab",
    "vnstitch.cli.route",
    "vnstitch.cli.forecast",
    "vnstitch.cli.simulate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vnstitch",
        description="Stitch virtual networks across substrate segments, forecast their "
        "traffic, allocate ahead of demand and route around congestion.",
    )
    parser.add_argument("--version", action="version", version=f"vnstitch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except VnstitchError as exc:
        print(f"vnstitch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vnstitch {args.command}: interrupted", file=sys.stderr)
        return 130
    return code
