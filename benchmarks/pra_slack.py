"""Benchmark: where the live PRA's compute slack comes from, in fake time (no root).

``lab demo --pra`` replays a CloudWatch CPU trace (``ec2_cpu_utilization_5f5533.csv``,
rows 2958.., 300 rows of history before) at 60x: one 300 s row every 5 s, the
controller stepping every second, instances of 0.03 core. Its live slack (capacity
over demand, minus 1) was 2-3x the offline evaluation's. This replays the same
controller (:class:`~vnstitch.control.pra.PraController`, the demo's policy, consumer
and hold rules) over the simulated cloud (start-up ``--lead`` seconds) with no clock:
fits are run in-process and their results applied ``--first-fit-steps`` steps later
for the first (a fresh worker spawns and imports torch) and ``--fit-steps`` for the
others, as measured live. Capacity is read ten times a second and scored against the
row's demand (:func:`~vnstitch.allocate.metrics.tally`), and, as the demo used to, only
at each row's end.

Variants (one run each, same trace):

* ``as-live`` -- the above, with the default policy (the profile's burstiness as the
  spread until the first fit is back; conformal levels from live window errors);
* ``fit-at-once`` -- every fit's result is there the step it was asked for (how much the
  wait for the first fit costs);
* ``calibrated`` -- ``PraPolicy(calibrated_levels=True)``: the history's own spread
  before the first fit, the fit's training-tail window errors in the conformal set;
* ``guarded`` -- ``PraPolicy(guard_errors=20, guard_floor=False)``: the default levels
  until 20 live window errors, then the fit's errors in the conformal set;
  ``guarded-floor`` -- the same, floored at the profile prior's level on a rise.

``--trace`` and ``--start`` replay another CloudWatch CPU trace or stretch (validate a
level rule on several, never tune it on the demo's alone).

The named baseline is ``offline``: the same rows through ``allocate evaluate``'s
predictive policy (:func:`~vnstitch.allocate.trace_eval.run_evaluation`; ETS, lead
``1 + ceil(lead / 5 s)`` rows, the same unit and newsvendor cost), the figure the demo
compares with. Table, or ``--json``. Data from ``$VNSTITCH_DATA`` or ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vnstitch.allocate.evaluate import EvalConfig
from vnstitch.allocate.metrics import tally
from vnstitch.allocate.policy import ApplicationClass, ScalingRules
from vnstitch.allocate.providers import ResourceKey, ResourceKind
from vnstitch.allocate.providers.sim import SimProvider, SimResource
from vnstitch.allocate.trace_eval import run_evaluation
from vnstitch.control.pra import (
    FitJob,
    FittedModel,
    PraConsumer,
    PraController,
    PraPolicy,
    run_fit,
)
from vnstitch.forecast.data import load_series
from vnstitch.forecast.profiles import load_profiles
from vnstitch.output import console, table

VARIANTS = ("as-live", "fit-at-once", "calibrated", "guarded", "guarded-floor")
ROW_SECONDS, PER_ROW, QUOTA, C_UNDER, START, HISTORY = 5.0, 5, 0.03, 20.0, 2958, 300
TRACE = "ec2_cpu_utilization_5f5533.csv"
#: ``guarded``: live window errors before the fit's errors join the conformal set.
GUARD_ERRORS = 20
#: As ``lab demo --pra`` (vnstitch.lab.demo_pra.LSTM_OPTIONS).
LSTM_OPTIONS = {"horizon": 8, "max_epochs": 60, "max_batches": 150, "batch_size": 256,
                "patience": 100}


def data_dir() -> Path:
    env = os.environ.get("VNSTITCH_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def cores(trace: str = TRACE) -> np.ndarray[Any, Any]:
    cpu = load_series(data_dir() / "cloudwatch" / trace)
    out: np.ndarray[Any, Any] = cpu.values[:, 0] / 100.0 * 0.5
    return out


def replay(variant: str, args: argparse.Namespace, cpu: np.ndarray[Any, Any]
           ) -> dict[str, Any]:
    start = args.start
    hist = [float(x) for x in cpu[start - HISTORY:start]]
    demand = [float(x) for x in cpu[start:start + args.rows]]
    policy = PraPolicy(interval_s=1.0, season=PER_ROW * 12, refit_every=30,
                       min_fit=PER_ROW * 12, blend_steps=PER_ROW * 12, fit_timeout_s=60.0,
                       history=PER_ROW * 12 * 12, calibrated_levels=variant == "calibrated",
                       guard_errors=GUARD_ERRORS if variant.startswith("guarded") else 0,
                       guard_floor=variant == "guarded-floor")
    prov = SimProvider({ResourceKind.COMPUTE: SimResource(args.lead)})
    ctl = PraController(policy, prov)
    ctl.add(PraConsumer("vn/cpu", ResourceKind.COMPUTE, 100, "vn",
                        ApplicationClass("web", C_UNDER, resources_per_unit=1 / QUOTA),
                        load_profiles()["database_access"],
                        ScalingRules(1.0, min_units=1, max_units=16, hold_steps=PER_ROW * 2,
                                     scale_in_window=PER_ROW * 3),
                        model=args.model,
                        options=LSTM_OPTIONS if args.model == "lstm" else {},
                        prior_level=hist[-1]))
    t0 = 1.7e9
    for i, v in enumerate(hist):
        for j in range(PER_ROW):
            ctl.observe("vn/cpu", t0 + (i - len(hist)) * ROW_SECONDS + j, v)
    key = ResourceKey(ResourceKind.COMPUTE, "vn")
    pending: list[tuple[int, FitJob, FittedModel]] = []
    fits = 0
    grid_d, grid_c, end_c, start_c, prior_steps = [], [], [], [], 0
    for k in range(args.rows * PER_ROW):
        now = t0 + k
        ctl.observe("vn/cpu", now, demand[k // PER_ROW])
        for item in [p for p in pending if p[0] <= k]:
            ctl.fit_done(item[1], item[2], now, 0.0)
            pending.remove(item)
        out = ctl.step(now)
        prior_steps += out.rows[0]["own_weight"] < 1
        for job in out.jobs:
            fits += 1
            fitted = run_fit(job)
            wait = 0 if variant == "fit-at-once" else \
                args.first_fit_steps if fits == 1 else args.fit_steps
            if wait == 0:
                ctl.fit_done(job, fitted, now, 0.0)
            else:
                pending.append((k + wait, job, fitted))
        for i in range(10):
            grid_d.append(demand[k // PER_ROW])
            grid_c.append(prov.available(key, now + (i + 0.5) / 10) * QUOTA)
        if k % PER_ROW == PER_ROW - 1:
            end_c.append(prov.available(key, now + 0.95) * QUOTA)
        if k % PER_ROW == 0:
            start_c.append(grid_c[-10])  # read at now + 0.05
    during = tally(np.asarray(grid_d)[:, None], np.asarray(grid_c)[:, None], 0.1)
    at_end = tally(np.asarray(demand)[:, None], np.asarray(end_c)[:, None], ROW_SECONDS)
    # rows whose demand rose above the capacity the row before ended with, and of those
    # the ones whose capacity was there when the row began (ready before demand)
    needed = [k for k in range(1, args.rows) if demand[k] > end_c[k - 1] + 1e-12]
    in_time = [k for k in needed if start_c[k] >= demand[k] - 1e-12]
    return {"variant": variant, "unserved_fraction": during.unserved_fraction,
            "rises_above_capacity": len(needed),
            "covered_at_row_start": len(in_time) / len(needed) if needed else None,
            "slack": during.slack, "slack_capacity_at_row_end": at_end.slack,
            "unserved_capacity_at_row_end": at_end.unserved_fraction,
            "steps_before_first_fit": prior_steps, "fits": fits}


def offline(args: argparse.Namespace, cpu: np.ndarray[Any, Any]) -> dict[str, Any]:
    lead = 1 + math.ceil(args.lead / ROW_SECONDS)
    with tempfile.TemporaryDirectory(prefix="vnstitch-praslack-") as tmp:
        path = Path(tmp) / "cpu_cores.csv"
        t0 = np.datetime64("2014-01-01T00:00")
        with open(path, "w", encoding="utf-8") as f:
            f.write("timestamp,value\n")
            for i, v in enumerate(cpu[:args.start + args.rows]):
                f.write(f"{t0 + np.timedelta64(int(i * 300), 's')},{float(v):.9g}\n")
        ecfg = EvalConfig(ResourceKind.COMPUTE, season=288, lead=lead, unit=QUOTA,
                          c_under=C_UNDER, policies=("predictive",), test_steps=args.rows,
                          sweep=False)
        _doc, res = run_evaluation([str(path)], ecfg, "ets")
    t = res.tallies["predictive"]
    return {"variant": "offline", "unserved_fraction": t.unserved_fraction,
            "slack": t.slack, "lead_rows": lead}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=36,
                        help="trace rows to replay (default 36: the demo's 3 minutes)")
    parser.add_argument("--model", choices=("ets", "lstm"), default="ets",
                        help="the compute forecaster (default ets; lstm as the demo, slower)")
    parser.add_argument("--lead", type=float, default=1.6,
                        help="instance start-up in seconds (default 1.6, as measured live)")
    parser.add_argument("--first-fit-steps", type=int, default=45,
                        help="steps until the first fit is back (default 45: a fresh "
                             "worker's spawn and torch import, as live)")
    parser.add_argument("--fit-steps", type=int, default=7,
                        help="steps until a later fit is back (default 7)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="variants to run (default all)")
    parser.add_argument("--trace", default=TRACE,
                        help=f"CloudWatch CPU trace file in the data set (default {TRACE})")
    parser.add_argument("--start", type=int, default=START,
                        help=f"first replayed row (default {START}, the demo's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.rows < 2 or args.lead < 0 or min(args.first_fit_steps, args.fit_steps) < 0:
        parser.error("--rows must be >= 2, --lead and the fit steps >= 0")
    try:
        cpu = cores(args.trace)
    except (OSError, ValueError) as exc:
        parser.error(f"--trace {args.trace}: {exc}")
    if not HISTORY <= args.start <= len(cpu) - args.rows:
        parser.error(f"--start must leave {HISTORY} rows of history and --rows to replay "
                     f"(the trace has {len(cpu)})")
    rows = [offline(args, cpu)]
    for v in args.variants:
        rows.append(replay(v, args, cpu))
        print(f"  {v}: done", file=sys.stderr, flush=True)
    res = {"baseline": "offline", "model": args.model, "rows": args.rows,
           "trace": args.trace, "start": args.start,
           "lead_s": args.lead, "results": rows,
           "command": " ".join(["python", "benchmarks/pra_slack.py", *sys.argv[1:]])}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3g}"

    console().print(table(
        f"compute slack, {args.trace} from row {args.start}, {args.rows} rows, "
        f"{args.model}, fake time",
        ["variant", "unserved", "slack", "slack row end", "rises in time", "steps on prior"],
        [(r["variant"], f(r["unserved_fraction"]), f(r["slack"]),
          f(r.get("slack_capacity_at_row_end")),
          f"{f(r.get('covered_at_row_start'))} of {r.get('rises_above_capacity', '-')}",
          str(r.get("steps_before_first_fit", "-"))) for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
