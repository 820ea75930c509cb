"""``auto``: per-series model choice by rolling-origin backtest on the training window.

Theory of operation. Every candidate (default: seasonal naive and ``lagreg``, the L1 lag
regression that falls back to naive per series; ``naive``, ``ets``, ``lstm`` or the
statsforecast models can be added through ``candidates``) is fitted on the training
history. Each candidate's rolling forecasts over the tail of the training window
(origins before the end of training only, each seeing only data before it) give its mean
absolute error per series over steps 1..``horizon`` on the same latest origins for every
candidate (``lagreg`` reports out-of-sample holdout errors there); each series then uses
the candidate with the lowest error. Nothing after the training window is looked at.
Rolling forecasts gather, per series, the chosen candidate's forecast; quantiles come
from the chosen candidate's calibration errors on those origins (out-of-sample for
``lagreg``), so they reflect the mix actually chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vnstitch.forecast.base import (
    FloatArray,
    ForecastError,
    IntArray,
    PointForecaster,
    forecaster_class,
)

# lagreg contains naive (shrinkage 0); seasonal naive covers strongly periodic series;
# ets rarely won a series on Abilene and costs most of the fit time, so it is opt-in
DEFAULT_CANDIDATES = ("seasonal_naive", "lagreg")
#: candidates trained for a horizon: auto passes its own unless the options say otherwise
HORIZON_AWARE = frozenset({"lagreg", "lstm"})


class AutoForecaster(PointForecaster):
    """Picks the best candidate per series (see the module docstring)."""

    name = "auto"

    def __init__(self, season: int, *, horizon: int = 1,
                 candidates: Sequence[str] = DEFAULT_CANDIDATES,
                 candidate_options: dict[str, dict[str, Any]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(season, **kwargs)
        if not candidates or "auto" in candidates:
            raise ForecastError("auto: candidates must be a non-empty list of other models")
        self.horizon = horizon
        self.candidates = tuple(candidates)
        self.candidate_options = candidate_options or {}
        self._models: list[PointForecaster] = []
        self._candidate_errors: list[FloatArray] = []
        self.choice: IntArray = np.zeros(0, dtype=np.int64)
        self.candidate_mae: FloatArray = np.zeros((0, 0))

    def _fit_point(self, history: FloatArray) -> None:
        self._models = []
        errs: list[FloatArray] = []
        for name in self.candidates:
            opts = dict(self.candidate_options.get(name, {}))
            if name in HORIZON_AWARE:
                opts.setdefault("horizon", self.horizon)
            model = forecaster_class(name)(self.season, **opts)
            if not isinstance(model, PointForecaster):
                raise ForecastError(f"auto: candidate {name!r} lacks rolling support")
            model.clip_nonnegative = self.clip_nonnegative
            model.fit(history)
            errs.append(model.calibration_errors(self.horizon))  # (C, H, N), training tail
            self._models.append(model)
        # score every candidate on the same (latest) origins of the training window
        rows = min(e.shape[0] for e in errs)
        self.candidate_mae = np.stack([np.abs(e[-rows:]).mean(axis=(0, 1)) for e in errs])
        self._candidate_errors = [e[-rows:] for e in errs]
        self.choice = np.argmin(self.candidate_mae, axis=0).astype(np.int64)

    def _roll_point(self, values: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
        if not self._models:
            raise ForecastError("auto: not fitted")
        out = np.empty((origins.size, horizon, values.shape[1]))
        for k, model in enumerate(self._models):
            cols = np.flatnonzero(self.choice == k)
            if cols.size == 0:
                continue
            out[:, :, cols] = model._roll_point(values, origins, horizon)[:, :, cols]
        return out

    def calibration_errors(self, horizon: int) -> FloatArray:
        """Per series, the chosen candidate's own calibration errors (same origins)."""
        if horizon != self.horizon or not self._candidate_errors:
            return super().calibration_errors(horizon)
        out = np.empty_like(self._candidate_errors[0])
        for k, errors in enumerate(self._candidate_errors):
            cols = np.flatnonzero(self.choice == k)
            out[:, :, cols] = errors[:, :, cols]
        return out

    def chosen(self) -> dict[str, int]:
        """How many series each candidate won."""
        return {name: int((self.choice == k).sum()) for k, name in enumerate(self.candidates)}
