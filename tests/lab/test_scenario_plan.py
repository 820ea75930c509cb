"""A scenario made concrete for the lab (pure): the same VNs, requests and flows as the
simulator's, scaled, with one host per VN and segment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vnstitch.lab import topolab
from vnstitch.lab.netns import LabError
from vnstitch.lab.scenario_run import prepare
from vnstitch.model import load_topology, partitioned
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import FaultSpec, load_scenario
from vnstitch.sim.workload import FaultKind


def test_story_on_abilene_plans_the_simulators_vns_scaled() -> None:
    sc = load_scenario("builtin:story")
    sub = partitioned(load_topology("zoo:Abilene"), 5)
    topo = topolab.plan(sub, "p0001", max_link_mbps=40)
    plan = prepare(sc, "p0001", topo.scale, sub, topo.lab.routers)
    sim = run(dataclasses.replace(sc, duration_s=3.0, faults=()), check_every_step=False)
    # the same stitches as the simulator asks for: one per traffic VN, same origins
    sim_keys = {f"{sim.simulation.segments[r.origin]}/vn{r.vnid}"
                for r in sim.simulation.metrics.records.values()}
    assert {r.key for r in plan.requests} == sim_keys
    assert all(r.at == 2.0 and r.feasible for r in plan.requests)
    # one host per VN and segment: 3 traffic VNs and the vns: section's one, on 2 each
    assert len(plan.hosts) == 8 == len({h.ns for h in plan.hosts})
    assert all(len(h.router_port) <= 15 for h in plan.hosts)
    cross = next(f for f in plan.flows if f.name == "cross")
    assert [(p.start, p.end) for p in cross.pieces] == [(6, 40), (40, 52), (52, 80)]
    assert cross.pieces[1].mbps == pytest.approx(9000 * topo.scale)  # 90 % of 10 Gbit/s
    # background traffic runs router to router (loopbacks), VN traffic host to host
    assert cross.vnid is None and cross.src.ip in {r.loopback for r in
                                                   topo.lab.routers.values()}
    tv = next(f for f in plan.flows if f.name == "tv")
    voice = next(f for f in plan.flows if f.name == "voice")
    # one code point per class, the priority-0 classes first: EF and AF41, bulk AF31
    assert {tv.dscp, voice.dscp} == {46, 34} and cross.dscp == 26 and tv.vnid == 1
    assert plan.qos is not None
    apps = {a["name"]: a for a in plan.qos["applications"]}
    assert apps["vn1"]["class"] == "video" and apps["dscp-bulk"]["dscp"] == [26]
    assert tv.src.ip.startswith("172.16.1.") and tv.dst.ip.startswith("172.16.1.")
    assert tv.src.ns != tv.dst.ns
    assert [s.flow for s in plan.surges] == ["cross"]
    # the daemons move stitches by the simulated controllers' rules: 5 s samples, the
    # story's 60 s hold-down, and (returns: false) nothing comes back within the run
    assert plan.congestion == {"interval_s": 5.0, "high": 0.8, "low": 0.6,
                               "raise_samples": 2, "clear_samples": 3, "holddown_s": 60.0,
                               "min_reports": 1, "report_window_s": 1.0,
                               "return_after_s": 80.0}


def test_a_cut_inside_a_segment_is_refused_live() -> None:
    sc = load_scenario("builtin:story")
    sub = partitioned(load_topology("zoo:Abilene"), 5)
    inner = next((a, b) for a, b in sub.graph.edges
                 if sub.segment_of(a) == sub.segment_of(b))
    bad = dataclasses.replace(sc, faults=(FaultSpec(10.0, FaultKind.CUT_LINK,
                                                    link=(str(inner[0]), str(inner[1])),
                                                    field="faults[0]"),))
    routers = topolab.plan(sub, "p0002").lab.routers
    with pytest.raises(LabError, match=r"faults\[0\].link: .* inside segment"):
        prepare(bad, "p0002", 0.01, sub, routers)


def test_a_traffic_matrix_is_refused_live(data_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VNSTITCH_DATA", str(data_dir))  # the matrix is real data
    tm = load_scenario("builtin:abilene-tm")
    tm_sub = partitioned(load_topology(tm.topology), tm.segments)
    with pytest.raises(LabError, match="a traffic matrix is for the simulator"):
        prepare(tm, "p0003", 0.01, tm_sub, topolab.plan(tm_sub, "p0003").lab.routers)


def test_feasibility_is_the_simulators_oracle() -> None:
    """A VN asking for more than any path between its segments carries is infeasible
    (a control for the feasible ones above)."""
    sc = load_scenario("builtin:story")
    assert sc.traffic is not None
    flows = tuple(dataclasses.replace(f, reserve_mbps=500.0) if f.name == "tv" else f
                  for f in sc.traffic.flows)  # 500 % of the narrowest link
    sc = dataclasses.replace(sc, traffic=dataclasses.replace(sc.traffic, flows=flows))
    sub = partitioned(load_topology("zoo:Abilene"), 5)
    plan = prepare(sc, "p0004", 0.01, sub, topolab.plan(sub, "p0004").lab.routers)
    assert {r.key.split("/")[1]: r.feasible for r in plan.requests} == {
        "vn1": False, "vn2": True, "vn3": True}
