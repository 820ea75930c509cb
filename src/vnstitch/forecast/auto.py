"""``auto``: one model for all series, chosen by a rolling-origin backtest on the training window.

Theory of operation (the rule in one paragraph). Every candidate (default: seasonal naive
and ``lagreg``, the L1 lag regression that shrinks to the naive forecast per series and
step; ``naive``, ``ets``, ``lstm`` or the statsforecast models can be added through
``candidates``) is fitted on the training history and backtested on its tail by rolling
origin: at the same latest origins for every candidate, each forecast sees only data
before its origin (``lagreg``'s are out of sample: it is refitted without that tail).
Each candidate's score is its error pooled over all series, origins and steps
1..``horizon`` (Σ|error|, so the series that carry the traffic carry the decision). The
choice is shrunk toward a robust default: ``auto`` uses the default (``lagreg``) for every
series unless a rival's pooled score is below ``switch_margin`` (0.7) times the default's,
in which case that rival is used for every series. One choice for the whole set, not one
per series: per-series choices on a short tail mostly fit its noise (on held-out data
they cost up to 2.3x the best candidate's error), and a pooled score over many series
and origins is what carries over to the test window. The margin was checked by
leave-one-data-set-out (``benchmarks/generalisation.py``): picked on the other sets it
is 0.7 for every held-out set but one. Nothing after the training window is looked at.
Quantiles come from the chosen candidate's calibration errors on those origins
(out-of-sample for ``lagreg``).
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


def pooled_choice(candidate_mae: FloatArray, candidates: Sequence[str], default: str,
                  switch_margin: float) -> int:
    """The rule: the candidate with the lowest error summed over series (``candidate_mae``
    is ``(K, N)``), unless it is not below ``switch_margin`` x the default's."""
    pooled = candidate_mae.sum(axis=1)  # (K,): error summed over series
    pick = int(np.argmin(pooled))
    if default in candidates:
        d = list(candidates).index(default)
        # shrinkage toward the default: a rival must be clearly better on the tail
        if not pooled[pick] < switch_margin * pooled[d]:
            pick = d
    return pick


class AutoForecaster(PointForecaster):
    """Picks one candidate for all series by pooled backtest (see the module docstring)."""

    name = "auto"

    def __init__(self, season: int, *, horizon: int = 1,
                 candidates: Sequence[str] = DEFAULT_CANDIDATES,
                 candidate_options: dict[str, dict[str, Any]] | None = None,
                 default: str = "lagreg", switch_margin: float = 0.7,
                 **kwargs: Any) -> None:
        super().__init__(season, **kwargs)
        if not candidates or "auto" in candidates:
            raise ForecastError("auto: candidates must be a non-empty list of other models")
        self.horizon = horizon
        self.candidates = tuple(candidates)
        self.candidate_options = candidate_options or {}
        if not 0 < switch_margin <= 1:
            raise ForecastError(f"auto: switch_margin must be in (0, 1], got {switch_margin}")
        self.default = default
        self.switch_margin = switch_margin
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
        self.use(pooled_choice(self.candidate_mae, self.candidates, self.default,
                               self.switch_margin))

    def use(self, k: int) -> None:
        """Forecast every series with candidate ``k`` (a choice pooled elsewhere, e.g.
        over all chunks of a parallel backtest)."""
        if not 0 <= k < len(self.candidates) or not self._models:
            raise ForecastError(f"auto: no fitted candidate {k}")
        self.choice = np.full(self.candidate_mae.shape[1], k, dtype=np.int64)
        self._error_cache = {}

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
