"""lagreg learns mean reversion that the naive forecast misses, and shrinks when it cannot."""

from __future__ import annotations

import numpy as np

from vnstitch.forecast import make_forecaster
from vnstitch.forecast.backtest import rolling_forecasts, score

SEASON = 24


def mean_reverting(t_len: int = 24 * 10, n: int = 4, seed: int = 3) -> np.ndarray:
    """AR(1) bursts (phi 0.5) on a daily profile: the last value over-reacts."""
    rng = np.random.default_rng(seed)
    t = np.arange(t_len)[:, None]
    profile = 20 + 6 * np.sin(2 * np.pi * t / SEASON)
    noise = np.zeros((t_len, n))
    for i in range(1, t_len):
        noise[i] = 0.5 * noise[i - 1] + rng.laplace(0, 2, n)
    return np.asarray(profile + noise, dtype=np.float64)


def test_beats_naive_on_mean_reverting_series() -> None:
    y = mean_reverting()
    start = y.shape[0] - 48
    nmae = {}
    for name in ("naive", "lagreg"):
        rf = rolling_forecasts(name, y, start, 3, season=SEASON,
                               options={"horizon": 3} if name == "lagreg" else {})
        nmae[name] = score(rf, y, SEASON, start)["nmae"]
    assert nmae["lagreg"] < 0.9 * nmae["naive"]


def test_shrinks_to_naive_on_a_random_walk() -> None:
    rng = np.random.default_rng(5)
    y = 100 + np.cumsum(rng.normal(0, 1, (24 * 10, 3)), axis=0)
    model = make_forecaster("lagreg", SEASON, horizon=2).fit(y)
    shrink = model.shrinkage()  # type: ignore[attr-defined]
    assert set(shrink) == {1, 2}
    for lam in shrink.values():
        assert all(0.0 <= x <= 1.0 for x in lam)
    fc = model.predict(2)
    # on a random walk the forecast stays close to the last value
    assert np.abs(fc.mean - y[-1]).max() < 3.0


def test_forecasts_scale_with_the_series() -> None:
    # log scale with an offset proportional to the level, ratio features of the total:
    # traffic in kbit/s or Mbit/s gives the same forecast up to the unit
    y = mean_reverting(t_len=24 * 8)
    a = make_forecaster("lagreg", SEASON, horizon=3).fit(y).predict(3)
    b = make_forecaster("lagreg", SEASON, horizon=3).fit(1000.0 * y).predict(3)
    np.testing.assert_allclose(b.mean, 1000.0 * a.mean, rtol=1e-6)
    np.testing.assert_allclose(b.quantiles[0.9], 1000.0 * a.quantiles[0.9], rtol=1e-6)


def test_winsorised_features_do_not_extrapolate_after_a_level_shift() -> None:
    # the flow jumps to four times its level: the long-window features reach values never
    # seen in training; clipped, the correction stays bounded and the forecast follows
    # the new level instead of reverting toward the old one
    y = mean_reverting(t_len=24 * 10, n=8)
    start = y.shape[0] - 24
    y[start - 3:] *= 4.0
    err = {}
    for q in (0.0, 0.01):
        rf = rolling_forecasts("lagreg", y, start, 3, season=SEASON,
                               options={"horizon": 3, "clip_quantile": q})
        err[q] = score(rf, y, SEASON, start)["nmae"]
    assert err[0.01] < 0.9 * err[0.0]
