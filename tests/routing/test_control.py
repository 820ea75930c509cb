"""Routing table priority, hysteresis, reroute, QoS policy, evaluation, bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from vnstitch.dataplane.objects import U32Filter
from vnstitch.model.errors import TopologyLoadError
from vnstitch.model.ids import SegmentId
from vnstitch.model.loaders import load_sndlib
from vnstitch.model.substrate import substrate_from_links
from vnstitch.protocol.config import CoreConfig
from vnstitch.routing.demands import load_tm_csv, parse_tm_csv
from vnstitch.routing.errors import DemandFileError, PolicyError, RoutingError
from vnstitch.routing.evaluate import evaluate
from vnstitch.routing.monitor import (
    ArcState,
    CongestionMonitor,
    Flow,
    MonitorConfig,
    RerouteState,
    plan_reroutes,
    plan_returns,
)
from vnstitch.routing.qos import TUNNEL_DPORT_MATCH, parse_policy, policy_to_tc
from vnstitch.routing.table import (
    SUBSTRATE_METRIC,
    RouteEntry,
    RoutingTable,
    StitchPriorities,
    stitch_route_metric,
    to_dataplane_route,
)

POLICY = {
    "link_mbps": 100,
    "classes": [
        {"name": "email", "priority": 2, "guaranteed_mbps": 5, "max_mbps": 100},
        {"name": "stitched", "priority": 0, "guaranteed_mbps": 50, "max_mbps": 100},
        {"name": "database", "priority": 1, "guaranteed_mbps": 20, "max_mbps": 100},
    ],
    "applications": [
        {"name": "video", "class": "stitched", "ports": [5004], "dscp": [34], "vnid": 100},
        {"name": "smtp", "class": "email", "ports": [25, 587], "protocol": "tcp"},
    ],
}


def test_stitched_route_wins_and_maps_to_lower_metric() -> None:
    plain = RouteEntry("10.1.0.0/16", "b", "eth0", metric=1, cost=1.0, owner="static")
    stitched = RouteEntry("10.1.0.0/16", "c", "vx100", metric=50, cost=9.0,
                          stitching_priority=5, owner="stitch:7")
    t = RoutingTable([plain, stitched])
    assert t.best("10.1.0.0/16") == stitched
    assert to_dataplane_route(stitched).metric < to_dataplane_route(plain).metric
    t.remove_owner("stitch:7")
    assert t.best("10.1.0.0/16") == plain
    # deterministic tie-break: same priority/metric/cost -> next hop by name
    t2 = RoutingTable([RouteEntry("x", "z", "d"), RouteEntry("x", "a", "d")])
    assert t2.best("x").next_hop == "a"  # type: ignore[union-attr]
    with pytest.raises(RoutingError, match="stitching_priority"):
        RouteEntry("x", "a", "d", stitching_priority=99)


def test_hysteresis_does_not_flap_on_oscillating_load() -> None:
    mon = CongestionMonitor(MonitorConfig(high=0.8, low=0.6, raise_samples=2, clear_samples=3))
    arc = ("a", "b")
    states = []
    for i in range(40):  # 85%, 70%, 85%, 70%... : never 2 samples above, never below 60%
        mon.observe(float(i), {arc: 0.85 if i % 2 == 0 else 0.7})
        states.append(mon.state(arc))
    assert ArcState.CONGESTED not in states
    for i in range(40, 42):
        mon.observe(float(i), {arc: 0.9})
    assert mon.state(arc) is ArcState.CONGESTED
    flips = 0
    for i in range(42, 80):  # now oscillate 90% / 65%: must stay congested, no clear
        mon.observe(float(i), {arc: 0.9 if i % 2 else 0.65})
        flips += mon.state(arc) is ArcState.CLEAR
    assert flips == 0


def test_reroute_moves_fewest_flows_with_dampening() -> None:
    cap = {("a", "b"): 100.0, ("b", "a"): 100.0, ("a", "c"): 100.0, ("c", "a"): 100.0,
           ("c", "b"): 100.0, ("b", "c"): 100.0}
    flows = [Flow("big", "a", "b", 50, ("a", "b")), Flow("s1", "a", "b", 20, ("a", "b")),
             Flow("s2", "a", "b", 20, ("a", "b"))]
    cands = {("a", "b"): [("a", "b"), ("a", "c", "b")]}
    st = RerouteState()
    d = plan_reroutes(0.0, flows, cap, [("a", "b")], cands, state=st, target=0.75)
    assert [x.flow_id for x in d] == ["big"] and d[0].new_path == ("a", "c", "b")
    assert "congested at 90%" in d[0].reason and d[0].steps[0] == "install new path"
    moved = [Flow("big", "a", "b", 50, ("a", "c", "b")), *flows[1:]]
    # big is held down: even if a->c->b congests now, it does not move back
    again = plan_reroutes(10.0, moved, cap, [("a", "c")], cands, state=st, hold_down_s=100)
    assert again == []


def test_policy_validation_names_field() -> None:
    bad = {**POLICY, "classes": [{"name": "e", "priority": 0, "guaranteed_mbps": 500}]}
    with pytest.raises(PolicyError, match=r"classes\[0\]\.guaranteed_mbps"):
        parse_policy(bad)
    bad2 = {**POLICY, "applications": [{"name": "x", "class": "nope", "ports": [1]}]}
    with pytest.raises(PolicyError, match=r"applications\[0\]\.class: unknown class"):
        parse_policy(bad2)
    bad3 = {**POLICY, "applications": [{"name": "x", "class": "email", "ports": [70000]}]}
    with pytest.raises(PolicyError, match=r"applications\[0\]\.ports\[0\]"):
        parse_policy(bad3)


def test_policy_to_tc() -> None:
    limits, filters = policy_to_tc(parse_policy(POLICY), "wg0")
    assert [(r.class_id, r.rate_mbps) for r in limits] == [(10, 50), (20, 20), (30, 5)]
    assert all(isinstance(f, U32Filter) for f in filters)
    video = [f for f in filters if f.class_id == 10]
    # a VN's VXLAN is UDP to 4789 or to any tunnel's port (one aligned mask), each with
    # the app's alternatives (port 5004, DSCP 34)
    assert len(video) == 4 and "ip dport 5004 0xffff" in video[0].matches
    assert all("u32 0x00006400 0xffffff00 at 32" in f.matches for f in video)
    assert [("ip dport 4789 0xffff" in f.matches, TUNNEL_DPORT_MATCH in f.matches)
            for f in video] == [(True, False), (True, False), (False, True), (False, True)]
    assert video[1].matches[-1] == "ip tos 0x88 0xfc"
    smtp = [f for f in filters if f.class_id == 30]
    assert [f.matches for f in smtp][1] == ("ip protocol 6 0xff", "ip dport 587 0xffff")
    assert len({f.key for f in filters}) == len(filters)


def test_evaluation_reroutes_within_three_intervals_and_protects_stitched() -> None:
    g = substrate_from_links("sq", "abc", [("a", "b", 100, 1, 1), ("a", "c", 100, 2, 1),
                                           ("c", "b", 100, 2, 1)]).graph
    policy = parse_policy(POLICY)
    flows = [Flow("stitched", "a", "b", 0, ("a", "b"), "stitched"),
             Flow("db", "a", "b", 0, ("a", "b"), "database"),
             Flow("email", "a", "b", 0, ("a", "b"), "email")]

    def offered(step: int) -> dict[str, float]:
        return {"stitched": 45.0, "db": 25.0, "email": 10.0 if step < 5 else 60.0}

    recs = evaluate(g, policy, flows, offered, 15,
                    config=MonitorConfig(raise_samples=2, clear_samples=3))
    onset = next(r.step for r in recs if r.utilisation["a", "b"] > 1.0)
    moved = next(r.step for r in recs if r.decisions)
    assert moved - onset < 3
    assert recs[moved + 1].utilisation["a", "b"] <= 0.8
    for r in recs:
        assert r.rate["stitched"] == pytest.approx(45.0)
    congested = recs[onset]
    assert congested.rate["email"] < 60.0  # e-mail absorbs the shortfall
    assert congested.rate["db"] == pytest.approx(25.0)


def test_bad_demand_file_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(DemandFileError, match=r"line 3, column 3 \(A->C\): not a number"):
        parse_tm_csv(["time,A->B,A->C", "t0,1,2", "t1,1,x"], "m.csv")
    with pytest.raises(DemandFileError, match=r"line 1, column 2 .*SRC->DST"):
        parse_tm_csv(["time,AB"], "m.csv")
    with pytest.raises(DemandFileError, match="line 2, column 3: expected 3 columns"):
        parse_tm_csv(["time,A->B,A->C", "t0,1"], "m.csv")
    p = tmp_path / "m.csv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("time,A->B\nt0,1.5\n")
    assert load_tm_csv(p).mbps.tolist() == [[1.5]]


def test_bad_topology_names_element(tmp_path: Path) -> None:
    p = tmp_path / "n.xml"
    p.write_text("<network><networkStructure><nodes><node id='A'/><node id='B'/></nodes>"
                 "<links><link id='L1'><source>A</source><target>Z</target></link></links>"
                 "</networkStructure></network>")
    with pytest.raises(TopologyLoadError, match=r"link 'L1'.*unknown node 'Z'"):
        load_sndlib(p)


@pytest.mark.data
def test_abilene_files_load(data_dir: Path) -> None:
    tm = load_tm_csv(data_dir / "abilene" / "abilene_tm_5min.csv.gz")
    assert tm.mbps.shape == (4032, 132)


def test_returns_wait_for_hold_down_and_headroom() -> None:
    cap = {("a", "b"): 10.0, ("b", "a"): 10.0, ("a", "c"): 10.0, ("c", "b"): 10.0}
    home = {"f": ("a", "b")}
    flows = [Flow("f", "a", "b", 3.0, ("a", "c", "b")), Flow("g", "a", "b", 2.0, ("a", "b"))]
    state = RerouteState(last_moved={"f": 0.0})
    # Held down: too soon after the move.
    assert plan_returns(100.0, flows, cap, home, state=state, hold_down_s=600) == []
    # Home would be at (2 + 3) / 10 = 50% >= 45%: stays away.
    assert plan_returns(1000.0, flows, cap, home, state=state, hold_down_s=600) == []
    flows[1] = Flow("g", "a", "b", 1.0, ("a", "b"))
    back = plan_returns(1000.0, flows, cap, home, state=state, hold_down_s=600)
    assert [(d.flow_id, d.new_path) for d in back] == [("f", ("a", "b"))]
    assert "cleared" in back[0].reason
    assert state.last_moved["f"] == 1000.0


def test_stitching_priority_table_gives_the_tunnel_routes_their_metric() -> None:
    table = StitchPriorities(by_vnid={100: 15}, by_class={"bulk": 2})
    assert table.metric(100) == 0 < table.metric(7, "video") < table.metric(7, "bulk")
    assert table.metric(7, "bulk") < SUBSTRATE_METRIC  # every stitched band beats the IGP
    plain = to_dataplane_route(RouteEntry("10.1.0.0/16", "s", "eth0"))
    assert plain.metric >= SUBSTRATE_METRIC  # control: an ordinary route does not
    assert CoreConfig(SegmentId("A"), ()).route_metric == stitch_route_metric() == table.metric(7)
    with pytest.raises(RoutingError):
        StitchPriorities(default=0)
