"""``vnstitch allocate evaluate``: replay real demand traces through allocation policies.

Theory of operation: a thin command. It reads each ``--data`` file with the forecasting
layer's loader (wide or ``timestamp,value`` CSV, plain or gzipped; bad rows rejected
with file and line, gaps repaired and reported), asks the forecaster for lead-time
quantile forecasts over the test window, runs
:func:`vnstitch.allocate.evaluate.evaluate_values` per file, pools the tallies over
files, and prints a table, one JSON object (``--json``) and optionally a PNG
(``--plot``): demand vs every policy's allocation over time, and the unserved-vs-slack
trade-off curve of each policy (sweeping its quantile, target or headroom). With
``--provider sim`` the orders go through the simulated cloud
(:mod:`vnstitch.allocate.provision`) and every policy also gets a bill.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from vnstitch.allocate.baselines import POLICIES
from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.evaluate import (
    DEFAULT_UNIT,
    EvalConfig,
    TraceResult,
    evaluate_values,
    sweep_names,
)
from vnstitch.allocate.forecasts import lead_point_forecasts
from vnstitch.allocate.metrics import COST_RATIOS, curve_below, summary
from vnstitch.allocate.providers.base import ResourceKind
from vnstitch.allocate.provision import SimSettings
from vnstitch.cli.output import add_json_flag, console, print_json, progress, table
from vnstitch.forecast import MODEL_NAMES
from vnstitch.forecast.data import load_series


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
    ev.add_argument("--season", required=True, type=int, metavar="S",
                    help="season length in steps (288 for daily at 5 minutes)")
    ev.add_argument("--lead-time", required=True, type=int, metavar="STEPS",
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
    ev.add_argument("--test-steps", type=int, metavar="N",
                    help="test window length in steps (default 3 seasons)")
    ev.add_argument("--target-utilisation", type=float, default=0.8,
                    help="reactive (HPA) target utilisation (default 0.8)")
    ev.add_argument("--calib-seasons", type=int, default=4, metavar="K",
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


def model_list(text: str, model: str) -> tuple[str, ...]:
    """``--choose-from``: the other forecasters, without ``model`` and repeats."""
    out: list[str] = []
    for name in (t.strip() for t in text.split(",")):
        if name and name != model and name not in out:
            if name not in MODEL_NAMES:
                raise AllocateError(f"--choose-from: unknown model {name!r}; known: "
                                    f"{', '.join(MODEL_NAMES)}")
            out.append(name)
    return tuple(out)


def run_evaluation(files: list[str], cfg: EvalConfig, model: str, *,
                   quiet: bool = False, choose_from: tuple[str, ...] = (),
                   ) -> tuple[dict[str, Any], TraceResult]:
    """Evaluate every file, pool the results; returns (JSON-ready dict, pooled result).

    ``choose_from``: other forecasters predictive may follow per series (training choice).
    """
    pooled: TraceResult | None = None
    info: list[dict[str, Any]] = []
    fit_s = pred_s = 0.0
    with progress(disable=quiet) as bar:
        steps_per_file = 2 + len(cfg.policies) + int(cfg.sweep)
        task = bar.add_task("allocate evaluate", total=len(files) * steps_per_file)
        for path in files:
            bar.update(task, description=f"load {Path(path).name}")
            data = load_series(path, season=cfg.season)
            start = cfg.split(data.values.shape[0])
            bar.advance(task)
            paths = None
            alternatives = []
            if "predictive" in cfg.policies:
                for name in (model, *choose_from):
                    bar.update(task, description=f"forecast {Path(path).name} ({name})")
                    got = lead_point_forecasts(data.values, start, cfg.calib_steps(start),
                                               cfg.lead, model=name, season=cfg.season)
                    fit_s += got.fit_seconds
                    pred_s += got.predict_seconds
                    if paths is None:
                        paths = got
                    else:
                        alternatives.append(got)
            bar.advance(task)

            def tick(name: str) -> None:
                bar.update(task, description=f"{Path(path).name}: {name}")  # noqa: B023
                bar.advance(task)

            res = evaluate_values(data.values, float(data.step_seconds), cfg, paths, tick,
                                  alternatives=alternatives)
            pooled = res if pooled is None else pooled.merge(res)
            info.append({"file": str(path), "series": data.n_series,
                         "steps": int(data.values.shape[0]), "train_steps": start,
                         "test_steps": int(data.values.shape[0] - start),
                         "step_seconds": data.step_seconds,
                         "repairs": list(data.repairs), "notes": list(data.notes)})
    if pooled is None:
        raise AllocateError("--data: no file given")
    return _result_dict(pooled, cfg, model, info=info, fit_s=fit_s, pred_s=pred_s), pooled


def _result_dict(res: TraceResult, cfg: EvalConfig, model: str, *,
                 info: list[dict[str, Any]], fit_s: float, pred_s: float) -> dict[str, Any]:
    policies = {name: summary(res.tallies[name], res.policy_costs(name))
                for name in POLICIES if name in res.tallies}
    for name, bill in res.provider.items():
        if name in policies:
            policies[name]["provider"] = bill.summary()
    out: dict[str, Any] = {"policies": policies}
    out["resource"] = cfg.resource.value
    out["lead_time"] = cfg.lead
    out["unit"] = cfg.unit
    out["quantile"] = cfg.quantile
    out["forecaster"] = {"model": model, "fit_seconds": fit_s, "predict_seconds": pred_s}
    out["data"] = info
    if cfg.provider is not None:
        p = cfg.provider
        out["provider"] = {"name": "sim", "boot_delay_seconds": p.boot_delay,
                           "quota": None if math.isinf(p.quota) else p.quota,
                           "price_per_unit_hour": p.price_per_unit_hour,
                           "outages": [list(o) for o in p.outages]}
    if res.choices:
        # What predictive chose on the training window, per file and cost ratio.
        out["predictive_choices"] = res.choices
    out["repairs"] = [f"{d['file']}: {r}" for d in info for r in d["repairs"]]
    if res.curves:
        out["tradeoff"] = {
            name: [{"knob": p.knob, "slack": p.slack, "unserved_fraction": p.unserved}
                   for p in res.points(name)] for name in res.curves}
        out["best_in_hindsight"] = {
            name: {f"{r:g}": c for r, c in res.best_in_hindsight(name).items()}
            for name in res.curves if name != "predictive"}
        if "predictive" in res.curves:
            out["predictive_curve_below"] = {}
            for name in res.curves:
                if name == "predictive":
                    continue
                cmp = curve_below(res.points("predictive"), res.points(name))
                out["predictive_curve_below"][name] = {
                    "below": cmp.below, "slack_range": list(cmp.slack_range),
                    "worst_margin": cmp.worst_margin}
    return out


def write_plot(res: TraceResult, cfg: EvalConfig, out: str, title: str) -> None:
    """Allocation over time (summed over series) and the trade-off curves, as one PNG."""
    # matplotlib loads only when a plot is asked for (the CLI imports every subcommand).
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=80)
    if res.demand_total is not None:
        steps = np.arange(res.demand_total.size)
        ax1.plot(steps, res.demand_total, color="black", lw=1.4, label="demand")
        for name, alloc in res.alloc_total.items():
            ax1.plot(steps, alloc, lw=0.9, label=name)
        ax1.set_xlabel("test step")
        ax1.set_ylabel(f"{cfg.resource.value} (summed over series)")
        ax1.set_title("demand vs allocation (most variable file)")
        ax1.legend(fontsize=7, loc="upper right")
    markers = {"predictive": "o", "reactive": "s", "static": "^"}
    for name in sweep_names(cfg.policies):
        if name not in res.curves:
            continue
        pts = sorted(res.points(name), key=lambda p: p.slack)
        ax2.plot([p.slack for p in pts], [max(p.unserved, 1e-6) for p in pts],
                 marker=markers.get(name, "."), ms=4, lw=1.2, label=name)
    for name in ("static-peak", "static-p95", "oracle"):
        if name in res.tallies:
            t = res.tallies[name]
            ax2.plot([t.slack], [max(t.unserved_fraction, 1e-6)], marker="x", ms=8, ls="",
                     label=name)
    ax2.set_xscale("symlog", linthresh=0.1)
    ax2.set_yscale("log")
    ax2.set_xlabel("slack  Σmax(0,a−d)/Σd")
    ax2.set_ylabel("unserved  Σmax(0,d−a)/Σd")
    ax2.set_title("trade-off (sweep of quantile / target / headroom)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _evaluate(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    result, pooled = run_evaluation(list(args.data), cfg, args.model, quiet=args.json,
                                    choose_from=model_list(args.choose_from, args.model))
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
        out.print(f"predictive trade-off below {name}: {cmp['below']} on slack "
                  f"[{lo:.3g}, {hi:.3g}] (worst margin {cmp['worst_margin']:.3g})")
    if args.plot:
        out.print(f"plot written to {args.plot}")
    return 0
