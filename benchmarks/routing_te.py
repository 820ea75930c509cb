"""Benchmark: min-MLU TE on Topology Zoo graphs -- true optimum, fast method, Yen+LP path.

For each topology, stage by stage (each timed, progress shown):

1. gravity demands for all ordered pairs, scaled so the TRUE optimum MLU is 1.5: the
   exact source-aggregated arc LP (:mod:`vnstitch.routing.arclp`, HiGHS IPM) is solved
   once on unit demands (the LP is homogeneous, so scaling is exact) and again on the
   scaled demands -> ``lp_optimal_mlu``;
2. the baseline "LP path": networkx Yen (``shortest_simple_paths``, k=4) for every pair
   + the HiGHS path LP over those paths -> its time and MLU. networkx Yen over all pairs
   takes minutes per graph, so by default it is timed on ``--yen-sample`` random pairs
   and extrapolated to all pairs (stated in the output); the path LP uses our own Yen's
   k=4 paths (same lengths as networkx's, tested in tests/routing). ``--full-yen`` runs
   networkx on every pair instead;
3. the fast method (:func:`vnstitch.routing.fast.solve_fast`, tree column generation);
   its time is the wall clock of the whole call (input checks, paths, solves, reading
   the routing back and evaluating its loads), which is more than its paths + solve;
4. single shortest path.

Acceptance: fast MLU <= 1.02 x lp_optimal_mlu and fast time < baseline time / 10.
Usage: python benchmarks/routing_te.py [--topologies GtsCe,UsCarrier,Cogentco] [--json]
       [--json-out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import networkx as nx

from vnstitch.datapath import shared_data_dir
from vnstitch.model import load_topology
from vnstitch.output import console, progress, table
from vnstitch.routing.arclp import solve_arc_lp
from vnstitch.routing.demands import gravity_demands, scaled
from vnstitch.routing.fast import solve_fast
from vnstitch.routing.paths import all_pairs_k_shortest_paths
from vnstitch.routing.te import ArcTable, solve_path_lp, solve_shortest

_HERE = Path(__file__).resolve()
DATA = shared_data_dir(_HERE.parent) or _HERE.parents[2] / "shared" / "data"

STAGES = ("scale (arc LP, unit)", "true optimum (arc LP)", "networkx Yen",
          "our Yen + path LP", "fast method", "shortest path")


def run(name: str, k: int, target: float, *, yen_sample: int, full_yen: bool,
        step: Callable[[str], None]) -> dict[str, object]:
    advance = step
    sub = load_topology(str(DATA / "topologyzoo" / "graphml" / f"{name}.graphml"))
    g = sub.graph
    tbl = ArcTable(g)
    # Unit volume chosen so utilisations are O(1) for HiGHS' absolute tolerances.
    unit = gravity_demands(tbl, total_mbps=float(tbl.capacity.sum()))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    factor = target / solve_arc_lp(tbl, unit).mlu
    timings["scale_seconds"] = time.perf_counter() - t0
    advance(STAGES[0])
    demands = scaled(unit, factor)
    opt = solve_arc_lp(tbl, demands)
    timings["arc_lp_seconds"] = opt.solve_seconds
    advance(STAGES[1])
    pairs = [(d.src, d.dst) for d in demands]
    sample = pairs if full_yen else random.Random(0).sample(pairs, min(yen_sample, len(pairs)))
    t0 = time.perf_counter()
    for s, t in sample:
        list(itertools.islice(nx.shortest_simple_paths(g, s, t, weight="latency_ms"), k))
    nx_yen_s = (time.perf_counter() - t0) * len(pairs) / len(sample)
    timings["nx_yen_seconds"] = nx_yen_s
    advance(STAGES[2])
    t0 = time.perf_counter()
    ours = all_pairs_k_shortest_paths(g, k)
    timings["our_yen_seconds"] = time.perf_counter() - t0
    cands = [[tbl.arc_path(p) for p in ours[pair]] for pair in pairs]
    lp = solve_path_lp(tbl, demands, cands, paths_seconds=nx_yen_s)
    timings["path_lp_seconds"] = lp.solve_seconds
    advance(STAGES[3])
    t0 = time.perf_counter()
    fast = solve_fast(tbl, demands)
    timings["fast_wall_seconds"] = time.perf_counter() - t0
    timings["fast_paths_seconds"] = fast.paths_seconds
    timings["fast_solve_seconds"] = fast.solve_seconds
    advance(STAGES[4])
    sp = solve_shortest(tbl, demands)
    timings["shortest_seconds"] = sp.paths_seconds
    advance(STAGES[5])
    ref_s = nx_yen_s + lp.solve_seconds
    fast_s = timings["fast_wall_seconds"]
    return {
        "topology": name, "nodes": len(tbl.nodes), "links": len(tbl.arcs) // 2,
        "demands": len(demands), "lp_optimal_mlu": opt.mlu, "fast_mlu": fast.mlu,
        "yen_path_lp_mlu": lp.mlu, "shortest_mlu": sp.mlu,
        "fast_over_optimum": fast.mlu / opt.mlu, "fast_certified": fast.optimal,
        "baseline_seconds": ref_s, "fast_seconds": fast_s, "speedup": ref_s / fast_s,
        "within_2pct": fast.mlu <= 1.02 * opt.mlu, "under_tenth": fast_s < ref_s / 10,
        "nx_yen_pairs_timed": len(sample), "nx_yen_extrapolated": not full_yen,
        "arc_lp_variables": opt.variables, "fast_notes": fast.notes, **timings,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--topologies", default="GtsCe,UsCarrier,Cogentco")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--target", type=float, default=1.5)
    p.add_argument("--yen-sample", type=int, default=2000,
                   help="pairs to time networkx Yen on (extrapolated to all pairs)")
    p.add_argument("--full-yen", action="store_true", help="time networkx Yen on every pair")
    p.add_argument("--json", action="store_true")
    p.add_argument("--json-out", metavar="FILE", help="also write the JSON to FILE")
    args = p.parse_args(argv)
    names = args.topologies.split(",")
    rows = []
    with progress(disable=args.json) as bar:
        task = bar.add_task("TE benchmark", total=len(names) * len(STAGES))
        for name in names:
            def step(stage: str, name: str = name) -> None:
                bar.update(task, advance=1, description=f"{name}: {stage} done")
            rows.append(run(name, args.k, args.target, yen_sample=args.yen_sample,
                            full_yen=args.full_yen, step=step))
    doc = json.dumps({"k": args.k, "target_optimum_mlu": args.target, "results": rows},
                     indent=2) + "\n"
    if args.json_out:
        Path(args.json_out).write_text(doc)
    if args.json:
        sys.stdout.write(doc)
        return 0
    cols = ["topology", "nodes", "links", "lp_optimal_mlu", "fast_mlu", "fast_over_optimum",
            "yen_path_lp_mlu", "shortest_mlu", "baseline_seconds", "fast_seconds", "speedup",
            "within_2pct", "under_tenth"]
    out = console()
    out.print(table(f"min-MLU TE, gravity demands, true optimum MLU = {args.target}",
                    cols, [[r[c] for c in cols] for r in rows]))
    tcols = ["topology", "scale_seconds", "arc_lp_seconds", "nx_yen_seconds",
             "our_yen_seconds", "path_lp_seconds", "fast_paths_seconds",
             "fast_solve_seconds", "fast_wall_seconds", "shortest_seconds"]
    out.print(table("per-stage seconds (baseline = nx_yen + path_lp; fast = fast_wall; nx Yen "
                    + ("full" if args.full_yen else f"timed on {args.yen_sample} pairs, "
                       "extrapolated") + ")", tcols, [[r[c] for c in tcols] for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
