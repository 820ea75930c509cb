"""Benchmark: the event loop's lag while the live PRA refits its LSTM (no root).

The daemon's PRA driver (:class:`~vnstitch.daemon.pralive.PraRuntime`) steps the pure
core (:class:`~vnstitch.control.pra.PraController`) every ``--interval`` seconds on an
asyncio loop and hands each fit job to a pool. Here it forecasts a VN's compute demand:
the CloudWatch CPU trace of ``lab demo --pra`` (``ec2_cpu_utilization_5f5533.csv``, 300
rows of history before row 2958, then the replay, one trace row per 5 s) with the same
LSTM options (about 150 gradient steps per refit) over the simulated cloud provider, so
nothing but the loop and the fits compete for the CPU. A probe task asks to wake every
10 ms and records how late it woke (what a protocol datagram or timer would wait).

Each fit pool runs for ``--seconds`` in turn, in one process run:

* ``bare`` -- the loop with the probe alone (the host's own noise floor);
* ``thread`` (the named baseline) -- fits in a thread of the loop's process: the
  training holds the GIL between torch calls;
* ``process`` -- fits in one spawned worker process, niced +10 and pinned to the last
  CPU, torch with its default two intra-op threads;
* ``process-budget`` -- the same worker with a one-thread CPU budget
  (``FitPool(threads=1)``: OMP/MKL threads set before torch loads there);
* ``process-idle`` -- the budgeted worker in Linux's SCHED_IDLE class
  (``FitPool(idle=True)``): it yields the CPU to any normal task that wakes.

For each pool: loop-lag p99 (and max) over the probe's samples taken *while a fit was
running* and over those *without* a fit, in the same run; fits, their wall and CPU
seconds; the controller step's p99 (it runs in a worker thread of the loop's process).
A process pool is started and imports torch before the controller starts, as the
daemon does at start (``FitPool.warm``); the lag meanwhile is its own column
(``warm``), in neither of the others. Table, or ``--json``.
Data from ``$VNSTITCH_DATA`` or ``../shared/data``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from vnstitch.allocate.policy import ApplicationClass, ScalingRules
from vnstitch.allocate.providers import ResourceKind
from vnstitch.allocate.providers.sim import SimProvider, SimResource
from vnstitch.control.pra import FitJob, FittedModel, PraConsumer, PraController, PraPolicy
from vnstitch.daemon.pralive import (
    LSTM_MODULES,
    FitPool,
    LoopLagProbe,
    PraRuntime,
    timed_fit,
)
from vnstitch.forecast.data import load_series
from vnstitch.forecast.profiles import load_profiles
from vnstitch.output import console, table

POOLS = ("bare", "thread", "process", "process-budget", "process-idle")
ROW_SECONDS = 5.0  # one 300 s trace row at 60x
#: As ``lab demo --pra`` (vnstitch.lab.demo_pra.LSTM_OPTIONS): a real training run.
LSTM_OPTIONS = {"horizon": 8, "max_epochs": 60, "max_batches": 150, "batch_size": 256,
                "patience": 100}


class ThreadFitPool:
    """The baseline: :class:`FitPool`'s interface over a thread of this process."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1)

    async def fit(self, job: FitJob) -> tuple[FittedModel, float]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, timed_fit, job)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def data_dir() -> Path:
    env = os.environ.get("VNSTITCH_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def trace() -> tuple[list[float], list[float]]:
    cpu = load_series(data_dir() / "cloudwatch" / "ec2_cpu_utilization_5f5533.csv")
    cores = cpu.values[:, 0] / 100.0 * 0.5
    return [float(x) for x in cores[2958 - 300:2958]], [float(x) for x in cores[2958:]]


async def one_pool(name: str, args: argparse.Namespace, hist: list[float],
                   replay: list[float]) -> dict[str, Any]:
    probe = LoopLagProbe(time.monotonic)
    probe.start()
    if name == "bare":
        await asyncio.sleep(args.seconds)
        await probe.stop()
        lags = np.asarray([lag for _, lag in probe.samples]) * 1e3
        return {"pool": name, "samples": int(lags.size),
                "lag_p99_ms_fit": None, "lag_p99_ms_no_fit": float(np.percentile(lags, 99)),
                "lag_max_ms_no_fit": float(lags.max())}
    per_row = round(ROW_SECONDS / args.interval)
    policy = PraPolicy(interval_s=args.interval, season=per_row * 12,
                       refit_every=args.refit_every, min_fit=per_row * 12,
                       blend_steps=per_row * 12, fit_timeout_s=60.0,
                       history=per_row * 12 * 12)
    ctl = PraController(policy, SimProvider({ResourceKind.COMPUTE: SimResource(2.0)}))
    ctl.add(PraConsumer("vn/cpu", ResourceKind.COMPUTE, 100, "vn",
                        ApplicationClass("web", 20.0, resources_per_unit=1 / 0.03),
                        load_profiles()["database_access"],
                        ScalingRules(1.0, min_units=1, max_units=16), model="lstm",
                        options=LSTM_OPTIONS, prior_level=hist[-1]))
    t0 = time.time() - len(hist) * ROW_SECONDS
    for i, v in enumerate(hist):
        for j in range(per_row):
            ctl.observe("vn/cpu", t0 + i * ROW_SECONDS + j * args.interval, v)
    cpus = os.cpu_count() or 1
    last = (cpus - 1,) if cpus > 1 else ()
    pool: Any = (ThreadFitPool() if name == "thread" else
                 FitPool(1, cpus=last, threads=None if name == "process" else 1,
                         idle=name == "process-idle"))  # others: nice +10 only
    warm = (0.0, 0.0)
    if isinstance(pool, FitPool):  # as the daemon at start: spawn, import torch
        t_warm = time.monotonic()
        await asyncio.gather(*map(asyncio.wrap_future, pool.warm(LSTM_MODULES)))
        warm = (t_warm, time.monotonic())
    start = time.time()

    def measure(now: float) -> dict[str, float]:
        return {"vn/cpu": replay[min(int((now - start) / ROW_SECONDS), len(replay) - 1)]}

    rt = PraRuntime(ctl, pool, measure=measure, clock=time.time)
    rt.start()
    await asyncio.sleep(args.seconds)
    await rt.stop()
    await probe.stop()
    await asyncio.to_thread(pool.close)
    fits = list(rt.fit_windows)

    def inside(t: float) -> bool:
        return any(a <= t <= b for a, b in fits)

    def warming(t: float) -> bool:
        return warm[0] <= t <= warm[1]

    during = np.asarray([lag for t, lag in probe.samples if inside(t)]) * 1e3
    quiet = np.asarray([lag for t, lag in probe.samples
                        if not inside(t) and not warming(t)]) * 1e3
    warming_lags = np.asarray([lag for t, lag in probe.samples if warming(t)]) * 1e3

    def p(x: np.ndarray[Any, Any], q: float) -> float | None:
        return float(np.percentile(x, q)) if x.size else None

    return {"pool": name, "samples": len(probe.samples), "fits": len(fits),
            "fit_wall_seconds": [round(b - a, 2) for a, b in fits],
            "fit_cpu_seconds": [round(s, 2) for s in rt.fit_seconds],
            "fit_share_of_time": round(sum(b - a for a, b in fits) / args.seconds, 3),
            "lag_p99_ms_fit": p(during, 99), "lag_max_ms_fit": p(during, 100),
            "lag_p99_ms_no_fit": p(quiet, 99), "lag_max_ms_no_fit": p(quiet, 100),
            "warmup_seconds": round(warm[1] - warm[0], 2),
            "lag_p99_ms_warmup": p(warming_lags, 99),
            "step_seconds_p99": p(np.asarray(rt.step_seconds), 99),
            "steps": rt.steps}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    hist, replay = trace()
    load = [os.getloadavg()[0]]
    rows = []
    for name in args.pools:
        rows.append(asyncio.run(one_pool(name, args, hist, replay)))
        load.append(os.getloadavg()[0])
        print(f"  {name}: done (load {load[-1]:.2f})", file=sys.stderr, flush=True)
    return {"baseline": "thread", "seconds_per_pool": args.seconds,
            "interval_s": args.interval, "refit_every": args.refit_every,
            "cpus": os.cpu_count(), "load_average_1m": load, "pools": rows,
            "command": " ".join(["python", "benchmarks/pra_loop_lag.py", *sys.argv[1:]])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0,
                        help="wall seconds each pool runs (default 120)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="controller interval in seconds (default 1)")
    parser.add_argument("--refit-every", type=int, default=15,
                        help="controller steps between refits (default 15)")
    parser.add_argument("--pools", nargs="+", choices=POOLS, default=list(POOLS),
                        help="fit pools to run, in order (default all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not (args.seconds > 0 and args.interval > 0 and args.refit_every >= 1):
        parser.error("--seconds and --interval must be > 0, --refit-every >= 1")
    res = measure(args)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0

    def f(v: Any) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"

    console().print(table(
        f"loop lag (ms) while the LSTM refits, {args.seconds:g} s per pool, load "
        f"{min(res['load_average_1m']):.1f}-{max(res['load_average_1m']):.1f}",
        ["pool", "fits", "p99 fit", "p99 no fit", "max fit", "p99 warm", "step p99 s"],
        [(r["pool"], str(r.get("fits", "-")), f(r["lag_p99_ms_fit"]),
          f(r["lag_p99_ms_no_fit"]), f(r.get("lag_max_ms_fit")),
          f(r.get("lag_p99_ms_warmup")), f(r.get("step_seconds_p99")))
         for r in res["pools"]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
