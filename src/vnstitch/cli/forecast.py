"""``vnstitch forecast backtest|run``: rolling-origin evaluation and forecasting from a CSV.

Theory of operation: both commands load the file with
:func:`vnstitch.forecast.data.load_series` (wide or ``timestamp,value`` CSV, plain or
gzipped; repairs are printed as notes, bad input is a one-line error naming file, line
and column). ``backtest`` fits each model on everything before the last
``--test-steps`` rows and scores the forecasts made at every origin of the test span
(each uses only data before it); ``run`` fits on all rows and prints the next H steps.
A model that falls back (e.g. a reference model forecasting naive for a series it
cannot fit) says so in ``note:`` lines and under ``notes`` in ``--json``.
``backtest --engine local|ray`` splits the series over workers with the same results
(:mod:`vnstitch.forecast.compare`).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from vnstitch.cli.output import add_json_flag, console, print_json, progress, table
from vnstitch.forecast.backtest import RollingForecast
from vnstitch.forecast.base import MODEL_NAMES, ForecastError, make_forecaster
from vnstitch.forecast.compare import model_options, run_backtest, top_series
from vnstitch.forecast.data import load_series
from vnstitch.sweep.engines import ENGINES, make_engine


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of numbers: {text!r}") from None


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (steps, seasons), else a usage error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _models(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in MODEL_NAMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown model(s) {bad}; known: {','.join(MODEL_NAMES)}")
    return names


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "forecast", help="backtest forecasting models or forecast the next steps",
        description="Traffic forecasting on a wide CSV (time,SERIES...) or a "
        "timestamp,value CSV, plain or gzipped.")
    fsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    bt = fsub.add_parser("backtest", help="rolling-origin backtest of several models")
    bt.add_argument("--data", required=True, metavar="FILE", help="CSV or CSV.gz file")
    bt.add_argument("--season", type=positive_int, required=True, metavar="S",
                    help="season length in steps (288 = one day of 5-minute steps)")
    bt.add_argument("--horizon", type=positive_int, required=True, metavar="H",
                    help="steps ahead to forecast from every origin (>= 1)")
    bt.add_argument("--test-steps", type=positive_int, default=None, metavar="N",
                    help="score the last N steps (default: 3 seasons)")
    bt.add_argument("--models", type=_models, default=["naive", "seasonal_naive", "ets", "auto"],
                    help=f"comma-separated, from {','.join(MODEL_NAMES)} "
                    "(default naive,seasonal_naive,ets,auto)")
    bt.add_argument("--quantiles", type=_floats, default=[0.1, 0.5, 0.9],
                    help="comma-separated quantiles to score (default 0.1,0.5,0.9)")
    bt.add_argument("--series", type=int, default=None, metavar="K",
                    help="only the K series with the most traffic (e.g. for sf_autoarima)")
    bt.add_argument("--plot", default=None, metavar="OUT.png",
                    help="draw actual vs forecast with the 80%% interval for a few series")
    bt.add_argument("--engine", choices=ENGINES, default="serial",
                    help="serial: one process (default); local: split the series into "
                    "chunks over a process pool; ray: over Ray tasks (a local Ray, or "
                    "the cluster at --address). Same forecasts and scores on every engine")
    bt.add_argument("--workers", type=positive_int, default=None, metavar="N",
                    help="with --engine local|ray: parallel workers (default: the cores)")
    bt.add_argument("--address", default=None, metavar="ADDR",
                    help="with --engine ray: a running Ray cluster (HOST:PORT or 'auto')")
    bt.add_argument("--chunk-series", type=positive_int, default=None, metavar="K",
                    help="with --engine local|ray: series per task "
                    "(default: one task per worker)")
    add_json_flag(bt)
    bt.set_defaults(handler=_backtest)
    run = fsub.add_parser("run", help="forecast the next H steps")
    run.add_argument("--data", required=True, metavar="FILE", help="CSV or CSV.gz file")
    run.add_argument("--horizon", type=positive_int, required=True, metavar="H",
                     help="steps to forecast after the last row (>= 1)")
    run.add_argument("--season", type=positive_int, default=None, metavar="S",
                     help="season in steps (default: one day of the file's step)")
    run.add_argument("--model", default="auto", choices=MODEL_NAMES,
                     help="forecaster (default auto)")
    run.add_argument("--quantiles", type=_floats, default=[0.1, 0.5, 0.9],
                     help="comma-separated quantiles to print (default 0.1,0.5,0.9)")
    add_json_flag(run)
    run.set_defaults(handler=_run)


def _backtest(args: argparse.Namespace) -> int:
    if args.horizon < 1 or args.season < 1:
        raise ForecastError("--horizon and --season must be >= 1")
    data = load_series(args.data, season=args.season)
    t_len = data.values.shape[0]
    test_steps = args.test_steps or min(3 * args.season, t_len // 4)
    cols = top_series(data.values, args.series, t_len - test_steps)
    values = data.values[:, cols]
    with progress(disable=args.json) as bar:
        task = bar.add_task("backtest", total=len(args.models))

        def tick(name: str) -> None:
            bar.update(task, description=name, advance=1)

        engine = None if args.engine == "serial" else make_engine(
            args.engine, workers=args.workers, address=args.address)
        results, raw = run_backtest(values, season=args.season, horizon=args.horizon,
                                    test_steps=test_steps, models=args.models,
                                    quantiles=args.quantiles, on_model=tick, engine=engine,
                                    chunk_series=args.chunk_series)
    notes = {name: list(rf.notes) for name, rf in raw.items() if rf.notes}
    out = {"horizon": args.horizon, "series": len(cols), "engine": args.engine,
           "models": results, "notes": notes}
    if args.plot:
        plot_backtest(args.plot, values, [data.names[c] for c in cols], raw=raw,
                      start=t_len - test_steps)
    if args.json:
        print_json(out)
        return 0
    con = console()
    for note in data.repairs + data.notes:
        con.print(f"note: {note}")
    for name, lines in notes.items():  # fallbacks (e.g. per-series naive), not errors
        for line in lines:
            con.print(f"note: {line}" if line.startswith(f"{name}:") else
                      f"note: {name}: {line}")
    con.print(table(f"backtest {data.source}: {len(cols)} series, H={args.horizon}, "
                    f"test {test_steps} steps",
                    ["model", "NMAE", "MASE", "pinball", "cover80", "fit s", "predict s"],
                    [(n, r["nmae"], r["mase"], r["pinball"], r["coverage_80"],
                      r["fit_seconds"], r["predict_seconds"]) for n, r in results.items()]))
    if args.plot:
        con.print(f"plot written to {args.plot}")
    return 0


def plot_backtest(path: str, values: np.ndarray[Any, Any], names: list[str], *,
                  raw: dict[str, RollingForecast], start: int, n_plot: int = 3) -> None:
    import matplotlib  # noqa: PLC0415 (plotting is optional and heavy)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    picks = top_series(values, n_plot, start)
    fig, axes = plt.subplots(len(picks), 1, figsize=(11, 3 * len(picks)), squeeze=False)
    for ax, j in zip(axes[:, 0], picks, strict=True):
        t = np.arange(start, values.shape[0])
        ax.plot(t, values[start:, j], color="black", lw=0.8, label="actual")
        for name, rf in raw.items():  # one-step-ahead mean and 80% band per model
            x = rf.origins
            ax.plot(x, rf.mean[:, 0, j], lw=0.8, label=name)
            if name == next(iter(raw)) or name == "auto":
                ax.fill_between(x, rf.quantiles[0.1][:, 0, j], rf.quantiles[0.9][:, 0, j],
                                alpha=0.2)
        ax.set_title(names[j])
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=90)
    except OSError as exc:
        raise ForecastError(f"cannot write plot {path}: {exc}") from exc
    finally:
        plt.close(fig)


def _run(args: argparse.Namespace) -> int:
    data = load_series(args.data, season=args.season)
    season = args.season or max(1, 86400 // data.step_seconds)
    model = make_forecaster(args.model, season, **model_options(args.model, args.horizon))
    fc = model.fit(data.values).predict(args.horizon, quantiles=args.quantiles)
    notes = list(getattr(model, "notes", []))
    step = np.timedelta64(data.step_seconds, "s")
    times = [str(data.times[-1] + step * (h + 1)) for h in range(args.horizon)]
    out = {"model": args.model, "horizon": args.horizon, "season": season,
           "times": times, "notes": notes, "series": {}}
    for j, name in enumerate(data.names):
        out["series"][name] = {
            "mean": fc.mean[:, j].tolist(),
            "quantiles": {str(q): v[:, j].tolist() for q, v in fc.quantiles.items()},
        }
    if args.json:
        print_json(out)
        return 0
    con = console()
    for note in data.repairs + data.notes:
        con.print(f"note: {note}")
    for note in notes:
        con.print(f"note: {note}" if note.startswith(f"{args.model}:") else
                  f"note: {args.model}: {note}")
    qs = sorted(fc.quantiles)
    for j, name in enumerate(data.names[:20]):
        con.print(table(f"{name} ({args.model})", ["time", "mean", *[f"q{q:g}" for q in qs]],
                        [(times[h], float(fc.mean[h, j]),
                          *[float(fc.quantiles[q][h, j]) for q in qs])
                         for h in range(args.horizon)]))
    if len(data.names) > 20:
        con.print(f"... {len(data.names) - 20} more series (use --json for all)")
    return 0
