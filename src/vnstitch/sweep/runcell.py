"""One run of a sweep: simulate one cell and keep the metrics the spec asks for.

Theory of operation. :func:`run_cell` is what every engine executes, in whatever process
the engine puts it: it runs the simulator on the cell's scenario exactly as
``vnstitch simulate --scenario`` would (same runner, same deterministic summary), then
reads each metric at its dotted path in the summary. It never raises: a run that fails
(an invalid topology for this combination, a metric the summary does not have, a bug) is
an :class:`Outcome` with status ``error`` and a one-line reason, so a sweep goes on past
it. ``summary_sha256`` is the hash of the canonical JSON of the whole summary: equal
hashes across engines show byte-identical per-run summaries. ``wall_s`` is measured
here, outside the summary, so it never makes two runs differ.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from vnstitch.errors import VnstitchError
from vnstitch.output import json_safe
from vnstitch.sweep.spec import Cell, get_path

OK = "ok"
ERROR = "error"


@dataclass(frozen=True)
class Outcome:
    run_id: str
    status: str
    error: str
    wall_s: float
    summary_sha256: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: set when the run failed because this metric is missing or not a number
    bad_metric: str = ""


def canonical_json(summary: object) -> str:
    """Sorted keys, no spaces, non-finite floats as null (what ``--json`` prints)."""
    return json.dumps(json_safe(summary), sort_keys=True, separators=(",", ":"))


def metric_value(summary: object, path: str) -> float | None:
    """The number at ``path``; ``None`` for a null; ValueError for anything else."""
    try:
        value = get_path(summary, path)
    except KeyError:
        raise ValueError(f"metric {path!r} is not in the summary") from None
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        f = float(value)
        return f if math.isfinite(f) else None
    raise ValueError(f"metric {path!r} is not a number (it is {type(value).__name__})")


def run_cell(cell: Cell, metrics: Sequence[str]) -> Outcome:
    from vnstitch.sim.runner import run  # noqa: PLC0415  (workers pay for it, not the CLI)

    t0 = time.perf_counter()
    try:
        summary = run(cell.scenario, check_every_step=False).summary
    except VnstitchError as exc:
        return Outcome(cell.run_id, ERROR, str(exc), time.perf_counter() - t0, "")
    except Exception as exc:  # a bug in one run must not end the sweep
        return Outcome(cell.run_id, ERROR, f"internal error: {type(exc).__name__}: {exc}",
                       time.perf_counter() - t0, "")
    wall = time.perf_counter() - t0
    digest = hashlib.sha256(canonical_json(summary).encode()).hexdigest()
    values: dict[str, float | None] = {}
    for m in metrics:
        try:
            values[m] = metric_value(summary, m)
        except ValueError as exc:
            return Outcome(cell.run_id, ERROR, str(exc), wall, digest, bad_metric=m)
    return Outcome(cell.run_id, OK, "", wall, digest, values)
