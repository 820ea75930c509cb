"""A scenario made concrete for the lab (pure): the same VNs, requests and flows as the
simulator's, scaled, with one host per VN and segment."""

from __future__ import annotations

import dataclasses

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
    plan = prepare(sc, "p0001", topo.scale, sub)
    sim = run(dataclasses.replace(sc, duration_s=3.0, faults=()), check_every_step=False)
    # the same stitches as the simulator asks for: one per traffic VN, same origins
    sim_keys = {f"{sim.simulation.segments[r.origin]}/vn{r.vnid}"
                for r in sim.simulation.metrics.records.values()}
    assert {r.key for r in plan.requests} == sim_keys
    assert all(r.at == 2.0 for r in plan.requests)
    # one host per VN and segment: 3 traffic VNs and the vns: section's one, on 2 each
    assert len(plan.hosts) == 8 == len({h.ns for h in plan.hosts})
    assert all(len(h.router_port) <= 15 for h in plan.hosts)
    backup = next(f for f in plan.flows if f.name == "backup")
    assert [(p.start, p.end) for p in backup.pieces] == [(6, 40), (40, 52), (52, 80)]
    assert backup.pieces[1].mbps == pytest.approx(9000 * topo.scale)  # 90 % of 10 Gbit/s
    tv = next(f for f in plan.flows if f.name == "tv")
    assert tv.dscp == 46 and backup.dscp == 10
    assert tv.src.vnid == tv.dst.vnid == 1 and tv.src.segment != tv.dst.segment
    assert [s.flow for s in plan.surges] == ["backup"]


def test_a_cut_inside_a_segment_or_background_traffic_is_refused_live() -> None:
    sc = load_scenario("builtin:story")
    sub = partitioned(load_topology("zoo:Abilene"), 5)
    inner = next((a, b) for a, b in sub.graph.edges
                 if sub.segment_of(a) == sub.segment_of(b))
    bad = dataclasses.replace(sc, faults=(FaultSpec(10.0, FaultKind.CUT_LINK,
                                                    link=(str(inner[0]), str(inner[1])),
                                                    field="faults[0]"),))
    with pytest.raises(LabError, match=r"faults\[0\].link: .* inside segment"):
        prepare(bad, "p0002", 0.01, sub)
    tm = load_scenario("builtin:abilene-tm")
    with pytest.raises(LabError, match="background"):
        prepare(tm, "p0003", 0.01, partitioned(load_topology(tm.topology), tm.segments))
