"""statsforecast AutoETS and AutoARIMA as reference models users know.

Theory of operation. statsforecast fits one model per series, so :meth:`_fit_point`
loops over series (there is no batched path in statsforecast). A rolling forecast does
not refit: each origin calls the fitted model's ``forward(y=values[:t, j], h)``, which
re-runs the fitted model's filter over the data seen so far with the parameters fixed.
Quantiles use the shared empirical-residual method (so all models are calibrated the
same way); the calibration uses every 12th origin because each forward call is a
full pass over the history.

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

from vnstitch.forecast.base import FloatArray, ForecastError, IntArray, PointForecaster


class _StatsforecastModel(PointForecaster):
    calibration_stride = 12

    def __init__(self, season: int, **kwargs: Any) -> None:
        kwargs.setdefault("calibration_steps", 3 * season)
        super().__init__(season, **kwargs)
        self._models: list[Any] = []

    def _new_model(self) -> Any:
        raise NotImplementedError

    def _fit_point(self, history: FloatArray) -> None:
        self._models = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j in range(history.shape[1]):
                try:
                    self._models.append(self._new_model().fit(history[:, j].copy()))
                except Exception as exc:  # statsforecast raises bare errors on odd series
                    raise ForecastError(f"{self.name}: fit failed on series {j}: {exc}") from exc

    def _roll_point(self, values: FloatArray, origins: IntArray, horizon: int) -> FloatArray:
        out = np.empty((origins.size, horizon, values.shape[1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j, model in enumerate(self._models):
                col = np.ascontiguousarray(values[:, j])
                for i, t in enumerate(origins):
                    res = model.forward(y=col[: int(t)], h=horizon)
                    out[i, :, j] = res["mean"]
        bad = ~np.isfinite(out)
        if bad.any():  # a diverging reference forecast falls back to the last value
            last = values[origins - 1][:, None, :].repeat(horizon, axis=1)
            out[bad] = last[bad]
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
