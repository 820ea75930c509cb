"""One simulation: VN traffic rides the negotiated stitches (builtin scenarios)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vnstitch.sim.runner import run
from vnstitch.sim.scenario import load_scenario


def _summary(name: str) -> dict[str, Any]:
    return run(load_scenario(f"builtin:{name}"), check_every_step=False).summary


@pytest.fixture(scope="module")
def congestion() -> dict[str, Any]:
    return _summary("congestion")


@pytest.fixture(scope="module")
def crash() -> dict[str, Any]:
    return _summary("transit-crash")


def _check_output(s: dict[str, Any]) -> None:
    ids = {x["id"] for x in s["stitches"]}
    keys = {"id", "vnid", "src", "dst", "path", "bandwidth_mbps", "committed_s", "ended_s",
            "end_reason"}
    assert all(keys <= set(x) for x in s["stitches"])
    flows = s["traffic"]["flows"]
    assert flows and all({"name", "vnid", "class", "stitch_ids", "offered_mbit",
                          "delivered_mbit", "unattached_seconds"} <= set(f) for f in flows)
    for f in flows:
        assert f["stitch_ids"] and set(f["stitch_ids"]) <= ids


def test_output_every_flow_stitch_is_listed(congestion: dict[str, Any],
                                            crash: dict[str, Any]) -> None:
    _check_output(congestion)
    _check_output(crash)


def test_congestion_renegotiates_the_stitch_make_before_break(
        congestion: dict[str, Any]) -> None:
    t = congestion["traffic"]
    stitched = [e for e in t["congestion_episodes"] if e["on_stitched_path"]]
    assert stitched and all(e["resolved_by"] == "reroute" and e["intervals_to_resolve"] <= 3
                            for e in stitched)
    assert t["stitched_guarantee_kept"] and t["lowest_class_share_of_shortfall"] >= 0.9
    moves = t["stitch_renegotiations"]
    assert [m["kind"] for m in moves] == ["renegotiate", "return"]
    assert moves[0]["avoid"].startswith("adjacency")
    backup = next(f for f in t["flows"] if f["name"] == "backup")
    assert len(backup["stitch_ids"]) == 3  # home, detour, home again
    by_id = {x["id"]: x for x in congestion["stitches"]}
    home, detour = (by_id[i] for i in backup["stitch_ids"][:2])
    assert home["end_reason"] == "replaced" and home["ended_s"] == detour["committed_s"]
    assert len(detour["path"]) > len(home["path"])  # the costlier way round
    assert backup["unattached_seconds"] < 3  # only before the first commit: never between


def test_control_without_the_surge_nothing_moves() -> None:
    sc = load_scenario("builtin:congestion")
    assert sc.traffic is not None
    flows = tuple(dataclasses.replace(f, schedule=()) for f in sc.traffic.flows)
    sc = dataclasses.replace(sc, traffic=dataclasses.replace(sc.traffic, flows=flows))
    t = run(sc, check_every_step=False).summary["traffic"]
    assert t["stitch_renegotiations"] == [] and t["congestion_episodes"] == []


def test_transit_crash_unattached_for_the_repair_then_a_new_stitch(
        crash: dict[str, Any]) -> None:
    by_id = {x["id"]: x for x in crash["stitches"]}
    tv = next(f for f in crash["traffic"]["flows"] if f["name"] == "tv")
    assert len(tv["stitch_ids"]) == 2
    old, new = (by_id[i] for i in tv["stitch_ids"])
    assert old["end_reason"].startswith("repairing") and "seg04" in old["path"]
    assert "seg04" not in new["path"] and new["committed_s"] > old["ended_s"] > 30
    gap = new["committed_s"] - old["ended_s"]
    before_first = old["committed_s"]
    assert tv["unattached_seconds"] == pytest.approx(before_first + gap, abs=1e-2)
    assert tv["delivered_mbit"] < tv["offered_mbit"]
