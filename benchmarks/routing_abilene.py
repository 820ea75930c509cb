"""Benchmark: Abilene, every 5-minute matrix replayed in order, three routing policies.

Demands are scaled up until static shortest-path routing congests: scale = 1 / the 95th
percentile of its MLU at scale 1, so shortest path exceeds 100% in 5% of the intervals.
Counts intervals with any link above 100% and above 80% for static shortest path,
reroute-on-congestion (monitor raising above 70%, clearing below 50% for 3 samples;
largest-first moves to the path with most predicted residual until the link is under
60%; dampened returns; at most 4.9% of flows changed per interval) and the
per-interval optimum (exact arc LP per matrix).
Usage: python benchmarks/routing_abilene.py [--rows N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from routing_te import DATA
from vnstitch.cli.output import console, progress, table
from vnstitch.cli.route import silence_highs_banner
from vnstitch.model import load_topology
from vnstitch.routing.demands import load_tm_csv
from vnstitch.routing.replay import replay


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=0, help="replay only the first N rows")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    silence_highs_banner()
    g = load_topology(str(DATA / "abilene" / "abilene_topology_sndlib.xml")).graph
    tm = load_tm_csv(DATA / "abilene" / "abilene_tm_5min.csv.gz")
    rows = range(args.rows or len(tm.times))
    unit = replay(g, tm, optimum=False, rows=rows)
    scale = 1.0 / float(np.percentile(unit.static_mlu, 95))
    with progress(disable=args.json) as bar:
        task = bar.add_task("replaying", total=len(rows))
        res = replay(g, tm, scale=scale, rows=rows, on_row=lambda _i: bar.advance(task))
    summary = res.summary(len(tm.pairs))
    summary["scale"] = scale
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return 0
    names = ("static_shortest", "reroute_on_congestion", "per_interval_optimum")
    console().print(table(f"Abilene replay, {len(rows)} intervals, demand x {scale:.3f}",
                          ["policy", ">100%", ">80%", "max MLU", "mean MLU"],
                          [(n, summary[n]["intervals_over_100"],  # type: ignore[index]
                            summary[n]["intervals_over_80"],  # type: ignore[index]
                            summary[n]["max_mlu"], summary[n]["mean_mlu"])  # type: ignore[index]
                           for n in names]))
    console().print(f"reroutes {summary['reroutes_total']}; max flows changed in one interval "
                    f"{summary['max_flows_changed_per_interval']:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
