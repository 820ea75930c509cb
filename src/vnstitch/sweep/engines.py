"""Where a sweep's runs execute: one interface, three engines.

Theory of operation. An :class:`Engine` takes a list of cells and a list of metrics and
yields each cell's :class:`~vnstitch.sweep.runcell.Outcome` as soon as it is done (in
completion order, not grid order), so results stream to disk while the rest still runs.
Every engine executes the same :func:`~vnstitch.sweep.runcell.run_cell`, so the same
cell gives the same outcome whatever the engine (the contract test checks it).

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
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from vnstitch.sweep.errors import SweepError
from vnstitch.sweep.runcell import Outcome, run_cell
from vnstitch.sweep.spec import Cell

ENGINES = ("local", "ray", "serial")


class Engine(Protocol):
    name: str

    def run(self, cells: Sequence[Cell], metrics: Sequence[str]) -> Iterator[Outcome]:
        """Run every cell; yield each outcome when it is done."""
        ...


class SerialEngine:
    name = "serial"

    def run(self, cells: Sequence[Cell], metrics: Sequence[str]) -> Iterator[Outcome]:
        for cell in cells:
            yield run_cell(cell, metrics)


def _run_chunk(chunk: Sequence[Cell], metrics: Sequence[str]) -> list[Outcome]:
    return [run_cell(c, metrics) for c in chunk]


class LocalEngine:
    name = "local"

    def __init__(self, workers: int | None = None, chunk: int = 2) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.chunk = max(1, chunk)

    def run(self, cells: Sequence[Cell], metrics: Sequence[str]) -> Iterator[Outcome]:
        if not cells:
            return
        chunks = [cells[i:i + self.chunk] for i in range(0, len(cells), self.chunk)]
        ctx = multiprocessing.get_context("forkserver")
        with cf.ProcessPoolExecutor(max_workers=min(self.workers, len(chunks)),
                                    mp_context=ctx) as pool:
            futures = [pool.submit(_run_chunk, c, list(metrics)) for c in chunks]
            try:
                for done in cf.as_completed(futures):
                    yield from done.result()
            finally:
                for f in futures:
                    f.cancel()


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers or os.cpu_count() or 1

    def run(self, cells: Sequence[Cell], metrics: Sequence[str]) -> Iterator[Outcome]:
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
            yield from self._drive(ray, cells, metrics)
        finally:
            if started:
                ray.shutdown()

    def _drive(self, ray: Any, cells: Sequence[Cell],
               metrics: Sequence[str]) -> Iterator[Outcome]:
        remote = ray.remote(num_cpus=1)(run_cell)
        limit = max(2, 2 * int(ray.cluster_resources().get("CPU", self.workers)))
        pending: list[Any] = []
        queue = iter(cells)
        cell = next(queue, None)
        while cell is not None or pending:
            while cell is not None and len(pending) < limit:
                pending.append(remote.remote(cell, list(metrics)))
                cell = next(queue, None)
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)


def make_engine(name: str, *, workers: int | None = None,
                address: str | None = None) -> Engine:
    if name == "serial":
        return SerialEngine()
    if name == "local":
        return LocalEngine(workers)
    if name == "ray":
        return RayEngine(address, workers)
    raise SweepError(f"unknown engine {name!r}; have {ENGINES}")
