"""One traffic-engineering run end to end: load, solve, compare with the optimum, report.

Theory of operation: :func:`load_problem` turns a :class:`TeRequest` (a topology spec,
a demand spec -- a traffic-matrix CSV or ``gravity:SCALE`` -- and the method's knobs)
into an :class:`ArcTable` and demands; :func:`engineer` solves it with one method
(``fast``, ``lp`` over k shortest paths, ``shortest`` or ``classes``: strict class
precedence with max-min fairness inside each class) and returns a :class:`TeReport`:
a JSON-ready dict of figures beside the exact arc-LP optimum, and the routing itself.
:func:`routing_document` and :func:`write_routing` give each demand's paths and
fractions so anyone can recompute the link loads. :func:`replay_report` replays every
matrix of a file with reroute-on-congestion (:mod:`vnstitch.routing.replay`).

The ``vnstitch route te`` command and the routing benchmarks are thin layers over this
module. No printing; the only I/O is reading the files the request names and writing
the routing file the caller names.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from vnstitch.model import load_topology
from vnstitch.routing.arclp import solve_arc_lp
from vnstitch.routing.demands import (
    TrafficMatrices,
    check_nodes,
    gravity_demands,
    load_tm_csv,
    scaled,
    split_classes,
)
from vnstitch.routing.errors import RoutingError
from vnstitch.routing.fast import solve_fast
from vnstitch.routing.paths import all_pairs_k_shortest_paths
from vnstitch.routing.qos_te import PRECEDENCE, class_order, solve_classes
from vnstitch.routing.replay import replay
from vnstitch.routing.te import ArcTable, Demand, TeResult, solve_path_lp, solve_shortest

METHODS = ("fast", "lp", "shortest", "classes")


@dataclass(frozen=True)
class TeRequest:
    """What to engineer. ``demands``: a traffic-matrix CSV (``.gz`` ok) or
    ``gravity:SCALE`` (scaled so the exact arc-LP optimum MLU is SCALE)."""

    topology: str
    demands: str = "gravity:1.0"
    row: int = 0
    scale: float = 1.0
    k: int = 4
    method: str = "fast"
    precedence: tuple[str, ...] = PRECEDENCE
    #: ``CLASS=SHARE,...``: split every demand without a class into these classes.
    classes: str | None = None


@dataclass
class TeProblem:
    name: str
    graph: nx.Graph
    table: ArcTable
    demands: list[Demand]
    notes: list[str]
    #: The traffic matrices when the demands came from a file (None for gravity).
    matrices: TrafficMatrices | None = None


@dataclass
class TeReport:
    """Figures (JSON-ready) and a way to build the routing (only when asked for)."""

    result: dict[str, Any]
    problem: TeProblem
    routing: Callable[[], TeResult] = field(repr=False)


def parse_shares(text: str) -> list[tuple[str, float]]:
    """``CLASS=SHARE,...`` -> [(class, share)], shares >= 0."""
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


def load_problem(req: TeRequest, *, all_rows: bool = False) -> TeProblem:
    """The topology and the demands of ``req`` (row ``req.row`` of a matrix file; with
    ``all_rows`` the demands are left empty and the matrices kept for a replay)."""
    if req.k < 1:
        raise RoutingError(f"--k must be >= 1, got {req.k}")
    sub = load_topology(req.topology)
    table = ArcTable(sub.graph)
    notes = list(sub.notes)
    tm: TrafficMatrices | None = None
    if req.demands.startswith("gravity:"):
        if all_rows:
            raise RoutingError("--all needs a traffic-matrix file, not a gravity model")
        try:
            target = float(req.demands[len("gravity:"):])
        except ValueError:
            raise RoutingError(f"--demands {req.demands!r}: SCALE must be a number") from None
        if not target > 0:
            raise RoutingError(f"--demands {req.demands!r}: SCALE must be > 0")
        unit = gravity_demands(table, total_mbps=float(table.capacity.sum()))
        demands = scaled(unit, target / solve_arc_lp(table, unit).mlu)
        notes.append(f"gravity demands scaled so the true (arc LP) optimum MLU = {target}")
    else:
        tm = load_tm_csv(req.demands)
        check_nodes(tm, table, req.demands)
        demands = [] if all_rows else tm.demands(req.row, scale=req.scale)
    if req.classes:
        demands = split_classes(demands, parse_shares(req.classes))
    return TeProblem(sub.name, sub.graph, table, demands, notes, tm)


def _lp_reference(table: ArcTable, demands: list[Demand], k: int) -> TeResult:
    t0 = time.perf_counter()
    pairs = {(d.src, d.dst) for d in demands}
    cands = all_pairs_k_shortest_paths(table.graph, k, pairs=pairs)
    paths_s = time.perf_counter() - t0
    return solve_path_lp(table, demands, [[table.arc_path(p) for p in cands[d.src, d.dst]]
                                          for d in demands], paths_seconds=paths_s)


def engineer(req: TeRequest, problem: TeProblem | None = None) -> TeReport:
    """Solve ``req`` with its method and report it beside the arc-LP optimum."""
    if req.method not in METHODS:
        raise RoutingError(f"--method {req.method!r}: choose from {', '.join(METHODS)}")
    p = problem if problem is not None else load_problem(req)
    if req.method == "classes":
        return engineer_classes(req, p)
    table, demands = p.table, p.demands
    if req.method == "fast":
        res = solve_fast(table, demands)
    elif req.method == "lp":
        res = _lp_reference(table, demands, req.k)
    else:
        res = solve_shortest(table, demands)
    ref = solve_arc_lp(table, demands)
    tm = p.matrices
    result: dict[str, Any] = {
        "topology": p.name, "nodes": len(table.nodes), "links": len(table.arcs) // 2,
        "demands": len(demands), "total_mbps": sum(d.volume_mbps for d in demands),
        "row": None if tm is None else req.row,
        "time": None if tm is None else tm.times[req.row],
        "method": req.method, "k": req.k, "mlu": res.mlu, "lp_optimal_mlu": ref.mlu,
        "lp_optimal_seconds": ref.solve_seconds,
        "demand_satisfied": res.demand_satisfied, "solve_seconds": res.solve_seconds,
        "paths_seconds": res.paths_seconds, "optimal_certified": res.optimal,
        "notes": p.notes + res.notes,
    }
    return TeReport(result, p, lambda: res)


def engineer_classes(req: TeRequest, p: TeProblem) -> TeReport:
    """Classes in strict precedence, max-min fair inside each, over k shortest paths."""
    table, demands = p.table, p.demands
    t0 = time.perf_counter()
    pairs = {(d.src, d.dst) for d in demands if d.src != d.dst}
    cands = all_pairs_k_shortest_paths(table.graph, req.k, pairs=pairs)
    paths = [[table.arc_path(q) for q in cands[d.src, d.dst]] if d.src != d.dst else [()]
             for d in demands]
    paths_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    alloc = solve_classes(table, demands, paths, precedence=req.precedence)
    solve_s = time.perf_counter() - t1
    offered = sum(d.volume_mbps for d in demands)
    served = sum(alloc.rate_mbps)
    per_class = []
    for cls in class_order(demands, req.precedence):
        idx = [i for i, d in enumerate(demands) if d.qos_class == cls]
        sat = [alloc.rate_mbps[i] / demands[i].volume_mbps for i in idx
               if demands[i].volume_mbps > 0] or [1.0]
        per_class.append({
            "class": cls, "demands": len(idx),
            "offered_mbps": sum(demands[i].volume_mbps for i in idx),
            "served_mbps": sum(alloc.rate_mbps[i] for i in idx),
            "min_satisfied": min(sat), "mean_satisfied": sum(sat) / len(sat)})
    mlu = float((alloc.arc_load / table.capacity).max()) if len(alloc.arc_load) else 0.0
    result: dict[str, Any] = {
        "topology": p.name, "nodes": len(table.nodes), "links": len(table.arcs) // 2,
        "demands": len(demands), "total_mbps": offered, "method": "classes", "k": req.k,
        "precedence": class_order(demands, req.precedence), "mlu": mlu,
        "demand_satisfied": served / offered if offered > 0 else 1.0,
        "solve_seconds": solve_s, "paths_seconds": paths_s, "lp_rounds": alloc.lp_rounds,
        "classes": per_class, "notes": p.notes,
    }

    def routing() -> TeResult:
        fractions = [[(q, r / d.volume_mbps if d.volume_mbps > 0 else 0.0) for q, r in routes]
                     for d, routes in zip(demands, alloc.routing, strict=True)]
        return TeResult("classes", fractions, alloc.arc_load, mlu, paths_s, solve_s)

    return TeReport(result, p, routing)


def routing_document(table: ArcTable, demands: list[Demand], res: TeResult) -> dict[str, Any]:
    """Each demand's node paths and fractions, JSON-ready."""
    rows = [{"src": d.src, "dst": d.dst, "volume_mbps": d.volume_mbps, "class": d.qos_class,
             "paths": [{"nodes": list(table.node_path(q, d.src)), "fraction": f}
                       for q, f in r]}
            for d, r in zip(demands, res.routing, strict=True)]
    return {"method": res.method, "mlu": res.mlu, "demands": rows}


def write_routing(path: Path, table: ArcTable, demands: list[Demand], res: TeResult) -> None:
    """:func:`routing_document` as one JSON file at ``path``."""
    try:
        path.write_text(json.dumps(routing_document(table, demands, res)))
    except OSError as exc:
        raise RoutingError(f"--routing-out {path}: cannot write: {exc}") from None


def replay_report(p: TeProblem, *, scale: float, k: int,
                  on_row: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Replay every matrix of ``p`` (loaded with ``all_rows``) under the three policies
    of :mod:`vnstitch.routing.replay`; the summary and every reroute decision."""
    if p.matrices is None:
        raise RoutingError("--all needs a traffic-matrix file, not a gravity model")
    tm = p.matrices
    res = replay(p.graph, tm, scale=scale, k=k, on_row=on_row)
    summary: dict[str, Any] = dict(res.summary(len(tm.pairs)))
    summary["notes"] = p.notes
    summary["reroute_log"] = [
        {"time": d.time, "flow": d.flow_id, "old": list(d.old_path), "new": list(d.new_path),
         "reason": d.reason, "split": [[list(q), f] for q, f in d.split]}
        for d in res.decisions]
    return summary
