"""One contract over every engine: the same cells give the same outcomes.

The Ray case starts a local Ray with 2 CPUs (as CI does); it is the slowest test here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sweep.conftest import write_spec
from vnstitch.sweep.engines import ENGINES, make_engine
from vnstitch.sweep.runcell import ERROR, OK, run_cell
from vnstitch.sweep.spec import load_spec


@pytest.fixture
def mixed_spec(tmp_path: Path) -> Path:
    """Four runs; segments 12 > Abilene's 11 nodes, so two of them fail at run time."""
    return write_spec(tmp_path, """
base: builtin:small
set: {requests.count: 3, vns.count: 2}
grid: {segments: [3, 12], seed: [1, 2]}
metrics: [committed, messages_total]
""")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_engines_agree_and_failures_are_rows(engine: str, mixed_spec: Path) -> None:
    spec = load_spec(mixed_spec)
    expected = {c.run_id: run_cell(c, spec.metrics) for c in spec.cells}
    got = {o.run_id: o for o in make_engine(engine, workers=2).run(spec.cells,
                                                                     spec.metrics)}
    assert got.keys() == expected.keys()
    for rid, want in expected.items():
        o = got[rid]
        assert (o.status, o.error, o.summary_sha256, o.metrics) == \
            (want.status, want.error, want.summary_sha256, want.metrics)
    statuses = sorted(o.status for o in got.values())
    assert statuses == [ERROR, ERROR, OK, OK]
    assert all("12 segments" in o.error for o in got.values() if o.status == ERROR)


def test_a_missing_metric_fails_the_run_and_names_it(mixed_spec: Path) -> None:
    spec = load_spec(mixed_spec)
    o = run_cell(spec.cells[0], ["committed", "no_such.field"])
    assert o.status == ERROR and o.bad_metric == "no_such.field"
