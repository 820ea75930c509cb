"""Sweep throughput: the same runs one by one, on the local pool and on a local Ray.

Usage: ``python benchmarks/sweep.py [--runs 200] [--workers N] [--engines serial,local,ray]
[--json] [--save FILE]``. A grid of ``builtin:small`` variants (segments 3-5 x request
count 10/20 x seeds) is run by every engine in turn into a fresh results folder; each
engine's wall time includes its own start-up (the pool's workers and their imports,
Ray's local cluster). Runs per second and the speed-up over ``serial`` (the named
baseline: the same runs one after another in one process) are printed as a table, and
every engine's per-run summary hashes are compared with serial's (they must be equal).

Scaling to N machines (reasoning, not a measurement): the runs are independent and each
ships a few kB of result, so a Ray cluster of N machines of c cores approaches N x c
runs in parallel, capped by the scheduler's per-task overhead (a few ms) and by the
slowest run at the tail; with runs of about 0.2 s that is within ~10% of linear up to
hundreds of cores, and longer runs only help.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vnstitch.sweep.driver import run_sweep
from vnstitch.sweep.engines import ENGINES, make_engine
from vnstitch.sweep.spec import spec_from_mapping


def grid_for(runs: int) -> dict[str, Any]:
    seeds = max(1, math.ceil(runs / 6))
    return {"name": "sweep-benchmark", "base": "builtin:small",
            "set": {"vns.count": 4},
            "grid": {"segments": [3, 4, 5], "requests.count": [10, 20],
                     "seed": list(range(1, seeds + 1))},
            "metrics": ["success_rate_feasible", "messages_per_rm_per_second"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200, help="about this many runs (default 200)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="parallel workers for local and ray (default: the cores)")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="comma-separated engines to time (default all; serial is the "
                   "baseline and always runs)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save", metavar="FILE", help="also write the JSON to FILE")
    args = p.parse_args(argv)
    engines = ["serial", *[e for e in args.engines.split(",") if e and e != "serial"]]
    for e in engines:
        if e not in ENGINES:
            p.error(f"unknown engine {e!r}; have {ENGINES}")
    spec = spec_from_mapping(grid_for(args.runs), "<benchmark>", None)
    rows = []
    hashes: dict[str, dict[str, str]] = {}
    for name in engines:
        with tempfile.TemporaryDirectory(prefix=f"vnstitch-sweep-{name}-") as folder:
            engine = make_engine(name, workers=args.workers)
            t0 = time.perf_counter()
            result = run_sweep(spec, engine, Path(folder))
            wall = time.perf_counter() - t0
        hashes[name] = {r.outcome.run_id: r.outcome.summary_sha256 for r in result.rows}
        rows.append({"engine": name, "runs": len(result.rows), "failed": result.failed,
                     "wall_s": round(wall, 2), "runs_per_s": round(len(result.rows) / wall, 2)})
        print(f"{name}: {len(result.rows)} runs in {wall:.1f} s", file=sys.stderr)
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup_vs_serial"] = round(base / r["wall_s"], 2)
        r["same_summaries_as_serial"] = hashes[r["engine"]] == hashes["serial"]
    out = {"runs": len(spec.cells), "workers": args.workers, "cpus": os.cpu_count(),
           "load_average_1m": round(os.getloadavg()[0], 2), "engines": rows}
    text = json.dumps(out, indent=2)
    if args.save:
        Path(args.save).write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
        return 0
    print(f"{len(spec.cells)} runs of builtin:small variants, {args.workers} workers, "
          f"load average {out['load_average_1m']}")
    print(f"{'engine':<8} {'runs':>5} {'failed':>6} {'wall s':>8} {'runs/s':>7} "
          f"{'speed-up':>8} {'same':>5}")
    for r in rows:
        print(f"{r['engine']:<8} {r['runs']:>5} {r['failed']:>6} {r['wall_s']:>8.1f} "
              f"{r['runs_per_s']:>7.2f} {r['speedup_vs_serial']:>7.2f}x "
              f"{'yes' if r['same_summaries_as_serial'] else 'NO':>5}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
