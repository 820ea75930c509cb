"""Baselines: naive (last value) and seasonal naive (same time one season earlier).

Theory of operation. Both have no parameters, so "fitting" only stores the history and
a rolling forecast is pure indexing: the naive forecast made at origin ``t`` is
``values[t-1]`` for every step; the seasonal naive forecast for step ``h`` is
``values[t - 1 + h - m*k]`` with ``k = ceil(h/m)`` (the latest observed value at the
same phase). With less than one season of history the seasonal naive falls back to the
naive value. Quantiles come from the shared residual machinery in
:class:`~vnstitch.forecast.base.PointForecaster`.
"""

from __future__ import annotations

import numpy as np

from vnstitch.forecast.base import FloatArray, IntArray, PointForecaster


class Naive(PointForecaster):
    """Tomorrow looks like the last observation."""

    name = "naive"

    def _fit_point(self, history: FloatArray) -> None:
        return None

    def _roll_point(self, values: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
        last = values[origins - 1]  # (n, N)
        return np.repeat(last[:, None, :], horizon, axis=1)


def seasonal_lag_index(origins: IntArray, horizon: int, season: int) -> IntArray:
    """Row index of the latest value at the same phase for each (origin, step)."""
    h = np.arange(1, horizon + 1)
    k = -(-h // season)  # ceil(h / m)
    idx = origins[:, None] - 1 + h[None, :] - season * k[None, :]
    # not enough history for a full season: use the last value instead
    return np.where(idx >= 0, idx, origins[:, None] - 1)


class SeasonalNaive(PointForecaster):
    """Tomorrow at 9:00 looks like today at 9:00."""

    name = "seasonal_naive"

    def _fit_point(self, history: FloatArray) -> None:
        return None

    def _roll_point(self, values: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
        idx = seasonal_lag_index(origins, horizon, self.season)
        return values[idx]
