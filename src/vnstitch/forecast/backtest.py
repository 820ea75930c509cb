"""Rolling-origin backtests and the scores the CLI and benchmarks report.

Theory of operation. :func:`rolling_forecasts` fits a model once on the training
window ``values[:start]`` (optionally refitting every ``refit_every`` steps on all data
before that point) and then asks it for the forecast at every origin ``t`` in
``[start, T)`` (every ``stride``-th), where the forecast made at ``t`` may only use
``values[:t]``. Models built on :class:`~vnstitch.forecast.base.PointForecaster` do
this by filtering their state forward with fixed parameters (one cheap pass); any
other :class:`~vnstitch.forecast.base.Forecaster` is refitted at each origin (correct,
but slow). The allocator replays traces through this function.

Scores (:func:`score`), over all origins with complete actuals and all steps 1..H:

* ``nmae``: Σ|actual - mean| / Σ|actual| (pooled over series, origins and steps);
* ``mase``: per series, the model's MAE divided by the in-sample MAE of the seasonal
  naive on the training window (one-season-lag differences), averaged over series whose
  scale is non-zero;
* ``pinball``: mean over the requested quantiles of Σ pinball_q / Σ|actual| (scale-free);
* ``coverage_80``: share of actuals inside [q0.1, q0.9].
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vnstitch.forecast.base import (
    FloatArray,
    Forecaster,
    ForecastError,
    IntArray,
    PointForecaster,
    check_history,
    check_horizon,
    check_quantiles,
    make_forecaster,
)


@dataclass(frozen=True)
class RollingForecast:
    """Forecasts made at each origin: ``mean`` and ``quantiles[q]`` are ``(n, H, N)``."""

    origins: IntArray
    mean: FloatArray
    quantiles: dict[float, FloatArray]
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


ModelSpec = str | Callable[[], Forecaster]


def rolling_forecasts(model: ModelSpec, values: FloatArray, start: int, horizon: int,
                      quantiles: Sequence[float] = (0.1, 0.5, 0.9), *,
                      season: int | None = None, exog: FloatArray | None = None,
                      refit_every: int | None = None, stride: int = 1,
                      options: dict[str, object] | None = None,
                      on_progress: Callable[[int, int], None] | None = None,
                      ) -> RollingForecast:
    """Forecast at each origin in ``range(start, T, stride)`` without leakage.

    ``model`` is a registry name (needs ``season``) or a zero-argument factory.
    ``exog`` (optional) has at least ``T + horizon - 1`` rows, aligned with ``values``.
    ``on_progress(done, total)`` is called after each block of origins.
    """
    vals = check_history(values, "values")
    horizon = check_horizon(horizon)
    qs = check_quantiles(quantiles)
    t_len = vals.shape[0]
    if not 1 <= start < t_len + 1:
        raise ForecastError(f"start must lie in [1, {t_len}], got {start}")
    if stride < 1:
        raise ForecastError(f"stride must be >= 1, got {stride}")
    factory = _factory(model, season, options or {})
    origins = np.arange(start, t_len + 1 if start == t_len else t_len, stride, dtype=np.int64)
    block = refit_every if refit_every and refit_every > 0 else max(1, t_len - start)
    means: list[FloatArray] = []
    quants: dict[float, list[FloatArray]] = {}
    fit_s = pred_s = 0.0
    done = 0
    notes: list[str] = []
    for b0 in range(start, t_len, block) if start < t_len else [start]:
        sel = origins[(origins >= b0) & (origins < b0 + block)]
        if sel.size == 0:
            continue
        t0 = time.perf_counter()
        fx = None if exog is None else np.asarray(exog, dtype=np.float64)[:b0]
        m = factory().fit(vals[:b0], fx)
        fit_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        if isinstance(m, PointForecaster):
            mean, qd = m.rolling(vals, sel, horizon, qs, exog)
        else:
            mean, qd = _refit_each(factory, vals, sel, horizon, qs=qs, exog=exog)
        pred_s += time.perf_counter() - t0
        notes += [n for n in getattr(m, "notes", ()) if n not in notes]
        means.append(mean)
        for q, arr in qd.items():
            quants.setdefault(q, []).append(arr)
        done += sel.size
        if on_progress is not None:
            on_progress(done, origins.size)
    return RollingForecast(
        origins=origins, mean=np.concatenate(means),
        quantiles={q: np.concatenate(v) for q, v in quants.items()},
        fit_seconds=fit_s, predict_seconds=pred_s, notes=notes)


def _factory(model: ModelSpec, season: int | None,
             options: dict[str, object]) -> Callable[[], Forecaster]:
    if isinstance(model, str):
        if season is None:
            raise ForecastError(f"model {model!r} given by name needs a season")
        name, s = model, season
        return lambda: make_forecaster(name, s, **options)
    return model


def _refit_each(factory: Callable[[], Forecaster], vals: FloatArray, origins: IntArray,
                horizon: int, *, qs: tuple[float, ...], exog: FloatArray | None,
                ) -> tuple[FloatArray, dict[float, FloatArray]]:
    means: list[FloatArray] = []
    quants: dict[float, list[FloatArray]] = {}
    for t in origins:
        tt = int(t)
        hx = None if exog is None else exog[:tt]
        fx = None if exog is None else exog[tt:tt + horizon]
        fc = factory().fit(vals[:tt], hx).predict(horizon, fx, qs)
        means.append(fc.mean)
        for q, arr in fc.quantiles.items():
            quants.setdefault(q, []).append(arr)
    return np.stack(means), {q: np.stack(v) for q, v in quants.items()}


def score(rf: RollingForecast, values: FloatArray, season: int, train_end: int, *,
          quantiles: Sequence[float] = (0.1, 0.5, 0.9),
          steps: Sequence[int] | None = None) -> dict[str, float]:
    """NMAE, MASE, pinball and 80% coverage over origins whose actuals are all known.

    ``steps`` (1-based) restricts scoring to some horizon steps (default all).
    """
    vals = np.asarray(values, dtype=np.float64)
    horizon = rf.mean.shape[1]
    keep = rf.origins + horizon <= vals.shape[0]
    if not keep.any():
        raise ForecastError("no origin has complete actuals to score against")
    step_idx = np.arange(horizon) if steps is None else np.asarray(steps, dtype=np.int64) - 1
    origins = rf.origins[keep]
    actual = vals[origins[:, None] + step_idx[None, :]]  # (n, h, N)
    mean = rf.mean[keep][:, step_idx]
    abs_err = np.abs(actual - mean)
    denom = float(np.abs(actual).sum())
    nmae = float(abs_err.sum() / denom) if denom > 0 else float("nan")
    train = vals[:train_end]
    lag = season if train_end > season else 1
    scale = np.abs(train[lag:] - train[:-lag]).mean(axis=0)
    mae_series = abs_err.mean(axis=(0, 1))
    ok = scale > 0
    mase = float((mae_series[ok] / scale[ok]).mean()) if ok.any() else float("nan")
    pin = []
    for q in check_quantiles(quantiles):
        if q not in rf.quantiles:
            continue
        diff = actual - rf.quantiles[q][keep][:, step_idx]
        loss = np.maximum(q * diff, (q - 1) * diff)
        pin.append(float(loss.sum() / denom) if denom > 0 else float("nan"))
    lo, hi = rf.quantiles.get(0.1), rf.quantiles.get(0.9)
    coverage = float("nan")
    if lo is not None and hi is not None:
        inside = (actual >= lo[keep][:, step_idx]) & (actual <= hi[keep][:, step_idx])
        coverage = float(inside.mean())
    return {"nmae": nmae, "mase": mase,
            "pinball": float(np.mean(pin)) if pin else float("nan"),
            "coverage_80": coverage}
