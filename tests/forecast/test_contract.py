"""One contract for every model: shapes, quantile order, no leakage, determinism, exog."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vnstitch.forecast import (
    MODEL_NAMES,
    Forecast,
    ForecastError,
    PointForecaster,
    make_forecaster,
)
from vnstitch.forecast.backtest import rolling_forecasts, score

SEASON = 24
# small and fast settings; the real ones are exercised by the benchmark
OPTIONS: dict[str, dict[str, Any]] = {
    "lstm": {"horizon": 4, "max_batches": 20, "eval_every": 10, "hidden": 8, "window": 6},
    "auto": {"horizon": 4},
}


def synthetic(t_len: int = 24 * 8, n: int = 3, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(t_len)[:, None]
    base = 10 + 5 * np.arange(n)[None, :]
    daily = 4 * np.sin(2 * np.pi * t / SEASON + np.arange(n)[None, :])
    return np.asarray(base + daily + rng.normal(0, 0.5, (t_len, n)), dtype=np.float64)


@pytest.fixture(params=MODEL_NAMES)
def name(request: pytest.FixtureRequest) -> str:
    n: str = request.param
    return n


def model(name: str) -> Any:
    return make_forecaster(name, SEASON, **OPTIONS.get(name, {}))


@pytest.fixture(scope="module")
def fits() -> dict[str, Any]:
    """Per model, one fit on ``synthetic()``, shared by the tests that only read a fitted
    model (fitting is the slow part for the statsforecast and LSTM models).
    ``test_deterministic`` compares it with a fresh fit, so sharing it hides nothing."""
    return {}


@pytest.fixture
def fitted(name: str, fits: dict[str, Any]) -> Any:
    if name not in fits:
        fits[name] = model(name).fit(synthetic())
    return fits[name]


def test_shapes_and_monotone_quantiles(fitted: Any) -> None:
    fc = fitted.predict(4, quantiles=(0.9, 0.1, 0.5))
    assert isinstance(fc, Forecast)
    assert fc.mean.shape == (4, 3)
    assert sorted(fc.quantiles) == [0.1, 0.5, 0.9]
    for q in fc.quantiles.values():
        assert q.shape == (4, 3)
        assert np.isfinite(q).all()
    assert (fc.quantiles[0.1] <= fc.quantiles[0.5]).all()
    assert (fc.quantiles[0.5] <= fc.quantiles[0.9]).all()
    assert (fc.quantiles[0.9] > fc.quantiles[0.1]).any()


def test_no_leakage_in_rolling(name: str) -> None:
    y = synthetic()
    start = y.shape[0] - 30
    base = rolling_forecasts(lambda: model(name), y, start, 3, season=SEASON)
    cut = start + 2
    y2 = y.copy()
    y2[cut:] += 1000.0  # the future changes wildly
    pert = rolling_forecasts(lambda: model(name), y2, start, 3, season=SEASON)
    before = base.origins <= cut
    np.testing.assert_allclose(base.mean[before], pert.mean[before])
    for q in base.quantiles:
        np.testing.assert_allclose(base.quantiles[q][before], pert.quantiles[q][before])
    assert not np.allclose(base.mean[~before], pert.mean[~before])


def test_deterministic(name: str, fitted: Any) -> None:
    a = fitted.predict(3)  # the shared fit (other tests have used it) and a fresh one
    b = model(name).fit(synthetic()).predict(3)
    np.testing.assert_array_equal(a.mean, b.mean)


def test_predict_equals_last_rolling_origin(fitted: Any) -> None:
    y = synthetic()
    m = fitted
    fc = m.predict(2)
    mean, _ = m.rolling(y, [y.shape[0]], 2)
    np.testing.assert_allclose(fc.mean, mean[0])


def test_exog_regression(name: str) -> None:
    y = synthetic()
    x = np.zeros((y.shape[0] + 4, 1))
    x[::7] = 1.0  # a recurring event adds 20 to every series
    y = y + 20 * x[: y.shape[0]]
    m = model(name).fit(y, x[: y.shape[0]])
    fc = m.predict(4, exog=x[y.shape[0]:])
    assert fc.mean.shape == (4, 3)
    with pytest.raises(ForecastError, match="needs exog"):
        m.predict(4)


def test_errors(name: str, fitted: Any) -> None:
    m = model(name)
    with pytest.raises(ForecastError, match="before fit"):
        m.predict(3)
    with pytest.raises(ForecastError, match="non-finite"):
        m.fit(np.array([[1.0], [np.nan], [2.0]]))
    with pytest.raises(ForecastError, match="horizon"):
        fitted.predict(0)


def test_models_beat_noise_floor_on_seasonal_data() -> None:
    y = synthetic(24 * 12)
    start = y.shape[0] - 48
    naive = score(rolling_forecasts("naive", y, start, 6, season=SEASON), y, SEASON, start)
    ets = score(rolling_forecasts("ets", y, start, 6, season=SEASON), y, SEASON, start)
    assert ets["nmae"] < 0.6 * naive["nmae"]
    assert 0.6 < ets["coverage_80"] <= 1.0


def test_unknown_model() -> None:
    with pytest.raises(ForecastError, match="unknown model"):
        make_forecaster("prophet", 24)


@pytest.mark.parametrize("kind", ["one step", "two steps", "short", "constant", "all zero",
                                  "one season"])
def test_short_constant_and_zero_histories_never_raise(name: str, kind: str) -> None:
    """Every model forecasts from any history of >= 1 step; fallbacks are notes."""
    rng = np.random.default_rng(4)
    hist = {"one step": rng.random((1, 2)), "two steps": rng.random((2, 2)),
            "short": 5 * rng.random((10, 2)), "constant": np.full((60, 2), 3.0),
            "all zero": np.zeros((60, 2)), "one season": synthetic(SEASON, 2)}[kind]
    m = model(name).fit(hist)
    fc = m.predict(4)
    assert fc.mean.shape == (4, 2) and np.isfinite(fc.mean).all()
    for q in fc.quantiles.values():
        assert np.isfinite(q).all()
    if kind in ("constant", "all zero"):  # the last value is the only sane forecast
        np.testing.assert_allclose(fc.mean, np.repeat(hist[-1:], 4, axis=0), atol=1e-6)
    full = np.vstack([hist, 5 * rng.random((6, 2))])
    rf = rolling_forecasts(name, full,
                           hist.shape[0], 2, season=SEASON, options=OPTIONS.get(name, {}))
    assert np.isfinite(rf.mean).all()


def test_reference_models_note_their_fallbacks() -> None:
    """The statsforecast wrappers fall back per series and say so (no traceback)."""
    hist = np.column_stack([synthetic(60, 1)[:, 0], np.zeros(60), np.full(60, 2.0)])
    for name in ("sf_autoets", "sf_autoarima"):
        m = make_forecaster(name, SEASON).fit(hist)
        assert isinstance(m, PointForecaster)
        assert any("constant series" in n and "2 series" in n for n in m.notes), m.notes
        np.testing.assert_allclose(m.predict(3).mean[:, 1:], [[0.0, 2.0]] * 3)
        rf = rolling_forecasts(name, np.vstack([hist, hist[:5]]), 60, 2, season=SEASON)
        assert any("constant series" in n for n in rf.notes)
    # a series long enough to fit carries no note
    fitted = make_forecaster("sf_autoarima", SEASON).fit(synthetic(60, 1))
    assert isinstance(fitted, PointForecaster) and fitted.notes == []
