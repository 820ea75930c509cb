"""A stitch end with no measured rate is reserved from its application profile and its
negotiated bandwidth (the cold start), not from a forecast of 0."""

from __future__ import annotations

import numpy as np

from vnstitch.allocate.forecasts import cold_start_units
from vnstitch.allocate.policy import DEFAULT_CLASSES, ScalingRules
from vnstitch.control import Controller, ControlPolicy, ForecastPolicy
from vnstitch.control.model import Consumer, Reserve, StitchSample
from vnstitch.forecast.profiles import load_profiles

APP = DEFAULT_CLASSES["video_conferencing"]
POLICY = ControlPolicy({"video_conferencing": APP}, ScalingRules(unit=1.0, min_units=1),
                       ForecastPolicy("naive", 1, 1, 60, None, 1))
#: Monday 2024-01-08 10:00 UTC: office hours in the video profile
MONDAY_10 = float(np.datetime64("2024-01-08T10:00", "s").astype(np.int64))
MONDAY_03 = float(np.datetime64("2024-01-08T03:00", "s").astype(np.int64))


def _reserved(now: float, negotiated: float) -> float:
    c = Consumer("s1", "video_conferencing", ("A-B",), {"A-B": 1000.0},
                 negotiated_mbps=negotiated)
    # a new stitch end's first counter reading is a baseline: no rate yet
    out = Controller(POLICY).step(now, [c], {"s1": StitchSample(tx_bytes=0.0)})
    (r,) = [a for a in out.actions if isinstance(a, Reserve)]
    return r.mbps


def test_first_reservation_follows_profile_and_request() -> None:
    day = _reserved(MONDAY_10, 100.0)
    night = _reserved(MONDAY_03, 100.0)
    # the allocator's newsvendor on the cold-start quantiles = cold_start_units
    want = cold_start_units(profile=load_profiles()["video_conferencing"],
                            expected_mbps=100.0,
                            future=np.array([np.datetime64("2024-01-08T10:00")]),
                            unit=1.0, c_under=APP.c_under, c_over=APP.c_over, min_units=1)
    assert abs(day - float(want[0])) <= 1.0  # whole units; the grid may round either way
    assert day > 100.0 and night < 10.0  # office-hours peak vs the night
    assert _reserved(MONDAY_10, 200.0) > 1.8 * day


def test_control_without_a_request_reserves_the_minimum() -> None:
    assert _reserved(MONDAY_10, float("inf")) == 1.0  # nothing to scale the profile by
