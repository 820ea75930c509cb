"""Scenario picks (``@ring-a``, ``@far-b``, ``@K``), percent rates and the
``busiest-adjacency`` link alias: resolved against the topology, the same way in both
runtimes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import networkx as nx
import pytest

from tests.lab.test_topolab import GRAPHML
from vnstitch.model import load_topology, partitioned
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.picks import (
    adjacency_links,
    busiest_adjacency,
    busiest_transit,
    resolve_picks,
    segment_picks,
)
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import load_scenario, scenario_from_mapping


def test_picks_on_abilene_name_adjacent_ring_ends_and_far_ends() -> None:
    sub = partitioned(load_topology("zoo:Abilene"), 5)
    picks = segment_picks(sub)
    g = sub.segment_graph()
    assert g.has_edge(picks["ring-a"], picks["ring-b"])
    # the ring adjacency is no bridge: without it the segments stay connected
    h = g.copy()
    h.remove_edge(picks["ring-a"], picks["ring-b"])
    assert nx.is_connected(h)
    assert not g.has_edge(picks["far-a"], picks["far-b"])  # Abilene/5 has a transit
    assert picks["0"] == "seg00" and picks["4"] == "seg04"


def test_percent_rates_follow_the_narrowest_link_and_picks_become_home_nodes() -> None:
    sc = load_scenario("builtin:story")
    assert sc.traffic is not None
    sub = partitioned(load_topology("zoo:Abilene"), 5)
    spec = resolve_picks(sc.traffic, sub, sc.source)
    tv = next(f for f in spec.flows if f.name == "tv")
    assert not tv.percent and tv.src in sub.graph and tv.dst in sub.graph
    assert len(tv.schedule) == 1 and tv.schedule[0][0] == 6.0
    assert tv.schedule[0][1] == pytest.approx(3000.0)  # 30 % of 10 Gbit/s
    assert tv.reserve_mbps == pytest.approx(3000.0)


def test_a_flow_mixing_units_or_naming_an_unknown_pick_is_refused(tmp_path: Path) -> None:
    base = {"qos": {"link_mbps": 100, "classes": [
                {"name": "v", "priority": 0, "guaranteed_mbps": 10, "max_mbps": 100}]},
            "traffic": {"flows": [{"name": "f", "vn": 1, "class": "v", "src": "@ring-a",
                                   "dst": "@nowhere", "mbps": "10%",
                                   "schedule": [{"at": 5, "mbps": 30}]}]}}
    with pytest.raises(ScenarioError, match=r"traffic.flows\[0\].mbps: write every rate"):
        scenario_from_mapping(base, "s.yaml")
    base["traffic"]["flows"][0]["schedule"] = [{"at": 5, "mbps": "30%"}]  # type: ignore[index]
    sc = scenario_from_mapping(base, "s.yaml")
    assert sc.traffic is not None
    sub = partitioned(load_topology("zoo:Abilene"), 4)
    with pytest.raises(ScenarioError, match=r"traffic.flows\[0\].dst: no pick '@nowhere'"):
        resolve_picks(sc.traffic, sub, sc.source)


def test_busiest_adjacency_counts_paths_and_never_picks_a_bridge() -> None:
    sub = partitioned(load_topology("zoo:Geant2012"), 6)
    g = sub.segment_graph()
    bridges = {frozenset(e) for e in nx.bridges(g)}
    for paths in ([], [["seg00", "seg01"]] * 5, [["seg02", "seg00", "seg03"]]):
        a, b = busiest_adjacency(paths, sub)
        assert frozenset((a, b)) not in bridges and g.has_edge(a, b)
    assert set(busiest_adjacency([["seg02", "seg00", "seg03"]] * 2, sub)) in (
        {"seg00", "seg02"}, {"seg00", "seg03"})
    assert adjacency_links(sub, "seg00", "seg02")
    assert busiest_transit([["seg01", "seg00", "seg02"]], ["seg00", "seg01", "seg02"]) == \
        "seg00"
    assert busiest_transit([], ["seg00", "seg01"]) == "seg00"


def test_story_runs_simulated_on_a_tiny_graph_with_its_cut_and_crash(
        tmp_path: Path) -> None:
    path = tmp_path / "tiny.graphml"
    path.write_text(GRAPHML, encoding="utf-8")
    sc = dataclasses.replace(load_scenario("builtin:story"), topology=str(path), segments=3)
    res = run(sc, check_every_step=False)
    notes = [e.text for e in res.simulation.metrics.log if e.kind == "fault"]
    assert any(" cut" in n for n in notes) and any("repaired" in n for n in notes)
    assert any("crashed" in n for n in notes) and any("restarted" in n for n in notes)
    assert res.summary["committed"] >= 3
