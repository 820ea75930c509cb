"""Benchmark: allocation policies scored on what the ``sim`` cloud made usable, with a bill.

The four CloudWatch EC2 CPU series (VM = 25% CPU, lead 2 steps of 300 s, last 3 days
test) are replayed through every policy once per scenario: ``orders`` (the index
arithmetic, no provider: the baseline), then the ``sim`` provider with boot delays of
150, 300, 600 and 1200 s and, at 300 s, an API outage on the second test day. 300 s =
(lead - 1) x step is the delay the index arithmetic assumes (the order for step s exists
at the end of step s - lead; see :mod:`vnstitch.allocate.provision`), so that scenario
must reproduce ``orders`` exactly; 600 s is the full 2-step lead. Forecasts are made once
per file and shared by all scenarios; no trade-off sweep. Prints one table (per
scenario and policy: unserved, slack, cost at r=10, bill, VM-hours billed (committed,
booting included) and ordered (what the index arithmetic charges), failed orders)
and the seconds each scenario's replay took; ``--json`` prints one object. Data from
``$VNSTITCH_DATA`` or ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from allocate_eval import traces
from vnstitch.allocate.baselines import POLICIES
from vnstitch.allocate.evaluate import TraceResult, evaluate_values
from vnstitch.allocate.forecasts import LeadForecasts, lead_point_forecasts
from vnstitch.allocate.metrics import summary
from vnstitch.allocate.provision import SimSettings
from vnstitch.allocate.trace_eval import model_list
from vnstitch.forecast.data import load_series
from vnstitch.output import console, progress, table

STEP = 300.0
OUTAGE = (86400.0, 86400.0 + 6 * 3600.0)  # 6 h of failed API calls on test day 2

SCENARIOS: dict[str, SimSettings | None] = {
    "orders": None,
    "sim 150s": SimSettings(boot_delay=150.0),
    "sim 300s (assumed)": SimSettings(boot_delay=300.0),
    "sim 600s": SimSettings(boot_delay=600.0),
    "sim 1200s": SimSettings(boot_delay=1200.0),
    "sim 300s + outage": SimSettings(boot_delay=300.0, outages=(OUTAGE,)),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="auto", help="forecaster for predictive (default auto)")
    ap.add_argument("--choose-from", default="naive,seasonal_naive,ets", metavar="MODELS",
                    help="other forecasters predictive may follow (default "
                    "naive,seasonal_naive,ets; '' = only --model)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--save", metavar="OUT.json", help="also write the JSON object to a file")
    args = ap.parse_args(argv)
    names, compute = traces()["compute"]
    files = [Path(f) for f in names]
    others = model_list(args.choose_from, args.model)
    base = replace(compute, sweep=False)
    lead, unit, season = base.lead, base.unit, base.season
    pooled: dict[str, TraceResult] = {}
    seconds = dict.fromkeys(SCENARIOS, 0.0)
    with progress(disable=args.json) as bar:
        task = bar.add_task("allocate provider", total=len(files) * (1 + len(SCENARIOS)))
        for path in files:
            data = load_series(str(path), season=season)
            if data.step_seconds != STEP:
                sys.exit(f"{path}: expected {STEP:g} s steps, got {data.step_seconds}")
            start = base.split(data.values.shape[0])
            bar.update(task, description=f"forecast {path.name}")
            forecasts: list[LeadForecasts] = [
                lead_point_forecasts(data.values, start, base.calib_steps(start), lead,
                                     model=m, season=season) for m in (args.model, *others)]
            bar.advance(task)
            for name, settings in SCENARIOS.items():
                bar.update(task, description=f"{path.name}: {name}")
                cfg = replace(base, provider=settings)
                t0 = time.perf_counter()
                res = evaluate_values(data.values, STEP, cfg, forecasts[0],
                                      alternatives=forecasts[1:])
                seconds[name] += time.perf_counter() - t0
                pooled[name] = res if name not in pooled else pooled[name].merge(res)
                bar.advance(task)
    out: dict[str, Any] = {
        "data": [str(p) for p in files], "lead_steps": lead, "step_seconds": STEP,
        "unit": unit, "model": args.model, "choose_from": list(others),
        "outage": list(OUTAGE), "scenarios": {}}
    rows = []
    for name, settings in SCENARIOS.items():
        res = pooled[name]
        pol: dict[str, Any] = {}
        for p in POLICIES:
            m: dict[str, Any] = summary(res.tallies[p], res.policy_costs(p))
            bill: dict[str, Any] = {}
            if p in res.provider:
                bill = m["provider"] = res.provider[p].summary()
            pol[p] = m
            rows.append([name, p, m["unserved_fraction"], m["slack"], m["total_cost"]["10"],
                         bill.get("bill", float("nan")), bill.get("unit_hours", float("nan")),
                         bill.get("ordered_unit_hours", float("nan")),
                         bill.get("failed", float("nan"))])
        out["scenarios"][name] = {
            "boot_delay_seconds": None if settings is None else settings.boot_delay,
            "outages": [] if settings is None else [list(o) for o in settings.outages],
            "replay_seconds": seconds[name], "policies": pol}
    if args.save:
        Path(args.save).write_text(json.dumps(out, indent=1) + "\n")
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    con = Console(highlight=False, width=max(console().width, 120))
    con.print(table(f"CloudWatch CPU x{len(files)}: lead {lead} x {STEP:g} s, VM = {unit:g}% CPU, "
                    f"price 1 per VM-hour (model {args.model})",
                    ["scenario", "policy", "unserved", "slack", "cost r=10", "bill",
                     "VM-h billed", "VM-h ordered", "failed"], rows))
    con.print(table("replay time (all policies, 4 files, no forecasting)",
                    ["scenario", "seconds"], [[k, v] for k, v in seconds.items()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
