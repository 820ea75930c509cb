"""Calibrated predictive allocation: discrete newsvendor, causal scale, training-only choice."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.allocate.calibrate import (
    Conformal,
    calibrated_units,
    local_scale,
    select,
)
from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.policy import ScalingRules


def test_discrete_newsvendor_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    z = rng.gamma(2.0, 3.0, size=(400, 3)) - 6.0
    conf = Conformal.from_errors(z)
    center = rng.uniform(5.0, 60.0, size=(20, 3))
    scale = rng.uniform(0.5, 2.0, size=(20, 3))
    rules = ScalingRules(unit=25.0)
    for cu in (1.0, 10.0, 50.0):
        got = conf.units(center, scale, cu, 1.0, rules)
        for i in range(20):
            for n in range(3):
                d = center[i, n] + scale[i, n] * z[:, n]
                costs = [np.mean(cu * np.maximum(d - 25.0 * k, 0) + np.maximum(25.0 * k - d, 0))
                         for k in range(0, 8)]
                assert costs[got[i, n]] == pytest.approx(min(costs), rel=1e-9)


def test_discrete_newsvendor_can_round_down() -> None:
    # Demand 26 +- tiny: the 0.5-quantile is 26, but one VM of 25 costs 1, two cost 24.
    conf = Conformal.from_errors(np.linspace(-0.1, 0.1, 50)[:, None])
    units = conf.units(np.array([[26.0]]), np.ones((1, 1)), 1.0, 1.0, ScalingRules(unit=25.0))
    assert units[0, 0] == 1


def test_min_units_is_honoured() -> None:
    conf = Conformal.from_errors(np.zeros((10, 1)))
    units = conf.units(np.array([[0.1]]), np.ones((1, 1)), 1.0, 1.0,
                       ScalingRules(unit=25.0, min_units=1))
    assert units[0, 0] == 1


def test_local_scale_is_causal() -> None:
    errors = np.zeros((10, 1))
    errors[5, 0] = 100.0
    floor = np.array([1e-3])
    for lead in (1, 2):
        s = local_scale(errors, lead, 0.5, floor)
        assert np.all(s[: 5 + lead] <= 1e-3 + 1e-12)  # the spike is unseen before 5 + lead
        assert s[5 + lead, 0] == pytest.approx(50.0)
    assert np.all(local_scale(errors, 1, None, floor) == 1.0)


def test_select_ignores_data_after_calibration() -> None:
    rng = np.random.default_rng(2)
    actual = rng.gamma(5.0, 2.0, size=(300, 2))
    center = actual + rng.normal(0, 1.0, size=actual.shape)
    a = select(center[:200], actual[:200], 1, c_under=10.0, c_over=1.0,
               base=ScalingRules(unit=0.1), churn_budget=100.0, step_seconds=300.0)
    actual2 = actual.copy()
    actual2[200:] *= 50.0  # the future changes; the choice must not
    b = select(center[:200], actual2[:200], 1, c_under=10.0, c_over=1.0,
               base=ScalingRules(unit=0.1), churn_budget=100.0, step_seconds=300.0)
    assert a == b
    units = calibrated_units(center, actual, calib_steps=200, lead=1, c_under=10.0,
                             c_over=1.0, choice=a)
    assert units.shape == (100, 2)
    # Calibrated at q = 10/11: roughly that share of cells is covered.
    covered = np.mean(units * 0.1 >= actual[200:])
    assert 0.8 <= covered <= 0.99


def test_short_calibration_is_rejected() -> None:
    with pytest.raises(AllocateError):
        select(np.zeros((3, 1)), np.zeros((3, 1)), 1, c_under=1.0, c_over=1.0,
               base=ScalingRules(unit=1.0), churn_budget=1.0, step_seconds=60.0)
    with pytest.raises(AllocateError):
        Conformal.from_errors(np.zeros((1, 1)))
