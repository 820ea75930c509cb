"""``lagreg``: per-series, per-step L1 regression of the change from the last value.

Theory of operation. On bursty, near-random-walk traffic the last value is a strong
forecast; what helps is a correction for mean reversion after bursts and for the daily
and hourly shape. For every series ``i`` and horizon step ``h`` the model predicts

    z[t-1+h] = z[t-1] + lambda_ih * (x_t(h) . b_ih)

where ``z`` is the series on a log scale, ``z = log(y + c_i)`` with ``c_i`` the series'
mean level on the training window (non-negative data only; otherwise ``z = y``), and
``x_t(h)`` are *changes relative to the last value*, all computed from ``z[:t]`` only:

* differences to a few earlier values; recent means, medians, minima and maxima minus the
  last value (how far a burst sits from the recent level);
* the hourly phase (``season / 24`` steps when the season is a day): the values at the
  same minute of the last three hours, and their median, minus the last value (many OD
  flows and hosts carry hourly jobs);
* the daily phase: "what happened between now and ``t-1+h`` one season ago" (raw,
  smoothed over a few steps, and the median over the last three seasons);
* the daily shape of the network total (the sum of all series, the "user behaviour"
  every flow shares; much less noisy than any one flow): the log ratio of the smoothed
  total at the target's time of day to the one now, on each of the last three days.
  When the series are a chunk of a larger set, ``network_total`` passes the whole set's
  total in, so a chunked backtest forecasts exactly as one over all series.

The log scale makes every correction relative (a flow that grows tenfold keeps its
learned shape) and, since the median commutes with monotone maps, fitting absolute
errors on it still targets the conditional median, the point forecast the NMAE rewards.

Fitting is on the loss we are judged on: ``b_ih`` minimises the **absolute** error
(least absolute deviations by iteratively reweighted least squares, one small BLAS solve
per series per iteration, a little ridge for stability) over rolling origins of the
training window. Features are **winsorised** at the ``clip_quantile`` tails of their
training values per series: after a level shift the long-window features take values
never seen in training, and a linear model would extrapolate its mean reversion toward
the old level; clipped, the correction stays in the range it was fitted on. Per-series
coefficients overfit when a series changes regime, so the shrinkage ``lambda_ih``
toward the naive forecast is chosen per series and step on a **holdout**: coefficients
fitted on the training window minus its last ``holdout`` steps are scored (absolute
error on the original scale) on those steps for each lambda in a small grid; the final
coefficients are then refitted on the whole training window. The holdout errors
(out-of-sample, with the chosen lambda) are also the calibration errors from which the
shared base class builds the quantiles, so intervals are not narrowed by in-sample fit.

Coefficients for a step are fitted the first time a forecast needs that step and then
cached, so any horizon works. Every index is clipped to ``t-1`` (never the future) and
to ``>= 0``; with less than five seasons of history the daily features are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from vnstitch.forecast.base import FloatArray, ForecastError, IntArray, PointForecaster

LAGS = (1, 2, 4)
MEAN_WINDOWS = (6, 12, 36)
MEDIAN_WINDOWS = (6, 24)
EXTREME_WINDOWS = (6, 12, 36)
SHRINK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


class LagRegression(PointForecaster):
    """Per-series L1 regression on lag features with holdout shrinkage (see module doc)."""

    name = "lagreg"

    def __init__(self, season: int, *, horizon: int = 1, holdout: int | None = None,
                 iterations: int = 8, ridge: float = 1e-2, log_scale: bool = True,
                 clip_quantile: float = 0.002, total: bool = True, fit_stride: int = 1,
                 network_total: FloatArray | None = None, **kwargs: Any) -> None:
        super().__init__(season, **kwargs)
        if not 0.0 <= clip_quantile < 0.5:
            raise ForecastError(f"lagreg: clip_quantile must be in [0, 0.5), got {clip_quantile}")
        self.horizon = horizon
        self.holdout = holdout
        self.iterations = iterations
        self.ridge = ridge
        self.log_scale = log_scale
        self.clip_quantile = clip_quantile
        self.total = total
        # the total over every row of the trace when these series are a chunk of a
        # larger set (a parallel backtest): the shared regressor stays the network's
        self.network_total = None if network_total is None else \
            np.asarray(network_total, dtype=np.float64).reshape(-1)
        if fit_stride < 1:
            raise ForecastError(f"lagreg: fit_stride must be >= 1, got {fit_stride}")
        self.fit_stride = fit_stride
        self._coef: dict[int, FloatArray] = {}     # step -> (N, k)
        self._shrink: dict[int, FloatArray] = {}   # step -> (N,)
        self._bounds: dict[int, tuple[FloatArray, FloatArray]] = {}  # step -> (N, k) x 2
        self._holdout_err: dict[int, FloatArray] = {}  # step -> (n_holdout, N)
        self._offset: FloatArray | None = None  # c_i of the log scale; None = linear
        self._z: FloatArray | None = None       # training history on the model's scale
        self._base: FloatArray = np.zeros((0, 0, 0))  # base features, training origins
        self._seasonal = False
        self._first = 1
        # the hourly phase, when the season is a day of whole-minute steps
        self._hour = season // 24 if season % 24 == 0 and season >= 48 else 0

    # -- scale -----------------------------------------------------------------------
    def _to_z(self, values: FloatArray) -> FloatArray:
        if self._offset is None:
            return values
        return np.asarray(np.log(np.maximum(values, 0.0) + self._offset), dtype=np.float64)

    def _from_z(self, z: FloatArray) -> FloatArray:
        if self._offset is None:
            return z
        return np.asarray(np.exp(z) - self._offset, dtype=np.float64)

    # -- features --------------------------------------------------------------------
    def _windows(self) -> tuple[int, ...]:
        return tuple(sorted({*MEAN_WINDOWS, max(2, self.season // 2)}))

    def _at(self, z: FloatArray, last_i: IntArray) -> Callable[[IntArray], FloatArray]:
        def at(idx: IntArray) -> FloatArray:
            # never past the origin, never before the start
            safe = np.clip(np.minimum(idx, last_i[:, None] if idx.ndim == 2 else last_i), 0,
                           None)
            out: FloatArray = z[safe]
            return out
        return at

    def _base_features(self, z: FloatArray, origins: IntArray) -> FloatArray:
        """The ``(n, N, kb)`` features that do not depend on the step (computed once)."""
        last_i = origins - 1
        last = z[last_i]
        at = self._at(z, last_i)

        def window(w: int) -> FloatArray:
            # the w values up to the origin, (n, N, w); before the start repeats row 0
            padded = np.concatenate([np.repeat(z[:1], w - 1, axis=0), z])
            view: FloatArray = sliding_window_view(padded, w, axis=0)[last_i]
            return view

        cum = np.concatenate([np.zeros((1, z.shape[1])), np.cumsum(z, axis=0)])
        feats: list[FloatArray] = [at(last_i - j) - last for j in LAGS]
        for w in self._windows():
            lo = np.maximum(origins - w, 0)
            feats.append((cum[origins] - cum[lo]) / (origins - lo)[:, None] - last)
        for w in MEDIAN_WINDOWS:
            feats.append(np.median(window(w), axis=-1) - last)
        for w in EXTREME_WINDOWS:
            win = window(w)
            feats += [win.min(axis=-1) - last, win.max(axis=-1) - last]
        return np.stack(feats, axis=-1)

    def _features(self, z: FloatArray, raw: FloatArray, origins: IntArray, h: int,
                  base: FloatArray | None = None) -> FloatArray:
        """``(n, N, k)`` features at each origin (only rows before the origin are read).

        ``z`` is the series on the model's scale, ``raw`` on the original one; ``base``
        is :meth:`_base_features` for these origins if already computed.
        """
        last_i = origins - 1
        last = z[last_i]
        at = self._at(z, last_i)
        feats: list[FloatArray] = []
        p = self._hour
        if p > 1:
            k0 = -(-h // p)  # whole hours back to reach the target's minute in the past
            hour = [at(last_i + h - p * (k0 + j)) for j in range(3)]
            feats += [v - last for v in hour]
            feats.append(np.median(np.stack(hour), axis=0) - last)
        if self._seasonal:
            m = self.season
            target = last_i + h - m
            feats.append(at(target) - at(last_i - m))

            def smooth(centre: IntArray, width: int) -> FloatArray:
                idx = centre[:, None] + np.arange(-width, width + 1)[None, :]
                return np.asarray(at(idx).mean(axis=1), dtype=np.float64)

            feats.append(smooth(target, 3) - smooth(last_i - m, 3))
            days_t = np.stack([smooth(target - m * k, 2) for k in range(3)])
            days_0 = np.stack([smooth(last_i - m - m * k, 2) for k in range(3)])
            feats.append(np.median(days_t, axis=0) - np.median(days_0, axis=0))
            if self.total:
                feats += self._total_features(raw, origins, h, last)
        if base is None:
            base = self._base_features(z, origins)
        return np.concatenate([base, np.stack(feats, axis=-1)], axis=-1) if feats else base

    def _total_features(self, raw: FloatArray, origins: IntArray, h: int,
                        last: FloatArray) -> list[FloatArray]:
        """Daily shape of the network total, one feature per day of the last three."""
        m = self.season
        if self.network_total is None:
            tot = np.abs(raw).sum(axis=1)
        elif self.network_total.shape[0] < raw.shape[0]:
            raise ForecastError(f"lagreg: network_total has {self.network_total.shape[0]} "
                                f"rows, the series {raw.shape[0]}")
        else:
            tot = self.network_total[: raw.shape[0]]
        cum = np.concatenate([[0.0], np.cumsum(tot)])
        last_i = origins - 1

        def smooth(centre: IntArray) -> FloatArray:
            # mean of the total over centre-3..centre+3, never past the origin
            lo = np.clip(centre - 3, 0, None)
            hi = np.clip(np.minimum(centre + 4, origins), 1, None)
            lo = np.minimum(lo, hi - 1)
            return np.asarray((cum[hi] - cum[lo]) / (hi - lo), dtype=np.float64)

        out: list[FloatArray] = []
        for k in (1, 2, 3):
            ratio = (smooth(last_i + h - m * k) + 1e-9) / (smooth(last_i - m * k) + 1e-9)
            if self._offset is not None:
                out.append(np.broadcast_to(np.log(ratio)[:, None], last.shape))
            else:
                out.append(last * (ratio - 1.0)[:, None])
        return out

    # -- fitting ---------------------------------------------------------------------
    def _fit_point(self, history: FloatArray) -> None:
        t_len = history.shape[0]
        self._coef, self._shrink, self._holdout_err, self._bounds = {}, {}, {}, {}
        self._offset = None
        if self.log_scale and bool((history >= 0).all()):
            self._offset = history.mean(axis=0) + 1e-6
        self._z = self._to_z(history)
        self._seasonal = self.season > 1 and t_len >= 5 * self.season
        self._first = min(3 * self.season + 4 if self._seasonal else max(self._windows()),
                          max(1, t_len // 4))
        self._base = self._base_features(self._z, np.arange(self._first, t_len + 1))
        for h in range(1, self.horizon + 1):
            self._fit_step(h)

    def _holdout_len(self, h: int) -> int:
        t_len = self._fitted().shape[0]
        want = self.holdout if self.holdout is not None else 2 * self.season
        return int(max(h + 1, min(want, (t_len - self._first) // 3)))

    def _bounds_of(self, feats: FloatArray) -> tuple[FloatArray, FloatArray]:
        q = self.clip_quantile
        if q <= 0:
            return np.full(feats.shape[1:], -np.inf), np.full(feats.shape[1:], np.inf)
        lo, hi = np.quantile(feats, [q, 1 - q], axis=0)
        return lo, hi

    def _fit_step(self, h: int) -> None:
        hist = self._fitted()
        z = self._z if self._z is not None else hist
        t_len, n = hist.shape
        hold = self._holdout_len(h)
        fit_end = t_len - hold  # origins whose target lies before the holdout
        o_fit = np.arange(self._first, fit_end - h + 1, dtype=np.int64)
        o_val = np.arange(max(fit_end, 1), t_len - h + 1, dtype=np.int64)
        o_all = np.arange(self._first, t_len - h + 1, dtype=np.int64)
        k = self._features(z, hist, np.array([t_len], dtype=np.int64), h,
                           self._base[-1:]).shape[-1]
        if o_fit.size < 2 * k or o_val.size == 0 or o_val[0] < o_all[0]:
            # too little history: plain naive (zero correction)
            self._coef[h] = np.zeros((n, k))
            self._shrink[h] = np.zeros(n)
            self._bounds[h] = (np.full((n, k), -np.inf), np.full((n, k), np.inf))
            self._holdout_err[h] = np.zeros((1, n)) if o_val.size == 0 else \
                hist[o_val - 1 + h] - hist[o_val - 1]
            return
        # o_fit and o_val are slices of o_all, o_all a prefix of the cached origins
        f_all = self._features(z, hist, o_all, h, self._base[: o_all.size])
        # the holdout sees bounds and coefficients from before it only; neighbouring
        # origins are nearly the same example, so the fits use every fit_stride-th one
        sl = slice(None, None, self.fit_stride)
        lo, hi = self._bounds_of(f_all[: o_fit.size][sl])
        f_fit = np.clip(f_all[: o_fit.size][sl], lo, hi)
        f_val = np.clip(f_all[o_val[0] - o_all[0]:], lo, hi)
        o_fit = o_fit[sl]
        coef = self._lad(f_fit, z[o_fit - 1 + h] - z[o_fit - 1])
        corr = np.einsum("tnk,nk->tn", f_val, coef)
        z_last = z[o_val - 1]
        actual = hist[o_val - 1 + h]
        grid = np.asarray(SHRINK_GRID)
        errs = np.stack([np.abs(actual - self._clip(self._from_z(z_last + lam * corr)))
                         .sum(axis=0) for lam in grid])
        lam_n = grid[np.argmin(errs, axis=0)]
        self._shrink[h] = lam_n
        self._holdout_err[h] = actual - self._clip(self._from_z(z_last + lam_n * corr))
        # the final fit adds the holdout to the same problem: start from the first fit
        f_all, o_all = f_all[::-1][sl][::-1], o_all[::-1][sl][::-1]  # keep the last origin
        self._bounds[h] = self._bounds_of(f_all)
        self._coef[h] = self._lad(np.clip(f_all, *self._bounds[h]),
                                  z[o_all - 1 + h] - z[o_all - 1], init=coef,
                                  iterations=max(1, self.iterations // 2))

    def _clip(self, x: FloatArray) -> FloatArray:
        return np.maximum(x, 0.0) if self._nonneg else x

    def _lad(self, x: FloatArray, y: FloatArray, init: FloatArray | None = None,
             iterations: int | None = None) -> FloatArray:
        """Least absolute deviations per series: ``x (n, N, k)``, ``y (n, N)`` -> ``(N, k)``.

        ``init`` (N, k) starts the reweighting from those coefficients' residuals.
        """
        # [x | y] per series, so one BLAS call gives both X'WX and X'Wy
        xy = np.concatenate([x, y[..., None]], axis=-1).transpose(1, 0, 2)
        xy = np.ascontiguousarray(xy)                    # (N, n, k + 1)
        xs, ys = xy[..., :-1], xy[..., -1]
        n_series, _, k = xs.shape
        floor = 1e-2 * (np.abs(ys).mean(axis=1, keepdims=True) + 1e-12)
        if init is None:
            weights = np.ones_like(ys)
        else:
            weights = 1.0 / np.maximum(np.abs(ys - np.einsum("ntk,nk->nt", xs, init)), floor)
        eye = np.eye(k)
        coef = np.zeros((n_series, k))
        moments = np.empty((n_series, k + 1, k + 1))
        for _ in range(iterations or self.iterations):
            root = np.sqrt(weights)
            # one BLAS call per series: numpy's stacked matmul is several times slower here
            for i in range(n_series):
                a = xy[i] * root[i][:, None]
                moments[i] = a.T @ a
            gram, rhs = moments[:, :k, :k], moments[:, :k, k]
            scale = np.trace(gram, axis1=1, axis2=2) / k + 1e-12
            coef = np.linalg.solve(gram + self.ridge * scale[:, None, None] * eye,
                                   rhs[..., None])[..., 0]
            resid = np.abs(ys - np.einsum("ntk,nk->nt", xs, coef))
            weights = 1.0 / np.maximum(resid, floor)
        return coef

    # -- forecasting -----------------------------------------------------------------
    def _roll_point(self, values: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
        if self._history is None:
            raise ForecastError("lagreg: not fitted")
        out = np.empty((origins.size, horizon, values.shape[1]))
        if origins.size == 0:
            return out
        z = self._to_z(values)
        z_last = z[origins - 1]
        base = self._base_features(z, origins)
        for h in range(1, horizon + 1):
            if h not in self._coef:
                self._fit_step(h)
            feats = np.clip(self._features(z, values, origins, h, base), *self._bounds[h])
            corr = np.einsum("tnk,nk->tn", feats, self._coef[h])
            out[:, h - 1] = self._from_z(z_last + self._shrink[h] * corr)
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
