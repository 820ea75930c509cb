"""statsforecast AutoETS and AutoARIMA as reference models users know.

Theory of operation. statsforecast fits one model per series, so :meth:`_fit_point`
loops over series (there is no batched path in statsforecast). A rolling forecast does
not refit: each origin calls the fitted model's ``forward(y=values[:t, j], h)``, which
re-runs the fitted model's filter over the data seen so far with the parameters fixed.
Quantiles use the shared empirical-residual method (so all models are calibrated the
same way); the calibration uses every 12th origin because each forward call is a
full pass over the history.

*Never a traceback.* statsforecast raises bare errors on series it cannot fit (too short
for the model, constant, all zeros: ``IndexError`` inside AutoETS, ``ValueError: Not
enough data`` from AutoARIMA). The wrappers therefore fit what can be fitted and fall
back **per series** to the naive forecast (the last value; exact for a constant series)
where they cannot: a series shorter than :data:`MIN_FIT_STEPS`, a constant one, a fit
that raises, and any origin whose ``forward`` raises or returns non-finite values. Each
fallback is recorded in ``notes`` (copied into the backtest result), never raised.

Restrictions (so a fit finishes on 5-minute data; they are the reference's own limits):

* AutoETS: ``season_length`` as given; statsforecast drops seasonal ETS when the season
  is longer than 24 steps, so on daily-seasonal 5-minute data it selects non-seasonal
  ETS models. About 6 s per series of 3,000 points.
* AutoARIMA: a seasonal search with ``m = 288`` did not finish within 5 minutes for one
  series, so the default is a **non-seasonal** stepwise search (``seasonal=False``,
  ``max_p = max_q = 3``, ``approximation=True``), about 0.5 s per series.
  ``seasonal=True`` is accepted for short seasons.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from vnstitch.forecast.base import FloatArray, IntArray, PointForecaster

#: Fewer observations than this: the series is not fitted (naive forecast instead).
MIN_FIT_STEPS = 8


class _StatsforecastModel(PointForecaster):
    calibration_stride = 12

    def __init__(self, season: int, *, series_offset: int = 0, **kwargs: Any) -> None:
        kwargs.setdefault("calibration_steps", 3 * season)
        super().__init__(season, **kwargs)
        # index of the first series in the caller's set (a chunk of a parallel
        # backtest), so notes name the series as the caller knows them
        self.series_offset = series_offset
        self._models: list[Any] = []  # per series: a fitted model, or None (naive)

    def _new_model(self) -> Any:
        raise NotImplementedError

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _fit_point(self, history: FloatArray) -> None:
        self._models = []
        fallback: dict[str, list[int]] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j in range(history.shape[1]):
                col = np.ascontiguousarray(history[:, j])
                why = None
                model: Any = None
                if col.size < MIN_FIT_STEPS:
                    why = f"fewer than {MIN_FIT_STEPS} observations"
                elif np.ptp(col) == 0:
                    why = "constant series"
                else:
                    try:
                        model = self._new_model().fit(col.copy())
                    except Exception as exc:  # statsforecast raises bare errors
                        why = f"fit failed ({type(exc).__name__}: {exc})"
                if why is not None:
                    fallback.setdefault(why, []).append(j)
                self._models.append(model)
        for why, cols in fallback.items():
            shown = ", ".join(str(c + self.series_offset) for c in cols[:8]) + (
                " ..." if len(cols) > 8 else "")
            self._note(f"{self.name}: naive forecast for {len(cols)} series ({why}): "
                       f"series {shown}")

    def _roll_point(self, values: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
        # the naive forecast everywhere; fitted series overwrite it origin by origin
        out = np.repeat(values[origins - 1][:, None, :], horizon, axis=1)
        failed = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j, model in enumerate(self._models):
                if model is None:
                    continue
                col = np.ascontiguousarray(values[:, j])
                for i, t in enumerate(origins):
                    try:
                        res = np.asarray(model.forward(y=col[: int(t)], h=horizon)["mean"],
                                         dtype=np.float64)
                    except Exception:  # too short a prefix, numerical trouble
                        failed += 1
                        continue
                    if res.shape == (horizon,) and np.isfinite(res).all():
                        out[i, :, j] = res
                    else:
                        failed += 1
        if failed:
            self._note(f"{self.name}: naive forecast at {failed} (origin, series) pair(s) "
                       "where the fitted model could not forecast")
        return out


class StatsforecastAutoETS(_StatsforecastModel):
    """statsforecast ``AutoETS`` per series."""

    name = "sf_autoets"

    def _new_model(self) -> Any:
        from statsforecast.models import AutoETS  # noqa: PLC0415 (heavy; load on use)

        return AutoETS(season_length=self.season)


class StatsforecastAutoARIMA(_StatsforecastModel):
    """statsforecast ``AutoARIMA`` per series (non-seasonal restricted search by default)."""

    name = "sf_autoarima"

    def __init__(self, season: int, *, seasonal: bool = False, max_order: int = 3,
                 **kwargs: Any) -> None:
        super().__init__(season, **kwargs)
        self.seasonal = seasonal
        self.max_order = max_order

    def _new_model(self) -> Any:
        from statsforecast.models import AutoARIMA  # noqa: PLC0415 (heavy; load on use)

        return AutoARIMA(season_length=self.season if self.seasonal else 1,
                         seasonal=self.seasonal, max_p=self.max_order,
                         max_q=self.max_order, approximation=True)
