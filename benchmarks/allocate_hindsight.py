"""Benchmark: how far the predictive policy's training-time choice is from hindsight.

``predictive`` picks, per trace and cost ratio, how to condition its error distribution
(:data:`vnstitch.allocate.online.SETTINGS`) and its churn rules on the *training*
window only. This benchmark replays the *test* window once per error setting (churn
rules still chosen on training for that setting) and prints each one's test cost,
unserved fraction and slack next to ``reactive``'s, marking the setting training chose
and the one that would have been cheapest in hindsight. It answers two questions the
headline table cannot: how much the training-time choice costs against a hindsight
choice, and whether *any* of the calibrations reaches a given service level (e.g. half
of reactive's unserved fraction) at the lowest cost, or only by spending more.

Bandwidth: the 132 Abilene OD flows, lead 1 step, unit 0.1 Mbit/s (as in
``allocate_eval.py``); ``--resource compute``: the four CloudWatch EC2 CPU series,
VM = 25% CPU, lead 2 steps. Data from ``$VNSTITCH_DATA`` or ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from allocate_eval import traces
from vnstitch.allocate.baselines import reactive_units
from vnstitch.allocate.calibrate import select_forecasts
from vnstitch.allocate.evaluate import _Candidates, _hpa_churn, predictive
from vnstitch.allocate.forecasts import lead_point_forecasts
from vnstitch.allocate.metrics import Tally, tally
from vnstitch.allocate.online import SETTINGS
from vnstitch.forecast.data import load_series
from vnstitch.output import console, progress, table


def run(resource: str, ratio: float, model: str, others: tuple[str, ...],
        quiet: bool) -> dict[str, Any]:
    files, cfg = traces()[resource]
    n = len(SETTINGS)
    per_setting = [Tally() for _ in range(n)]
    train_cost = [0.0] * n
    chosen = [Tally()]
    react = Tally()
    with progress(disable=quiet) as bar:
        task = bar.add_task(f"{resource}: settings x files", total=len(files) * (n + 1))
        for path in files:
            data = load_series(path, season=cfg.season)
            v, ss = data.values, float(data.step_seconds)
            start = cfg.split(v.shape[0])
            fc = [lead_point_forecasts(v, start, cfg.calib_steps(start), cfg.lead, model=m,
                                       season=cfg.season) for m in (model, *others)]
            cands = _Candidates(fc[0], tuple(fc[1:]))
            budget = _hpa_churn(v, start, cands.calib_steps, ss, cfg)
            first, calib = cands.first_step, cands.calib_steps

            def score(units: np.ndarray[Any, Any], *, v: Any = v, start: int = start,
                      ss: float = ss) -> Tally:
                return tally(v[start:], units.astype(np.float64) * cfg.unit, ss)

            def pick(settings: Any, *, fc: Any = fc, v: Any = v, first: int = first,
                     calib: int = calib, budget: float = budget, ss: float = ss) -> Any:
                return select_forecasts([p.center[:calib] for p in fc],
                                        v[first:first + calib], cfg.lead, c_under=ratio,
                                        c_over=1.0, base=cfg.scaling, churn_budget=budget,
                                        step_seconds=ss, settings=settings,
                                        refresh=cfg.season)

            q = ratio / (ratio + 1.0)
            choice = pick(SETTINGS)
            chosen[0] = chosen[0].add(score(predictive(v, cands, cfg, choice, q)))
            bar.advance(task)
            for i, setting in enumerate(SETTINGS):
                ch = pick([setting])
                train_cost[i] += ch.train_cost
                per_setting[i] = per_setting[i].add(score(predictive(v, cands, cfg, ch, q)))
                bar.advance(task)
            react = react.add(score(reactive_units(
                v, start, cfg.lead, cfg.unit, target_utilisation=cfg.target_utilisation,
                step_seconds=ss)))
    rows: list[dict[str, Any]] = [{"setting": s.describe(), "train_cost": train_cost[i],
             "test_cost": per_setting[i].cost(ratio),
             "unserved_fraction": per_setting[i].unserved_fraction,
             "slack": per_setting[i].slack} for i, s in enumerate(SETTINGS)]
    best = min(range(n), key=lambda i: per_setting[i].cost(ratio))
    return {"resource": resource, "ratio": ratio, "settings": rows,
            "hindsight_best": rows[best]["setting"],
            "chosen": {"test_cost": chosen[0].cost(ratio),
                       "unserved_fraction": chosen[0].unserved_fraction,
                       "slack": chosen[0].slack},
            "reactive": {"test_cost": react.cost(ratio),
                         "unserved_fraction": react.unserved_fraction,
                         "slack": react.slack}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resource", choices=("bandwidth", "compute"), default="bandwidth")
    ap.add_argument("--ratio", type=float, default=10.0,
                    help="c_under / c_over (default 10)")
    ap.add_argument("--model", default="auto")
    ap.add_argument("--choose-from", default="naive,seasonal_naive,ets", metavar="MODELS")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--save", metavar="OUT.json", help="also write the JSON to a file")
    args = ap.parse_args(argv)
    if not args.ratio > 0:
        ap.error(f"--ratio must be > 0, got {args.ratio}")
    others = tuple(m for m in (t.strip() for t in args.choose_from.split(","))
                   if m and m != args.model)
    res = run(args.resource, args.ratio, args.model, others, args.json)
    if args.save:
        Path(args.save).write_text(json.dumps(res, indent=1) + "\n")
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    r = res["reactive"]
    rows: list[list[object]] = [
        [s["setting"] + (" <- hindsight best" if s["setting"] == res["hindsight_best"] else ""),
         s["train_cost"], s["test_cost"], f"{s['unserved_fraction']:.3%}", s["slack"]]
        for s in res["settings"]]
    c = res["chosen"]
    rows.append(["predictive as chosen on training", "", c["test_cost"],
                 f"{c['unserved_fraction']:.3%}", c["slack"]])
    rows.append(["reactive (HPA)", "", r["test_cost"], f"{r['unserved_fraction']:.3%}",
                 r["slack"]])
    console().print(table(
        f"{args.resource}, cost ratio {args.ratio:g}: each error setting on the test window",
        ["setting", "train cost (sum)", "test cost", "unserved", "slack"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
