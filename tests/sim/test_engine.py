"""The engine on its own, driven with the test double core (fast, no crypto)."""

from __future__ import annotations

import json
import math
import random

import networkx as nx

from tests.sim.conftest import double_factory
from tests.sim.doublecore import DoubleFactory
from vnstitch.model import Substrate, load_topology, partitioned
from vnstitch.model.ids import SegmentId
from vnstitch.sim.engine import Simulation, derive_seed
from vnstitch.sim.network import Impairments, NetworkModel, home_nodes
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import parse_scenario
from vnstitch.sim.summary import summarise
from vnstitch.sim.workload import Fault, FaultKind, place_vns, poisson_requests


def _sim(sub: Substrate, seed: int = 1, loss: float = 0.0,
         faults: tuple[Fault, ...] = ()) -> Simulation:
    rng = random.Random(seed)
    pl = place_vns(sub.segments(), 6, 2, rng)
    reqs = poisson_requests(pl, 20, start_s=5, end_s=30, bandwidth_mbps=(10, 100), rng=rng)
    return Simulation(sub, DoubleFactory(), placements=pl, requests=reqs, faults=faults,
                      impairments=Impairments(loss=loss, jitter_ms=0.3, duplicate=0.01,
                                              reorder=0.05), seed=seed)


def test_same_seed_same_summary_bytes(abilene4: Substrate) -> None:
    outs = []
    for _ in range(2):
        sim = _sim(partitioned(load_topology("zoo:Abilene"), 4), seed=7, loss=0.05)
        sim.run(40)
        outs.append(json.dumps(summarise(sim), sort_keys=True))
    assert outs[0] == outs[1]
    other = _sim(abilene4, seed=8, loss=0.05)
    other.run(40)
    assert json.dumps(summarise(other), sort_keys=True) != outs[0]


def test_discovery_converges_and_stitches_are_made(abilene4: Substrate) -> None:
    sim = _sim(abilene4)
    sim.run(40)
    s = summarise(sim)
    assert s["convergence_seconds"] is not None and s["convergence_seconds"] < 5
    assert s["committed"] >= 15
    assert s["overcommit_violations"] == 0 and s["loops_detected"] == 0
    assert s["invariants"]["no_overcommit"]["checks"] > 100
    # set-up takes one path round trip in the double (setup out, ack back ~ RTT)
    assert 0.4 < s["setup_rtts_median"] < 1.6


def test_time_only_moves_forward_and_messages_have_substrate_latency(
        abilene4: Substrate) -> None:
    net = NetworkModel(abilene4, Impairments(), seed=1)
    segs = net.segments
    for a in segs:
        for b in segs:
            lat = net.latency(a, b)
            assert (lat == 0.0) == (a == b)
            assert math.isfinite(lat)
    homes = home_nodes(abilene4)
    a, b = segs[0], segs[1]

    expected = nx.shortest_path_length(abilene4.graph, homes[a], homes[b], weight="latency_ms")
    assert abs(net.latency(a, b) - expected) < 1e-9
    assert net.delays(net.index[a], net.index[b]) == (expected / 1000.0,)


def test_partition_cuts_and_heal_restores(abilene4: Substrate) -> None:
    net = NetworkModel(abilene4, Impairments(), seed=1)
    segs = net.segments
    cut = {segs[1], segs[2]}
    net.partition("p", cut)
    g = abilene4.graph
    rest = g.subgraph([n for n in g if g.nodes[n]["segment"] not in cut])

    for a in segs:
        for b in segs:
            same_side = (a in cut) == (b in cut)
            if not same_side:
                assert not net.reachable(a, b)
            elif a not in cut:
                assert net.reachable(a, b) == nx.has_path(rest, net.homes[a], net.homes[b])
    net.heal("p")
    assert all(net.reachable(a, b) for a in segs for b in segs)


def test_loss_is_seeded_and_about_right(abilene4: Substrate) -> None:
    net = NetworkModel(abilene4, Impairments(loss=0.1), seed=3)
    n = 20_000
    lost = sum(1 for _ in range(n) if not net.delays(0, 1))
    assert 0.08 * n < lost < 0.12 * n
    again = NetworkModel(abilene4, Impairments(loss=0.1), seed=3)
    net2 = NetworkModel(abilene4, Impairments(loss=0.1), seed=3)
    assert [again.delays(0, 1) for _ in range(100)] == [net2.delays(0, 1) for _ in range(100)]


def test_crash_loses_memory_and_restart_restores_saved_state(abilene4: Substrate) -> None:
    seg = abilene4.segments()[1]
    faults = (Fault(10.0, FaultKind.CRASH, segment=seg),
              Fault(20.0, FaultKind.RESTART, segment=seg))
    sim = _sim(abilene4, faults=faults)
    sim.run(15)
    i = sim.seg_index[SegmentId(seg)]
    assert sim.cores[i] is None and i in sim.saved
    sim.run(40)
    core = sim.cores[i]
    assert core is not None
    # the double persists its local VNs only; they survive, its routes were relearnt
    assert sim.metrics.routes[i]
    assert sim.metrics.stale_checks  # a black-hole check ran one hold time after each fault
    assert all(stale == 0 for _, stale in sim.metrics.stale_checks)


def test_partition_withdraws_stale_routes(abilene4: Substrate) -> None:
    segs = abilene4.segments()
    faults = (Fault(10.0, FaultKind.PARTITION, segments=(SegmentId(segs[0]),), name="p"),
              Fault(25.0, FaultKind.HEAL, name="p"))
    sim = _sim(abilene4, faults=faults)
    sim.run(40)
    assert len(sim.metrics.stale_checks) == 2
    assert all(stale == 0 for _, stale in sim.metrics.stale_checks)


def test_runner_builds_from_scenario_text() -> None:
    sc = parse_scenario("""
name: t
topology: zoo:Abilene
segments: 3
duration_s: 20
vns: {count: 4, segments_per_vn: 2}
requests: {count: 5, start_s: 3, end_s: 15}
faults:
  - {at: 8, action: crash, segment: busiest-transit}
  - {at: 12, action: restart, segment: busiest-transit}
""", "inline", None)
    result = run(sc, double_factory)
    assert result.summary["requests"] == 5
    assert result.summary["scenario"] == "t"
    assert result.simulation.events > 0


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(1, "network") == derive_seed(1, "network")
    assert derive_seed(1, "network") != derive_seed(2, "network")
    assert derive_seed(1, "core", "seg00", 0) != derive_seed(1, "core", "seg00", 1)
