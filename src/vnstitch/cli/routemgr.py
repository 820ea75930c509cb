"""``vnstitch routemgr``: run a Route Manager daemon, make keys, query and drive it.

Subcommands: ``keygen`` (Ed25519 key file, mode 0600), ``check`` (validate a config),
``run`` (the daemon, until SIGTERM/SIGINT), ``show peers|vnids|stitches|tunnels|metrics|
status|allocations|routes|qos|decisions`` and ``stitch`` / ``release`` / ``resize``
against a running daemon's control socket (given by ``--socket`` or found through
``--config``); ``init`` (a new site's key, token, config and systemd unit) lives in
:mod:`vnstitch.cli.routemgr_init`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from vnstitch.cli import routemgr_feed, routemgr_init
from vnstitch.cli.argtypes import bounded_int, finite_float
from vnstitch.cli.daemonclient import add_target_args, send
from vnstitch.cli.output import add_json_flag, console, fmt, print_json, table
from vnstitch.daemon.limits import (
    MAX_BANDWIDTH_MBPS,
    MAX_HOP_LIMIT,
    MAX_RETRY_FOR_S,
    MAX_WAIT_S,
)
from vnstitch.model.ids import VNID_MAX

SHOW_COLUMNS: dict[str, list[str]] = {
    "peers": ["id", "address", "state", "received", "sent", "faults", "last_heard_s_ago"],
    "vnids": ["vnid", "where", "components", "host_ports", "via"],
    "stitches": ["stitch_id", "vnid", "desired", "status", "path", "bandwidth_mbps",
                 "reserved_mbps", "attempts", "last_failure", "next_attempt_s"],
    "tunnels": ["tunnel_id", "peer", "state", "interface"],
    "allocations": ["now", "stitch_id", "measured_mbps", "forecast_mbps", "quantile",
                    "available_mbps", "reserved_mbps", "action"],
    "routes": ["vnid", "where", "prefix", "metric", "kernel_metric", "substrate_metric",
               "via"],
    "qos": ["device", "class_id", "class", "rate_mbps", "ceil_mbps", "prio", "bytes",
            "drops"],
    "decisions": ["now", "kind", "stitch_id", "action", "reason"],
}

PRA_COLUMNS = ["consumer", "model", "sources", "forecast", "quantile", "amount", "action"]


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "routemgr", help="run and operate a Route Manager daemon",
        description="Run one Route Manager (asyncio, UDP Stitching Protocol, SQLite state, "
        "memory or linux dataplane) and operate it through its control socket.")
    rsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    keygen = rsub.add_parser("keygen", help="write a new Ed25519 key file (mode 0600)")
    keygen.add_argument("--out", required=True, type=Path, help="key file to create")
    add_json_flag(keygen)
    keygen.set_defaults(handler=_keygen)
    routemgr_init.register(rsub)  # key, token, config skeleton, systemd unit
    routemgr_feed.register(rsub)  # user behaviour for the live PRA

    check = rsub.add_parser("check", help="validate a config file and its key file "
                                          "(reports every problem, FILE:LINE:COL: field: "
                                          "problem)")
    check.add_argument("--config", required=True, type=Path, help="the config file to check")
    add_json_flag(check)
    check.set_defaults(handler=_check)

    run = rsub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--config", required=True, type=Path,
                     help="the daemon's YAML config file")
    run.add_argument("--log-level", default=None,
                     choices=["debug", "info", "warning", "error"],
                     help="least severe log level written to stderr (default: the "
                          "config's log_level, else info)")
    run.add_argument("--log-format", default="text", choices=["text", "json"],
                     help="log lines as text or as one JSON object each (default text)")
    run.add_argument("--init-state", action="store_true",
                     help="initialise the state database when it is empty (zero bytes) or "
                          "not a vnstitch database (that file is moved aside first); "
                          "without it such a file is refused")
    add_json_flag(run)
    run.set_defaults(handler=_run)

    show = rsub.add_parser("show", help="show state of a running daemon")
    show.add_argument("what", choices=["peers", "vnids", "stitches", "tunnels", "metrics",
                                       "status", "allocations", "routes", "qos",
                                       "decisions"],
                      help="which state to show")
    show.add_argument("--wait", type=finite_float(maximum=MAX_WAIT_S), metavar="S",
                      help="first wait up to S seconds until `vnstitch diagnose` finds no "
                           "failure; exit 1 (and say which checks fail) if it still does")
    add_target_args(show)
    add_json_flag(show)
    show.set_defaults(handler=_show)

    stitch = rsub.add_parser("stitch", help="ask a running daemon for a stitch to a VNID")
    stitch.add_argument("--vnid", required=True, type=bounded_int(0, VNID_MAX),
                        help=f"the VNID to stitch to (0..{VNID_MAX})")
    stitch.add_argument("--bandwidth", required=True, metavar="MBPS",
                        type=finite_float(maximum=MAX_BANDWIDTH_MBPS),
                        help="bandwidth to reserve along the path, Mbit/s")
    stitch.add_argument("--max-latency", type=finite_float(), metavar="MS",
                        help="refuse paths slower than this (default: any)")
    stitch.add_argument("--max-cost", type=finite_float(),
                        help="refuse paths costlier than this (default: any)")
    stitch.add_argument("--hop-limit", type=bounded_int(1, MAX_HOP_LIMIT),
                        help="most Route Managers on the path (default 16)")
    stitch.add_argument("--wait", type=finite_float(maximum=MAX_WAIT_S), default=10.0,
                        metavar="S", help="seconds to wait for the outcome (default 10)")
    stitch.add_argument("--retry-for", type=finite_float(maximum=MAX_RETRY_FOR_S),
                        metavar="S", help="retry capacity refusals for this long (default: "
                        "until released); transient failures are always retried")
    add_target_args(stitch)
    add_json_flag(stitch)
    stitch.set_defaults(handler=_stitch)

    release = rsub.add_parser("release", help="release a stitch on a running daemon")
    release.add_argument("stitch_id", help="the stitch to release (see 'show stitches')")
    add_target_args(release)
    add_json_flag(release)
    release.set_defaults(handler=_release)

    reload = rsub.add_parser("reload", help="re-read a running daemon's config file: apply "
                                            "trust, peers, qos, allocation, congestion, "
                                            "pra and log_level without a restart, or "
                                            "refuse it (naming what needs a restart) and "
                                            "keep the current one")
    add_target_args(reload)
    add_json_flag(reload)
    reload.set_defaults(handler=_reload)

    resize = rsub.add_parser("resize", help="change an established stitch's bandwidth in "
                                            "place (no outage; only at its origin)")
    resize.add_argument("stitch_id", help="the stitch to resize (see 'show stitches')")
    resize.add_argument("--bandwidth", required=True, metavar="MBPS",
                        type=finite_float(maximum=MAX_BANDWIDTH_MBPS),
                        help="the new bandwidth, Mbit/s")
    resize.add_argument("--wait", type=finite_float(maximum=MAX_WAIT_S), default=10.0,
                        metavar="S",
                        help="seconds to wait for the path's answer (default 10)")
    add_target_args(resize)
    add_json_flag(resize)
    resize.set_defaults(handler=_resize)


def _keygen(args: argparse.Namespace) -> int:
    from vnstitch.daemon.identity import write_key_file  # noqa: PLC0415

    info = write_key_file(args.out)
    result = {"key_file": str(args.out), "public_key": info.public_key_b64, "rm_id": info.rm_id}
    if args.json:
        print_json(result)
    else:
        console().print(f"wrote {args.out} (mode 0600)\npublic_key: {info.public_key_b64}\n"
                        f"rm_id:      {info.rm_id}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from vnstitch.daemon.config import ConfigProblemsError, load_config  # noqa: PLC0415

    try:
        cfg = load_config(args.config, check_files=True)
    except ConfigProblemsError as exc:
        if args.json:
            print_json({"config": str(args.config), "ok": False, "problems": exc.problems})
        else:
            for line in exc.problems:
                print(line, file=sys.stderr)
            print(f"{args.config}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 2
    result = {"config": str(args.config), "ok": True, "segment": cfg.segment,
              "listen": f"{cfg.listen_host}:{cfg.listen_port}", "peers": len(cfg.peers),
              "local_vns": [int(v.vnid) for v in cfg.local_vns],
              "driver": cfg.dataplane.driver}
    if args.json:
        print_json(result)
    else:
        console().print(f"{args.config}: ok (segment {cfg.segment}, {len(cfg.peers)} peers, "
                        f"{len(cfg.local_vns)} local VNs, driver {cfg.dataplane.driver})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from vnstitch.daemon.config import load_config  # noqa: PLC0415
    from vnstitch.daemon.coreadapter import make_driver, protocol_core_factory  # noqa: PLC0415
    from vnstitch.daemon.logfmt import configure_logging  # noqa: PLC0415
    from vnstitch.daemon.runtime import RouteManagerDaemon, run_daemon  # noqa: PLC0415

    configure_logging(args.log_level or "info", args.log_format)
    cfg = load_config(args.config)
    if args.log_level is None and cfg.log_level is not None:
        configure_logging(cfg.log_level, args.log_format)
    daemon = RouteManagerDaemon(cfg, protocol_core_factory, make_driver(cfg),
                                init_state=args.init_state)
    asyncio.run(run_daemon(daemon))
    if args.json:
        print_json({"rm_id": daemon.rm_id if daemon.stopped.is_set() else None,
                    "metrics": dict(daemon.metrics), "faults": dict(daemon.faults)})
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.wait is not None:
        from vnstitch.cli.diagnose import wait_healthy  # noqa: PLC0415

        failing = wait_healthy(args, args.wait)
        for c in failing:
            print(f"not healthy: {c.check} {c.subject}: {c.evidence} ({c.cause})",
                  file=sys.stderr)
        if failing:
            return 1
    result = send(args, {"cmd": "show", "what": args.what})
    if args.what == "metrics" and not args.json:
        print(result, end="")
        return 0
    if args.json:
        print_json({args.what: result})
        return 0
    out = console()
    if isinstance(result, dict):
        out.print(table(args.what, ["field", "value"],
                        [(k.replace("_", " "), v) for k, v in result.items()]))
        return 0
    if args.what == "allocations" and any("sources" in r for r in result):
        pra = [r for r in result if "sources" in r]  # the live PRA's consumers
        result = [r for r in result if "sources" not in r]
        cols = PRA_COLUMNS
        out.print(table(f"PRA consumers ({len(pra)})", [c.replace("_", " ") for c in cols],
                        [[_cell(r.get(c)) for c in cols] for r in pra]))
    cols = SHOW_COLUMNS[args.what]
    rows = [[_cell(r.get(c)) for c in cols] for r in result]
    # Headers in words so they can wrap at 80 columns; the first column is the key.
    out.print(table(f"{args.what} ({len(rows)})", [c.replace("_", " ") for c in cols], rows))
    return 0


def _cell(value: object) -> object:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return value


def _stitch(args: argparse.Namespace) -> int:
    req: dict[str, Any] = {"cmd": "stitch", "vnid": args.vnid, "bandwidth_mbps": args.bandwidth,
                           "wait_s": args.wait}
    for name, value in (("max_latency_ms", args.max_latency), ("max_cost", args.max_cost),
                        ("hop_limit", args.hop_limit), ("retry_for_s", args.retry_for)):
        if value is not None:
            req[name] = value
    result = send(args, req, timeout_s=args.wait + 5)
    if args.json:
        print_json(result)
    else:
        state = ("established" if result["established"] else
                 "pending" if result["pending"] else "failed")
        console().print(f"stitch {result['stitch_id']}: {state} {fmt(result['detail'])}",
                        markup=False)
    return 0 if result["established"] or result["pending"] else 1


def _release(args: argparse.Namespace) -> int:
    result = send(args, {"cmd": "release", "stitch_id": args.stitch_id})
    if args.json:
        print_json(result)
    else:
        console().print(f"released {args.stitch_id}")
    return 0


def _reload(args: argparse.Namespace) -> int:
    result = send(args, {"cmd": "reload"})  # a refused config: ControlError, every problem
    if args.json:
        print_json(result)
    else:
        console().print(f"reloaded {result['config']} (changed: "
                        f"{', '.join(result.get('sections', [])) or 'nothing'}): "
                        f"{result['peers']} peers (added {len(result['added'])}, removed "
                        f"{len(result['removed'])}, new address {len(result['readdressed'])})",
                        markup=False)
    return 0


def _resize(args: argparse.Namespace) -> int:
    result = send(args, {"cmd": "resize", "stitch_id": args.stitch_id,
                                          "bandwidth_mbps": args.bandwidth,
                                          "wait_s": args.wait}, timeout_s=args.wait + 5)
    if args.json:
        print_json(result)
    elif result["pending"]:
        console().print(f"resize of {args.stitch_id}: pending ({result['reason']})")
    else:
        state = "resized" if result["ok"] else "refused"
        console().print(f"resize of {args.stitch_id}: {state} ({result['reason']}) "
                        f"{result['old_mbps']:g} -> {result['new_mbps']:g} Mbit/s "
                        f"{fmt(result['detail'])}", markup=False)
    return 0 if result["ok"] else 1
