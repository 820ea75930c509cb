"""One simulation: VN traffic rides the negotiated stitches (builtin scenarios)."""

from __future__ import annotations

import dataclasses
import itertools
import re
from typing import Any

import pytest

from vnstitch.control.reroute import StitchMover
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import FaultSpec, load_scenario, scenario_from_mapping
from vnstitch.sim.stitched import segment_route
from vnstitch.sim.workload import FaultKind


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
    rode = [by_id[i] for i in tv["stitch_ids"]]
    # Asked before discovery knew a route: the first offer, then re-optimised onto the
    # cheapest path (through seg04) make-before-break.
    first, via04 = rode[0], rode[1]
    assert first["end_reason"] == "replaced" and first["ended_s"] == via04["committed_s"]
    assert via04["cost"] < first["cost"] and "seg04" in via04["path"]
    # seg04 crashes at 30 s: that path ends repairing, the same stitch comes back on a
    # path without seg04 after the repair time, unattached meanwhile.
    k = next(i for i, c in enumerate(rode) if c["end_reason"].startswith("repairing"))
    old, new = rode[k], rode[k + 1]
    assert "seg04" in old["path"] and old["ended_s"] > 30
    assert new["id"].split("/")[0] == old["id"].split("/")[0] and new["id"] != old["id"]
    assert "seg04" not in new["path"] and new["committed_s"] > old["ended_s"]
    gap = new["committed_s"] - old["ended_s"]
    assert tv["unattached_seconds"] == pytest.approx(first["committed_s"] + gap, abs=1e-2)
    assert tv["delivered_mbit"] < tv["offered_mbit"]


def test_control_without_reoptimisation_the_first_offer_stays(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the test above: with the origin's re-optimisation switched off, tv
    stays on the first offer's dearer path, which avoids seg04, so its crash changes
    nothing for tv."""
    monkeypatch.setattr(StitchMover, "cheaper",
                        lambda self, now, sid, cost, best: ([], []))
    s = _summary("transit-crash")
    by_id = {x["id"]: x for x in s["stitches"]}
    tv = next(f for f in s["traffic"]["flows"] if f["name"] == "tv")
    assert len(tv["stitch_ids"]) == 1
    only = by_id[tv["stitch_ids"][0]]
    assert "seg04" not in only["path"] and only["cost"] == 3 and only["ended_s"] is None
    assert s["traffic"]["stitch_reoptimisations"] == 0


def test_segment_route_visits_exactly_the_segments_in_order(abilene4: Any) -> None:
    g = abilene4.graph
    node = {lab: n for n, lab in g.nodes(data="label")}
    ny, la = node["New York"], node["Los Angeles"]
    home = segment_route(g, ["seg02", "seg00", "seg01"], ny, la)
    detour = segment_route(g, ["seg02", "seg00", "seg03", "seg01"], ny, la)
    lab = dict(g.nodes(data="label"))
    assert home is not None and detour is not None
    assert [lab[n] for n in home] == ["New York", "Washington DC", "Atlanta", "Houston",
                                      "Los Angeles"]
    assert "Denver" in {lab[n] for n in detour} and "Houston" not in {lab[n] for n in detour}
    assert segment_route(g, ["seg02", "seg01"], ny, la) is None  # not adjacent
    assert segment_route(g, ["seg00", "seg01"], ny, la) is None  # src not in the first


def _vn_scenario(flows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "t", "topology": "zoo:Abilene", "segments": 4, "duration_s": 10,
            "vns": {"count": 1, "segments_per_vn": 2},
            "requests": {"count": 0},
            "qos": {"link_mbps": 10000, "classes": [
                {"name": "video", "priority": 0, "guaranteed_mbps": 2000,
                 "max_mbps": 10000}]},
            "traffic": {"flows": flows}}


@pytest.mark.parametrize(("flows", "field", "problem"), [
    ([{"name": "a", "vn": 1, "class": "video", "src": "New York", "dst": "Atlanta",
       "mbps": 1}], "traffic.flows[0].dst", "needs no stitch"),
    ([{"name": "a", "vn": 1, "class": "video", "src": "New York", "dst": "Houston",
       "mbps": 1},
      {"name": "b", "vn": 1, "class": "video", "src": "Seattle", "dst": "Houston",
       "mbps": 1}], "traffic.flows[1].vn", "share one stitch"),
    ([{"name": "a", "vn": 100, "class": "video", "src": "New York", "dst": "Houston",
       "mbps": 1}], "traffic.flows[0].vn", "vns: section"),
])
def test_bad_vn_flows_name_the_field(flows: list[dict[str, Any]], field: str,
                                     problem: str) -> None:
    with pytest.raises(ScenarioError, match=rf"{re.escape(field)}: .*{problem}"):
        run(scenario_from_mapping(_vn_scenario(flows), "t.yaml"), check_every_step=False)


def _cut(name: str, a: str, b: str) -> Any:
    """``name`` for 28 s with substrate link a-b cut from 20 s to 25 s."""
    sc = load_scenario(f"builtin:{name}")
    cut = FaultSpec(20.0, FaultKind.CUT_LINK, link=(a, b))
    fix = FaultSpec(25.0, FaultKind.REPAIR_LINK, link=(a, b))
    return run(dataclasses.replace(
        sc, faults=(cut, fix), duration_s=28.0,
        requests=dataclasses.replace(sc.requests, start_s=5.0, end_s=10.0)),
        check_every_step=False)


def test_a_cut_inside_the_segments_repicks_links_and_never_rides_the_cut() -> None:
    """tv's stitch seg02 > seg00 > seg01 runs New York > Washington DC > Atlanta > ...;
    cutting Washington DC - Atlanta (inside seg02) leaves the stitch up and the segments
    re-pick its links; the repair brings them back."""
    wash, atl = "2", "9"
    out = _cut("congestion", wash, atl)
    res = out.traffic
    assert res is not None
    igp = [m for m in res.moves if m.flow == "tv" and m.kind == "igp"]
    assert [m.effective_s for m in igp] == [20.0, 25.0]
    assert (wash, atl) in itertools.pairwise(igp[0].old_path)
    assert (wash, atl) not in itertools.pairwise(igp[0].new_path)
    assert igp[1].new_path == igp[0].old_path
    tv = next(f for f in out.summary["traffic"]["flows"] if f["name"] == "tv")
    assert len(tv["stitch_ids"]) == 1 and tv["unattached_seconds"] < 3


def test_a_dead_first_hop_moves_the_stitch_at_once() -> None:
    """In 5 segments Washington DC - Atlanta is the only seg02-seg04 link, the first hop
    of tv's stitch seg02 > seg04 > seg01: its origin sees the link go down (the daemon's
    netlink event) and renegotiates around the adjacency at once; tv is unattached only
    until the successor is committed, not for the 5 s of the cut."""
    out = _cut("transit-crash", "2", "9")
    assert out.traffic is not None and out.traffic.stitched is not None
    moves = [m for m in out.traffic.stitched.moves if m.decided_s >= 20.0]
    assert moves and all(m.kind == "renegotiate" and m.decided_s == 20.0
                         and m.avoid == "adjacency seg02-seg04" and "went down" in m.reason
                         for m in moves)
    tv = next(f for f in out.summary["traffic"]["flows"] if f["name"] == "tv")
    first, last = (next(x for x in out.summary["stitches"] if x["id"] == sid)
                   for sid in (tv["stitch_ids"][0], tv["stitch_ids"][-1]))
    assert last["path"] == ["seg02", "seg00", "seg03", "seg01"]
    assert tv["unattached_seconds"] == pytest.approx(
        first["committed_s"] + last["committed_s"] - 20.0, abs=1e-6)
    assert last["committed_s"] - 20.0 < 1.0


def test_control_a_cut_beyond_the_first_hop_leaves_the_flow_unattached() -> None:
    """Control: Los Angeles - Houston, the only seg04-seg01 link, lies past tv's first
    hop; only the transit sees it go down and only an origin renegotiates, so the stitch
    stays (its probes would tear it down later than the 5 s cut) and tv has no path
    through its segments for the whole cut: unattached, counted."""
    out = _cut("transit-crash", "5", "8")
    assert out.traffic is not None and out.traffic.stitched is not None
    assert [m for m in out.traffic.stitched.moves if m.decided_s >= 20.0] == []
    tv = next(f for f in out.summary["traffic"]["flows"] if f["name"] == "tv")
    first = next(x for x in out.summary["stitches"] if x["id"] == tv["stitch_ids"][0])
    assert tv["unattached_seconds"] == pytest.approx(first["committed_s"] + 5.0, abs=1e-6)
