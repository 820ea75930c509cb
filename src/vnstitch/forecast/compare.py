"""Compare forecasting models on one series set: rolling-origin backtests, scored.

Theory of operation: :func:`run_backtest` fits each model on everything before the last
``test_steps`` rows and scores the forecasts made at every origin of the test span
(each uses only data before it; :mod:`vnstitch.forecast.backtest`).
:func:`model_options` gives the options a model needs for a horizon (models trained or
selected for it), :func:`top_series` picks the series with the most training traffic.
``vnstitch forecast backtest`` and the forecasting benchmark are thin layers over it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vnstitch.forecast.backtest import RollingForecast, rolling_forecasts, score
from vnstitch.forecast.base import ForecastError


def model_options(name: str, horizon: int) -> dict[str, Any]:
    """Options that depend on the horizon (models trained or selected for it)."""
    return {"horizon": horizon} if name in {"auto", "lstm", "lagreg"} else {}


def top_series(values: np.ndarray[Any, Any], k: int | None, train_end: int) -> list[int]:
    """Indices of the ``k`` series with the most training traffic (all if ``k`` is None)."""
    order = np.argsort(-np.abs(values[:train_end]).sum(axis=0), kind="stable")
    return sorted(order[: k or values.shape[1]].tolist())


def run_backtest(values: np.ndarray[Any, Any], *, season: int, horizon: int, test_steps: int,
                 models: list[str], quantiles: list[float],
                 on_model: Callable[[str], None] | None = None,
                 ) -> tuple[dict[str, dict[str, float]], dict[str, RollingForecast]]:
    """Backtest ``models`` on ``values``; scores per model and the raw forecasts.
    ``on_model(name)`` is called after each model is scored (progress)."""
    t_len = values.shape[0]
    start = t_len - test_steps
    if start < 2 * horizon + 2:
        raise ForecastError(f"--test-steps {test_steps} leaves only {start} training rows")
    results: dict[str, dict[str, float]] = {}
    raw: dict[str, RollingForecast] = {}
    for name in models:
        rf = rolling_forecasts(name, values, start, horizon, quantiles, season=season,
                               options=model_options(name, horizon))
        s = score(rf, values, season, start, quantiles=quantiles)
        s["fit_seconds"] = rf.fit_seconds
        s["predict_seconds"] = rf.predict_seconds
        results[name] = s
        raw[name] = rf
        if on_model is not None:
            on_model(name)
    return results, raw
