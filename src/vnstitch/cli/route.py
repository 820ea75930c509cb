"""``vnstitch route te``: traffic engineering on a topology with real or gravity demands.

Theory of operation: load the topology and the demands, run one TE method (``fast``,
``lp`` over k shortest paths, ``shortest``, or ``classes``: strict class precedence with
max-min fairness inside each class over k shortest paths) on one traffic matrix
(``--row``), or
replay every matrix in order with reroute-on-congestion (``--all``), and report MLU
beside the LP optimum. ``--routing-out`` writes each demand's paths and fractions so
anyone can recompute the link loads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highspy

from vnstitch.cli.output import add_json_flag, console, print_json, progress, table
from vnstitch.model import load_topology
from vnstitch.routing.arclp import solve_arc_lp
from vnstitch.routing.classes import PRECEDENCE, class_order, solve_classes
from vnstitch.routing.demands import (
    check_nodes,
    gravity_demands,
    load_tm_csv,
    scaled,
    split_classes,
)
from vnstitch.routing.errors import RoutingError
from vnstitch.routing.fast import solve_fast
from vnstitch.routing.paths import all_pairs_k_shortest_paths
from vnstitch.routing.replay import replay
from vnstitch.routing.te import ArcTable, Demand, TeResult, solve_path_lp, solve_shortest


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


def silence_highs_banner() -> None:
    """HiGHS prints a banner on stdout (C level) when the first solver object is made;
    make that first object with fd 1 pointed at stderr so ``--json`` stdout stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        highspy.Highs()  # type: ignore[no-untyped-call]
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _lp_reference(table: ArcTable, demands: list[Demand], k: int) -> TeResult:
    t0 = time.perf_counter()
    pairs = {(d.src, d.dst) for d in demands}
    cands = all_pairs_k_shortest_paths(table.graph, k, pairs=pairs)
    paths_s = time.perf_counter() - t0
    return solve_path_lp(table, demands, [[table.arc_path(p) for p in cands[d.src, d.dst]]
                                          for d in demands], paths_seconds=paths_s)


def _te(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise RoutingError(f"--k must be >= 1, got {args.k}")
    silence_highs_banner()
    sub = load_topology(args.topology)
    table_ = ArcTable(sub.graph)
    notes = list(sub.notes)
    if args.demands.startswith("gravity:"):
        if args.all:
            raise RoutingError("--all needs a traffic-matrix file, not a gravity model")
        try:
            target = float(args.demands[len("gravity:"):])
        except ValueError:
            raise RoutingError(f"--demands {args.demands!r}: SCALE must be a number") from None
        if not target > 0:
            raise RoutingError(f"--demands {args.demands!r}: SCALE must be > 0")
        unit = gravity_demands(table_, total_mbps=float(table_.capacity.sum()))
        demands = scaled(unit, target / solve_arc_lp(table_, unit).mlu)
        notes.append(f"gravity demands scaled so the true (arc LP) optimum MLU = {target}")
        tm = None
    else:
        tm = load_tm_csv(args.demands)
        check_nodes(tm, table_, args.demands)
        if args.all:
            return _replay_all(args, sub.graph, tm, notes)
        demands = tm.demands(args.row, scale=args.scale)
    if args.classes:
        demands = split_classes(demands, _parse_shares(args.classes))
    if args.method == "classes":
        return _te_classes(args, sub.name, table_, demands, notes)
    if args.method == "fast":
        res = solve_fast(table_, demands)
    elif args.method == "lp":
        res = _lp_reference(table_, demands, args.k)
    else:
        res = solve_shortest(table_, demands)
    ref = solve_arc_lp(table_, demands)
    result: dict[str, Any] = {
        "topology": sub.name, "nodes": len(table_.nodes), "links": len(table_.arcs) // 2,
        "demands": len(demands), "total_mbps": sum(d.volume_mbps for d in demands),
        "row": None if tm is None else args.row,
        "time": None if tm is None else tm.times[args.row],
        "method": args.method, "k": args.k, "mlu": res.mlu, "lp_optimal_mlu": ref.mlu,
        "lp_optimal_seconds": ref.solve_seconds,
        "demand_satisfied": res.demand_satisfied, "solve_seconds": res.solve_seconds,
        "paths_seconds": res.paths_seconds, "optimal_certified": res.optimal,
        "notes": notes + res.notes,
    }
    if _emit(args, result, table_, demands, lambda: res):
        return 0
    out = console()
    out.print(table(f"route te: {sub.name}", ["figure", "value"],
                    [(k, v) for k, v in result.items() if k != "notes"]))
    for note in result["notes"]:
        out.print(f"  note: {note}")
    return 0


def _parse_shares(text: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for item in text.split(","):
        name, eq, share = item.partition("=")
        try:
            value = float(share)
        except ValueError:
            value = math.nan
        if not eq or not name.strip() or not math.isfinite(value) or value < 0:
            raise RoutingError(f"--classes {text!r}: bad item {item!r} (want CLASS=SHARE, "
                               "SHARE >= 0)")
        out.append((name.strip(), value))
    return out


def _te_classes(args: argparse.Namespace, name: str, table_: ArcTable,
                demands: list[Demand], notes: list[str]) -> int:
    precedence = [c.strip() for c in args.precedence.split(",") if c.strip()]
    t0 = time.perf_counter()
    pairs = {(d.src, d.dst) for d in demands if d.src != d.dst}
    cands = all_pairs_k_shortest_paths(table_.graph, args.k, pairs=pairs)
    paths = [[table_.arc_path(p) for p in cands[d.src, d.dst]] if d.src != d.dst else [()]
             for d in demands]
    paths_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    alloc = solve_classes(table_, demands, paths, precedence=precedence)
    solve_s = time.perf_counter() - t1
    offered = sum(d.volume_mbps for d in demands)
    served = sum(alloc.rate_mbps)
    per_class = []
    for cls in class_order(demands, precedence):
        idx = [i for i, d in enumerate(demands) if d.qos_class == cls]
        sat = [alloc.rate_mbps[i] / demands[i].volume_mbps for i in idx
               if demands[i].volume_mbps > 0] or [1.0]
        per_class.append({
            "class": cls, "demands": len(idx),
            "offered_mbps": sum(demands[i].volume_mbps for i in idx),
            "served_mbps": sum(alloc.rate_mbps[i] for i in idx),
            "min_satisfied": min(sat), "mean_satisfied": sum(sat) / len(sat)})
    result: dict[str, Any] = {
        "topology": name, "nodes": len(table_.nodes), "links": len(table_.arcs) // 2,
        "demands": len(demands), "total_mbps": offered, "method": "classes", "k": args.k,
        "precedence": class_order(demands, precedence),
        "mlu": float((alloc.arc_load / table_.capacity).max()) if len(alloc.arc_load) else 0.0,
        "demand_satisfied": served / offered if offered > 0 else 1.0,
        "solve_seconds": solve_s, "paths_seconds": paths_s, "lp_rounds": alloc.lp_rounds,
        "classes": per_class, "notes": notes,
    }
    def routing() -> TeResult:
        fractions = [[(p, r / d.volume_mbps if d.volume_mbps > 0 else 0.0) for p, r in routes]
                     for d, routes in zip(demands, alloc.routing, strict=True)]
        return TeResult("classes", fractions, alloc.arc_load, result["mlu"], paths_s, solve_s)

    if _emit(args, result, table_, demands, routing):
        return 0
    out = console()
    out.print(table(f"route te --method classes: {name}", ["figure", "value"],
                    [(k, v) for k, v in result.items() if k not in ("notes", "classes")]))
    out.print(table("classes in precedence order", list(per_class[0]) if per_class else [],
                    [list(r.values()) for r in per_class]))
    for note in notes:
        out.print(f"  note: {note}")
    return 0


def _emit(args: argparse.Namespace, result: dict[str, Any], table_: ArcTable,
          demands: list[Demand], routing: Callable[[], TeResult]) -> bool:
    """Write ``--routing-out`` (``routing`` is only built then); print the JSON and return
    True under ``--json``."""
    if args.routing_out:
        _write_routing(Path(args.routing_out), table_, demands, routing())
        result["routing_out"] = args.routing_out
    if args.json:
        print_json(result)
        return True
    return False


def _write_routing(path: Path, table_: ArcTable, demands: list[Demand], res: TeResult) -> None:
    rows = [{"src": d.src, "dst": d.dst, "volume_mbps": d.volume_mbps, "class": d.qos_class,
             "paths": [{"nodes": list(table_.node_path(p, d.src)), "fraction": f}
                       for p, f in r]}
            for d, r in zip(demands, res.routing, strict=True)]
    try:
        path.write_text(json.dumps({"method": res.method, "mlu": res.mlu, "demands": rows}))
    except OSError as exc:
        raise RoutingError(f"--routing-out {path}: cannot write: {exc}") from None


def _replay_all(args: argparse.Namespace, graph: Any, tm: Any, notes: list[str]) -> int:
    with progress(disable=args.json) as bar:
        task = bar.add_task("replaying matrices", total=len(tm.times))
        res = replay(graph, tm, scale=args.scale, k=args.k,
                     on_row=lambda _i: bar.advance(task))
    summary = res.summary(len(tm.pairs))
    summary["notes"] = notes
    summary["reroute_log"] = [
        {"time": d.time, "flow": d.flow_id, "old": list(d.old_path), "new": list(d.new_path),
         "reason": d.reason, "split": [[list(p), f] for p, f in d.split]}
        for d in res.decisions]
    if args.json:
        print_json(summary)
        return 0
    out = console()
    out.print(table("replay: intervals with congestion", ["policy", ">100%", ">80%", "max MLU"],
                    [(name, summary[name]["intervals_over_100"],  # type: ignore[index]
                      summary[name]["intervals_over_80"],  # type: ignore[index]
                      summary[name]["max_mlu"])  # type: ignore[index]
                     for name in ("static_shortest", "reroute_on_congestion",
                                  "per_interval_optimum")]))
    out.print(f"reroutes: {summary['reroutes_total']}, at most "
              f"{summary['max_flows_changed_per_interval']:.1%} of flows in one interval")
    return 0
