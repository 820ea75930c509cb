"""Data sources: application profiles, calendar / user regressors, cold start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vnstitch.forecast import DataError, ForecastError, make_forecaster
from vnstitch.forecast.coldstart import cold_start_forecast, most_similar
from vnstitch.forecast.exog import calendar_features, future_times, load_user_activity
from vnstitch.forecast.profiles import load_profiles

STEP = np.timedelta64(300, "s")
T0 = np.datetime64("2004-03-01T00:00")  # a Monday


def grid(n: int, start: np.datetime64 = T0) -> np.ndarray:
    return start + np.arange(n) * STEP


def test_default_profiles_ship_and_validate() -> None:
    profiles = load_profiles()
    assert {"video_conferencing", "database_access", "email", "bulk"} <= set(profiles)
    vc = profiles["video_conferencing"]
    assert np.isclose(np.mean(vc.diurnal), 1.0)
    day = vc.shape(grid(288))
    weekend = vc.shape(grid(288, np.datetime64("2004-03-06T00:00")))
    assert day[12 * 10] > 5 * day[12 * 3]  # 10:00 busier than 03:00
    np.testing.assert_allclose(weekend, day * vc.weekend_factor)
    assert vc.resources(np.array([100.0]))["cpu_cores"][0] == pytest.approx(2.0)


@pytest.mark.parametrize(("text", "match"), [
    ("version: 2\nprofiles: {}\n", "version: expected 1"),
    ("version: 1\nprofiles:\n  a: {diurnal: [1, 2], weekend_factor: 1, burstiness: 0,"
     " resources_per_mbps: {}}\n", r"profiles\.a\.diurnal: expected 24 numbers, got 2"),
    ("version: 1\nprofiles:\n  a: {diurnal: " + str([1] * 24) + ", weekend_factor: -1,"
     " burstiness: 0, resources_per_mbps: {}}\n", r"profiles\.a\.weekend_factor: must be"),
    ("version: 1\nprofiles:\n  a: {diurnal: " + str([1] * 24) + ", weekend_factor: 1,"
     " burstiness: 0, resources_per_mbps: {gpus: 1}}\n", r"resources_per_mbps: unknown"),
    ("version: 1\nprofiles: [\n", r"p\.yaml:\d+:\d+: invalid YAML"),
    ("version: 1\nprofiles:\n  a: {weekend_factor: 1}\n", r"profiles\.a\.diurnal: missing"),
])
def test_bad_profiles_name_the_field(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(DataError, match=match):
        load_profiles(p)


def test_calendar_features() -> None:
    times = grid(288 * 7)
    x, names = calendar_features(times, holidays=["2004-03-03"], fourier=1)
    assert names == ["weekend", "holiday", "sin_hour_1", "cos_hour_1"]
    assert x.shape == (288 * 7, 4)
    assert x[:, 0].sum() == 2 * 288  # Saturday and Sunday
    assert x[:, 1].sum() == 288 and x[288 * 2, 1] == 1
    fut = future_times(times[-1], 300, 3)
    assert str(fut[0]) == "2004-03-08T00:00:00"
    with pytest.raises(DataError, match="holidays"):
        calendar_features(times, holidays=["not-a-date"])


def test_user_activity_alignment(tmp_path: Path) -> None:
    p = tmp_path / "users.csv"
    p.write_text("timestamp,value\n" + "".join(
        f"2004-03-01 00:{5 * i:02d}:00,{10 + i}\n" for i in range(6)))
    x = load_user_activity(p, grid(4))
    np.testing.assert_allclose(x[:, 0], [10, 11, 12, 13])
    with pytest.raises(DataError, match="no user-activity value"):
        load_user_activity(p, grid(8))


def test_holiday_regressor_improves_forecast() -> None:
    times = grid(288 * 9, np.datetime64("2004-03-01T00:00"))
    x, _ = calendar_features(times, holidays=["2004-03-03", "2004-03-09"])
    rng = np.random.default_rng(0)
    y = 50 + 10 * np.sin(2 * np.pi * np.arange(times.size) / 288) + rng.normal(0, 1, times.size)
    y = (y - 30 * x[:, 1])[:, None]  # holidays carry 30 less traffic
    hist, fut = slice(0, 288 * 8), slice(288 * 8, 288 * 8 + 12)  # forecast into a holiday
    plain = make_forecaster("seasonal_naive", 288).fit(y[hist]).predict(12)
    with_x = make_forecaster("seasonal_naive", 288).fit(y[hist], x[hist]).predict(12, x[fut])
    err_plain = np.abs(plain.mean - y[fut]).mean()
    err_x = np.abs(with_x.mean - y[fut]).mean()
    assert err_x < 0.3 * err_plain


def test_cold_start_from_profile_then_own_history() -> None:
    prof = load_profiles()["video_conferencing"]
    future = grid(288)
    empty = cold_start_forecast(profile=prof, own=np.zeros(0), own_times=grid(0),
                                future=future, expected_mbps=10.0, season=288)
    assert empty.own_weight == 0.0 and empty.peer is None
    assert empty.forecast.mean.shape == (288, 1)
    assert empty.forecast.mean[12 * 10, 0] > empty.forecast.mean[12 * 3, 0]
    assert (empty.forecast.quantiles[0.1] <= empty.forecast.quantiles[0.9]).all()
    with pytest.raises(ForecastError, match="expected_mbps"):
        cold_start_forecast(profile=prof, own=np.zeros(0), own_times=grid(0), future=future)
    # a stitch with 4 days of its own history relies on its own model
    n = 288 * 4
    own = 20 * prof.shape(grid(n)) + 1
    later = grid(288, T0 + n * STEP)
    grown = cold_start_forecast(profile=prof, own=own, own_times=grid(n), future=later,
                                season=288, blend_seasons=3.0)
    assert grown.own_weight == 1.0
    half = cold_start_forecast(profile=prof, own=own[:288], own_times=grid(288),
                               future=grid(12, T0 + 288 * STEP), season=288)
    assert 0 < half.own_weight < 1


def test_most_similar_peer_is_found() -> None:
    times = grid(288 * 3)
    phase = 2 * np.pi * np.arange(times.size) / 288
    peers = np.stack([5 + np.sin(phase), 5 + np.cos(phase), 5 + np.sin(phase + np.pi)], axis=1)
    target = 2 + np.cos(phase[:100])
    assert most_similar(peers, times, target, times[:100]) == 1
    prof = load_profiles()["video_conferencing"]
    res = cold_start_forecast(profile=prof, own=target, own_times=times[:100],
                              future=grid(12, times[100]), peers=peers, peer_times=times,
                              season=288)
    assert res.peer == 1
