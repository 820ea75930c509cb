"""Many-series backtests on several workers: serial vs the local pool vs a local Ray.

Usage: ``python benchmarks/forecast_engines.py [--days 7] [--models lagreg,auto]
[--horizon 1] [--copies K] [--workers N] [--engines serial,local,ray] [--json]
[--save FILE]``. ``--copies K`` puts K scaled copies of the flows side by side (132 K
series) to stand in for a larger network: the real 132 flows take a few seconds, less
than a process pool's or Ray's start-up.
The Abilene OD flows (all 132 series, 5-minute steps) of the last ``--days`` days are
backtested like ``vnstitch forecast backtest``: every model is fitted on all days but
the last and forecasts every origin of the last day. ``serial`` (the named baseline) is
one process; ``local`` and ``ray`` split the series into chunks
(one per worker) with the network total and ``auto``'s pooled choice made over all series
(:mod:`vnstitch.forecast.compare`). Each engine's wall time includes its own start-up
(the pool's workers and their imports, Ray's local cluster). Printed per engine and
model: wall seconds, speed-up over serial, and whether every forecast equals serial's
(bit for bit, the mean and every quantile) -- they must.

Scaling to N machines (reasoning, not a measurement): chunks are independent once the
network total (one sum over the series) is known, each ships its series' forecasts
back (origins x H x series floats: about 1 MB per 100 series and day at H = 1), and
``auto`` needs one more pass over the per-series training errors (K x N floats) to
choose. So the fit, which is nearly all of the time, divides by the number of cores
until chunks get small (a chunk of a few series pays its fixed start-up and the
per-model Python overhead); with tens of thousands of series and N machines of c cores
one expects close to N x c, less the time to ship the data out once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vnstitch.datapath import shared_data_dir
from vnstitch.forecast import load_series
from vnstitch.forecast.backtest import RollingForecast
from vnstitch.forecast.compare import run_backtest
from vnstitch.sweep.engines import ENGINES, make_engine
from vnstitch.sweep.errors import SweepError

HERE = Path(__file__).resolve().parent
SEASON = 288


def same(a: dict[str, RollingForecast], b: dict[str, RollingForecast]) -> bool:
    return all(np.array_equal(a[m].mean, b[m].mean)
               and all(np.array_equal(a[m].quantiles[q], b[m].quantiles[q])
                       for q in a[m].quantiles) for m in a)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=7, help="days of Abilene (default 7)")
    p.add_argument("--models", default="lagreg,auto", help="comma-separated models "
                   "(default lagreg,auto)")
    p.add_argument("--horizon", type=int, default=1, help="steps ahead (default 1)")
    p.add_argument("--copies", type=int, default=1, help="side by side copies of the "
                   "flows, each scaled by its own factor (default 1: the 132 real flows; "
                   "more stand in for a network with many more VN series)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="parallel workers for local and ray (default: the cores)")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="comma-separated engines (default all; serial always runs)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save", metavar="FILE", help="also write the JSON to FILE")
    args = p.parse_args(argv)
    root = shared_data_dir(HERE)
    if root is None:
        sys.exit("real data not found: set VNSTITCH_DATA")
    engines = ["serial", *[e for e in args.engines.split(",") if e and e != "serial"]]
    values = load_series(root / "abilene" / "abilene_tm_5min.csv.gz",
                         season=SEASON).values[-args.days * SEASON:]
    if args.copies > 1:  # scaled copies: same shapes, different levels
        values = np.concatenate([values * (1.0 + 0.1 * k) for k in range(args.copies)],
                                axis=1)
    models = [m for m in args.models.split(",") if m]
    rows: list[dict[str, Any]] = []
    raws: dict[str, dict[str, RollingForecast]] = {}
    for name in engines:
        engine = None if name == "serial" else make_engine(name, workers=args.workers)
        t0 = time.perf_counter()
        try:
            scores, raw = run_backtest(values, season=SEASON, horizon=args.horizon,
                                       test_steps=SEASON, models=models,
                                       quantiles=[0.1, 0.5, 0.9], engine=engine)
        except SweepError as exc:  # e.g. Ray cannot start: a row, not the end of the run
            rows.append({"engine": name, "error": str(exc)})
            print(f"{name}: {exc}", file=sys.stderr)
            continue
        wall = time.perf_counter() - t0
        raws[name] = raw
        rows.append({"engine": name, "wall_s": round(wall, 2),
                     "nmae": {m: scores[m]["nmae"] for m in models}})
        print(f"{name}: {wall:.1f} s", file=sys.stderr)
    for r in rows:
        if "error" in r:
            continue
        r["speedup_vs_serial"] = round(rows[0]["wall_s"] / r["wall_s"], 2)
        r["same_forecasts_as_serial"] = same(raws[r["engine"]], raws["serial"])
    out = {"series": int(values.shape[1]), "copies": args.copies, "days": args.days,
           "horizon": args.horizon,
           "models": models, "workers": args.workers, "cpus": os.cpu_count(),
           "load_average_1m": round(os.getloadavg()[0], 2), "engines": rows}
    text = json.dumps(out, indent=2)
    if args.save:
        Path(args.save).write_text(text + "\n", encoding="utf-8")
    if args.json:
        print(text)
        return 0
    print(f"backtest of {', '.join(models)} on {out['series']} series "
          f"({args.copies} x the Abilene flows), "
          f"{args.days} days (last scored), H={args.horizon}, {args.workers} workers, "
          f"load average {out['load_average_1m']}")
    print(f"{'engine':<8} {'wall s':>8} {'speed-up':>8} {'same':>5}  NMAE")
    for r in rows:
        if "error" in r:
            print(f"{r['engine']:<8} failed: {r['error']}")
            continue
        nm = " ".join(f"{m}={v:.4f}" for m, v in r["nmae"].items())
        print(f"{r['engine']:<8} {r['wall_s']:>8.1f} {r['speedup_vs_serial']:>7.2f}x "
              f"{'yes' if r['same_forecasts_as_serial'] else 'NO':>5}  {nm}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
