"""``vnstitch verify``: a connectivity matrix over every stitched VN pair.

Endpoints come from a namespace lab (``--lab RUN_ID``: its hosts) or are named with
``--endpoint NAME=NETNS,IP,VNID,SEGMENT``. Which VNs are stitched is read from a Route
Manager (``--socket``/``--config``/``--url``: the VNIDs of its stitches that are up) or
given with ``--vnid``; by default every VN with endpoints on two segments is probed.
For each pair (:func:`vnstitch.daemon.verification.plan_pairs`) it runs, inside the
source's namespace, ``ping``, a DF ``ping`` as large as the source interface's MTU (with
a bisection when it is lost) and a short ``iperf3`` to a server started in the
destination's namespace, then prints the matrix; exit 1 naming every failing pair.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from typing import TYPE_CHECKING, Any

from vnstitch.cli.argtypes import bounded_int
from vnstitch.cli.output import add_json_flag, console, print_json, progress, table
from vnstitch.errors import VnstitchError

if TYPE_CHECKING:
    from vnstitch.daemon.kernelevidence import NamespaceRunner
    from vnstitch.daemon.verification import Endpoint, PairResult

_PING = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT = re.compile(r"= [\d.]+/([\d.]+)/")


class VerifyError(VnstitchError):
    """Bad endpoints or arguments for ``verify``."""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify", help="connectivity matrix over every stitched VN pair (ping, MTU, iperf3)",
        description="Probe every pair of endpoints of a stitched VN on different segments: "
        "ping, a DF ping as large as the source's MTU, a short iperf3. Exit 1 naming each "
        "failing pair. Needs root (runs inside the endpoints' namespaces).")
    p.add_argument("--lab", metavar="RUN_ID", help="take the endpoints from this namespace "
                   "lab's hosts")
    p.add_argument("--endpoint", action="append", default=[],
                   metavar="NAME=NETNS,IP,VNID,SEGMENT",
                   help="an endpoint: a host (namespace) in a VN on a segment (repeatable)")
    p.add_argument("--vnid", type=int, action="append", metavar="N",
                   help="probe only this VN (repeatable; default: the VNs stitched at the "
                        "daemon given, else every VN with endpoints on two segments)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--socket", help="a Route Manager's control socket: probe its up stitches")
    g.add_argument("--config", help="a Route Manager's config (to find its socket)")
    g.add_argument("--url", help="a Route Manager's HTTP API instead")
    p.add_argument("--token-file", help="bearer token for --url (mode 0600)")
    p.add_argument("--iperf-seconds", type=bounded_int(0, 60), default=1, metavar="S",
                   help="iperf3 duration per pair, whole seconds (default 1; 0: no iperf3)")
    p.add_argument("--pings", type=bounded_int(1, 100), default=3, metavar="N",
                   help="pings per pair (default 3)")
    add_json_flag(p)
    p.set_defaults(handler=_verify)


def _endpoints(args: argparse.Namespace) -> list[Endpoint]:
    from vnstitch.daemon.verification import Endpoint  # noqa: PLC0415

    out: list[Endpoint] = []
    if args.lab:
        from vnstitch.lab import substrate  # noqa: PLC0415

        lab = substrate.load(args.lab)
        out += [Endpoint(h.name, h.ns, h.ip, h.vnid, h.segment) for h in lab.hosts]
    for text in args.endpoint:
        name, _, rest = text.partition("=")
        parts = rest.split(",")
        if not name or len(parts) != 4 or not parts[2].isdigit():
            raise VerifyError(f"--endpoint {text!r}: expected NAME=NETNS,IP,VNID,SEGMENT")
        out.append(Endpoint(name, parts[0], parts[1], int(parts[2]), parts[3]))
    if not out:
        raise VerifyError("no endpoints: give --lab RUN_ID or --endpoint")
    return out


def _stitched_vnids(args: argparse.Namespace) -> list[int] | None:
    if args.vnid:
        return list(args.vnid)
    if not (args.socket or args.config or args.url):
        return None
    from pathlib import Path  # noqa: PLC0415

    from vnstitch.cli.daemonclient import send  # noqa: PLC0415

    args.socket = Path(args.socket) if args.socket else None
    args.config = Path(args.config) if args.config else None
    args.token_file = Path(args.token_file) if args.token_file else None
    rows = send(args, {"cmd": "show", "what": "stitches"})
    return sorted({int(s["vnid"]) for s in rows if s["status"] == "up"})


def probe(a: Endpoint, b: Endpoint, *, pings: int, iperf_s: int, port: int) -> PairResult:
    """Run the probes from ``a`` to ``b`` (see the module docstring)."""
    from vnstitch.daemon.kernelevidence import NamespaceRunner, probe_path_mtu  # noqa: PLC0415
    from vnstitch.daemon.verification import PairResult, judge  # noqa: PLC0415

    run = NamespaceRunner(netns=a.netns)
    r = PairResult(a, b)
    done = run.run(["ping", "-n", "-q", "-c", str(pings), "-i", "0.2", "-W", "1", b.ip],
                   timeout_s=pings + 5)
    m = _PING.search(done.stdout)
    r.sent, r.received = (int(m.group(1)), int(m.group(2))) if m else (pings, 0)
    rtt = _RTT.search(done.stdout)
    r.rtt_ms = float(rtt.group(1)) if rtt else None
    if r.received:
        r.mtu = _mtu_towards(run, b.ip)
        if r.mtu is not None:
            mtu = probe_path_mtu(run, b.ip, r.mtu)
            r.mtu_passes, r.mtu_largest = bool(mtu["passes"]), mtu["largest"]
        if iperf_s > 0 and r.mtu_passes is not False:
            r.iperf_mbps, r.iperf_error = _iperf(run, b, iperf_s, port)
    return judge(r)


def _mtu_towards(run: NamespaceRunner, ip: str) -> int | None:
    try:
        route = run.json(["ip", "-j", "route", "get", ip])
        dev = route[0]["dev"]
        return int(run.json(["ip", "-j", "link", "show", "dev", dev])[0]["mtu"])
    except (RuntimeError, ValueError, KeyError, IndexError, OSError,
            subprocess.SubprocessError):
        return None


def _iperf(run: NamespaceRunner, b: Endpoint, seconds: int, port: int
           ) -> tuple[float | None, str]:
    from vnstitch.daemon.kernelevidence import NamespaceRunner  # noqa: PLC0415

    server = subprocess.Popen(NamespaceRunner(netns=b.netns).argv(
        ["iperf3", "-s", "-1", "-p", str(port)]), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)  # let it bind
        done = run.run(["iperf3", "-c", b.ip, "-p", str(port), "-t", str(seconds), "-J",
                        "--connect-timeout", "3000"], timeout_s=seconds + 15)
    except subprocess.TimeoutExpired:
        return None, f"no result within {seconds + 15} s"
    finally:
        server.kill()
        server.wait()
    try:
        data = json.loads(done.stdout)
        if "error" in data:
            return None, str(data["error"])
        return float(data["end"]["sum_received"]["bits_per_second"]) / 1e6, ""
    except (ValueError, KeyError) as exc:
        return None, (done.stderr.strip() or f"no result ({exc})")[:120]


def _verify(args: argparse.Namespace) -> int:
    from vnstitch.daemon.verification import plan_pairs  # noqa: PLC0415

    pairs = plan_pairs(_endpoints(args), _stitched_vnids(args))
    results: list[PairResult] = []
    with progress(disable=args.json) as bar:
        task = bar.add_task("probing pairs", total=len(pairs))
        for i, (a, b) in enumerate(pairs):
            results.append(probe(a, b, pings=args.pings, iperf_s=args.iperf_seconds,
                                 port=5301 + i))
            bar.advance(task)
    failing = [r for r in results if r.verdict == "fail"]
    if args.json:
        print_json({"pairs": [r.as_dict() for r in results],
                    "failed": [r.pair for r in failing]})
    else:
        console().print(table(
            f"verify: {len(results)} pairs, {len(failing)} failed",
            ["VN", "pair", "ping", "RTT ms", "MTU", "iperf3 Mbit/s", "verdict"],
            [[r.src.vnid, r.pair, f"{r.received}/{r.sent}",
              "-" if r.rtt_ms is None else f"{r.rtt_ms:.2f}",
              "-" if r.mtu is None else f"{r.mtu} {'ok' if r.mtu_passes else 'lost'}",
              "-" if r.iperf_mbps is None else f"{r.iperf_mbps:.0f}",
              r.verdict] for r in results]))
        for r in results:
            if r.verdict != "ok":
                console().print(f"{r.verdict}: VN {r.src.vnid} {r.pair}: {r.reason}")
    return 1 if failing else 0
