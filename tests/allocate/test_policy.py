"""The pure policy: newsvendor quantile, quantile interpolation, units, churn control."""

from __future__ import annotations

import numpy as np
import pytest

from vnstitch.allocate import (
    DEFAULT_CLASSES,
    Action,
    AllocateError,
    ApplicationClass,
    ScalingController,
    ScalingRules,
    interpolate_quantile,
    newsvendor_quantile,
    units_for,
)


def test_newsvendor_quantile_and_classes() -> None:
    assert newsvendor_quantile(10, 1) == pytest.approx(10 / 11)
    assert newsvendor_quantile(1, 1) == 0.5
    video = DEFAULT_CLASSES["video_conferencing"]
    email = DEFAULT_CLASSES["email"]
    assert video.quantile > DEFAULT_CLASSES["database"].quantile > email.quantile
    with pytest.raises(AllocateError):
        newsvendor_quantile(0, 0)
    with pytest.raises(AllocateError):
        ApplicationClass("x", c_under=-1)


def test_interpolation_linear_sorted_and_clamped() -> None:
    levels = (0.1, 0.5, 0.9)
    values = np.array([[1.0, 10.0], [2.0, 30.0], [4.0, 20.0]])  # series 1 crosses
    mid = interpolate_quantile(levels, values, 0.7)
    assert mid[0] == pytest.approx(3.0)
    assert mid[1] == pytest.approx(25.0)  # sorted: 10, 20, 30 -> halfway 20..30
    assert interpolate_quantile(levels, values, 0.99)[0] == 4.0
    assert interpolate_quantile(levels, values, 0.01)[0] == 1.0
    with pytest.raises(AllocateError):
        interpolate_quantile((0.5, 0.1), values[:2], 0.3)
    with pytest.raises(AllocateError):
        interpolate_quantile(levels, values, 1.0)


def test_units_round_up_exactly() -> None:
    got = units_for(np.array([0.0, 25.0, 25.01, 74.9, -3.0, np.nan]), 25.0)
    assert got.tolist() == [0, 1, 2, 3, 0, 0]
    assert units_for(np.array([0.0]), 1.0, min_units=1).tolist() == [1]


def test_controller_scales_out_at_once_and_in_cautiously() -> None:
    rules = ScalingRules(unit=1.0, hold_steps=2, scale_in_hysteresis=0.2, scale_in_window=2)
    c = ScalingController(rules, 1, initial_units=np.array([10]))
    units, act = c.step(np.array([15]))
    assert units[0] == 15 and act[0] == Action.SCALE_OUT
    for _ in range(2):  # held 0, then 1 decision(s) since the change: too soon
        units, act = c.step(np.array([5]))
        assert units[0] == 15 and act[0] == Action.HOLD_MIN_TIME
    units, act = c.step(np.array([14]))  # inside the 20% band
    assert units[0] == 15 and act[0] == Action.HOLD_HYSTERESIS
    units, act = c.step(np.array([4]))  # may shrink, but only to the recent max (14)
    assert units[0] == 14 and act[0] == Action.SCALE_IN
    c.step(np.array([4]))
    c.step(np.array([4]))
    units, act = c.step(np.array([4]))
    assert units[0] == 4 and act[0] == Action.SCALE_IN


def test_controller_never_shrinks_when_scale_in_disallowed() -> None:
    rules = ScalingRules(unit=1.0, hold_steps=0, allow_scale_in=False)
    c = ScalingController(rules, 2, initial_units=np.array([3, 3]))
    for target in ([1, 5], [0, 2], [0, 0]):
        units, _ = c.step(np.array(target))
    assert units.tolist() == [3, 5]


def test_rules_validate() -> None:
    with pytest.raises(AllocateError):
        ScalingRules(unit=0)
    with pytest.raises(AllocateError):
        ScalingRules(unit=1, scale_in_window=0)
