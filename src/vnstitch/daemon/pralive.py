"""The thin asyncio driver of the live PRA core: measure, step, fit in worker processes.

Theory of operation
-------------------
:class:`PraRuntime` runs :class:`~vnstitch.control.pra.PraController` every
``interval_s`` on an asyncio loop without ever blocking it:

- *measure* and *step* run in one worker thread (``asyncio.to_thread``), because the
  providers block (readiness probes are subprocesses, a storage resize takes a fraction
  of a second) and are not thread-safe; an :class:`asyncio.Lock` keeps every call into
  the controller (steps, fit results, feeds, stitch events) one at a time;
- each :class:`~vnstitch.control.pra.FitJob` the step hands out goes to a
  :class:`FitPool`: worker *processes* (so a long fit -- the LSTM trains for seconds --
  never holds the loop's GIL), each niced and pinned to a CPU subset (the CPU budget:
  ``workers`` processes on ``cpus``). Its result comes back to the controller as
  ``fit_done``; an exception as ``fit_failed``. A fit that runs past the policy's
  ``fit_timeout_s`` is a ``fit-slow`` decision made by the controller; the previous model
  keeps forecasting meanwhile. :meth:`FitPool.warm` starts the workers, and imports
  torch for an LSTM, before the first job. ``idle=True`` puts a worker in Linux's
  SCHED_IDLE class instead of nice +10 only: a waking loop preempts it, but so does
  every other normal task (in the lab demo, the VN's own CPU burners starved the first
  LSTM fit to 73 s of wall time for 2.9 s of CPU), so it is not the default;
- :class:`LoopLagProbe` measures the event loop's lag: a task that asks to wake every
  ``period_s`` and records how late it woke (what any other callback -- a protocol
  message, a timer -- would have waited).

Decision records are kept (bounded) for ``show allocations``; the rows of the latest
step are the per-consumer view. The clock is passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from typing import Any

import numpy as np

from vnstitch.control.model import DecisionRecord
from vnstitch.control.pra import (
    FitJob,
    FittedModel,
    PraController,
    PraStep,
    StitchEventKind,
    run_fit,
)
from vnstitch.daemon.periodic import PeriodicTask

log = logging.getLogger("vnstitch.daemon.pralive")


def _limit_worker(nice: int, cpus: tuple[int, ...], threads: int | None,
                  idle: bool = False) -> None:
    """Runs first in each fit worker: lower its priority (with ``idle``, Linux's
    SCHED_IDLE class: it runs only when nothing else of ours wants the CPU, and a
    waking event loop preempts it at once), pin it to the budgeted CPUs, and cap the
    numeric libraries' threads (read when torch/BLAS load, i.e. later in this fresh
    spawned process: the LSTM then trains on at most ``threads``)."""
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
    with contextlib.suppress(OSError):
        os.nice(nice)
    if idle and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    if cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)


#: What an LSTM fit imports in its worker (``FitPool.warm``).
LSTM_MODULES = ("torch", "vnstitch.forecast.lstm")


def preload(modules: tuple[str, ...]) -> float:
    """Import ``modules`` in a fit worker (its first job then trains at once); the
    worker's CPU seconds so far."""
    for name in modules:
        importlib.import_module(name)
    return time.process_time()


def timed_fit(job: FitJob) -> tuple[FittedModel, float]:
    """:func:`run_fit` and the CPU time the worker process spent on it."""
    t0 = time.process_time()
    fitted = run_fit(job)
    return fitted, time.process_time() - t0


class FitPool:
    """Worker processes for fits, within a CPU budget (see the module docstring)."""

    def __init__(self, workers: int = 1, *, nice: int = 10,
                 cpus: Iterable[int] = (), threads: int | None = 1,
                 idle: bool = False) -> None:
        if workers < 1 or (threads is not None and threads < 1):
            raise ValueError("fit pool: workers and threads must be >= 1")
        # spawn: the daemon has threads (a forked child would inherit their locks)
        ctx = multiprocessing.get_context("spawn")
        self.workers = workers
        self.cpus = tuple(cpus)
        self.threads = threads
        self._pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_limit_worker,
                                         initargs=(nice, self.cpus, threads, idle))

    def warm(self, modules: Iterable[str] = ()) -> list[Future[float]]:
        """Start every worker now and import ``modules`` in it (e.g. ``torch`` for an
        LSTM consumer: its import costs seconds of CPU), so the first fit does not pay
        for the spawn and the import. Returns at once; each future gives the worker's
        CPU seconds when it is ready."""
        mods = tuple(modules)
        return [self._pool.submit(preload, mods) for _ in range(self.workers)]

    async def fit(self, job: FitJob) -> tuple[FittedModel, float]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, timed_fit, job)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class LoopLagProbe:
    """How late the event loop wakes a task that sleeps ``period_s`` (see the docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 period_s: float = 0.01) -> None:
        self.clock = clock
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []  # (woke at, lag s)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            t0 = self.clock()
            await asyncio.sleep(self.period_s)
            woke = self.clock()
            self.samples.append((woke, max(woke - t0 - self.period_s, 0.0)))

    def p99_ms(self, windows: Iterable[tuple[float, float]] | None = None) -> float | None:
        """p99 lag (ms) over all samples, or over those inside ``windows`` (start, end)."""
        spans = None if windows is None else list(windows)
        lags = [lag for t, lag in self.samples
                if spans is None or any(a <= t <= b for a, b in spans)]
        return float(np.percentile(lags, 99) * 1e3) if lags else None


class PraRuntime:
    """Drives a :class:`PraController` on the running loop (see the module docstring).

    ``measure(now)`` (blocking; run in the worker thread) returns each consumer's value
    this interval; a consumer missing from it is not observed this time. ``prepare``
    runs first, on the loop, for inputs only the loop's thread may read (the protocol
    core's stitch table); ``apply`` runs on the loop after each step, with its result
    (the daemon applies the bandwidth actions there: the dataplane is the loop's)."""

    def __init__(self, controller: PraController, pool: FitPool, *,
                 measure: Callable[[float], Mapping[str, float]],
                 clock: Callable[[], float], decisions_kept: int = 500,
                 prepare: Callable[[PraController, float], None] | None = None,
                 apply: Callable[[PraStep, float], None] | None = None) -> None:
        self.controller = controller
        self.prepare = prepare
        self.apply = apply
        self.pool = pool
        self.measure = measure
        self.clock = clock
        self.decisions: deque[dict[str, Any]] = deque(maxlen=decisions_kept)
        self.fit_windows: list[tuple[float, float]] = []  # (start, end) monotonic
        self.fit_seconds: list[float] = []
        self.step_seconds: deque[float] = deque(maxlen=10_000)  # controller step, wall
        self.steps = 0
        self.lock = asyncio.Lock()
        self.periodic = PeriodicTask("pra", self.tick, controller.policy.interval_s,
                                     logger=log)
        self._fits: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.periodic.start()

    @property
    def fits_running(self) -> int:
        return len(self._fits)

    async def stop(self) -> None:
        await self.periodic.stop()
        fits = list(self._fits)
        for t in fits:
            t.cancel()
        await asyncio.gather(*fits, return_exceptions=True)
        self._fits.clear()

    async def tick(self) -> list[dict[str, Any]]:
        """One interval; returns this step's per-consumer rows."""
        async with self.lock:
            now = self.clock()
            if self.prepare is not None:  # on the loop: reads the protocol core
                self.prepare(self.controller, now)
            values = await asyncio.to_thread(self.measure, now)
            for cid, v in values.items():
                if cid in self.controller.consumers():
                    self.controller.observe(cid, now, v)
            t0 = time.monotonic()
            out = await asyncio.to_thread(self.controller.step, now)
            self.step_seconds.append(time.monotonic() - t0)
            self.steps += 1
            self.keep(out.records)
            if self.apply is not None:
                self.apply(out, now)
        for job in out.jobs:
            task = asyncio.get_running_loop().create_task(self._fit(job))
            self._fits.add(task)
            task.add_done_callback(self._fits.discard)
        return out.rows

    async def _fit(self, job: FitJob) -> None:
        start = time.monotonic()
        try:
            model, cpu_s = await self.pool.fit(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the worker raised or died: a decision, not a crash
            async with self.lock:
                rec = self.controller.fit_failed(job, f"{type(exc).__name__}: {exc}",
                                                 self.clock())
                self.keep([rec] if rec else [])
            return
        finally:
            self.fit_windows.append((start, time.monotonic()))
        self.fit_seconds.append(cpu_s)
        async with self.lock:
            rec = self.controller.fit_done(job, model, self.clock(), cpu_s)
            self.keep([rec] if rec else [])

    async def feed(self, vnid: int, rows: list[tuple[float, float]]) -> int:
        async with self.lock:
            return self.controller.feed(vnid, rows)

    async def stitch_event(self, vnid: int, stitch: str, kind: StitchEventKind,
                           consumer: str | None = None) -> None:
        async with self.lock:
            rec = self.controller.stitch_event(self.clock(), vnid, stitch, kind, consumer)
            self.keep([rec] if rec else [])

    def keep(self, records: Iterable[DecisionRecord]) -> None:
        for r in records:
            row = {k: v for k, v in asdict(r).items() if v is not None and v != ""}
            self.decisions.append(row)

    def allocations(self) -> list[dict[str, Any]]:
        """Per consumer: sources used, model, forecast, quantile, action (latest step)."""
        return self.controller.rows()
