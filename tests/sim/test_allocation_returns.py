"""Returns of flows the allocator moved: the congestion planner's return asks the
allocator whether the home path can host the flow's reservation, not only whether its
load is low. Every claim is paired with a control."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.sim.test_allocation import _builtin, _tri, _tri_data
from vnstitch.sim.allocation import SimAllocation
from vnstitch.sim.runner import load_substrate
from vnstitch.sim.scenario import scenario_from_mapping
from vnstitch.sim.traffic import TrafficSim
from vnstitch.sim.traffic_model import TrafficResult
from vnstitch.sim.traffic_summary import summarise_traffic

#: tv2's home path (New York > Washington DC > Atlanta > Houston) on Abilene's node ids.
HOME = ("0", "2", "9", "8")


def _returns_on(*, tv_falls: bool = True) -> dict[str, Any]:
    """The builtin with returns on and a 10 s hold-down. The builtin keeps the monitor
    above 100 % carried load so only the allocator moves flows; ``return_below`` sits
    above tv2's home path's offered load (~150 %) so that, by load, a return is always
    due. tv (same first links) needs 3500-4200 Mbit/s of the 3000 free + 1500 quota
    until it falls to 2600 at 300 s, when tv2's 1500 fits again."""
    data = copy.deepcopy(_builtin())
    # Background flows (no VN): the routing layer's returns are what is tested here;
    # a VN flow moves only with its stitch (tests/sim/test_stitched_traffic.py).
    for f in data["traffic"]["flows"]:
        f.pop("vn", None)
        f.pop("reserve_mbps", None)
        if f["name"] == "mail":
            f["dst"] = "Atlanta"
    data["traffic"]["reroute"] = {"returns": True, "hold_down_s": 10, "return_below": 2.0}
    if not tv_falls:
        tv = data["traffic"]["flows"][0]
        tv["schedule"] = [s for s in tv["schedule"] if s["at"] < 300]
    return data


def _run(data: dict[str, Any]) -> tuple[TrafficResult, dict[str, Any]]:
    sc = scenario_from_mapping(data, "test")
    assert sc.traffic is not None
    res = TrafficSim(sc.traffic, load_substrate(sc)).run(sc.duration_s)
    return res, summarise_traffic(res)


def _tv2(res: TrafficResult, kind: str) -> list[float]:
    return [m.decided_s for m in res.moves if m.flow == "tv2" and m.kind == kind]


def test_without_the_check_the_moved_flow_flaps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the next test: load alone returns tv2 every hold-down and the
    allocator moves it away again in the same decision."""
    monkeypatch.setattr(SimAllocation, "can_host", lambda *a, **k: (True, "no check"))
    res, s = _run(_returns_on())
    back, away = _tv2(res, "return"), _tv2(res, "allocate")
    assert len(back) >= 10 and len(away) >= 10
    assert any(t in away for t in back)  # returned home and moved away at once
    assert s["returns_blocked_by_reservation"] == 0
    assert s["max_path_changes_per_flow"] >= 20


def test_a_reservation_that_does_not_fit_keeps_the_flow_away() -> None:
    res, s = _run(_returns_on())
    assert _tv2(res, "allocate") == [155.0]  # moved once, never again
    assert all(t >= 300.0 for t in _tv2(res, "return"))
    blocked = [(t, why) for t, f, why in res.returns_blocked if f == "tv2"]
    assert blocked and s["returns_blocked_by_reservation"] == len(res.returns_blocked)
    t0, why = blocked[0]
    assert t0 == 165.0  # as soon as the hold-down allowed a return
    assert "reservation 1500 > room 1000" in why and "others 3500" in why
    assert all(t < 315.0 for t, _ in blocked)


def test_once_the_reservation_fits_the_flow_returns_home() -> None:
    res, s = _run(_returns_on())
    assert _tv2(res, "return") == [315.0]  # the first decision after tv's reservation fell
    assert res.final_paths["tv2"] == HOME and s["returns"] == 1
    assert _tv2(res, "allocate") == [155.0]  # and the allocator leaves it there
    # control: tv never falls, tv2's reservation never fits home again
    still, s2 = _run(_returns_on(tv_falls=False))
    assert _tv2(still, "return") == [] and still.final_paths["tv2"] != HOME
    assert s2["returns_blocked_by_reservation"] > s["returns_blocked_by_reservation"]


def _two_cams(outages: list[dict[str, float]]) -> SimAllocation:
    """Two video flows A->B (600 + 300 Mbit/s) beside bulk's 300 Mbit/s guarantee: video
    may use 700 free + a 100 Mbit/s quota per link."""
    data = _tri_data([], allocation={"unit_mbps": 10, "warmup_intervals": 2, "provider": {
        "quota_mbps": 100, "turn_up_s": 0, "outages": outages}})
    data["traffic"]["flows"][0]["mbps"] = 600
    data["traffic"]["flows"].append({"name": "cam2", "class": "video", "src": "A",
                                     "dst": "B", "mbps": 300})
    sc = scenario_from_mapping(data, "test")
    assert sc.traffic is not None
    sim = TrafficSim(sc.traffic, _tri())
    sim.run(40.0)
    assert sim.alloc is not None and sim.alloc.amounts is not None
    return sim.alloc


AB, ACB = ("A", "B"), ("A", "C", "B")


def test_can_host_counts_others_free_and_quota() -> None:
    alloc = _two_cams([])
    assert alloc.amounts is not None
    cam, cam2 = alloc.amounts
    assert cam + cam2 > 800.0 and cam <= 800.0 and cam2 <= 700.0
    ok, why = alloc.can_host("cam", AB, 40.0, [ACB, AB, AB])  # cam2 on A->B
    assert not ok and why.startswith("A->B:") and "free 700 + provider 100" in why
    assert f"others {cam2:.4g}" in why
    # controls: cam2 elsewhere, the same path for a flow outside the allocation
    assert alloc.can_host("cam", AB, 40.0, [ACB, ACB, ACB]) == (
        True, "the reservation fits on every link")
    assert alloc.can_host("backup", AB, 40.0, [ACB, AB, AB]) == (True, "not under allocation")


def test_during_an_outage_only_committed_extra_counts() -> None:
    alloc = _two_cams([{"start": 0, "end": 1000}])  # nothing could ever be bought
    assert alloc.amounts is not None
    cam = alloc.amounts[0]
    assert 600.0 <= cam <= 700.0
    assert alloc.can_host("cam", AB, 40.0, [ACB, ACB, ACB])[0]  # 700 free alone
    # a reservation in force that the quota would cover, but not the 700 free alone
    alloc.amounts = [750.0, 0.0]
    ok, why = alloc.can_host("cam", AB, 40.0, [ACB, ACB, ACB])
    assert not ok and "reservation 750 > room 700" in why and "provider 0 (outage)" in why
    control = _two_cams([])
    control.amounts = [750.0, 0.0]
    assert control.can_host("cam", AB, 40.0, [ACB, ACB, ACB])[0]
