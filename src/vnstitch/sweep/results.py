"""The results file of a sweep: one CSV row per run, streamed, resumable.

Theory of operation. ``OUT/runs.csv`` has the columns ``run_id, status, error, wall_s,
summary_sha256``, then one per grid parameter, then one per metric. A row is appended
and flushed the moment its run finishes, so an interrupted sweep loses at most the runs
that were in flight. :meth:`ResultsFile.open` reads what is already there: rows whose
``run_id`` is a cell of this sweep are finished runs (``ok`` or ``error``: a failed run
is a result too, retried only on request); a torn last line (the process died mid-write)
is cut off; a file whose columns differ belongs to another sweep and is refused rather
than mixed in. Parameters are not read back from the file (CSV has no types): a row is
joined to its cell by ``run_id`` and takes the cell's typed parameters.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from vnstitch.sweep.errors import ResultsError
from vnstitch.sweep.runcell import ERROR, OK, Outcome
from vnstitch.sweep.spec import RUN_FIELDS, Cell, SweepSpec

FILE_NAME = "runs.csv"


@dataclass(frozen=True)
class Row:
    """A finished run: the cell it ran and what came out."""

    cell: Cell
    outcome: Outcome

    def as_dict(self, metrics: Sequence[str]) -> dict[str, Any]:
        o = self.outcome
        out: dict[str, Any] = {"run_id": o.run_id, "status": o.status, "error": o.error,
                               "wall_s": round(o.wall_s, 4),
                               "summary_sha256": o.summary_sha256}
        out.update(self.cell.params)
        for m in metrics:
            out[m] = o.metrics.get(m)
        return out


def columns(spec: SweepSpec) -> list[str]:
    return [*RUN_FIELDS, *spec.parameters, *spec.metrics]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _number(text: str, where: str) -> float | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ResultsError(f"{where}: not a number: {text!r}") from None


class ResultsFile:
    """Append-only CSV of one sweep's runs (see the module docstring)."""

    def __init__(self, path: Path, spec: SweepSpec, handle: TextIO,
                 finished: dict[str, Row]) -> None:
        self.path = path
        self.spec = spec
        self._handle = handle
        self._writer = csv.writer(handle, lineterminator="\n")
        self.finished = finished

    @classmethod
    def open(cls, out_dir: Path, spec: SweepSpec) -> ResultsFile:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(f"{out_dir}: cannot create: {exc.strerror or exc}") from None
        path = out_dir / FILE_NAME
        cols = columns(spec)
        finished: dict[str, Row] = {}
        if path.exists() and path.stat().st_size > 0:
            finished = _read(path, spec, cols)
            handle = path.open("a", encoding="utf-8", newline="")
        else:
            handle = path.open("w", encoding="utf-8", newline="")
            csv.writer(handle, lineterminator="\n").writerow(cols)
            handle.flush()
        return cls(path, spec, handle, finished)

    def append(self, row: Row) -> None:
        d = row.as_dict(self.spec.metrics)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(_text(d[c]) for c in columns(self.spec))
        # One write per row, then flush and fsync: a crash leaves whole rows, or one
        # torn last line that the next open() cuts off.
        self._handle.write(buf.getvalue())
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.finished[row.outcome.run_id] = row

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(path: Path, spec: SweepSpec, cols: list[str]) -> dict[str, Row]:
    raw = path.read_bytes()
    if not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        with path.open("r+b") as f:  # drop the torn last line of a killed sweep
            f.truncate(cut)
        raw = raw[:cut]
    reader = csv.reader(io.StringIO(raw.decode("utf-8")))
    header = next(reader, None)
    if header != cols:
        raise ResultsError(f"{path}: written by a different sweep (its columns are "
                           f"{header}); choose another --out or delete it")
    by_id: Mapping[str, Cell] = {c.run_id: c for c in spec.cells}
    rows: dict[str, Row] = {}
    for line_no, rec in enumerate(reader, start=2):
        where = f"{path}:{line_no}"
        if len(rec) != len(cols):
            raise ResultsError(f"{where}: {len(rec)} fields, expected {len(cols)}")
        d = dict(zip(cols, rec, strict=True))
        cell = by_id.get(d["run_id"])
        if cell is None:
            continue  # a run of an earlier version of the spec: kept, not counted
        if d["status"] not in (OK, ERROR):
            raise ResultsError(f"{where}: status must be ok or error, got {d['status']!r}")
        metrics = {m: _number(d[m], f"{where}: {m}") for m in spec.metrics} \
            if d["status"] == OK else {}
        wall = _number(d["wall_s"], f"{where}: wall_s") or 0.0
        rows[cell.run_id] = Row(cell, Outcome(cell.run_id, d["status"], d["error"], wall,
                                              d["summary_sha256"], metrics))
    return rows
