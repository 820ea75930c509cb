"""Part 4 of the demo: built-in traffic, the auto forecaster, allocation per VN class."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vnstitch.forecast.profiles import load_profiles
from vnstitch.sim.forecast_story import (
    DAYS,
    DEMO_VNS,
    POLICIES,
    SEASON,
    forecast_and_allocate,
    story_lines,
    synthesise,
    table_rows,
)


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return forecast_and_allocate()


def test_synthetic_traffic_is_deterministic_and_follows_the_profiles() -> None:
    profiles = load_profiles()
    a, times = synthesise(profiles)
    b, _ = synthesise(profiles)
    c, _ = synthesise(profiles, seed=99)
    assert a.shape == (DAYS * SEASON, len(DEMO_VNS)) and (a > 0).all()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for n, vn in enumerate(DEMO_VNS):
        p = profiles[vn.profile]
        noise = a[:, n] / (vn.mean_mbps * p.shape(times))
        # multiplicative noise of mean 1 whose coefficient of variation is the burstiness
        assert noise.mean() == pytest.approx(1.0, abs=0.1)
        assert noise.std() / noise.mean() == pytest.approx(p.burstiness, rel=0.25)


def test_costs_follow_from_the_tallies_at_each_class_ratio(result: dict[str, Any]) -> None:
    assert [v["vn"] for v in result["vns"]] == [vn.name for vn in DEMO_VNS]
    for v in result["vns"]:
        r = v["cost_ratio"]
        assert v["quantile"] == pytest.approx(r / (r + 1.0))
        for name in POLICIES:
            p = v["policies"][name]
            # cost = (ratio * unserved + idle) / demand, every policy at the VN's own ratio
            assert p["cost_at_class_ratio"] == pytest.approx(
                r * p["unserved_fraction"] + p["slack"])
            assert np.isfinite(p["cost_at_ratio_10"])
    q = {v["vn"]: v["quantile"] for v in result["vns"]}
    assert q["video"] > q["database"] > q["e-mail"]


def test_forecaster_beats_naive_and_predictive_wins_on_video(result: dict[str, Any]) -> None:
    for v in result["vns"]:
        assert v["forecast_nmae"]["auto"] < v["forecast_nmae"]["naive"], v["vn"]
    video = next(v for v in result["vns"] if v["vn"] == "video")["policies"]
    # at 50:1 an idle Mbit is cheap: predictive's quantile beats fixed headroom and HPA
    assert video["predictive"]["cost_at_class_ratio"] < min(
        video[p]["cost_at_class_ratio"] for p in ("static-p95", "reactive"))


def test_story_and_table_name_every_vn(result: dict[str, Any]) -> None:
    text = "\n".join(story_lines(result))
    rows = table_rows(result)
    assert len(rows) == len(DEMO_VNS) * len(POLICIES)
    for vn in DEMO_VNS:
        assert vn.name in text and f"{vn.cost_ratio:g}:1" in text
    assert "auto forecaster" in text and "naive" in text
