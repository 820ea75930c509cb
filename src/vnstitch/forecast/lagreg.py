"""``lagreg``: per-series, per-step L1 regression of the change from the last value.

Theory of operation. On bursty, near-random-walk traffic the last value is a strong
forecast; what helps is a correction for mean reversion after bursts and for the daily
shape. For every series ``i`` and horizon step ``h`` the model predicts

    yhat[t-1+h] = y[t-1] + lambda_ih * (x_t(h) . b_ih)

where ``x_t(h)`` are *changes relative to the last value*, all computed from ``y[:t]``
only: differences to a few earlier values, recent means and medians minus the last
value, and the seasonal change "what happened between now and ``t-1+h`` one season
ago" (raw, smoothed over a few steps, and the median over the last three seasons).
Every feature is linear and homogeneous in the series, so the model is scale-free and
needs no normalisation.

Fitting is on the loss we are judged on: ``b_ih`` minimises the **absolute** error
(least absolute deviations by iteratively reweighted least squares, batched across
series with one ``(N, k, k)`` solve per iteration, a little ridge for stability) over
rolling origins of the training window. Per-series coefficients overfit when a series
changes regime, so the shrinkage ``lambda_ih`` toward the naive forecast is chosen per
series and step on a **holdout**: coefficients fitted on the training window minus its
last ``holdout`` steps are scored on those steps for each lambda in a small grid; the
final coefficients are then refitted on the whole training window. The holdout errors
(out-of-sample, with the chosen lambda) are also the calibration errors from which the
shared base class builds the quantiles, so intervals are not narrowed by in-sample fit.

Coefficients for a step are fitted the first time a forecast needs that step and then
cached, so any horizon works. Every index is clipped to ``t-1`` (never the future) and
to ``>= 0``; with less than four seasons of history the seasonal features are dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vnstitch.forecast.base import FloatArray, ForecastError, IntArray, PointForecaster

LAGS = (1, 2, 4)
MEAN_WINDOWS = (6, 12, 36)
MEDIAN_WINDOWS = (6, 24)
SHRINK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


class LagRegression(PointForecaster):
    """Per-series L1 regression on lag features with holdout shrinkage (see module doc)."""

    name = "lagreg"

    def __init__(self, season: int, *, horizon: int = 1, holdout: int | None = None,
                 iterations: int = 20, ridge: float = 1e-2, **kwargs: Any) -> None:
        super().__init__(season, **kwargs)
        self.horizon = horizon
        self.holdout = holdout
        self.iterations = iterations
        self.ridge = ridge
        self._coef: dict[int, FloatArray] = {}     # step -> (N, k)
        self._shrink: dict[int, FloatArray] = {}   # step -> (N,)
        self._holdout_err: dict[int, FloatArray] = {}  # step -> (n_holdout, N)
        self._seasonal = False
        self._first = 1

    # -- features --------------------------------------------------------------------
    def _windows(self) -> tuple[int, ...]:
        return tuple(sorted({*MEAN_WINDOWS, max(2, self.season // 2)}))

    def _features(self, values: FloatArray, origins: IntArray, h: int) -> FloatArray:
        """``(n, N, k)`` features at each origin (only ``values[:origin]`` is read)."""
        last_i = origins - 1
        last = values[last_i]

        def at(idx: IntArray) -> FloatArray:
            # never past the origin, never before the start
            safe = np.clip(np.minimum(idx, last_i[:, None] if idx.ndim == 2 else last_i), 0,
                           None)
            out: FloatArray = values[safe]
            return out

        cum = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
        feats: list[FloatArray] = [at(last_i - j) - last for j in LAGS]
        for w in self._windows():
            lo = np.maximum(origins - w, 0)
            feats.append((cum[origins] - cum[lo]) / (origins - lo)[:, None] - last)
        for w in MEDIAN_WINDOWS:
            idx = last_i[:, None] - np.arange(w)[None, :]
            feats.append(np.median(at(idx), axis=1) - last)
        if self._seasonal:
            m = self.season
            target = last_i + h - m
            feats.append(at(target) - at(last_i - m))

            def smooth(base: IntArray, width: int) -> FloatArray:
                idx = base[:, None] + np.arange(-width, width + 1)[None, :]
                return np.asarray(at(idx).mean(axis=1), dtype=np.float64)

            feats.append(smooth(target, 3) - smooth(last_i - m, 3))
            days_t = np.stack([smooth(target - m * k, 2) for k in range(3)])
            days_0 = np.stack([smooth(last_i - m - m * k, 2) for k in range(3)])
            feats.append(np.median(days_t, axis=0) - np.median(days_0, axis=0))
        return np.stack(feats, axis=-1)

    # -- fitting ---------------------------------------------------------------------
    def _fit_point(self, history: FloatArray) -> None:
        t_len = history.shape[0]
        self._coef, self._shrink, self._holdout_err = {}, {}, {}
        self._seasonal = self.season > 1 and t_len >= 5 * self.season
        self._first = min(3 * self.season + 4 if self._seasonal else max(self._windows()),
                          max(1, t_len // 4))
        for h in range(1, self.horizon + 1):
            self._fit_step(h)

    def _holdout_len(self, h: int) -> int:
        t_len = self._fitted().shape[0]
        want = self.holdout if self.holdout is not None else 2 * self.season
        return int(max(h + 1, min(want, (t_len - self._first) // 3)))

    def _fit_step(self, h: int) -> None:
        hist = self._fitted()
        t_len, n = hist.shape
        hold = self._holdout_len(h)
        fit_end = t_len - hold  # origins whose target lies before the holdout
        o_fit = np.arange(self._first, fit_end - h + 1, dtype=np.int64)
        o_val = np.arange(max(fit_end, 1), t_len - h + 1, dtype=np.int64)
        o_all = np.arange(self._first, t_len - h + 1, dtype=np.int64)
        k = self._features(hist, np.array([t_len], dtype=np.int64), h).shape[-1]
        if o_fit.size < 2 * k or o_val.size == 0:
            # too little history: plain naive (zero correction)
            self._coef[h] = np.zeros((n, k))
            self._shrink[h] = np.zeros(n)
            self._holdout_err[h] = np.zeros((1, n)) if o_val.size == 0 else \
                hist[o_val - 1 + h] - hist[o_val - 1]
            return
        coef = self._lad(self._features(hist, o_fit, h), hist[o_fit - 1 + h] - hist[o_fit - 1])
        corr = np.einsum("tnk,nk->tn", self._features(hist, o_val, h), coef)
        last = hist[o_val - 1]
        actual = hist[o_val - 1 + h]
        grid = np.asarray(SHRINK_GRID)
        errs = np.stack([np.abs(actual - self._clip(last + lam * corr)).sum(axis=0)
                         for lam in grid])
        best = np.argmin(errs, axis=0)
        lam_n = grid[best]
        self._shrink[h] = lam_n
        self._holdout_err[h] = actual - self._clip(last + lam_n * corr)
        self._coef[h] = self._lad(self._features(hist, o_all, h),
                                  hist[o_all - 1 + h] - hist[o_all - 1])

    def _clip(self, x: FloatArray) -> FloatArray:
        return np.maximum(x, 0.0) if self._nonneg else x

    def _lad(self, x: FloatArray, y: FloatArray) -> FloatArray:
        """Least absolute deviations per series: ``x (n, N, k)``, ``y (n, N)`` -> ``(N, k)``."""
        xs = np.ascontiguousarray(x.transpose(1, 0, 2))  # (N, n, k)
        ys = np.ascontiguousarray(y.T)                   # (N, n)
        k = xs.shape[-1]
        floor = 1e-2 * (np.abs(ys).mean(axis=1, keepdims=True) + 1e-12)
        weights = np.ones_like(ys)
        eye = np.eye(k)[None]
        coef = np.zeros((xs.shape[0], k))
        for _ in range(self.iterations):
            xw = xs * weights[..., None]
            gram = np.matmul(xw.transpose(0, 2, 1), xs)
            scale = np.trace(gram, axis1=1, axis2=2) / k + 1e-12
            gram = gram + self.ridge * scale[:, None, None] * eye
            rhs = np.matmul(xw.transpose(0, 2, 1), ys[..., None])
            coef = np.linalg.solve(gram, rhs)[..., 0]
            resid = np.abs(ys - np.matmul(xs, coef[..., None])[..., 0])
            weights = 1.0 / np.maximum(resid, floor)
        return coef

    # -- forecasting -----------------------------------------------------------------
    def _roll_point(self, values: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
        if self._history is None:
            raise ForecastError("lagreg: not fitted")
        out = np.empty((origins.size, horizon, values.shape[1]))
        if origins.size == 0:
            return out
        last = values[origins - 1]
        for h in range(1, horizon + 1):
            if h not in self._coef:
                self._fit_step(h)
            corr = np.einsum("tnk,nk->tn", self._features(values, origins, h), self._coef[h])
            out[:, h - 1] = last + self._shrink[h] * corr
        return out

    def calibration_errors(self, horizon: int) -> FloatArray:
        """Out-of-sample errors on the holdout, ``(C, horizon, N)`` (see module doc)."""
        if horizon in self._error_cache:
            return self._error_cache[horizon]
        self._fitted()
        for h in range(1, horizon + 1):
            if h not in self._coef:
                self._fit_step(h)
        rows = min(self._holdout_err[h].shape[0] for h in range(1, horizon + 1))
        errors = np.stack([self._holdout_err[h][-rows:] for h in range(1, horizon + 1)], axis=1)
        self._error_cache[horizon] = errors
        return errors

    def shrinkage(self) -> dict[int, list[float]]:
        """Chosen lambda per step and series (for reports)."""
        return {h: lam.tolist() for h, lam in sorted(self._shrink.items())}

