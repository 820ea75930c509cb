"""Running a sweep: skip what is finished, run the rest on an engine, stream the rows.

Theory of operation. :func:`run_sweep` opens the results file (which reports the runs
already finished), hands the remaining cells to the engine and appends each outcome the
moment it arrives, calling ``on_outcome`` (the CLI's progress bar). With ``retry_failed``
the runs that ended in ``error`` last time are run again (the newer row wins on read).
A metric name the summary does not have is a spec error, not a thousand failed rows:
when the first run to finish fails on a metric, the sweep stops there and names it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vnstitch.sweep.engines import Engine
from vnstitch.sweep.errors import SpecError
from vnstitch.sweep.results import ResultsFile, Row
from vnstitch.sweep.runcell import ERROR, Outcome
from vnstitch.sweep.spec import SweepSpec


@dataclass(frozen=True)
class SweepRun:
    rows: list[Row]          # every finished run of the spec, in grid order
    ran: int                 # runs executed now
    skipped: int             # runs found finished in the results file
    failed: int              # rows with status error (now or before)
    wall_s: float
    results_path: Path


def run_sweep(spec: SweepSpec, engine: Engine, out_dir: Path, *,
              retry_failed: bool = False,
              on_outcome: Callable[[Outcome], None] | None = None) -> SweepRun:
    t0 = time.perf_counter()
    with ResultsFile.open(out_dir, spec) as results:
        done = {rid: row for rid, row in results.finished.items()
                if not (retry_failed and row.outcome.status == ERROR)}
        todo = [c for c in spec.cells if c.run_id not in done]
        by_id = {c.run_id: c for c in todo}
        first = True
        for outcome in engine.run(todo, spec.metrics):
            if first and outcome.status == ERROR:
                _refuse_unknown_metric(spec, outcome)
            first = False
            results.append(Row(by_id[outcome.run_id], outcome))
            if on_outcome is not None:
                on_outcome(outcome)
        finished = results.finished
    rows = [finished[c.run_id] for c in spec.cells if c.run_id in finished]
    return SweepRun(rows, len(todo), len(spec.cells) - len(todo),
                    sum(r.outcome.status == ERROR for r in rows),
                    time.perf_counter() - t0, results.path)


def _refuse_unknown_metric(spec: SweepSpec, outcome: Outcome) -> None:
    if outcome.bad_metric:
        index = spec.metrics.index(outcome.bad_metric)
        raise SpecError(spec.source, f"metrics[{index}]",
                        f"{outcome.error} (see `vnstitch simulate --json` for the fields)")
