"""Short histories: the calibration window follows the data, the online calibration warms
up with a reactive-safe rule, and the reactive guard keeps predictive from losing to the
rule it claims to beat on its own training window."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.allocate.baselines import reactive_units
from vnstitch.allocate.calibrate import select_forecasts
from vnstitch.allocate.evaluate import EvalConfig, evaluate_values
from vnstitch.allocate.forecasts import lead_point_forecasts
from vnstitch.allocate.online import MIN_ERRORS, WARMUP_UTILISATION, Setting, online_targets
from vnstitch.allocate.policy import FloatArray, ScalingRules
from vnstitch.allocate.providers.base import ResourceKind

SEASON = 48


def daily(days: int, n: int = 2, seed: int = 0) -> FloatArray:
    rng = np.random.default_rng(seed)
    t = np.arange(days * SEASON)[:, None]
    shape = 10 + 6 * np.sin(2 * np.pi * t / SEASON + np.arange(n)[None, :])
    return np.asarray(np.maximum(shape + rng.normal(0, 1.0, (t.shape[0], n)), 0.0))


def test_calibration_window_is_derived_from_the_training_length() -> None:
    cfg = EvalConfig(ResourceKind.BANDWIDTH, 288, 1, 0.1)
    assert cfg.calib_steps(288) == 144      # one day: its second half
    assert cfg.calib_steps(576) == 288      # two days: the second day
    assert cfg.calib_steps(11 * 288) == 4 * 288  # long: the configured 4 seasons
    assert cfg.calib_steps(10) >= 4


def test_warm_up_is_reactive_safe_until_enough_errors() -> None:
    actual = daily(3, 1)
    center = actual * 0.5  # a forecast that is badly low
    calib = 6
    got = online_targets(center, actual, calib=calib, lead=1, q=10 / 11, unit=0.1,
                         setting=Setting())
    warm = MIN_ERRORS - calib  # steps decided with fewer than MIN_ERRORS errors known
    want = np.ceil(actual[calib - 1:calib - 1 + warm] / (WARMUP_UTILISATION * 0.1) - 1e-9)
    np.testing.assert_array_equal(got[:warm], want.astype(np.int64))
    # control: after the warm-up the newsvendor on the known errors takes over (the
    # forecast is low by half, so the calibrated target is far above the forecast)
    after = got[warm:] * 0.1
    assert np.mean(after[:, 0] >= actual[calib + warm:, 0]) > 0.8


def test_reactive_guard_falls_back_only_when_predictive_loses_on_training() -> None:
    actual = daily(2, 2)
    half = actual.shape[0] // 2
    rules = ScalingRules(unit=0.1)
    noisy = actual + np.random.default_rng(1).normal(0, 4.0, actual.shape)

    def pick(center: FloatArray, reactive_alloc: FloatArray) -> bool:
        units = np.ceil(reactive_alloc / 0.1 - 1e-9).astype(np.int64)
        return select_forecasts([center], actual, 1, c_under=10.0, c_over=1.0, base=rules,
                                churn_budget=1e9, step_seconds=300.0,
                                reactive=units).reactive

    # a reactive rule that is perfect on the scoring half cannot be beaten: fall back
    assert pick(noisy, actual[half:])
    # control: a wasteful reactive rule (3x the demand) is beaten by a fair forecast
    assert not pick(actual + 0.2, 3.0 * actual[half:])


def test_one_day_history_runs_and_never_collapses() -> None:
    values = daily(2, 3)
    start = SEASON  # one day of history, one day of test
    cfg = EvalConfig(ResourceKind.BANDWIDTH, SEASON, 1, 0.1, test_steps=SEASON, sweep=False,
                     policies=("reactive", "predictive", "oracle"))
    paths = lead_point_forecasts(values, start, cfg.calib_steps(start), 1, model="auto",
                                 season=SEASON)
    res = evaluate_values(values, 300.0, cfg, paths)
    pred, reac = res.tallies["predictive"], res.tallies["reactive"]
    assert pred.unserved_fraction <= max(0.01, reac.unserved_fraction) + 0.05
    assert pred.cost(10.0) <= 1.1 * reac.cost(10.0)
    for choice in res.choices:  # the guard is reported per ratio
        assert isinstance(choice["reactive_guard"], bool)
    if res.choices[0]["reactive_guard"]:  # a fallback replays exactly the reactive rule
        np.testing.assert_allclose(
            res.alloc_total["predictive"],
            reactive_units(values, start, 1, 0.1).sum(axis=1) * 0.1)


def test_cold_start_reserves_from_profile_and_requested_bandwidth() -> None:
    from vnstitch.allocate.errors import AllocateError  # noqa: PLC0415
    from vnstitch.allocate.forecasts import cold_start_units  # noqa: PLC0415
    from vnstitch.forecast.profiles import load_profiles  # noqa: PLC0415

    profile = next(iter(load_profiles().values()))
    day = np.datetime64("2024-03-04T00:00") + np.arange(24) * np.timedelta64(1, "h")
    low = cold_start_units(profile=profile, expected_mbps=10.0, future=day, unit=0.1,
                           c_under=10.0)
    high = cold_start_units(profile=profile, expected_mbps=100.0, future=day, unit=0.1,
                            c_under=10.0)
    cheap = cold_start_units(profile=profile, expected_mbps=10.0, future=day, unit=0.1,
                             c_under=1.0)
    assert low.shape == (24,) and (low > 0).any()
    assert (high >= low).all() and high.sum() > 5 * low.sum()  # follows the request
    assert (cheap <= low).all() and cheap.sum() < low.sum()  # a higher quantile at r=10
    # the application's daily shape shows: not one flat level all day
    assert low.max() > low.min()
    with pytest.raises(AllocateError, match="expected_mbps"):  # no history, no request
        cold_start_units(profile=profile, expected_mbps=None, future=day, unit=0.1,
                         c_under=10.0)
