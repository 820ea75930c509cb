"""Part 4 of the demo: built-in traffic, the auto forecaster, allocation per VN class."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from vnstitch.datapath import shared_data_dir
from vnstitch.forecast.profiles import load_profiles
from vnstitch.sim.forecast_story import (
    ABILENE_POPS,
    ABILENE_TM,
    DAYS,
    DEMO_VNS,
    POLICIES,
    SEASON,
    demo_traffic,
    forecast_and_allocate,
    story_lines,
    synthesise,
    table_rows,
)


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # The profile traffic whatever data is present: no data folder in an empty one.
    empty = tmp_path_factory.mktemp("no-data")
    return forecast_and_allocate(traffic=demo_traffic(data_dir=empty))


def test_without_data_the_story_says_it_uses_the_profiles(result: dict[str, Any]) -> None:
    assert not result["real_data"]
    assert "shipped application profiles" in story_lines(result)[0]


def test_with_the_abilene_matrices_the_vns_carry_real_flows() -> None:
    folder = shared_data_dir()
    if folder is None or not (folder / ABILENE_TM).is_file():
        pytest.skip("real data not found: set VNSTITCH_DATA")
    tr = demo_traffic(data_dir=folder)
    assert tr.real and "Abilene" in tr.source
    assert tr.values.shape == (DAYS * SEASON, len(DEMO_VNS)) and (tr.values >= 0).all()
    pops = set(ABILENE_POPS.values())
    assert all(set(f.split(" -> ")) <= pops for f in tr.flows)  # PoP names, not codes
    test_day = tr.times[-SEASON].astype("datetime64[D]")
    assert (test_day.astype(np.int64) + 3) % 7 < 5  # the test day is a weekday


def test_decisions_are_the_changes_of_the_predictive_reservation(
        result: dict[str, Any]) -> None:
    text = "\n".join(story_lines(result))
    assert "Mbit/s for" in text and "changes in all" in text
    for v in result["vns"]:
        ds = v["decisions"]
        assert len(ds) >= 2 and ds[0]["from_mbps"] is None
        for a, b in itertools.pairwise(ds):
            assert b["from_mbps"] == a["mbps"] != b["mbps"]


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
