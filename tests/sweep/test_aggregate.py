"""Aggregation: per group, mean, median and a Student-t 95% interval; failures counted."""

from __future__ import annotations

import math
from pathlib import Path

from vnstitch.sweep.aggregate import aggregate, summarise
from vnstitch.sweep.results import Row
from vnstitch.sweep.runcell import ERROR, OK, Outcome
from vnstitch.sweep.spec import load_spec


def test_summarise_matches_the_t_interval() -> None:
    s = summarise([1.0, 2.0, 3.0, 4.0])
    assert s["n"] == 4 and s["mean"] == 2.5 and s["median"] == 2.5
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t(0.975, 3) * sd / sqrt(n)
    assert math.isclose(s["ci95_low"] or 0, 2.5 - half, rel_tol=1e-9)
    assert math.isclose(s["ci95_high"] or 0, 2.5 + half, rel_tol=1e-9)
    one = summarise([7.0])
    assert one["mean"] == 7.0 and one["ci95_low"] is None
    assert summarise([])["mean"] is None


def test_groups_follow_group_by_and_exclude_failed_runs(small_spec: Path) -> None:
    spec = load_spec(small_spec)
    rows = []
    for i, cell in enumerate(spec.cells):
        failed = i == 0
        rows.append(Row(cell, Outcome(cell.run_id, ERROR if failed else OK,
                                      "boom" if failed else "", 0.1, "",
                                      {} if failed else {m: float(i) for m in spec.metrics})))
    groups = aggregate(spec, list(reversed(rows)))  # completion order does not matter
    assert [(g["topology"], g["network.loss"]) for g in groups][:2] == \
        [("zoo:Abilene", 0), ("zoo:Abilene", 0.05)]
    first = groups[0]
    assert first["runs"] == 2 and first["failed"] == 1
    assert first["success_rate_feasible"]["n"] == 1
    assert first["success_rate_feasible"]["mean"] == 1.0  # only the seed-2 run (i = 1)
