"""Traffic forecasting for the Predictive Resource Allocator.

One interface (:class:`Forecaster`: ``fit`` / ``predict`` with quantiles, many series at
once), several models built by name with :func:`make_forecaster`, a rolling-origin
backtester (:mod:`vnstitch.forecast.backtest`) and the data sources: traffic history
(:mod:`~vnstitch.forecast.data`), application profiles (:mod:`~vnstitch.forecast.profiles`),
calendar / user-behaviour regressors (:mod:`~vnstitch.forecast.exog`) and cold start for
new stitches (:mod:`~vnstitch.forecast.coldstart`). Heavy model modules (statsforecast,
torch) load only when such a model is built.
"""

from vnstitch.forecast.backtest import RollingForecast, rolling_forecasts, score
from vnstitch.forecast.base import (
    MODEL_NAMES,
    DataError,
    Forecast,
    Forecaster,
    ForecastError,
    PointForecaster,
    make_forecaster,
)
from vnstitch.forecast.data import SeriesData, load_series

__all__ = [
    "MODEL_NAMES",
    "DataError",
    "Forecast",
    "ForecastError",
    "Forecaster",
    "PointForecaster",
    "RollingForecast",
    "SeriesData",
    "load_series",
    "make_forecaster",
    "rolling_forecasts",
    "score",
]
