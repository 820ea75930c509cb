"""One scenario, simulated and live: how far is the simulator from the kernel? (root)

Runs ``builtin:story`` (or ``--scenario``) on ``--topology`` in ``--segments`` segments
twice, each in its own process: ``vnstitch simulate`` (virtual time) and ``vnstitch lab
run`` (a namespace lab built for it: FRR, live Route Managers, iperf3 per flow, real
cuts and kill -9; torn down after). Both print the same parity summary
(:func:`vnstitch.sim.parity.parity_summary`); this prints one row per metric -- sim,
live, live / sim -- and whether it is within the issue's bounds (times within a factor
of 2, delivered fractions within 5 points), plus each run's wall time and peak memory
(the largest resident set of the run's process tree that was reaped: for the live run
that is the CLI, the Route Manager daemons, iperf3 and FRR's helpers).

Usage: ``python benchmarks/sim_vs_live.py [--topology SPEC] [--segments K] [--scenario
F] [--max-link-mbps M] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vnstitch.output import console, table

TIME_KEYS = ("setup_seconds_median", "repair_seconds_max", "reroute_seconds_max")
COUNT_KEYS = ("stitches_requested", "stitches_feasible", "stitches_established",
              "repairs", "repairs_unfinished", "stitches_up_at_end")
TIME_FACTOR = 2.0
FRACTION_POINTS = 5.0


def _measure(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd`` (a vnstitch command printing JSON); its output, wall time and peak
    memory (``ru_maxrss`` of the reaped process tree, in a fresh wrapper process)."""
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t = time.monotonic()\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "wall = time.monotonic() - t\n"
               "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
               "sys.stderr.write(p.stderr)\n"
               "print(json.dumps({'code': p.returncode, 'out': p.stdout, 'wall_s': wall,"
               " 'peak_rss_kib': rss}))\n")
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True,
                          text=True, check=False, env=os.environ)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: wrapper failed: {proc.stderr[-500:]}")
    run = json.loads(proc.stdout)
    if run["code"] != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {run['code']}: {proc.stderr[-800:]}")
    return {"summary": json.loads(run["out"]), "wall_s": round(run["wall_s"], 2),
            "peak_rss_mib": round(run["peak_rss_kib"] / 1024, 1)}


def _ratio(sim: float | None, live: float | None) -> float | None:
    if sim is None or live is None or sim == 0:
        return None
    return round(live / sim, 3)


def compare(sim: dict[str, Any], live: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric: sim, live, ratio (or difference in points), within bounds."""
    rows: list[dict[str, Any]] = []
    for k in COUNT_KEYS[:3]:
        rows.append({"metric": k, "sim": sim[k], "live": live[k],
                     "ratio": _ratio(sim[k], live[k]), "within": sim[k] == live[k]})
    for k in TIME_KEYS:
        r = _ratio(sim[k], live[k])
        within = None if r is None else 1 / TIME_FACTOR <= r <= TIME_FACTOR
        if sim[k] is None and live[k] is None:
            within = True
        rows.append({"metric": k, "sim": sim[k], "live": live[k], "ratio": r,
                     "within": within})
    for c in sorted(set(sim["delivered_by_class"]) | set(live["delivered_by_class"])):
        s, v = sim["delivered_by_class"].get(c), live["delivered_by_class"].get(c)
        diff = None if s is None or v is None else round(100 * (v - s), 2)
        rows.append({"metric": f"delivered_by_class.{c}", "sim": s, "live": v,
                     "ratio": _ratio(s, v), "points": diff,
                     "within": None if diff is None else abs(diff) <= FRACTION_POINTS})
    for k in COUNT_KEYS[3:]:
        rows.append({"metric": k, "sim": sim[k], "live": live[k],
                     "ratio": _ratio(sim[k], live[k]), "within": None})
    rows.append({"metric": "decisions", "sim": sim["decisions"], "live": live["decisions"],
                 "ratio": None, "within": sim["decisions"] == live["decisions"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--topology", default="zoo:Abilene", help="topology (default zoo:Abilene)")
    ap.add_argument("--segments", type=int, default=5, help="segments (default 5)")
    ap.add_argument("--scenario", default="builtin:story", help="scenario (builtin:story)")
    ap.add_argument("--max-link-mbps", type=float, default=40.0,
                    help="the live lab's largest link rate (default 40)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--show", metavar="FILE",
                    help="print the tables of a recorded --json result and exit")
    args = ap.parse_args(argv)
    if args.show:
        render(json.loads(Path(args.show).read_text()))
        return 0
    if os.geteuid() != 0:
        print("sim_vs_live needs root (the live run builds a namespace lab)", file=sys.stderr)
        return 2
    base = [sys.executable, "-m", "vnstitch"]
    common = ["--scenario", args.scenario, "--topology", args.topology, "--segments",
              str(args.segments), "--json"]
    started = time.monotonic()
    sim = _measure([*base, "simulate", *common])
    live = _measure([*base, "lab", "run", *common, "--max-link-mbps",
                     str(args.max_link_mbps)])
    rows = compare(sim["summary"]["parity"], live["summary"]["parity"])
    live_run = {k: v for k, v in live["summary"].items() if k not in ("parity", "records")}
    result = {
        "scenario": args.scenario, "topology": args.topology, "segments": args.segments,
        "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "rows": rows,
        "sim": {"wall_s": sim["wall_s"], "peak_rss_mib": sim["peak_rss_mib"],
                "parity": sim["summary"]["parity"]},
        "live": {"wall_s": live["wall_s"], "peak_rss_mib": live["peak_rss_mib"],
                 "parity": live["summary"]["parity"], "run": live_run,
                 "records": live["summary"].get("records", [])},
        "total_wall_s": round(time.monotonic() - started, 2),
        "self_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                   / 1024, 1),
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    render(result)
    return 0


def render(result: dict[str, Any]) -> None:
    out = console()
    out.print(f"{result['scenario']} on {result['topology']} in {result['segments']} "
              f"segments: sim vs live (load {result['load_average_1m']} on "
              f"{result['cpus']} CPUs)")
    out.print(table("parity summary", ["metric", "sim", "live", "live/sim", "within"],
                    [(r["metric"].replace("delivered_by_class", "delivered"), _show(r["sim"]),
                      _show(r["live"]), _show(r["ratio"]), _show(r["within"]))
                     for r in result["rows"]]))
    out.print(table("cost", ["run", "wall s", "peak RSS MiB"],
                    [(name, result[name]["wall_s"], result[name]["peak_rss_mib"])
                     for name in ("sim", "live")]))


def _show(v: object) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {x}" for k, x in v.items()) or "none"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return "-" if v is None else str(v)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    raise SystemExit(main())
