"""A backtest split over workers forecasts exactly as one process does.

``lagreg`` shares the network total across series and ``auto`` makes one pooled choice,
so both would change if chunks were forecast on their own: the control shows that."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.forecast.backtest import rolling_forecasts
from vnstitch.forecast.compare import chunked_rolling, model_options, run_backtest
from vnstitch.sweep.engines import make_engine

SEASON = 24


def _traffic(n: int = 7, days: int = 8, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(days * SEASON)
    shape = 1.0 + 0.6 * np.sin(2 * np.pi * t / SEASON)
    level = rng.uniform(1.0, 20.0, n)
    noise = rng.lognormal(0.0, 0.3, (t.size, n))
    return np.asarray(shape[:, None] * level[None] * noise)


@pytest.mark.parametrize("model", ["lagreg", "auto", "seasonal_naive", "ets"])
def test_chunks_equal_one_process(model: str) -> None:
    values = _traffic()
    start, horizon = 6 * SEASON, 3
    want = rolling_forecasts(model, values, start, horizon, season=SEASON,
                             options=model_options(model, horizon))
    got = chunked_rolling(model, values, start, horizon, (0.1, 0.5, 0.9), season=SEASON,
                          engine=make_engine("serial"), chunk_series=2)
    assert np.array_equal(got.origins, want.origins)
    # bitwise, except ets: its vectorised state update over a wider array rounds
    # differently in the last bit (measured: 4e-15 absolute on values near 30)
    rtol = 1e-12 if model == "ets" else 0.0
    np.testing.assert_allclose(got.mean, want.mean, rtol=rtol, atol=0.0)
    for q in want.quantiles:
        np.testing.assert_allclose(got.quantiles[q], want.quantiles[q], rtol=rtol, atol=0.0)


def test_control_chunks_on_their_own_differ() -> None:
    """Without the shared total, lagreg on a chunk forecasts differently (the test above
    can fail)."""
    values = _traffic()
    start, horizon = 6 * SEASON, 3
    whole = rolling_forecasts("lagreg", values, start, horizon, season=SEASON,
                              options=model_options("lagreg", horizon))
    alone = rolling_forecasts("lagreg", values[:, :2], start, horizon, season=SEASON,
                              options=model_options("lagreg", horizon))
    assert not np.array_equal(alone.mean, whole.mean[:, :, :2])


def test_negative_series_keep_one_process_semantics() -> None:
    values = _traffic()
    values[:, 0] -= 5.0  # one series below zero: nothing is clipped, no log scale
    start, horizon = 6 * SEASON, 2
    want = rolling_forecasts("auto", values, start, horizon, season=SEASON,
                             options=model_options("auto", horizon))
    got = chunked_rolling("auto", values, start, horizon, (0.1, 0.5, 0.9), season=SEASON,
                          engine=make_engine("serial"), chunk_series=3)
    assert np.array_equal(got.mean, want.mean)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_engines_give_the_serial_scores(engine: str) -> None:
    values = _traffic(n=5, days=7)
    def backtest(engine_name: str | None) -> dict[str, dict[str, float]]:
        engine = None if engine_name is None else make_engine(engine_name, workers=2)
        scores, _ = run_backtest(values, season=SEASON, horizon=2, test_steps=SEASON,
                                 models=["naive", "auto"], quantiles=[0.1, 0.5, 0.9],
                                 engine=engine, chunk_series=2)
        return scores

    want, got = backtest(None), backtest(engine)
    for name in want:
        for key in ("nmae", "mase", "pinball", "coverage_80"):
            assert got[name][key] == want[name][key]


def test_chunk_notes_name_series_of_the_whole_set() -> None:
    values = _traffic(n=4, days=3)
    values[:, 3] = 5.0  # constant: the reference model cannot fit it
    rf = chunked_rolling("sf_autoarima", values, 2 * SEASON, 1, (0.1, 0.5, 0.9),
                         season=SEASON, engine=make_engine("serial"), chunk_series=2)
    assert any(n.endswith("constant series): series 3") for n in rf.notes)
