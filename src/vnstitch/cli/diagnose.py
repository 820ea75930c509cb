"""``vnstitch diagnose [STITCH_ID]``: checks with a verdict, evidence and likely cause.

Reads a running daemon's views through its control socket or HTTP API and runs
:func:`vnstitch.daemon.diagnosis.diagnose`; exit 1 when a check fails, 0 otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from vnstitch.cli.daemonclient import add_target_args, send
from vnstitch.cli.output import add_json_flag, console, print_json, table

VIEWS = ("status", "peers", "stitches", "tunnels", "decisions")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "diagnose", help="say why a stitch is not up or not well (verdicts with evidence)",
        description="Run checks over a running Route Manager's state: peer trust and "
        "reachability, stitch state and transit, tunnel probes (loss, RTT), allocation "
        "shortfalls, link utilisation. Exit 1 when a check fails.")
    p.add_argument("stitch_id", nargs="?", help="only this stitch (default: all)")
    p.add_argument("--stale", type=float, default=5.0, metavar="S",
                   help="a peer not heard for this long is unreachable (default 5)")
    add_target_args(p)
    add_json_flag(p)
    p.set_defaults(handler=_diagnose)


def _diagnose(args: argparse.Namespace) -> int:
    from vnstitch.daemon.diagnosis import diagnose, parse_faults  # noqa: PLC0415

    views = {v: send(args, {"cmd": "show", "what": v}) for v in VIEWS}
    faults = parse_faults(send(args, {"cmd": "show", "what": "metrics"}))
    checks = diagnose(views, args.stitch_id, stale_s=args.stale, faults=faults)
    failed = sum(c.verdict == "fail" for c in checks)
    if args.json:
        print_json({"checks": [c.as_dict() for c in checks], "failed": failed})
    else:
        console().print(table(f"diagnosis ({failed} failed)",
                              ["check", "subject", "verdict", "evidence", "likely cause"],
                              [[c.check, c.subject[:12], c.verdict, c.evidence, c.cause or "-"]
                               for c in checks]))
    return 1 if failed else 0
