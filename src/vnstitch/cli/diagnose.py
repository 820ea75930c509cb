"""``vnstitch diagnose [STITCH_ID]``: checks with a verdict, evidence and likely cause.

Reads a running daemon's views through its control socket or HTTP API and runs
:func:`vnstitch.daemon.diagnosis.diagnose`; exit 1 when a check fails, 0 otherwise.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from vnstitch.cli.daemonclient import add_target_args, send
from vnstitch.cli.output import add_json_flag, console, print_json, table

if TYPE_CHECKING:
    from vnstitch.daemon.diagnosis import Check

VIEWS = ("status", "peers", "stitches", "tunnels", "decisions", "qos", "vnids")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "diagnose", help="say why a stitch is not up or not well (verdicts with evidence)",
        description="Run checks over a running Route Manager's state: peer trust and "
        "reachability, stitch state and transit, tunnel probes (loss, RTT), allocation "
        "shortfalls, link utilisation; and, for the linux dataplane when run as root on "
        "the daemon's host, kernel evidence read in its namespace: WireGuard handshake "
        "age, path MTU to each tunnel endpoint, HTB drops, routes competing with the "
        "stitches'. Exit 1 when a check fails.")
    p.add_argument("stitch_id", nargs="?", help="only this stitch (default: all)")
    p.add_argument("--stale", type=float, default=5.0, metavar="S",
                   help="a peer not heard for this long is unreachable (default 5)")
    p.add_argument("--no-kernel", action="store_true",
                   help="skip the kernel checks (no nsenter, tc, wg or MTU probes)")
    add_target_args(p)
    add_json_flag(p)
    p.set_defaults(handler=_diagnose)


def run_checks(args: argparse.Namespace, stitch_id: str | None = None,
               stale_s: float = 5.0, kernel: bool = False) -> list[Check]:
    """Read the daemon's views through ``args``' door and diagnose them; with ``kernel``
    also the kernel evidence in its namespace when that can be read from here."""
    from vnstitch.daemon import kernelevidence  # noqa: PLC0415
    from vnstitch.daemon.diagnosis import Check, diagnose, kernel_checks, parse_faults  # noqa: PLC0415

    views = {v: send(args, {"cmd": "show", "what": v}) for v in VIEWS}
    faults = parse_faults(send(args, {"cmd": "show", "what": "metrics"}))
    checks = diagnose(views, stitch_id, stale_s=stale_s, faults=faults)
    if kernel:
        why_not = kernelevidence.usable(views["status"])
        if why_not:
            checks.append(Check("kernel", "evidence", "warn", f"not read: {why_not}"))
        else:
            checks += kernel_checks(kernelevidence.collect(views), views)
    return checks


def wait_healthy(args: argparse.Namespace, timeout_s: float, step_s: float = 0.5
                 ) -> list[Check]:
    """Poll until no check fails or ``timeout_s`` passed; the failing checks ([] healthy)."""
    deadline = time.monotonic() + timeout_s
    with console().status(f"waiting up to {timeout_s:g} s for the daemon to be healthy"):
        while True:
            failing = [c for c in run_checks(args) if c.verdict == "fail"]
            if not failing or time.monotonic() >= deadline:
                return failing
            time.sleep(step_s)


def _diagnose(args: argparse.Namespace) -> int:
    checks = run_checks(args, args.stitch_id, args.stale, kernel=not args.no_kernel)
    failed = sum(c.verdict == "fail" for c in checks)
    if args.json:
        print_json({"checks": [c.as_dict() for c in checks], "failed": failed})
    else:
        console().print(table(f"diagnosis ({failed} failed)",
                              ["check", "subject", "verdict", "evidence", "likely cause"],
                              [[c.check, c.subject[:12], c.verdict, c.evidence, c.cause or "-"]
                               for c in checks]))
    return 1 if failed else 0
