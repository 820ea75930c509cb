"""``vnstitch allocate evaluate``: replay real demand traces through allocation policies.

Theory of operation: a thin command over :mod:`vnstitch.allocate.trace_eval`, which
reads each ``--data`` file, forecasts the test window, replays it through every policy
and pools the tallies over files. This module parses the options and prints a table,
one JSON object (``--json``) and optionally a PNG (``--plot``,
:mod:`vnstitch.allocate.plot`: allocation over time and each policy's unserved-vs-slack
trade-off curve). With
``--provider sim`` the orders go through the simulated cloud
(:mod:`vnstitch.allocate.provision`) and every policy also gets a bill.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from vnstitch.allocate.baselines import POLICIES
from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.evaluate import DEFAULT_UNIT, EvalConfig
from vnstitch.allocate.metrics import COST_RATIOS
from vnstitch.allocate.plot import write_plot
from vnstitch.allocate.providers.base import ResourceKind
from vnstitch.allocate.provision import SimSettings
from vnstitch.allocate.trace_eval import evaluation_steps, model_list, run_evaluation
from vnstitch.cli.forecast import positive_int
from vnstitch.cli.output import add_json_flag, console, print_json, progress, table


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "allocate", help="predictive resource allocation: evaluate policies on real traces",
        description="Predictive Resource Allocator tools.")
    asub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ev = asub.add_parser(
        "evaluate", help="replay a demand trace through allocation policies side by side",
        description="Replay real demand traces through static-peak, static-p95, reactive "
        "(Kubernetes HPA rule), predictive (newsvendor quantile of the lead-time forecast) "
        "and oracle. The last --test-steps steps are the test window; the rest trains the "
        "forecaster and the static policies. Each forecast uses only data before its "
        "decision.")
    ev.add_argument("--data", required=True, nargs="+", metavar="FILE",
                    help="wide CSV (time,NAME,...) or timestamp,value CSV, plain or .gz; "
                    "several files are evaluated separately and pooled")
    ev.add_argument("--resource", required=True, choices=[k.value for k in ResourceKind],
                    help="what the trace measures")
    ev.add_argument("--season", required=True, type=positive_int, metavar="S",
                    help="season length in steps (288 for daily at 5 minutes)")
    ev.add_argument("--lead-time", required=True, type=positive_int, metavar="STEPS",
                    help="steps from ordering capacity to using it (boot/provisioning)")
    ev.add_argument("--unit", type=float, metavar="U",
                    help="allocation granularity in trace units (e.g. 25 = a VM of 25%% "
                    "CPU); default bandwidth 0.1, compute 1, storage 1")
    ev.add_argument("--cost-under", type=float, default=10.0, metavar="CU",
                    help="cost per unit of unserved demand (default 10)")
    ev.add_argument("--cost-over", type=float, default=1.0, metavar="CO",
                    help="cost per unit of idle allocation (default 1)")
    ev.add_argument("--policies", default=",".join(POLICIES),
                    help=f"comma-separated subset of {','.join(POLICIES)}")
    ev.add_argument("--model", default="auto", help="forecaster for predictive (default auto)")
    ev.add_argument("--choose-from", default="", metavar="MODELS",
                    help="comma-separated other forecasters predictive may follow instead, "
                    "chosen per series on the training window (e.g. naive,seasonal_naive,"
                    "ets; default none)")
    ev.add_argument("--test-steps", type=positive_int, metavar="N",
                    help="test window length in steps (default 3 seasons)")
    ev.add_argument("--target-utilisation", type=float, default=0.8,
                    help="reactive (HPA) target utilisation (default 0.8)")
    ev.add_argument("--calib-seasons", type=positive_int, default=4, metavar="K",
                    help="predictive: seasons at the end of training used to calibrate its "
                    "error distribution and choose how to condition it and its churn "
                    "rules (default 4)")
    ev.add_argument("--no-sweep", action="store_true",
                    help="skip the trade-off sweep (faster; no curve in the plot)")
    ev.add_argument("--plot", metavar="OUT.png", help="write allocation and trade-off plots")
    pv = ev.add_argument_group(
        "provider", "replay every policy's orders through a simulated cloud: each order is "
        "placed when its decision exists (end of step s - lead), scale-outs boot, scale-ins "
        "wait for the start of their step; policies are scored on the capacity the provider "
        "made usable and billed. The trade-off sweep stays on the orders.")
    pv.add_argument("--provider", choices=["sim"],
                    help="enforce lead time, boot delay, quota, outages and prices with this "
                    "provider (default: none, the orders are scored as placed)")
    pv.add_argument("--boot-delay", type=float, metavar="SECONDS",
                    help="seconds from an accepted scale-out to usable capacity (default "
                    "(lead-time - 1) x step: exactly what the replay assumes)")
    pv.add_argument("--quota", type=float, metavar="UNITS",
                    help="most units the provider grants per series (default no quota)")
    pv.add_argument("--price-per-unit-hour", type=float, metavar="P",
                    help="price of one committed unit for one hour, booting included "
                    "(default 1)")
    pv.add_argument("--outage", action="append", metavar="START-END",
                    help="provider requests fail in [START, END) seconds from the start of "
                    "the test window; repeatable")
    add_json_flag(ev)
    ev.set_defaults(handler=_evaluate)


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    resource = ResourceKind(args.resource)
    unit = args.unit if args.unit is not None else DEFAULT_UNIT[resource]
    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    if not policies:
        raise AllocateError("--policies: give at least one policy")
    if not unit > 0:
        raise AllocateError(f"--unit must be > 0, got {unit}")
    if args.calib_seasons < 1:
        raise AllocateError(f"--calib-seasons must be >= 1, got {args.calib_seasons}")
    return EvalConfig(resource=resource, season=args.season, lead=args.lead_time, unit=unit,
                      c_under=args.cost_under, c_over=args.cost_over, policies=policies,
                      test_steps=args.test_steps,
                      target_utilisation=args.target_utilisation,
                      sweep=not args.no_sweep, calib_seasons=args.calib_seasons,
                      provider=provider_from_args(args))


def parse_outage(text: str) -> tuple[float, float]:
    """``--outage START-END`` (seconds from the start of the test window)."""
    a, sep, b = text.partition("-")
    try:
        if not sep:
            raise ValueError
        start, end = float(a), float(b)
    except ValueError:
        raise AllocateError(f"--outage: expected START-END in seconds (e.g. 3600-7200), "
                            f"got {text!r}") from None
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
        raise AllocateError(f"--outage: need 0 <= START < END, got {text!r}")
    return start, end


def provider_from_args(args: argparse.Namespace) -> SimSettings | None:
    """The ``--provider`` flags; the others without ``--provider`` are an error."""
    given = {"--boot-delay": args.boot_delay, "--quota": args.quota,
             "--price-per-unit-hour": args.price_per_unit_hour, "--outage": args.outage}
    if args.provider is None:
        for flag, value in given.items():
            if value is not None:
                raise AllocateError(f"{flag} needs --provider sim")
        return None
    if args.boot_delay is not None and not (math.isfinite(args.boot_delay)
                                            and args.boot_delay >= 0):
        raise AllocateError(f"--boot-delay must be >= 0 seconds, got {args.boot_delay}")
    if args.quota is not None and not (args.quota > 0):
        raise AllocateError(f"--quota must be > 0 units, got {args.quota}")
    price = 1.0 if args.price_per_unit_hour is None else args.price_per_unit_hour
    if not (math.isfinite(price) and price >= 0):
        raise AllocateError(f"--price-per-unit-hour must be >= 0, got {price}")
    return SimSettings(boot_delay=args.boot_delay,
                       quota=math.inf if args.quota is None else args.quota,
                       price_per_unit_hour=price,
                       outages=tuple(parse_outage(o) for o in args.outage or ()))


def _evaluate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    files = list(args.data)
    with progress(disable=args.json) as bar:
        task = bar.add_task("allocate evaluate", total=evaluation_steps(files, cfg))
        result, pooled = run_evaluation(
            files, cfg, args.model, choose_from=model_list(args.choose_from, args.model),
            on_step=lambda what: bar.update(task, description=what, advance=1))
    if args.plot:
        write_plot(pooled, cfg, args.plot,
                   f"{cfg.resource.value}: {', '.join(Path(f).name for f in args.data)} "
                   f"(lead {cfg.lead}, unit {cfg.unit:g})")
    if args.json:
        print_json(result)
        return 0
    out = console()
    for d in result["data"]:
        out.print(f"{d['file']}: {d['series']} series, train {d['train_steps']} steps, "
                  f"test {d['test_steps']} steps")
    for r in result["repairs"]:
        out.print(f"  repaired: {r}")
    for n in result["model_notes"]:
        out.print(f"  note: {n}")
    rows = []
    billed = cfg.provider is not None
    for name, m in result["policies"].items():
        rows.append([name, m["under_rate"], m["unserved_fraction"], m["slack"],
                     m["changes_per_hour"], *(m["total_cost"][f"{r:g}"] for r in COST_RATIOS),
                     *([m["provider"]["bill"]] if billed else [])])
    out.print(table(
        f"allocation on {cfg.resource.value} (predictive q={cfg.quantile:.3f}, "
        f"model {args.model}{', sim provider' if billed else ''})",
        ["policy", "P(a<d)", "unserved", "slack", "changes/h",
         *(f"cost r={r:g}" for r in COST_RATIOS), *(["bill"] if billed else [])], rows))
    for name, cmp in result.get("predictive_curve_below", {}).items():
        lo, hi = cmp["slack_range"]
        out.print(f"predictive's trade-off curve is {'' if cmp['below'] else 'not '}below "
                  f"{name}'s on slack {lo:.3g} to {hi:.3g} (worst margin "
                  f"{cmp['worst_margin']:.3g})")
    if args.plot:
        out.print(f"plot written to {args.plot}")
    return 0
