"""``vnstitch sweep``: many simulator runs from one spec, on this machine or on Ray.

Theory of operation: reads and validates the spec (every cell's scenario is checked
before anything runs), runs the unfinished cells on the chosen engine behind a progress
bar (runs done, failed, time left), streams rows to ``OUT/runs.csv`` and prints the
per-group aggregate (a table, or ``{"runs": [...], "groups": [...]}`` with ``--json``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from vnstitch.cli.output import add_json_flag, console, fmt, print_json, progress, table
from vnstitch.sweep.aggregate import aggregate
from vnstitch.sweep.driver import run_sweep
from vnstitch.sweep.engines import ENGINES, make_engine
from vnstitch.sweep.runcell import ERROR, Outcome
from vnstitch.sweep.spec import load_spec

HELP = "run a grid of simulations from a spec (local pool or Ray) and aggregate them"


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= n <= 4096:
        raise argparse.ArgumentTypeError(f"must be between 1 and 4096, got {n}")
    return n


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "sweep", help=HELP,
        description="Expand a sweep spec (a base scenario, a grid of overrides, the "
        "metrics to keep) into one `vnstitch simulate` run per grid cell, run them in "
        "parallel, stream one row per run into OUT/runs.csv (an interrupted sweep "
        "resumes where it stopped) and print mean, median and 95% interval per group.",
    )
    p.add_argument("--spec", required=True, metavar="SPEC.yaml",
                   help="the sweep spec (see vnstitch.sweep.spec for its fields)")
    p.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: a process pool on this machine (default); ray: Ray tasks "
                   "(a local Ray, or the cluster at --address); serial: one by one")
    p.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: the address of a running Ray cluster "
                   "(HOST:PORT or 'auto'); default: start a local Ray")
    p.add_argument("--workers", type=_workers, metavar="N",
                   help="parallel runs (default: this machine's cores)")
    p.add_argument("--out", metavar="DIR",
                   help="folder for runs.csv; run again with the same --out to resume "
                   "(default: a new temporary folder, named in the output)")
    p.add_argument("--retry-failed", action="store_true",
                   help="run again the runs that ended in error last time")
    p.add_argument("--plot", metavar="OUT.png",
                   help="draw each metric against the first group_by key")
    p.add_argument("--plot-x", metavar="KEY", help="the group_by key on the plot's x axis")
    add_json_flag(p)
    p.set_defaults(handler=_handler)


def _handler(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="vnstitch-sweep-"))
    engine = make_engine(args.engine, workers=args.workers, address=args.address)
    failed = 0
    with progress(disable=args.json) as bar:
        task = bar.add_task(f"{spec.name}: {len(spec.cells)} runs", total=len(spec.cells))

        def tick(outcome: Outcome) -> None:
            nonlocal failed
            failed += outcome.status == ERROR
            bar.update(task, advance=1,
                       description=f"{spec.name}: {failed} failed")

        result = run_sweep(spec, engine, out_dir, retry_failed=args.retry_failed,
                           on_outcome=tick)
    groups = aggregate(spec, result.rows)
    if args.plot:
        from vnstitch.sweep.plot import plot_groups  # noqa: PLC0415  (matplotlib: only with --plot)

        plot_groups(spec, groups, Path(args.plot), x=args.plot_x)
    if args.json:
        print_json({"sweep": spec.name, "engine": engine.name,
                    "results": str(result.results_path), "ran": result.ran,
                    "skipped": result.skipped, "failed": result.failed,
                    "runs": [r.as_dict(spec.metrics) for r in result.rows],
                    "groups": groups})
        return 0
    out = console()
    out.print(f"[bold]{spec.name}[/]: {len(result.rows)} runs ({result.ran} now, "
              f"{result.skipped} already done, {result.failed} failed) on "
              f"{engine.name} in {result.wall_s:.1f} s; rows in {result.results_path}")
    for m in spec.metrics:
        rows = []
        for g in groups:
            s = g[m]
            ci = "-" if s["ci95_low"] is None else f"{fmt(s['ci95_low'])}..{fmt(s['ci95_high'])}"
            rows.append((", ".join(str(g[k]) for k in spec.group_by) or "all",
                         f"{s['n']}/{g['runs']}", fmt(s["mean"]) if s["mean"] is not None
                         else "-", fmt(s["median"]) if s["median"] is not None else "-", ci))
        out.print(table(m, [", ".join(spec.group_by) or "group", "n", "mean", "median",
                            "95% CI"], rows))
    errors = [r for r in result.rows if r.outcome.status == ERROR]
    for r in errors[:5]:
        out.print(f"failed: {r.outcome.run_id}: {r.outcome.error}")
    if len(errors) > 5:
        out.print(f"... and {len(errors) - 5} more failed runs (see {result.results_path})")
    if args.plot:
        out.print(f"plot written to {args.plot}")
    return 0
