"""``vnstitch route te``: traffic engineering on a topology with real or gravity demands.

Theory of operation: load the topology and the demands, run one TE method (``fast``,
``lp`` over k shortest paths, ``shortest``, or ``classes``: strict class precedence with
max-min fairness inside each class over k shortest paths) on one traffic matrix
(``--row``), or
replay every matrix in order with reroute-on-congestion (``--all``), and report MLU
beside the LP optimum. ``--routing-out`` writes each demand's paths and fractions so
anyone can recompute the link loads. The work is :mod:`vnstitch.routing.te_report`'s;
this module parses and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vnstitch.cli.output import add_json_flag, console, print_json, progress, table
from vnstitch.routing.qos_te import PRECEDENCE
from vnstitch.routing.te_report import (
    TeProblem,
    TeRequest,
    engineer,
    load_problem,
    replay_report,
    write_routing,
)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "route", help="substrate routing: traffic engineering",
        description="Adaptive substrate routing commands.")
    rsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    te = rsub.add_parser(
        "te", help="place demands minimising max link utilisation",
        description="Min-MLU traffic engineering. Topology: Topology Zoo GraphML or SNDlib "
        "XML (capacities from the file, else 10 Gbit/s per direction). Demands: a wide "
        "traffic-matrix CSV (time,SRC->DST,... in Mbit/s; .gz ok) or gravity:SCALE (a "
        "gravity model scaled so the true optimum MLU -- exact arc LP -- is SCALE). "
        "lp_optimal_mlu is always the exact arc-LP optimum over all paths.")
    te.add_argument("--topology", required=True, help="zoo:NAME | sndlib:NAME | PATH")
    te.add_argument("--demands", default="gravity:1.0", help="FILE.csv[.gz] | gravity:SCALE")
    rows = te.add_mutually_exclusive_group()
    rows.add_argument("--row", type=int, default=0, help="matrix row to solve (default 0)")
    rows.add_argument("--all", action="store_true",
                      help="replay every row in order, rerouting only on congestion")
    te.add_argument("--scale", type=float, default=1.0,
                    help="multiply file demands by this factor (default 1)")
    te.add_argument("--k", type=int, default=4, help="candidate paths per pair (default 4)")
    te.add_argument("--method", choices=["fast", "lp", "shortest", "classes"], default="fast",
                    help="fast (default), lp (k-path LP), shortest, or classes: serve QoS "
                    "classes in strict precedence, max-min fair inside each (SWAN-style; "
                    "one LP per fairness round, so meant for up to a few thousand demands)")
    te.add_argument("--precedence", default=",".join(PRECEDENCE),
                    help="class order for --method classes, highest first (default "
                    f"{','.join(PRECEDENCE)}; classes not listed go last, by name)")
    te.add_argument("--classes", metavar="CLASS=SHARE,...",
                    help="split every demand without a class into these classes by share "
                    "(file columns may also name a class: SRC->DST@CLASS)")
    te.add_argument("--routing-out", metavar="FILE.json",
                    help="write each demand's paths and fractions")
    add_json_flag(te)
    te.set_defaults(handler=_te)


def _request(args: argparse.Namespace) -> TeRequest:
    return TeRequest(topology=args.topology, demands=args.demands, row=args.row,
                     scale=args.scale, k=args.k, method=args.method,
                     precedence=tuple(c.strip() for c in args.precedence.split(",")
                                      if c.strip()),
                     classes=args.classes)


def _te(args: argparse.Namespace) -> int:
    req = _request(args)
    if args.all:
        return _replay_all(args, load_problem(req, all_rows=True))
    report = engineer(req)
    result = report.result
    if args.routing_out:
        p = report.problem
        write_routing(Path(args.routing_out), p.table, p.demands, report.routing())
        result["routing_out"] = args.routing_out
    if args.json:
        print_json(result)
        return 0
    out = console()
    title = f"route te{' --method classes' if args.method == 'classes' else ''}: " \
        f"{result['topology']}"
    out.print(table(title, ["figure", "value"],
                    [(k.replace("_", " "), v) for k, v in result.items()
                     if k not in ("notes", "classes")]))
    per_class = result.get("classes") or []
    if per_class:
        out.print(table("classes in precedence order",
                        [c.replace("_", " ") for c in per_class[0]],
                        [list(r.values()) for r in per_class]))
    for note in result["notes"]:
        out.print(f"  note: {note}", markup=False)
    return 0


def _replay_all(args: argparse.Namespace, problem: TeProblem) -> int:
    assert problem.matrices is not None
    with progress(disable=args.json) as bar:
        task = bar.add_task("replaying matrices", total=len(problem.matrices.times))
        summary = replay_report(problem, scale=args.scale, k=args.k,
                                on_row=lambda _i: bar.advance(task))
    if args.json:
        print_json(summary)
        return 0
    out = console()
    out.print(table("replay: intervals with congestion", ["policy", ">100%", ">80%", "max MLU"],
                    [(name.replace("_", " "), summary[name]["intervals_over_100"],
                      summary[name]["intervals_over_80"], summary[name]["max_mlu"])
                     for name in ("static_shortest", "reroute_on_congestion",
                                  "per_interval_optimum")]))
    out.print(f"reroutes: {summary['reroutes_total']}, at most "
              f"{summary['max_flows_changed_per_interval']:.1%} of flows in one interval")
    return 0
