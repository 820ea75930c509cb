"""Aggregating a sweep: per group of parameters, mean, median and a 95% interval.

Theory of operation. Runs are grouped by the values of the spec's ``group_by`` keys
(by default every grid key except ``seed``, so seeds are the replications). For each
group and metric, over the runs that finished ``ok`` and reported a number: ``n``,
``mean``, ``median`` and a two-sided 95% confidence interval of the mean from
Student's t (``mean +- t(0.975, n-1) * s / sqrt(n)``); with one value there is no
interval (``null``). Runs that failed are counted per group, never averaged in. Pure
functions of the rows; groups come out in grid order.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from scipy import stats

from vnstitch.sweep.results import Row
from vnstitch.sweep.runcell import OK
from vnstitch.sweep.spec import SweepSpec, Value


def summarise(values: Sequence[float]) -> dict[str, float | int | None]:
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "median": None, "ci95_low": None, "ci95_high": None}
    mean = math.fsum(values) / n
    low = high = None
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1)) * statistics.stdev(values) / math.sqrt(n)
        low, high = mean - half, mean + half
    return {"n": n, "mean": mean, "median": float(statistics.median(values)),
            "ci95_low": low, "ci95_high": high}


def group_key(row: Row, keys: Sequence[str]) -> tuple[Value, ...]:
    return tuple(row.cell.params[k] for k in keys)


def aggregate(spec: SweepSpec, rows: Sequence[Row]) -> list[dict[str, Any]]:
    keys = spec.group_by
    order: dict[tuple[Value, ...], list[Row]] = {}
    for cell in spec.cells:  # grid order, whatever order runs finished in
        order.setdefault(tuple(cell.params[k] for k in keys), [])
    for row in rows:
        order[group_key(row, keys)].append(row)
    groups = []
    for key, members in order.items():
        if not members:
            continue
        ok = [r for r in members if r.outcome.status == OK]
        g: dict[str, Any] = dict(zip(keys, key, strict=True))
        g["runs"] = len(members)
        g["failed"] = len(members) - len(ok)
        for m in spec.metrics:
            vals = [v for r in ok if (v := r.outcome.metrics.get(m)) is not None]
            g[m] = summarise(vals)
        groups.append(g)
    return groups
