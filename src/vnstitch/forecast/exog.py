"""User behaviour and calendar effects as exogenous regressors.

Theory of operation. Any model accepts ``exog``: a ``(T, k)`` matrix shared by all series
(rows aligned with the history, plus ``H`` future rows for a forecast). The base model
regresses each series on it (least squares) and forecasts the remainder, so a holiday
or a jump in active users shifts the forecast by the learned amount.

Columns built here:

* :func:`calendar_features` — ``weekend`` (1 on Saturday/Sunday), ``holiday`` (1 on the
  listed dates, ``YYYY-MM-DD``) and, optionally, ``fourier`` pairs of hour-of-day
  sine/cosine (useful for models without their own daily season). Always computable for
  future times, so always usable.
* :func:`load_user_activity` — active users or sessions over time from a
  ``timestamp,value`` CSV (same loader rules as traffic: gaps repaired and reported,
  bad lines rejected with file:line:column), aligned to the traffic's time grid. For a
  forecast the future rows must come from a plan or a forecast of the user count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vnstitch.forecast.base import DataError, FloatArray
from vnstitch.forecast.data import load_series

Times = np.ndarray[Any, np.dtype[np.datetime64]]


def calendar_features(times: Times, *, holidays: Sequence[str] = (), fourier: int = 0,
                      ) -> tuple[FloatArray, list[str]]:
    """Calendar regressors for ``times``; returns the matrix and its column names."""
    t = np.asarray(times).astype("datetime64[m]")
    day = t.astype("datetime64[D]")
    weekday = (day.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    cols = [(weekday >= 5).astype(np.float64)]
    names = ["weekend"]
    try:
        hol = np.array([np.datetime64(h, "D") for h in holidays], dtype="datetime64[D]")
    except ValueError as exc:
        raise DataError(f"holidays: expected YYYY-MM-DD dates: {exc}") from None
    cols.append(np.isin(day, hol).astype(np.float64))
    names.append("holiday")
    hour = (t - day).astype(np.int64) / 60.0
    for k in range(1, fourier + 1):
        cols += [np.sin(2 * np.pi * k * hour / 24), np.cos(2 * np.pi * k * hour / 24)]
        names += [f"sin_hour_{k}", f"cos_hour_{k}"]
    return np.stack(cols, axis=1), names


def future_times(last: np.datetime64, step_seconds: int, horizon: int) -> Times:
    """The ``horizon`` grid times after ``last``."""
    return last + np.arange(1, horizon + 1) * np.timedelta64(step_seconds, "s")


def load_user_activity(path: str | Path, times: Times) -> FloatArray:
    """Active users / sessions (``timestamp,value`` CSV) on the grid ``times`` -> (T, 1)."""
    data = load_series(path)
    grid = np.asarray(times).astype("datetime64[s]")
    src = data.times.astype("datetime64[s]")
    pos = np.searchsorted(src, grid)
    ok = (pos < src.size) & (src[np.minimum(pos, src.size - 1)] == grid)
    if not ok.all():
        missing = grid[~ok][0]
        raise DataError(f"{path}: no user-activity value for {missing} (the file must cover "
                        f"every traffic time step, {data.step_seconds}s grid)")
    return data.values[pos, :1]
