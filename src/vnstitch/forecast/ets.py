"""Exponential smoothing (additive Holt-Winters, damped trend, one or two seasons), batched.

Theory of operation. For every series the model keeps a level ``l``, a damped trend
``b`` and one seasonal component per season (daily ``m1``; weekly ``m2 = 7*m1`` when
the history holds at least two weeks plus a day):

    yhat_t = l + phi*b + s1[t-m1] (+ s2[t-m2])        e_t = y_t - yhat_t
    l <- l + phi*b + alpha*e      b <- phi*b + beta*e      s_i[t] <- s_i[t-m_i] + gamma_i*e

Errors are clipped at ``huber`` times a robust scale (median absolute one-step
difference) before updating the state, so one burst does not drag the level (the
Abilene OD flows are bursty).

**Vectorised.** The only Python loop is over time steps; each step updates all columns at
once. Fitting runs one pass over the training window with a grid of parameter
combinations laid side by side as extra columns (``K`` combinations x ``N`` series) and
keeps, per series, the combination with the lowest mean absolute error of the forecast
``select_step`` steps ahead (default 1), measured after a one-season burn-in. A rolling
forecast is a second pass with the chosen parameters that records the state after every
observation; the forecast at origin ``t`` reads the state after ``values[t-1]`` only.
The initial state (level and seasonal profile from the first seasons of the training
history) is fixed at fit time, so later data never leaks into earlier forecasts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from vnstitch.forecast.base import FloatArray, ForecastError, IntArray, PointForecaster

ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9)
GAMMAS = (0.0, 0.05, 0.15, 0.3)
TRENDS = ((0.0, 1.0), (0.02, 0.9))  # (beta, phi): none, or a small damped trend
WEEK_GAMMAS = (0.0, 0.1)


@dataclass
class _Params:
    alpha: FloatArray
    beta: FloatArray
    phi: FloatArray
    gammas: list[FloatArray]


@dataclass
class _States:
    level: FloatArray          # (T, C): after observation t
    trend: FloatArray          # (T, C)
    seasonal: list[FloatArray]  # each (m_i + T, C): m_i initial rows, then after obs t


class ExponentialSmoothing(PointForecaster):
    """Batched additive Holt-Winters with per-series parameters from a grid search."""

    name = "ets"

    def __init__(self, season: int, *, weekly: bool | None = None, huber: float = 3.0,
                 select_step: int = 1, **kwargs: object) -> None:
        super().__init__(season, **kwargs)  # type: ignore[arg-type]
        self.weekly = weekly
        self.huber = huber
        self.select_step = select_step
        self.seasons: list[int] = []
        self._params: _Params | None = None
        self._init_level: FloatArray | None = None
        self._init_seasonal: list[FloatArray] = []
        self._scale: FloatArray | None = None

    # -- fitting ---------------------------------------------------------------------
    def _fit_point(self, history: FloatArray) -> None:
        t_len, n = history.shape
        m1 = self.season
        seasons = [m1] if m1 > 1 and t_len >= 2 * m1 else []
        week = 7 * m1
        use_week = self.weekly if self.weekly is not None else t_len >= 2 * week + m1
        if use_week and m1 > 1:
            if t_len < 2 * week:
                raise ForecastError(f"ets: weekly season needs >= {2 * week} steps, have {t_len}")
            seasons.append(week)
        self.seasons = seasons
        self._init_state(history)
        self._scale = _robust_scale(history)
        grid_g = list(itertools.product(GAMMAS, *([WEEK_GAMMAS] * (len(seasons) - 1))))
        if not seasons:
            grid_g = [()]
        combos = list(itertools.product(ALPHAS, TRENDS, grid_g))
        k = len(combos)
        alpha = np.repeat([c[0] for c in combos], n)
        beta = np.repeat([c[1][0] for c in combos], n)
        phi = np.repeat([c[1][1] for c in combos], n)
        gammas = [np.repeat([c[2][i] for c in combos], n) for i in range(len(seasons))]
        params = _Params(alpha, beta, phi, gammas)
        y = np.tile(history, (1, k))
        burn = min(max(seasons, default=1), t_len // 2)
        err = self._pass(y, params, np.tile(self._init_level_arr(), k),
                         [np.tile(s, (1, k)) for s in self._init_seasonal],
                         np.tile(self._scale, k), burn=burn)
        best = np.argmin(err.reshape(k, n), axis=0)  # (N,)
        pick = best * n + np.arange(n)
        self._params = _Params(alpha[pick], beta[pick], phi[pick], [g[pick] for g in gammas])

    def _init_level_arr(self) -> FloatArray:
        assert self._init_level is not None
        return self._init_level

    def _init_state(self, history: FloatArray) -> None:
        """Level and seasonal profiles from the first (up to three) seasons."""
        m1 = self.seasons[0] if self.seasons else 1
        days = max(1, min(3, history.shape[0] // m1))
        head = history[: days * m1]
        level = head.mean(axis=0)
        self._init_level = level
        self._init_seasonal = []
        if not self.seasons:
            return
        daily = head.reshape(days, m1, -1).mean(axis=0) - level
        self._init_seasonal.append(daily)
        if len(self.seasons) > 1:
            week = self.seasons[1]
            resid = history[:week] - level - np.tile(daily, (week // m1, 1))
            self._init_seasonal.append(resid - resid.mean(axis=0))

    # -- the filter ------------------------------------------------------------------
    def _pass(self, y: FloatArray, p: _Params, level0: FloatArray, seas0: list[FloatArray],
              scale: FloatArray, *, burn: int) -> FloatArray:
        """One filtering pass; mean |error| of the ``select_step``-ahead forecast."""
        states = self._filter(y, p, level0, seas0, scale)
        h = max(1, self.select_step)
        t_len = y.shape[0]
        origins = np.arange(max(burn, 1), t_len - h + 1, dtype=np.int64)
        if origins.size == 0:
            origins = np.arange(1, t_len - h + 1, dtype=np.int64)
        if origins.size == 0:  # one or two observations: nothing to choose by
            return np.zeros(y.shape[1])
        fc = self._from_states(states, p, origins, h)[:, h - 1]
        actual = y[origins + h - 1]
        err: FloatArray = np.abs(actual - fc).mean(axis=0)
        return err

    def _filter(self, y: FloatArray, p: _Params, level0: FloatArray, seas0: list[FloatArray],
                scale: FloatArray) -> _States:
        t_len, c = y.shape
        lev_hist = np.empty((t_len, c))
        tr_hist = np.empty((t_len, c))
        seas_hist = [np.concatenate([s0, np.empty((t_len, c))]) for s0 in seas0]
        level = level0.astype(np.float64).copy()
        trend = np.zeros(c)
        bound = self.huber * scale
        for t in range(t_len):
            damped = p.phi * trend
            pred = level + damped
            for i in range(len(self.seasons)):
                pred = pred + seas_hist[i][t]  # row t of the padded array is time t - m
            e = np.clip(y[t] - pred, -bound, bound)
            level = level + damped + p.alpha * e
            trend = damped + p.beta * e
            for i, m in enumerate(self.seasons):
                seas_hist[i][t + m] = seas_hist[i][t] + p.gammas[i] * e
            lev_hist[t] = level
            tr_hist[t] = trend
        return _States(lev_hist, tr_hist, seas_hist)

    def _from_states(self, st: _States, p: _Params, origins: IntArray,
                     horizon: int) -> FloatArray:
        h = np.arange(1, horizon + 1)
        last = origins - 1
        damp = np.cumsum(p.phi[None, :] ** h[:, None], axis=0)  # (H, C)
        fc = st.level[last][:, None, :] + st.trend[last][:, None, :] * damp[None]
        for i, m in enumerate(self.seasons):
            k = -(-h // m)
            idx = last[:, None] + h[None, :] - m * k[None, :] + m  # padded row
            fc = fc + st.seasonal[i][idx]
        return np.asarray(fc, dtype=np.float64)

    def _roll_point(self, values: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
        if self._params is None or self._scale is None:
            raise ForecastError("ets: not fitted")
        if origins.size == 0:
            return np.zeros((0, horizon, values.shape[1]))
        upto = int(origins.max())
        states = self._filter(values[:upto], self._params, self._init_level_arr(),
                              self._init_seasonal, self._scale)
        return self._from_states(states, self._params, origins, horizon)

    def describe(self) -> dict[str, list[float]]:
        """The chosen smoothing parameters per series (for reports)."""
        if self._params is None:
            raise ForecastError("ets: not fitted")
        out = {"alpha": self._params.alpha.tolist(), "beta": self._params.beta.tolist(),
               "phi": self._params.phi.tolist()}
        for i, g in enumerate(self._params.gammas):
            out[f"gamma{i + 1}"] = g.tolist()
        return out


def _robust_scale(history: FloatArray) -> FloatArray:
    """Typical one-step change per series (for clipping bursts); never zero."""
    diffs = np.abs(np.diff(history, axis=0))
    if diffs.shape[0] == 0:  # one observation: no change seen yet
        diffs = np.zeros((1, history.shape[1]))
    med = np.median(diffs, axis=0) * 1.4826
    fallback = np.abs(history).mean(axis=0) * 0.1 + 1e-9
    return np.where(med > 0, med, fallback)
