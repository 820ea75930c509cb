"""Benchmark: allocation policies on real traces (issue 6 acceptance).

Runs ``vnstitch allocate evaluate`` on (1) bandwidth: all 132 Abilene OD flows, lead 1
step, unit 0.1 Mbit/s; (2) compute: the four CloudWatch EC2 CPU series, VM = 25% CPU,
lead 2 steps. Split: the last 3 days (864 steps) are the test window, the first 11 days
train; every forecast uses only data before its decision. Prints one table per trace
set, the acceptance checks, and writes PNGs to ``benchmarks/results/``; ``--json``
prints one object ``{"bandwidth": <evaluate JSON>, "compute": ..., "checks": ...}``.
Data from ``$VNSTITCH_DATA`` or ``../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vnstitch.allocate.evaluate import EvalConfig
from vnstitch.allocate.metrics import COST_RATIOS
from vnstitch.allocate.plot import write_plot
from vnstitch.allocate.providers.base import ResourceKind
from vnstitch.allocate.trace_eval import evaluation_steps, model_list, run_evaluation
from vnstitch.datapath import shared_data_dir
from vnstitch.output import console, progress, table

HERE = Path(__file__).resolve().parent
NON_ORACLE = ("static-peak", "static-p95", "reactive")


def data_dir() -> Path:
    found = shared_data_dir(HERE)
    if found is None:
        sys.exit("real data not found: set VNSTITCH_DATA")
    return found


def traces() -> dict[str, tuple[list[str], EvalConfig]]:
    """Issue 6's trace sets (files, configuration): Abilene bandwidth, CloudWatch compute.
    The other allocation benchmarks import this, so all of them replay the same traces."""
    d = data_dir()
    return {
        "bandwidth": ([str(d / "abilene" / "abilene_tm_5min.csv.gz")],
                      EvalConfig(ResourceKind.BANDWIDTH, 288, 1, 0.1)),
        "compute": ([str(p) for p in sorted((d / "cloudwatch").glob("ec2_cpu_utilization_*.csv"))],
                    EvalConfig(ResourceKind.COMPUTE, 288, 2, 25.0)),
    }


def checks(name: str, res: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """Acceptance checks of issue 6: name -> (met, the numbers behind it)."""
    pol = res["policies"]
    out: dict[str, tuple[bool, str]] = {}
    for r in COST_RATIOS:
        k = f"{r:g}"
        other = min(NON_ORACLE, key=lambda p: pol[p]["total_cost"][k])
        ours, theirs = pol["predictive"]["total_cost"][k], pol[other]["total_cost"][k]
        out[f"{name}: predictive lowest cost at ratio {k}"] = (
            ours <= theirs, f"{ours:.4f} vs best other {other} {theirs:.4f}")
    for other, cmp in res.get("predictive_curve_below", {}).items():
        lo, hi = cmp["slack_range"]
        out[f"{name}: predictive trade-off curve below {other}"] = (
            cmp["below"], f"worst margin {cmp['worst_margin']:+.4f} on slack [{lo:.3f}, {hi:.3f}]")
    if name == "bandwidth":
        p, sp, re = pol["predictive"], pol["static-p95"], pol["reactive"]
        u = p["unserved_fraction"]
        out["bandwidth r=10: predictive unserved <= 1%"] = (u <= 0.01, f"{u:.4%}")
        out["bandwidth r=10: predictive slack < static-p95"] = (
            p["slack"] < sp["slack"], f"{p['slack']:.4f} vs {sp['slack']:.4f}")
        out["bandwidth r=10: predictive unserved <= half of reactive"] = (
            u <= 0.5 * re["unserved_fraction"],
            f"{u:.4%} vs half of {re['unserved_fraction']:.4%} = "
            f"{0.5 * re['unserved_fraction']:.4%}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="auto", help="forecaster for predictive (default auto)")
    ap.add_argument("--choose-from", default="naive,seasonal_naive,ets", metavar="MODELS",
                    help="other forecasters predictive may follow, chosen per series on the "
                    "training window (default naive,seasonal_naive,ets; '' = only --model)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--no-plot", action="store_true", help="do not write PNGs")
    ap.add_argument("--save", metavar="OUT.json", help="also write the JSON object to a file")
    args = ap.parse_args(argv)
    runs = traces()
    out: dict[str, Any] = {}
    all_checks: dict[str, tuple[bool, str]] = {}
    con = console()
    for name, (files, cfg) in runs.items():
        with progress(disable=args.json) as bar:
            task = bar.add_task(name, total=evaluation_steps(files, cfg))
            res, pooled = run_evaluation(
                files, cfg, args.model, choose_from=model_list(args.choose_from, args.model),
                on_step=lambda what: bar.update(task, description=what, advance=1))  # noqa: B023
        out[name] = res
        all_checks.update(checks(name, res))
        if not args.no_plot:
            write_plot(pooled, cfg, str(HERE / "results" / f"allocate_{name}.png"),
                       f"{name}: {len(files)} file(s), lead {cfg.lead}, unit {cfg.unit:g}, "
                       f"model {args.model}")
        if not args.json:
            rows = [[p, m["under_rate"], m["unserved_fraction"], m["slack"],
                     m["changes_per_hour"], *(m["total_cost"][f"{r:g}"] for r in COST_RATIOS)]
                    for p, m in res["policies"].items()]
            con.print(table(f"{name} (model {args.model}, predictive q={cfg.quantile:.3f})",
                            ["policy", "P(a<d)", "unserved", "slack", "chg/h",
                             *(f"cost r={r:g}" for r in COST_RATIOS)], rows))
    out["checks"] = {k: {"met": m, "detail": d} for k, (m, d) in all_checks.items()}
    if args.save:
        Path(args.save).write_text(json.dumps(out, indent=1, default=str) + "\n")
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        con.print(table("acceptance (issue 6)", ["check", "result", "numbers"],
                        [[k, "met" if m else "NOT met", d]
                         for k, (m, d) in sorted(all_checks.items())]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
