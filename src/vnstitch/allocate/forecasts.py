"""Adapter to the forecasting layer: lead-time point forecasts for a replayed trace.

Theory of operation: the allocator needs, for every step ``s`` of the calibration and
test windows of a trace, the forecast of ``values[s]`` made ``lead`` steps earlier
(origin ``s - lead + 1``, horizon step ``lead``; the forecast at origin ``t`` uses only
``values[:t]``). This module asks :func:`vnstitch.forecast.backtest.rolling_forecasts`
for exactly those origins, the model fitted once before the calibration window. It is
the only place the allocator touches :mod:`vnstitch.forecast`, so a change there is a
change here only.

*Cold start.* A new stitch has no history to calibrate on: :func:`cold_start_units`
reserves the newsvendor quantile of the cold-start forecast
(:func:`vnstitch.forecast.coldstart.cold_start_forecast`: the application profile's
shape times the stitch's requested bandwidth, its burstiness as the spread, blended
into the stitch's own model as its history grows). Once a day or so of history exists
the calibrated policy takes over, warming up with the reactive-safe rule of
:mod:`~vnstitch.allocate.online` until enough of its own errors are known. The Route
Manager's online allocator reserves a new stitch end from the same quantiles
(:func:`cold_start_quantiles`) until its first rate is measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.policy import FloatArray, IntArray, newsvendor_quantile, units_for
from vnstitch.forecast.backtest import rolling_forecasts  # models load lazily by name
from vnstitch.forecast.base import ForecastError

if TYPE_CHECKING:
    from vnstitch.forecast.coldstart import Times
    from vnstitch.forecast.profiles import ApplicationProfile


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


def cold_start_quantiles(*, profile: ApplicationProfile, expected_mbps: float | None,
                         future: Times, levels: Sequence[float],
                         own: FloatArray | None = None, own_times: Times | None = None,
                         season: int = 288) -> FloatArray:
    """Quantiles ``(len(levels), len(future))`` of a stitch's demand with little or no
    history (see the module doc): what :func:`cold_start_units` and the Route Manager's
    forecasts (:class:`vnstitch.control.forecasting.ForecastBank`) reserve from."""
    from vnstitch.forecast.coldstart import cold_start_forecast  # noqa: PLC0415 (scipy)

    hist = np.zeros(0) if own is None else np.asarray(own, dtype=np.float64).reshape(-1)
    times = np.asarray([], dtype="datetime64[m]") if own_times is None else own_times
    try:
        res = cold_start_forecast(profile=profile, own=hist, own_times=times, future=future,
                                  expected_mbps=expected_mbps, season=season,
                                  quantiles=tuple(levels))
    except ForecastError as exc:
        raise AllocateError(f"cold start: {exc}") from exc
    return np.stack([res.forecast.quantiles[q][:, 0] for q in levels])


def cold_start_units(*, profile: ApplicationProfile, expected_mbps: float | None,
                     future: Times, unit: float, c_under: float, c_over: float = 1.0,
                     own: FloatArray | None = None, own_times: Times | None = None,
                     season: int = 288, min_units: int = 0) -> IntArray:
    """Units per ``future`` time for a stitch with little or no history (see module doc).

    ``own``/``own_times``: what the stitch has carried so far (may be empty); with no
    history ``expected_mbps`` (the stitch request's bandwidth) sets the level.
    """
    q = newsvendor_quantile(c_under, c_over)
    at_q = cold_start_quantiles(profile=profile, expected_mbps=expected_mbps, future=future,
                                levels=(q,), own=own, own_times=own_times, season=season)
    return units_for(at_q[0], unit, min_units)
