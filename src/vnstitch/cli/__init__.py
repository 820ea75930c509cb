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

#: Subcommands in the order ``--help`` lists them: name -> (module, one-line help). The
#: help is repeated here so ``vnstitch --help`` lists every command without importing any
#: of them (a test checks it matches what each module registers).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("vnstitch.cli.demo",
             "the main job: stitch VNs on a built-in topology, fail and repair"),
    "topology": ("vnstitch.cli.topology", "load and describe a substrate topology"),
    "allocate": ("vnstitch.cli.allocate",
                 "predictive resource allocation: evaluate policies on real traces"),
    "routemgr": ("vnstitch.cli.routemgr", "run and operate a Route Manager daemon"),
    "diagnose": ("vnstitch.cli.diagnose",
                 "say why a stitch is not up or not well (verdicts with evidence)"),
    "verify": ("vnstitch.cli.verify",
               "connectivity matrix over every stitched VN pair (ping, MTU, iperf3)"),
    "gather": ("vnstitch.cli.gather",
               "write one tarball with a daemon's state, decisions, metrics, logs "
               "and kernel objects for a bug report"),
    "lab": ("vnstitch.cli.lab", "build and tear down a namespace lab (root)"),
    "route": ("vnstitch.cli.route", "substrate routing: traffic engineering"),
    "forecast": ("vnstitch.cli.forecast",
                 "backtest forecasting models or forecast the next steps"),
    "simulate": ("vnstitch.cli.simulate",
                 "simulate Route Managers on a topology (virtual time)"),
    "sweep": ("vnstitch.cli.sweep",
              "run a grid of simulations from a spec (local pool or Ray) and aggregate them"),
    "schema": ("vnstitch.cli.schema", "print the JSON Schema of the config file, scenario "
               "files or the HTTP API's bodies"),
    "vn": ("vnstitch.cli.vn", "VN membership: issue, revoke and show owner-signed grants"),
}
SUBCOMMAND_MODULES = tuple(module for module, _help in SUBCOMMANDS.values())


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (``only`` given) one in which just that subcommand's module is
    imported and the others are placeholders carrying their help line."""
    parser = argparse.ArgumentParser(
        prog="vnstitch",
        description="Stitch virtual networks across substrate segments, forecast their "
        "traffic, allocate ahead of demand and route around congestion.",
    )
    parser.add_argument("--version", action="version", version=f"vnstitch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_line) in SUBCOMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_line)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The subcommand ``argv`` names ('' if none: top-level help, version or an error)."""
    for token in argv:
        if not token.startswith("-"):
            return token if token in SUBCOMMANDS else ""
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    if not argv:
        parser.print_help()
        return 0
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
