"""The results file: rows stream in, a reopened file knows what is finished."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sweep.conftest import write_spec
from vnstitch.sweep.errors import ResultsError
from vnstitch.sweep.results import FILE_NAME, ResultsFile, Row
from vnstitch.sweep.runcell import ERROR, OK, Outcome
from vnstitch.sweep.spec import load_spec


def _fill(out: Path, spec_path: Path, n: int) -> None:
    spec = load_spec(spec_path)
    with ResultsFile.open(out, spec) as res:
        for i, cell in enumerate(spec.cells[:n]):
            status = ERROR if i == 1 else OK
            res.append(Row(cell, Outcome(cell.run_id, status, "bad, with a comma", 0.5,
                                         "ab" * 32, {m: 0.25 for m in spec.metrics}
                                         if status == OK else {})))


def test_reopen_reads_finished_rows_with_types(tmp_path: Path, small_spec: Path) -> None:
    out = tmp_path / "out"
    _fill(out, small_spec, 3)
    spec = load_spec(small_spec)
    with ResultsFile.open(out, spec) as res:
        assert len(res.finished) == 3
        row = res.finished[spec.cells[0].run_id]
        assert row.outcome.metrics["success_rate_feasible"] == 0.25
        assert row.cell.params["network.loss"] == 0  # typed, from the cell
        assert res.finished[spec.cells[1].run_id].outcome.error == "bad, with a comma"


def test_a_torn_last_line_is_cut(tmp_path: Path, small_spec: Path) -> None:
    out = tmp_path / "out"
    _fill(out, small_spec, 2)
    with (out / FILE_NAME).open("a") as f:
        f.write("deadbeef,ok,,0.1")  # the process died mid-write
    with ResultsFile.open(out, load_spec(small_spec)) as res:
        assert len(res.finished) == 2
    assert (out / FILE_NAME).read_text().endswith("\n")


def test_another_sweeps_file_is_refused(tmp_path: Path, small_spec: Path) -> None:
    out = tmp_path / "out"
    _fill(out, small_spec, 1)
    (tmp_path / "o").mkdir()
    other = write_spec(tmp_path / "o",
                       "base: builtin:small\ngrid: {seed: [1]}\nmetrics: [committed]\n")
    with pytest.raises(ResultsError, match="different sweep"):
        ResultsFile.open(out, load_spec(other))
