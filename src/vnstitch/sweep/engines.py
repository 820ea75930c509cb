"""Where a sweep's runs (or any batch of independent tasks) execute: one interface, three engines.

Theory of operation. An :class:`Engine` maps a module-level function over a list of
tasks and yields ``(index, result)`` for each task as soon as it is done
(:meth:`Engine.map`, completion order, not list order), so results stream to disk while
the rest still runs. ``run(cells, metrics)`` is that map over
:func:`~vnstitch.sweep.runcell.run_cell`, so the same cell gives the same outcome
whatever the engine (the contract test checks it); ``vnstitch forecast backtest
--engine`` maps its series chunks the same way. The function and its tasks must be
picklable (a module-level function, plain data).

* ``serial`` -- one after another in this process: the baseline the others are measured
  against, and what a debugger wants.
* ``local`` (the default) -- a process pool over this machine's cores. Workers are
  started with ``forkserver`` (a fork of a process that runs a progress-bar thread is
  unsafe) and keep their imports between runs; cells are handed out in small chunks
  because a typical run is short.
* ``ray`` -- Ray tasks: a local Ray with ``workers`` CPUs when no address is given, the
  cluster at ``address`` otherwise (``ray start --head`` on one machine, ``ray start
  --address=HEAD:6379`` on the others; every node needs vnstitch installed, or pass it
  in a Ray runtime environment). At most ``2 x CPUs`` tasks are in flight so a large
  sweep does not queue everything in the object store at once. A Ray this engine
  started is shut down when the sweep ends; one it joined is left running.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from vnstitch.sweep.errors import SweepError
from vnstitch.sweep.runcell import Outcome, run_cell
from vnstitch.sweep.spec import Cell

ENGINES = ("local", "ray", "serial")


T = TypeVar("T")
R = TypeVar("R")


class Engine(Protocol):
    name: str

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        """Call ``fn`` on every task; yield ``(index, result)`` when each is done."""
        ...

    def run(self, cells: Sequence[Cell], metrics: Sequence[str]) -> Iterator[Outcome]:
        """Run every cell; yield each outcome when it is done."""
        ...


class _RunCells(ABC):
    """``run`` for every engine: the sweep's cells mapped over :func:`run_cell`."""

    @abstractmethod
    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        """Call ``fn`` on every task; yield ``(index, result)`` when each is done."""

    def run(self, cells: Sequence[Cell], metrics: Sequence[str]) -> Iterator[Outcome]:
        tasks = [(c, tuple(metrics)) for c in cells]
        for _, outcome in self.map(_run_cell_task, tasks):
            yield outcome


def _run_cell_task(task: tuple[Cell, tuple[str, ...]]) -> Outcome:
    return run_cell(task[0], task[1])


class SerialEngine(_RunCells):
    name = "serial"

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        for i, task in enumerate(tasks):
            yield i, fn(task)


def _run_chunk(fn: Callable[[T], R], chunk: Sequence[tuple[int, T]]) -> list[tuple[int, R]]:
    return [(i, fn(t)) for i, t in chunk]


class LocalEngine(_RunCells):
    name = "local"

    def __init__(self, workers: int | None = None, chunk: int = 2) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.chunk = max(1, chunk)

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        if not tasks:
            return
        indexed = list(enumerate(tasks))
        chunks = [indexed[i:i + self.chunk] for i in range(0, len(indexed), self.chunk)]
        ctx = multiprocessing.get_context("forkserver")
        with cf.ProcessPoolExecutor(max_workers=min(self.workers, len(chunks)),
                                    mp_context=ctx) as pool:
            futures = [pool.submit(_run_chunk, fn, c) for c in chunks]
            try:
                for done in cf.as_completed(futures):
                    yield from done.result()
            finally:
                for f in futures:
                    f.cancel()


class RayEngine(_RunCells):
    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers or os.cpu_count() or 1

    def map(self, fn: Callable[[T], R], tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        try:
            import ray  # noqa: PLC0415  (optional, heavy: only for this engine)
        except ImportError:
            raise SweepError("--engine ray needs Ray: pip install 'ray>=2.9'") from None
        started = not ray.is_initialized()
        if started:
            try:
                if self.address:
                    ray.init(address=self.address, logging_level=logging.ERROR,
                             log_to_driver=False)
                else:
                    ray.init(num_cpus=self.workers, include_dashboard=False,
                             logging_level=logging.ERROR, log_to_driver=False)
            except Exception as exc:
                raise SweepError(f"cannot start or reach Ray"
                                 f"{' at ' + self.address if self.address else ''}: "
                                 f"{exc}") from None
        try:
            yield from self._drive(ray, fn, tasks)
        finally:
            if started:
                ray.shutdown()

    def _drive(self, ray: Any, fn: Callable[[T], R],
               tasks: Sequence[T]) -> Iterator[tuple[int, R]]:
        remote = ray.remote(num_cpus=1)(fn)
        limit = max(2, 2 * int(ray.cluster_resources().get("CPU", self.workers)))
        pending: dict[Any, int] = {}
        queue = iter(enumerate(tasks))
        item = next(queue, None)
        while item is not None or pending:
            while item is not None and len(pending) < limit:
                pending[remote.remote(item[1])] = item[0]
                item = next(queue, None)
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)


def make_engine(name: str, *, workers: int | None = None,
                address: str | None = None) -> Engine:
    if name == "serial":
        return SerialEngine()
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        return RayEngine(address, workers)
    raise SweepError(f"unknown engine {name!r}; have {ENGINES}")
