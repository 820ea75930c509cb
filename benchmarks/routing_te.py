"""Benchmark: min-MLU TE on Topology Zoo graphs, fast method vs networkx Yen + HiGHS LP.

For each topology: gravity demands for all ordered pairs, scaled so the HiGHS path LP
over networkx's k=4 shortest simple paths (Yen) has optimum MLU = 1.5. Reports MLU and
time of (a) that reference (Yen paths + LP solve), (b) the fast method (congestion-aware
candidates + LP), (c) single shortest path, plus our own all-pairs Yen time.
Usage: python benchmarks/routing_te.py [--topologies GtsCe,UsCarrier,Cogentco] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import networkx as nx

from vnstitch.cli.output import console, progress, table
from vnstitch.cli.route import silence_highs_banner
from vnstitch.model import load_topology
from vnstitch.routing.demands import gravity_demands, scaled
from vnstitch.routing.fast import solve_fast
from vnstitch.routing.paths import all_pairs_k_shortest_paths
from vnstitch.routing.te import ArcTable, solve_path_lp, solve_shortest

_HERE = Path(__file__).resolve()
DATA = Path(os.environ.get("VNSTITCH_DATA") or next(
    (p / "shared" / "data" for p in _HERE.parents if (p / "shared" / "data").is_dir()),
    _HERE.parents[2] / "shared" / "data"))


def run(name: str, k: int, target: float) -> dict[str, object]:
    sub = load_topology(str(DATA / "topologyzoo" / "graphml" / f"{name}.graphml"))
    g = sub.graph
    tbl = ArcTable(g)
    unit = gravity_demands(tbl)
    t0 = time.perf_counter()
    yen = {(d.src, d.dst): list(itertools.islice(
        nx.shortest_simple_paths(g, d.src, d.dst, weight="latency_ms"), k)) for d in unit}
    yen_s = time.perf_counter() - t0
    cands = [[tbl.arc_path(p) for p in yen[d.src, d.dst]] for d in unit]
    factor = target / solve_path_lp(tbl, unit, cands).mlu
    demands = scaled(unit, factor)
    lp = solve_path_lp(tbl, demands, cands, paths_seconds=yen_s)
    fast = solve_fast(tbl, demands)
    sp = solve_shortest(tbl, demands)
    t0 = time.perf_counter()
    all_pairs_k_shortest_paths(g, k)
    ours_yen_s = time.perf_counter() - t0
    ref_s = lp.paths_seconds + lp.solve_seconds
    fast_s = fast.paths_seconds + fast.solve_seconds
    return {
        "topology": name, "nodes": len(tbl.nodes), "links": len(tbl.arcs) // 2,
        "demands": len(demands), "lp_mlu": lp.mlu, "fast_mlu": fast.mlu,
        "shortest_mlu": sp.mlu, "fast_over_lp": fast.mlu / lp.mlu,
        "nx_yen_seconds": yen_s, "lp_solve_seconds": lp.solve_seconds,
        "lp_total_seconds": ref_s, "fast_paths_seconds": fast.paths_seconds,
        "fast_solve_seconds": fast.solve_seconds, "fast_total_seconds": fast_s,
        "speedup": ref_s / fast_s, "our_all_pairs_yen_seconds": ours_yen_s,
        "yen_speedup": yen_s / ours_yen_s, "lp_variables": lp.lp_variables,
        "fast_lp_variables": fast.lp_variables,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--topologies", default="GtsCe,UsCarrier,Cogentco")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--target", type=float, default=1.5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    silence_highs_banner()
    names = args.topologies.split(",")
    rows = []
    with progress(disable=args.json) as bar:
        task = bar.add_task("topologies", total=len(names))
        for name in names:
            rows.append(run(name, args.k, args.target))
            bar.advance(task)
    if args.json:
        sys.stdout.write(json.dumps({"k": args.k, "target_lp_mlu": args.target,
                                     "results": rows}, indent=2) + "\n")
        return 0
    cols = ["topology", "nodes", "links", "lp_mlu", "fast_mlu", "shortest_mlu", "fast_over_lp",
            "nx_yen_seconds", "lp_solve_seconds", "fast_total_seconds", "speedup",
            "our_all_pairs_yen_seconds", "yen_speedup"]
    console().print(table(f"min-MLU TE, gravity demands, LP(k={args.k}) optimum = "
                          f"{args.target}", cols, [[r[c] for c in cols] for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
