"""The forecasting interface: one ``Forecaster`` contract, many implementations.

Theory of operation. A forecaster works on many series at once: ``history`` is a 2-D
array ``(T, N)`` (time x series). ``fit(history, exog)`` learns parameters;
``predict(horizon, exog, quantiles)`` returns a :class:`Forecast` holding the mean and
the requested quantiles, each ``(horizon, N)``.

Most models here derive from :class:`PointForecaster`, which splits a model into two
pieces so every model gets the same, cheap machinery for free:

* ``_fit_point(history)`` learns parameters (once, on a training window);
* ``_roll_point(values, origins, horizon)`` returns the point forecast made at each
  origin ``t`` using **only** ``values[:t]`` with the fitted parameters (state is
  filtered forward, nothing is re-estimated). A forecast "from the end" is just the
  origin ``t = T``.

On top of that the base class provides:

* **quantiles** from the empirical distribution of the model's own ``h``-step errors
  on the last part of the training window (per series, per horizon step), added to the
  mean; monotone in ``q`` by construction;
* **exogenous regressors** (calendar, active users): a shared-design least-squares
  regression ``Y ~ X B`` is removed before the model sees the series and added back to
  every forecast (regression with model errors);
* **non-negativity**: when the training history is non-negative (traffic, bytes) the
  mean and every quantile are clipped at zero;
* ``rolling(values, origins, horizon, quantiles)``, which the backtester and the
  allocator use to replay a trace without refitting per origin;
* ``notes``: what a model could not do as asked on this history (e.g. a reference model
  that fell back to the naive forecast for a constant series); the backtester copies
  them into its result, so a fallback is reported instead of raised.

A model never needs more than one observation: with too little history for its own
parameters it says so in ``notes`` and forecasts like the naive model.

The registry :func:`make_forecaster` builds any model by name, importing its module
only then (so ``import vnstitch.forecast`` does not pull in torch or statsforecast).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from vnstitch.errors import VnstitchError

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
IntArray = np.ndarray[Any, np.dtype[np.int64]]

#: The 80% interval the backtester scores: always computed even if not requested.
INTERVAL_80 = (0.1, 0.9)


class ForecastError(VnstitchError):
    """Root of every error raised by :mod:`vnstitch.forecast`."""


class DataError(ForecastError):
    """Bad input data; the message names file, line and column (or field)."""


@dataclass(frozen=True)
class Forecast:
    """A forecast for ``horizon`` steps of ``n_series`` series.

    ``mean`` is ``(horizon, n_series)``; ``quantiles[q]`` is ``(horizon, n_series)``
    and non-decreasing in ``q``.
    """

    mean: FloatArray
    quantiles: dict[float, FloatArray] = field(default_factory=dict)

    @property
    def horizon(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_series(self) -> int:
        return int(self.mean.shape[1])


@runtime_checkable
class Forecaster(Protocol):
    """What every model offers (see the module docstring)."""

    name: str

    def fit(self, history: FloatArray, exog: FloatArray | None = None) -> Self: ...

    def predict(self, horizon: int, exog: FloatArray | None = None,
                quantiles: Sequence[float] = (0.1, 0.5, 0.9)) -> Forecast: ...


def check_history(history: object, what: str = "history") -> FloatArray:
    """A finite float64 ``(T, N)`` array, or a :class:`ForecastError` saying why not."""
    arr = np.asarray(history, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ForecastError(f"{what}: expected a 2-D array (time x series), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ForecastError(f"{what}: need at least 1 time step and 1 series, got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        t, n = np.argwhere(bad)[0]
        raise ForecastError(f"{what}: non-finite value at time {t}, series {n} "
                            "(repair gaps with vnstitch.forecast.data first)")
    return arr


def check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    qs = tuple(sorted({float(q) for q in quantiles}))
    for q in qs:
        if not 0.0 < q < 1.0:
            raise ForecastError(f"quantile {q} is not strictly between 0 and 1")
    return qs


def check_horizon(horizon: int) -> int:
    if int(horizon) != horizon or horizon < 1:
        raise ForecastError(f"horizon must be a positive integer, got {horizon!r}")
    return int(horizon)


class PointForecaster(ABC):
    """Base of the models: point forecasts plus shared quantiles, exog and rolling."""

    name: str = "point"
    #: Stride between calibration origins (expensive models use a larger one).
    calibration_stride: int = 1

    def __init__(self, season: int, *, calibration_steps: int | None = None,
                 clip_nonnegative: bool = True) -> None:
        if season < 1:
            raise ForecastError(f"{self.name}: season must be >= 1, got {season}")
        self.season = int(season)
        self.calibration_steps = calibration_steps
        self.clip_nonnegative = clip_nonnegative
        self._history: FloatArray | None = None
        self._exog: FloatArray | None = None
        self._beta: FloatArray | None = None
        self._nonneg = False
        self._error_cache: dict[int, FloatArray] = {}
        self.notes: list[str] = []

    # -- to implement -------------------------------------------------------------
    @abstractmethod
    def _fit_point(self, history: FloatArray) -> None:
        """Learn parameters from ``history`` (T, N) (already exog-adjusted)."""

    @abstractmethod
    def _roll_point(self, values: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
        """Point forecasts ``(len(origins), horizon, N)``; origin ``t`` sees ``values[:t]``."""

    # -- public API ----------------------------------------------------------------
    def fit(self, history: FloatArray, exog: FloatArray | None = None) -> Self:
        hist = check_history(history)
        self.notes = []
        self._nonneg = self.clip_nonnegative and bool((hist >= 0).all())
        self._beta = None
        self._exog = None
        if exog is not None:
            x = self._check_exog(exog, hist.shape[0], "exog")
            # an intercept is fitted but left in the series: only the regressors'
            # effect is removed, so a dummy column does not absorb the mean level
            design = np.column_stack([np.ones(x.shape[0]), x])
            coef = np.linalg.lstsq(design, hist, rcond=None)[0]
            beta = np.asarray(coef[1:], dtype=np.float64)
            self._beta = beta
            self._exog = x
            hist = hist - x @ beta
        self._history = hist
        self._error_cache = {}
        self._fit_point(hist)
        return self

    def predict(self, horizon: int, exog: FloatArray | None = None,
                quantiles: Sequence[float] = (0.1, 0.5, 0.9)) -> Forecast:
        hist = self._fitted()
        horizon = check_horizon(horizon)
        qs = check_quantiles(quantiles)
        t_end = hist.shape[0]
        origin = np.array([t_end], dtype=np.int64)
        mean = self._roll_point(hist, origin, horizon)[0]
        if self._beta is not None:
            if exog is None:
                raise ForecastError(f"{self.name}: fitted with exog, so predict needs exog "
                                    f"for the {horizon} future steps")
            fx = self._check_exog(exog, horizon, "future exog")
            mean = mean + fx @ self._beta
        offsets = self._offsets(horizon, qs)
        return self._package(mean[None], offsets, qs, first=0)

    def rolling(self, values: FloatArray, origins: Sequence[int] | IntArray, horizon: int,
                quantiles: Sequence[float] = (0.1, 0.5, 0.9),
                exog: FloatArray | None = None) -> tuple[FloatArray, dict[float, FloatArray]]:
        """Forecasts made at each origin with the fitted parameters (no refit).

        ``values`` is the full trace ``(T, N)``; origin ``t`` uses only ``values[:t]``.
        ``exog`` (if the model was fitted with it) must cover rows up to
        ``max(origins) + horizon - 1``. Returns ``mean (n, H, N)`` and quantiles.
        """
        self._fitted()
        vals = check_history(values, "values")
        horizon = check_horizon(horizon)
        qs = check_quantiles(quantiles)
        orig = np.asarray(origins, dtype=np.int64)
        if orig.size and (orig.min() < 1 or orig.max() > vals.shape[0]):
            raise ForecastError(f"{self.name}: origins must lie in [1, {vals.shape[0]}]")
        steps = np.arange(horizon)
        if self._beta is not None:
            need = int(orig.max()) + horizon if orig.size else 0
            if exog is None:
                raise ForecastError(f"{self.name}: fitted with exog, so rolling needs exog")
            x = self._check_exog(exog, need, "exog", at_least=True)
            reg = x @ self._beta
            vals = vals - reg[: vals.shape[0]]
            mean = self._roll_point(vals, orig, horizon) + reg[orig[:, None] + steps]
        else:
            mean = self._roll_point(vals, orig, horizon)
        return self._package_many(mean, self._offsets(horizon, qs), qs)

    # -- helpers ---------------------------------------------------------------------
    def _fitted(self) -> FloatArray:
        if self._history is None:
            raise ForecastError(f"{self.name}: predict/rolling called before fit")
        return self._history

    def _check_exog(self, exog: FloatArray, rows: int, what: str,
                    at_least: bool = False) -> FloatArray:
        x = np.asarray(exog, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        ok_rows = x.shape[0] >= rows if at_least else x.shape[0] == rows
        if x.ndim != 2 or not ok_rows:
            raise ForecastError(f"{self.name}: {what} has shape {x.shape}; need "
                                f"{'at least ' if at_least else ''}{rows} rows x k columns")
        if self._beta is not None and x.shape[1] != self._beta.shape[0]:
            raise ForecastError(f"{self.name}: {what} has {x.shape[1]} columns, "
                                f"fitted with {self._beta.shape[0]}")
        if not np.isfinite(x).all():
            raise ForecastError(f"{self.name}: {what} has non-finite values")
        return x

    def calibration_errors(self, horizon: int) -> FloatArray:
        """Out-of-state ``h``-step errors ``(C, horizon, N)`` on the training window's tail."""
        if horizon in self._error_cache:
            return self._error_cache[horizon]
        hist = self._fitted()
        t_len = hist.shape[0]
        span = self.calibration_steps or max(t_len // 3, min(t_len - horizon - 1, 2 * self.season))
        last = t_len - horizon  # last origin whose h-step actuals are all known
        first = max(1, last - span)
        origins = np.arange(first, last + 1, self.calibration_stride, dtype=np.int64)
        if origins.size == 0:
            errors = np.zeros((1, horizon, hist.shape[1]))
        else:
            fc = self._roll_point(hist, origins, horizon)
            actual = hist[origins[:, None] + np.arange(horizon)]
            errors = actual - fc
        self._error_cache[horizon] = errors
        return errors

    def _offsets(self, horizon: int, qs: tuple[float, ...]) -> FloatArray:
        errors = self.calibration_errors(horizon)
        allq = tuple(sorted(set(qs) | set(INTERVAL_80)))
        return np.quantile(errors, allq, axis=0) if allq else np.zeros((0, horizon, 1))

    def _package(self, mean: FloatArray, offsets: FloatArray, qs: tuple[float, ...],
                 first: int) -> Forecast:
        m, qd = self._package_many(mean, offsets, qs)
        return Forecast(mean=m[first], quantiles={q: v[first] for q, v in qd.items()})

    def _package_many(self, mean: FloatArray, offsets: FloatArray,
                      qs: tuple[float, ...]) -> tuple[FloatArray, dict[float, FloatArray]]:
        allq = tuple(sorted(set(qs) | set(INTERVAL_80)))
        out: dict[float, FloatArray] = {}
        for i, q in enumerate(allq):
            band = mean + offsets[i][None]
            out[q] = np.maximum(band, 0.0) if self._nonneg else band
        if self._nonneg:
            mean = np.maximum(mean, 0.0)
        # floating error must never break monotonicity across quantiles
        prev: FloatArray | None = None
        for q in allq:
            if prev is not None:
                out[q] = np.maximum(out[q], prev)
            prev = out[q]
        return mean, out


#: name -> "module:Class" of every registered model; modules import lazily.
REGISTRY: dict[str, str] = {
    "naive": "vnstitch.forecast.baselines:Naive",
    "seasonal_naive": "vnstitch.forecast.baselines:SeasonalNaive",
    "ets": "vnstitch.forecast.ets:ExponentialSmoothing",
    "sf_autoets": "vnstitch.forecast.sf:StatsforecastAutoETS",
    "sf_autoarima": "vnstitch.forecast.sf:StatsforecastAutoARIMA",
    "lstm": "vnstitch.forecast.lstm:GlobalLSTM",
    "lagreg": "vnstitch.forecast.lagreg:LagRegression",
    "auto": "vnstitch.forecast.auto:AutoForecaster",
}

MODEL_NAMES: tuple[str, ...] = tuple(REGISTRY)


def forecaster_class(name: str) -> Callable[..., Forecaster]:
    if name not in REGISTRY:
        raise ForecastError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    factory: Callable[..., Forecaster] = getattr(importlib.import_module(module), cls)
    return factory


def make_forecaster(name: str, season: int, **options: Any) -> Forecaster:
    """Build the model called ``name`` (see :data:`MODEL_NAMES`) for period ``season``."""
    return forecaster_class(name)(season, **options)
