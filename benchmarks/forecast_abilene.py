"""Forecast accuracy and speed on real backbone traffic, all models side by side.

Runs the rolling-origin backtest (fit on everything before the last ``--test-steps``
rows, forecast at every origin of the test span, each using only earlier data) at each
horizon in ``--horizons``:

* on **all series**: naive, seasonal naive, ets and lagreg (ours), lstm, auto;
* on the ``--ref-series`` series with the most traffic (the statsforecast references
  cannot finish on all 132 in reasonable time): the same models plus statsforecast
  AutoETS and AutoARIMA (non-seasonal restricted search, see vnstitch.forecast.sf).

Then it checks the acceptance criteria of issue 5 and prints them. Default data:
``$VNSTITCH_DATA/abilene/abilene_tm_5min.csv.gz`` (or ../shared/data). ``--total`` runs
on the network total (sum of all series) instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vnstitch.datapath import shared_data_dir
from vnstitch.forecast import load_series, make_forecaster
from vnstitch.forecast.compare import run_backtest, top_series
from vnstitch.output import console, table

OURS = ["naive", "seasonal_naive", "ets", "lagreg", "lstm", "auto"]
REFS = ["naive", "seasonal_naive", "ets", "lagreg", "auto", "sf_autoets", "sf_autoarima"]


def default_data() -> Path:
    root = shared_data_dir(Path(__file__).parent)
    if root is None:
        sys.exit("real data not found: set VNSTITCH_DATA")
    return root / "abilene" / "abilene_tm_5min.csv.gz"


def auto_speed(values: np.ndarray[Any, Any], season: int, horizon: int) -> float:
    """Seconds to fit ``auto`` on all rows of all series and forecast ``horizon`` steps."""
    t0 = time.perf_counter()
    make_forecaster("auto", season, horizon=horizon).fit(values).predict(horizon)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--season", type=int, default=288)
    ap.add_argument("--test-steps", type=int, default=864, help="default 3 days of 5 min")
    ap.add_argument("--horizons", default="1,12")
    ap.add_argument("--ref-series", type=int, default=12,
                    help="series (most traffic first) for the statsforecast references")
    ap.add_argument("--total", action="store_true", help="use the network total")
    ap.add_argument("--no-refs", action="store_true", help="skip statsforecast references")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", type=Path, default=None, help="also write the JSON to this file")
    args = ap.parse_args(argv)
    data = load_series(args.data, season=args.season)
    if args.total:
        data = data.total()
    values = data.values
    train_end = values.shape[0] - args.test_steps
    horizons = [int(h) for h in args.horizons.split(",")]
    ref_cols = top_series(values, args.ref_series, train_end)
    out: dict[str, Any] = {"data": str(args.data), "series": values.shape[1],
                           "season": args.season, "test_steps": args.test_steps,
                           "ref_series": len(ref_cols), "horizons": {}}
    for h in horizons:
        res_all, _ = run_backtest(values, season=args.season, horizon=h,
                                  test_steps=args.test_steps, models=OURS,
                                  quantiles=[0.1, 0.5, 0.9])
        entry: dict[str, Any] = {"all": res_all}
        if not args.no_refs:
            res_ref, _ = run_backtest(values[:, ref_cols], season=args.season, horizon=h,
                                      test_steps=args.test_steps, models=REFS,
                                      quantiles=[0.1, 0.5, 0.9])
            entry["ref"] = res_ref
        entry["auto_fit_predict_seconds_all_series"] = auto_speed(values, args.season, h)
        entry["checks"] = checks(entry)
        entry["acceptance"] = acceptance_lines(h, entry)
        out["horizons"][str(h)] = entry
    if args.save:
        args.save.write_text(json.dumps(out, indent=2) + "\n")
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    con = console()
    cols = ["model", "NMAE", "MASE", "pinball", "cover80", "fit s", "predict s"]
    for h, entry in out["horizons"].items():
        for key, label in (("all", f"all {values.shape[1]} series"),
                           ("ref", f"top {len(ref_cols)} series (with statsforecast)")):
            if key in entry:
                con.print(table(f"{data.source}: H={h}, {label}", cols,
                                [(n, r["nmae"], r["mase"], r["pinball"], r["coverage_80"],
                                  r["fit_seconds"], r["predict_seconds"])
                                 for n, r in entry[key].items()]))
        con.print(f"auto fit+forecast, all series: "
                  f"{entry['auto_fit_predict_seconds_all_series']:.2f} s")
        for name, value in entry["checks"].items():
            con.print(f"  {name}: {value}")
        for line in acceptance_lines(int(h), entry):
            con.print(f"  {line}")
    return 0


def acceptance_lines(h: int, entry: dict[str, Any]) -> list[str]:
    """Issue 5's acceptance checks at horizon ``h`` as 'met' / 'NOT met' lines with numbers."""
    c = entry["checks"]
    target = 0.10 if h == 1 else 0.15
    gain = c["auto_gain_vs_best_baseline"]
    lines = [f"{'MET' if gain >= target else 'NOT MET'}: H={h}: auto NMAE {gain:.1%} below the "
             f"better baseline (target >= {target:.0%})",
             f"{'MET' if c['auto_coverage_ok'] else 'NOT MET'}: H={h}: auto 80% coverage "
             f"{c['auto_coverage_80']:.3f} (target 0.75-0.85)"]
    secs = entry["auto_fit_predict_seconds_all_series"]
    lines.append(f"{'MET' if secs < 30 else 'NOT MET'}: H={h}: auto fit+forecast of all series "
                 f"{secs:.2f} s (target < 30 s)")
    if "auto_vs_statsforecast_best_same_series" in c:
        ratio = c["auto_vs_statsforecast_best_same_series"]
        lines.append(f"{'MET' if ratio <= 1.0 else 'NOT MET'}: H={h}: auto NMAE / best "
                     f"statsforecast NMAE on the same series = {ratio:.3f} (target <= 1)")
    return lines


def checks(entry: dict[str, Any]) -> dict[str, Any]:
    res = entry["all"]
    best_base = min(res["naive"]["nmae"], res["seasonal_naive"]["nmae"])
    out: dict[str, Any] = {
        "auto_gain_vs_best_baseline": 1 - res["auto"]["nmae"] / best_base,
        "auto_coverage_80": res["auto"]["coverage_80"],
        "auto_coverage_ok": 0.75 <= res["auto"]["coverage_80"] <= 0.85,
    }
    if "ref" in entry:
        ref = entry["ref"]
        sf_best = min(ref["sf_autoets"]["nmae"], ref["sf_autoarima"]["nmae"])
        out["auto_vs_statsforecast_best_same_series"] = ref["auto"]["nmae"] / sf_best
        auto_s = ref["auto"]["fit_seconds"] + ref["auto"]["predict_seconds"]
        arima_s = ref["sf_autoarima"]["fit_seconds"] + ref["sf_autoarima"]["predict_seconds"]
        out["speedup_vs_sf_autoarima_same_series_backtest"] = arima_s / max(auto_s, 1e-9)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
