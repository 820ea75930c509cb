"""Calibrated predictive allocation: online conformal errors, ACI, discrete newsvendor,
causality, and choices made on training data only."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.allocate.calibrate import (
    CalibratedChoice,
    calibrated_units,
    churn_candidates,
    controlled,
    controlled_many,
    select,
)
from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.online import GRID, Setting, local_scale, online_targets
from vnstitch.allocate.policy import FloatArray, IntArray, ScalingRules


def test_discrete_newsvendor_matches_brute_force() -> None:
    # Errors known in the calibration window; the target for each later step must be the
    # cheapest whole number of 25-unit VMs over that error distribution.
    rng = np.random.default_rng(1)
    calib, n = 800, 3
    center = np.full((calib + 20, n), 40.0)
    center[calib:] = rng.uniform(5.0, 60.0, size=(20, n))
    actual = center + rng.gamma(2.0, 3.0, size=center.shape) - 6.0
    for cu in (1.0, 10.0, 50.0):
        q = cu / (cu + 1.0)
        got = online_targets(center, actual, calib=calib, lead=1, q=q, unit=25.0,
                             setting=Setting(), refresh=10_000)
        z = actual[:calib] - center[:calib]
        for i in range(20):
            for s in range(n):
                # The policy sees the errors as GRID quantiles; brute force on the same.
                zq = np.quantile(z[:, s], (np.arange(GRID) + 0.5) / GRID)
                d = np.maximum(center[calib + i, s] + zq, 0.0)
                costs = [np.mean(cu * np.maximum(d - 25.0 * k, 0) + np.maximum(25.0 * k - d, 0))
                         for k in range(0, 8)]
                assert costs[got[i, s]] == pytest.approx(min(costs), rel=1e-9)


def test_discrete_newsvendor_can_round_down() -> None:
    # Demand 26 +- tiny: the 0.5-quantile is 26, but one VM of 25 costs 1, two cost 24.
    center = np.full((60, 1), 26.0)
    actual = center + np.linspace(-0.1, 0.1, 60)[:, None]
    got = online_targets(center, actual, calib=59, lead=1, q=0.5, unit=25.0, setting=Setting())
    assert got[0, 0] == 1


def test_min_units_is_honoured() -> None:
    center = np.full((40, 1), 0.1)
    got = online_targets(center, center, calib=39, lead=1, q=0.5, unit=25.0, setting=Setting(),
                         min_units=1)
    assert got[0, 0] == 1


def test_targets_use_only_demand_seen_lead_steps_before() -> None:
    rng = np.random.default_rng(3)
    center = rng.uniform(10, 20, size=(400, 2))
    actual = center + rng.normal(0, 2, size=center.shape)
    for setting in (Setting(), Setting("last", 3, 0.9, 0.05)):
        for lead in (1, 2):
            base = online_targets(center, actual, calib=300, lead=lead, q=0.9, unit=0.1,
                                  setting=setting, refresh=7)
            changed = actual.copy()
            changed[350:] += 100.0  # demand from step 350 on changes
            other = online_targets(center, changed, calib=300, lead=lead, q=0.9, unit=0.1,
                                   setting=setting, refresh=7)
            # Targets up to step 350 + lead - 1 were decided before step 350 was seen.
            assert np.array_equal(base[: 50 + lead], other[: 50 + lead])
            assert not np.array_equal(base, other)


def test_aci_widens_after_misses() -> None:
    # Calibrated on calm errors, then the errors double: ACI raises the level (within
    # the range of the calibration errors, which a doubling stays inside).
    rng = np.random.default_rng(4)
    center = np.full((1000, 1), 100.0)
    noise = rng.normal(0, 1, size=center.shape)
    noise[500:] *= 2.0
    actual = center + noise
    def run(setting: Setting) -> IntArray:
        return online_targets(center, actual, calib=500, lead=1, q=0.9, unit=0.1,
                              setting=setting, refresh=10_000)

    plain, aci = run(Setting()), run(Setting(gamma=0.05))
    covered_plain = np.mean(plain[-300:, 0] * 0.1 >= actual[-300:, 0])
    covered_aci = np.mean(aci[-300:, 0] * 0.1 >= actual[-300:, 0])
    assert covered_plain < 0.75
    assert covered_aci > covered_plain + 0.1
    assert covered_aci == pytest.approx(0.9, abs=0.05)


def test_mondrian_bins_condition_on_the_last_value() -> None:
    # On/off demand with a useless flat forecast: errors after "on" are large, after
    # "off" small. Binning by the last value seen reserves more after "on".
    rng = np.random.default_rng(5)
    state = np.zeros(1200)
    for i in range(1, 1200):
        state[i] = state[i - 1] if rng.random() < 0.9 else 1.0 - state[i - 1]
    actual = (1.0 + 80.0 * state + rng.uniform(0, 1, 1200))[:, None]
    center = np.full_like(actual, 10.0)
    got = online_targets(center, actual, calib=900, lead=1, q=0.8, unit=1.0,
                         setting=Setting("last", 3))
    after_on = state[899:1199] > 0.5
    assert got[after_on, 0].mean() > 70.0
    assert got[~after_on, 0].mean() < 10.0


def test_local_scale_is_causal() -> None:
    errors = np.zeros((10, 1))
    errors[5, 0] = 100.0
    floor = np.array([1e-3])
    for lead in (1, 2):
        s = local_scale(errors, lead, 0.5, floor)
        assert np.all(s[: 5 + lead] <= 1e-3 + 1e-12)  # the spike is unseen before 5 + lead
        assert s[5 + lead, 0] == pytest.approx(50.0)
    assert np.all(local_scale(errors, 1, None, floor) == 1.0)


@pytest.mark.parametrize("min_units", [0, 1])
def test_batched_churn_control_matches_the_controller(min_units: int) -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 30, size=(300, 7))
    candidates = churn_candidates(ScalingRules(unit=1.0, min_units=min_units))
    for rules, units in zip(candidates, controlled_many(targets, candidates), strict=True):
        assert np.array_equal(controlled(targets, rules), units), rules


def test_select_ignores_data_after_calibration() -> None:
    rng = np.random.default_rng(2)
    actual = rng.gamma(5.0, 2.0, size=(300, 2))
    center = actual + rng.normal(0, 1.0, size=actual.shape)
    def choose(y: FloatArray) -> CalibratedChoice:
        return select(center[:200], y[:200], 1, c_under=10.0, c_over=1.0,
                      base=ScalingRules(unit=0.1), churn_budget=100.0, step_seconds=300.0)

    a = choose(actual)
    actual2 = actual.copy()
    actual2[200:] *= 50.0  # the future changes; the choice must not
    b = choose(actual2)
    assert a == b
    units = calibrated_units(center, actual, calib_steps=200, lead=1, q=10 / 11, choice=a)
    assert units.shape == (100, 2)
    # Calibrated at q = 10/11: roughly that share of cells is covered.
    covered = np.mean(units * 0.1 >= actual[200:])
    assert 0.8 <= covered <= 0.99


def test_select_respects_the_churn_budget() -> None:
    rng = np.random.default_rng(6)
    actual = rng.gamma(5.0, 2.0, size=(400, 3))
    center = actual + rng.normal(0, 2.0, size=actual.shape)
    def choose(budget: float) -> CalibratedChoice:
        return select(center, actual, 1, c_under=10.0, c_over=1.0,
                      base=ScalingRules(unit=0.1), churn_budget=budget, step_seconds=300.0)

    free = choose(1e9)
    tight = choose(free.train_changes_per_hour * 0.6)
    assert tight.train_changes_per_hour <= free.train_changes_per_hour * 0.6 + 1e-9
    assert tight.train_cost >= free.train_cost


def test_short_calibration_and_bad_settings_are_rejected() -> None:
    with pytest.raises(AllocateError):
        select(np.zeros((3, 1)), np.zeros((3, 1)), 1, c_under=1.0, c_over=1.0,
               base=ScalingRules(unit=1.0), churn_budget=1.0, step_seconds=60.0)
    with pytest.raises(AllocateError):
        Setting(key="tomorrow")
    with pytest.raises(AllocateError):
        online_targets(np.zeros((5, 1)), np.zeros((5, 1)), calib=1, lead=1, q=0.5, unit=1.0,
                       setting=Setting())
