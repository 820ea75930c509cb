"""Adapter to the forecasting layer: lead-time quantile paths for a replayed trace.

Theory of operation: the allocator needs, for every test step ``s`` of a trace, the
forecast quantiles of ``values[s]`` made ``lead`` steps earlier (origin ``s - lead + 1``,
horizon step ``lead``; the forecast at origin ``t`` uses only ``values[:t]``). This
module asks :func:`vnstitch.forecast.backtest.rolling_forecasts` for exactly those
origins with a dense quantile set and reshapes the answer to ``(steps, K, N)``. It is
the only place the allocator touches :mod:`vnstitch.forecast`, so a change there is a
change here only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.policy import DENSE_LEVELS, FloatArray
from vnstitch.forecast.backtest import rolling_forecasts  # models load lazily by name


@dataclass(frozen=True, slots=True)
class QuantilePaths:
    """``values[i, k, n]``: level ``levels[k]`` forecast of series n at test step i."""

    levels: tuple[float, ...]
    values: FloatArray
    model: str
    fit_seconds: float
    predict_seconds: float
    notes: tuple[str, ...] = ()


def lead_quantiles(values: FloatArray, start: int, lead: int, *, model: str, season: int,
                   levels: Sequence[float] = DENSE_LEVELS,
                   options: dict[str, object] | None = None,
                   on_progress: Callable[[int, int], None] | None = None) -> QuantilePaths:
    """Quantile forecasts, ``lead`` steps ahead, for every step in ``[start, T)``."""
    n_steps = values.shape[0]
    first_origin = start - lead + 1
    if lead < 1 or first_origin < 2 or start >= n_steps:
        raise AllocateError(f"cannot forecast test window [{start}, {n_steps}) with lead "
                            f"{lead}: need lead >= 1 and at least {lead + 1} training steps")
    try:
        rf = rolling_forecasts(model, values, first_origin, lead, tuple(levels), season=season,
                               options=options, on_progress=on_progress)
    except ImportError as exc:  # a registered model whose module is not installed/built
        raise AllocateError(f"forecaster {model!r} is not available here: {exc}") from exc
    want = n_steps - start
    origins = np.asarray(rf.origins)
    expected = np.arange(first_origin, first_origin + want)
    if origins.size < want or not np.array_equal(origins[:want], expected):
        raise AllocateError(f"forecaster returned origins {origins[:3]}..., expected "
                            f"{first_origin}..{first_origin + want - 1}")
    lv = tuple(sorted(float(q) for q in levels))
    stacked = np.stack([rf.quantiles[q][:want, lead - 1, :] for q in lv], axis=1)
    return QuantilePaths(lv, stacked.astype(np.float64), model, rf.fit_seconds,
                         rf.predict_seconds, tuple(rf.notes))


@dataclass(frozen=True, slots=True)
class LeadForecasts:
    """``center[i, n]``: lead-step-ahead point forecast of series n at step
    ``first_step + i``, for the calibration window and the test window after it."""

    center: FloatArray
    first_step: int
    calib_steps: int
    model: str
    fit_seconds: float
    predict_seconds: float
    notes: tuple[str, ...] = ()


def lead_point_forecasts(values: FloatArray, start: int, calib_steps: int, lead: int, *,
                         model: str, season: int, options: dict[str, object] | None = None,
                         ) -> LeadForecasts:
    """Point forecasts ``lead`` steps ahead for every step in ``[start - calib_steps, T)``.

    The model is fitted once on the data before the calibration window and then filters
    forward, so the calibration errors are out of sample like the test ones.
    """
    n_steps = values.shape[0]
    first_step = start - calib_steps
    first_origin = first_step - lead + 1
    if lead < 1 or calib_steps < 4 or first_origin < 2 or start >= n_steps:
        raise AllocateError(f"cannot calibrate on [{first_step}, {start}) and forecast "
                            f"[{start}, {n_steps}) with lead {lead}: training window too short")
    try:
        rf = rolling_forecasts(model, values, first_origin, lead, (0.5,), season=season,
                               options=options)
    except ImportError as exc:
        raise AllocateError(f"forecaster {model!r} is not available here: {exc}") from exc
    want = n_steps - first_step
    origins = np.asarray(rf.origins)
    if origins.size < want or origins[0] != first_origin:
        raise AllocateError(f"forecaster returned origins {origins[:3]}..., expected "
                            f"{first_origin}..{first_origin + want - 1}")
    center = np.asarray(rf.mean[:want, lead - 1, :], dtype=np.float64)
    return LeadForecasts(center, first_step, calib_steps, model, rf.fit_seconds,
                         rf.predict_seconds, tuple(rf.notes))
