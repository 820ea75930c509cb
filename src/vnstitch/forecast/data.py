"""Loading traffic history: wide and ``timestamp,value`` CSV files, plain or gzipped.

Theory of operation. Historical traffic (per virtual network, per stitched connection,
or any other demand such as CPU or bytes written) enters the forecaster as a
:class:`SeriesData`: one time axis on a regular grid and a ``(T, N)`` float64 matrix.

Accepted file layouts (detected from the header line; gzip detected from magic bytes):

* **wide**: header ``time,NAME1,NAME2,...``; one row per step; first column the time.
  Series names are the column names (e.g. ``vn:100``, ``stitch:a-b``, ``ATLA->CHIN``).
* **long / single series**: header ``timestamp,value``; the series is named after the
  file (stem without ``.csv``/``.gz``).

Timestamps: ``YYYYMMDD-HHMM``, ``YYYY-MM-DD HH:MM[:SS]`` or ISO ``YYYY-MM-DDTHH:MM[:SS]``
(naive, UTC assumed). Values: decimal numbers.

What happens to bad input (never silently):

* **rejected** with ``DataError("FILE:LINE: column 'X': ...")``: a header that is neither
  layout; a row with the wrong number of cells; a cell that is not a number; an
  unparseable timestamp; a timestamp earlier than the one before it (non-monotonic);
  a negative value (unless ``negative="clip"``); a series with no valid value at all;
  fewer than 2 rows.
* **repaired and reported** in ``SeriesData.repairs``:
  - the step is the median spacing; timestamps off the grid are snapped to the nearest
    grid slot; several rows in one slot (duplicates) are averaged;
  - missing slots (gaps) and empty / ``nan`` / ``NA`` cells become missing values, then
    runs of up to ``max_interpolate`` steps are filled by linear interpolation, longer
    runs by the value one ``season`` earlier (or later, at the start), and anything still
    missing by the nearest valid value;
  - negative values with ``negative="clip"`` are set to zero.
* **kept and noted** in ``SeriesData.notes``: zeros (valid measurements of no traffic).
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vnstitch.forecast.base import DataError, FloatArray

_TIME_FORMATS = ("%Y%m%d-%H%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
                 "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y%m%d-%H%M%S")
_MISSING = {"", "nan", "na", "n/a", "null", "none", "-"}


@dataclass
class SeriesData:
    """A regular grid of observations: ``values[t, n]`` at ``times[t]`` for ``names[n]``."""

    times: np.ndarray[Any, np.dtype[np.datetime64]]
    values: FloatArray
    names: list[str]
    step_seconds: int
    repairs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def n_series(self) -> int:
        return int(self.values.shape[1])

    def select(self, names: list[str]) -> SeriesData:
        idx = [self.names.index(n) for n in names]
        return SeriesData(self.times, self.values[:, idx], names, self.step_seconds,
                          list(self.repairs), list(self.notes), self.source)

    def total(self, name: str = "total") -> SeriesData:
        """The sum over series (e.g. the network total of an OD matrix)."""
        return SeriesData(self.times, self.values.sum(axis=1, keepdims=True), [name],
                          self.step_seconds, list(self.repairs), list(self.notes), self.source)


def _open_text(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip data: {exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    return text.splitlines()


def parse_time(text: str) -> datetime:
    """Parse one timestamp in any accepted format; ``ValueError`` if none fits."""
    s = text.strip()
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(s, fmt)
        except ValueError:
            continue
    raise ValueError(f"unrecognised timestamp {s!r} (expected e.g. 20040301-0000 "
                     "or 2014-02-14 14:30:00)")


def load_series(path: str | Path, *, season: int | None = None, max_interpolate: int = 12,
                negative: Literal["reject", "clip"] = "reject") -> SeriesData:
    """Read a wide or ``timestamp,value`` CSV (see the module docstring for the rules)."""
    p = Path(path)
    lines = _open_text(p)
    if not lines:
        raise DataError(f"{p}:1: empty file (expected a header line)")
    header = [c.strip() for c in lines[0].split(",")]
    first = header[0].lower()
    if first == "timestamp" and len(header) == 2 and header[1].lower() == "value":
        stem = p.name.removesuffix(".gz").removesuffix(".csv")
        names = [stem]
    elif first in {"time", "timestamp"} and len(header) >= 2:
        names = header[1:]
        for j, n in enumerate(names):
            if not n:
                raise DataError(f"{p}:1: column {j + 2}: empty series name")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise DataError(f"{p}:1: column '{dup}': duplicate series name")
    else:
        raise DataError(f"{p}:1: header must be 'time,NAME,...' or 'timestamp,value', "
                        f"got {lines[0][:80]!r}")
    n_cols = len(names) + 1
    times: list[datetime] = []
    rows: list[list[float]] = []
    line_nos: list[int] = []
    missing_cells = 0
    negatives = 0
    tcol = header[0]
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != n_cols:
            raise DataError(f"{p}:{i}: expected {n_cols} cells, got {len(cells)}")
        try:
            ts = parse_time(cells[0])
        except ValueError as exc:
            raise DataError(f"{p}:{i}: column '{tcol}': {exc}") from None
        if times and ts < times[-1]:
            raise DataError(f"{p}:{i}: column '{tcol}': timestamp {cells[0].strip()} is "
                            f"earlier than the previous row's {times[-1]} (not monotonic)")
        row: list[float] = []
        for name, cell in zip(names, cells[1:], strict=True):
            c = cell.strip()
            if c.lower() in _MISSING:
                row.append(math.nan)
                missing_cells += 1
                continue
            try:
                v = float(c)
            except ValueError:
                raise DataError(f"{p}:{i}: column '{name}': not a number: {c!r}") from None
            if math.isinf(v):
                raise DataError(f"{p}:{i}: column '{name}': infinite value {c!r}")
            if math.isnan(v):
                missing_cells += 1
            elif v < 0:
                if negative == "reject":
                    raise DataError(f"{p}:{i}: column '{name}': negative value {c} "
                                    "(traffic cannot be negative; use negative='clip' "
                                    "to set such values to 0)")
                v = 0.0
                negatives += 1
            row.append(v)
        times.append(ts)
        rows.append(row)
        line_nos.append(i)
    if len(rows) < 2:
        raise DataError(f"{p}: need at least 2 data rows, got {len(rows)}")
    repairs: list[str] = []
    if missing_cells:
        repairs.append(f"{missing_cells} empty/NaN cell(s) treated as missing")
    if negatives:
        repairs.append(f"{negatives} negative value(s) clipped to 0")
    secs = np.array([t.timestamp() for t in times])
    diffs = np.diff(secs)
    positive = diffs[diffs > 0]
    if positive.size == 0:
        raise DataError(f"{p}:{line_nos[-1]}: all timestamps are equal; cannot infer a step")
    step = round(float(np.median(positive)))
    slot = np.rint((secs - secs[0]) / step).astype(np.int64)
    off_grid = int((np.abs(secs - secs[0] - slot * step) > 0.5).sum())
    if off_grid:
        repairs.append(f"{off_grid} timestamp(s) off the {step}s grid snapped to the nearest slot")
    raw = np.array(rows, dtype=np.float64)
    t_len = int(slot[-1]) + 1
    counts = np.bincount(slot, minlength=t_len)
    dup_slots = np.flatnonzero(counts > 1)
    if dup_slots.size:
        lines_dup = [line_nos[k] for k in np.flatnonzero(np.isin(slot, dup_slots))][:6]
        repairs.append(f"{int((counts[dup_slots] - 1).sum())} duplicate row(s) in the same "
                       f"{step}s slot averaged (lines {', '.join(map(str, lines_dup))}...)")
    values = np.full((t_len, len(names)), np.nan)
    with np.errstate(invalid="ignore"):
        sums = np.zeros((t_len, len(names)))
        cnt = np.zeros((t_len, len(names)))
        ok = ~np.isnan(raw)
        np.add.at(sums, slot, np.where(ok, raw, 0.0))
        np.add.at(cnt, slot, ok.astype(np.float64))
        values = np.where(cnt > 0, sums / np.maximum(cnt, 1), np.nan)
    gaps = int((counts == 0).sum())
    if gaps:
        repairs.append(f"{gaps} missing time step(s) (gaps in the timestamps) inserted")
    season_steps = season if season else (86400 // step if 86400 % step == 0 else None)
    for j, name in enumerate(names):
        col = values[:, j]
        if np.isnan(col).all():
            raise DataError(f"{p}: column '{name}': no valid value in any row")
        n_missing = int(np.isnan(col).sum())
        if n_missing:
            values[:, j] = fill_missing(col, max_interpolate, season_steps)
            repairs.append(f"column '{name}': {n_missing} missing value(s) filled "
                           f"(linear up to {max_interpolate} steps, else seasonal)")
    zeros = int((values == 0).sum())
    notes = [f"{zeros} zero value(s) kept as valid measurements"] if zeros else []
    start = np.datetime64(times[0].replace(microsecond=0), "s")
    grid = start + np.arange(t_len) * np.timedelta64(step, "s")
    return SeriesData(times=grid, values=values, names=names, step_seconds=step,
                      repairs=repairs, notes=notes, source=str(p))


def fill_missing(col: FloatArray, max_interpolate: int, season: int | None) -> FloatArray:
    """Fill NaNs: short runs linearly, long runs from one season away, rest nearest."""
    out = col.copy()
    nan = np.isnan(out)
    idx = np.arange(out.size)
    valid = ~nan
    # run lengths of missing values
    run_id = np.cumsum(np.diff(np.concatenate([[0], nan.astype(np.int64)])) == 1) * nan
    lengths = np.bincount(run_id)[run_id] * nan
    interp = np.interp(idx, idx[valid], out[valid])
    inner = (idx > idx[valid][0]) & (idx < idx[valid][-1])
    short = nan & (lengths <= max_interpolate) & inner
    out[short] = interp[short]
    if season:
        for _ in range(2):  # long runs: copy the value one season earlier, then later
            still = np.flatnonzero(np.isnan(out))
            src = still - season
            okb = src >= 0
            out[still[okb]] = out[src[okb]]
            still = np.flatnonzero(np.isnan(out))
            src = still + season
            oka = src < out.size
            out[still[oka]] = out[src[oka]]
    still = np.isnan(out)
    if still.any():
        good = np.flatnonzero(~still)
        nearest = good[np.clip(np.searchsorted(good, np.flatnonzero(still)), 0, good.size - 1)]
        out[still] = out[nearest]
    return out
