"""From a scenario to a finished run: load, partition, generate, simulate, summarise.

Theory of operation: :func:`build` resolves everything the scenario leaves statistical or
symbolic -- the topology is loaded and split into segments, VNs placed and requests drawn
with seeded generators, fault targets checked against the real segment and link names
(errors name the scenario field) -- and returns a ready :class:`Simulation`. :func:`run`
advances it to the scenario's end, reporting progress in virtual seconds, and times the
wall clock *outside* the deterministic summary.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnstitch.model import Substrate, load_topology, partitioned
from vnstitch.model.ids import SegmentId
from vnstitch.model.virtual import VirtualNetwork
from vnstitch.sim.allocation import summarise_allocation
from vnstitch.sim.cores import CoreFactory
from vnstitch.sim.engine import Simulation, derive_seed
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.membership import MemberPolicies, place_non_members, summarise_membership
from vnstitch.sim.protocol_cores import ProtocolCoreFactory
from vnstitch.sim.scenario import Scenario, request_window
from vnstitch.sim.summary import summarise
from vnstitch.sim.traffic import TrafficResult, summarise_traffic
from vnstitch.sim.traffic_matrix import build_traffic
from vnstitch.sim.workload import (
    BUSIEST_TRANSIT,
    Fault,
    place_vns,
    poisson_requests,
    requests_from_file,
)

FactoryMaker = Callable[[Scenario, Substrate], CoreFactory]


@dataclass
class RunResult:
    simulation: Simulation
    summary: dict[str, Any]
    wall_seconds: float
    setup_seconds: float
    traffic: TrafficResult | None = None

    @property
    def events_per_second(self) -> float:
        return self.simulation.events / self.wall_seconds if self.wall_seconds > 0 else 0.0


def default_factory(scenario: Scenario, substrate: Substrate) -> CoreFactory:
    """The real Stitching Protocol core with the scenario's timer overrides."""
    return ProtocolCoreFactory(scenario.seed, scenario.protocol, source=scenario.source)


def load_substrate(scenario: Scenario) -> Substrate:
    spec = scenario.topology
    if scenario.base_dir and not spec.startswith(("zoo:", "sndlib:")) \
            and not Path(spec).is_absolute():
        spec = str(Path(scenario.base_dir) / spec)
    sub = load_topology(spec)
    n = sub.graph.number_of_nodes()
    if scenario.segments > n:
        raise ScenarioError(scenario.source, "segments",
                            f"{scenario.segments} segments but {sub.name} has {n} nodes")
    return partitioned(sub, scenario.segments)


def _faults(scenario: Scenario, sub: Substrate) -> list[Fault]:
    segs = set(sub.segments())
    out = []
    for f in scenario.faults:
        if f.segment is not None and f.segment != BUSIEST_TRANSIT and f.segment not in segs:
            raise ScenarioError(scenario.source, f"{f.field}.segment",
                                f"unknown segment {f.segment!r} (have {min(segs)}..{max(segs)}"
                                f" or {BUSIEST_TRANSIT!r})")
        for s in f.segments:
            if s not in segs:
                raise ScenarioError(scenario.source, f"{f.field}.segments",
                                    f"unknown segment {s!r}")
        if f.link is not None and not sub.graph.has_edge(*f.link):
            raise ScenarioError(scenario.source, f"{f.field}.link",
                                f"no substrate link {f.link[0]}-{f.link[1]}")
        if f.at > scenario.duration_s:
            raise ScenarioError(scenario.source, f"{f.field}.at",
                                f"{f.at:g}s is after the end ({scenario.duration_s:g}s)")
        out.append(Fault(f.at, f.action, f.segment, f.link,
                         tuple(SegmentId(s) for s in f.segments), f.name))
    return out


def build(
    scenario: Scenario,
    factory: FactoryMaker = default_factory,
    *,
    substrate: Substrate | None = None,
    check_every_step: bool = True,
) -> Simulation:
    sub = substrate if substrate is not None else load_substrate(scenario)
    segments = sub.segments()
    rng = random.Random(derive_seed(scenario.seed, "workload"))
    placements = place_vns(segments, scenario.vns.count, scenario.vns.segments_per_vn, rng)
    made = factory(scenario, sub)
    non_members: list[VirtualNetwork] = []
    if scenario.vns.non_members:
        non_members = place_non_members(placements, segments, scenario.vns.non_members, rng)
        if isinstance(made, ProtocolCoreFactory):
            made.access = MemberPolicies(placements, placements + non_members, made.identity)
        placements = placements + non_members
    rq = scenario.requests
    if rq.arrival == "file":
        assert rq.file is not None
        path = Path(rq.file)
        if scenario.base_dir and not path.is_absolute():
            path = Path(scenario.base_dir) / path
        requests = requests_from_file(path, segments)
    else:
        start, end = request_window(scenario)
        if end > scenario.duration_s:
            raise ScenarioError(scenario.source, "requests.end_s",
                                f"{end:g}s is after the end ({scenario.duration_s:g}s)")
        requests = poisson_requests(
            placements, rq.count, start_s=start, end_s=end,
            bandwidth_mbps=rq.bandwidth_mbps, rng=rng,
            max_latency_ms=rq.max_latency_ms, hop_limit=rq.hop_limit, hold_s=rq.hold_s)
    return Simulation(
        sub, made, placements=placements, requests=requests,
        faults=_faults(scenario, sub), impairments=scenario.network, seed=scenario.seed,
        check_every_step=check_every_step)


def run(
    scenario: Scenario,
    factory: FactoryMaker = default_factory,
    *,
    substrate: Substrate | None = None,
    progress: Callable[[float], None] | None = None,
    check_every_step: bool = True,
) -> RunResult:
    t0 = time.perf_counter()
    sim = build(scenario, factory, substrate=substrate, check_every_step=check_every_step)
    # Data traffic (if any) runs on the same substrate and virtual time span; built
    # first so a bad flow is reported before the long part.
    traffic = build_traffic(scenario, sim.substrate)
    t1 = time.perf_counter()
    sim.run(scenario.duration_s, progress)
    result = traffic.run(scenario.duration_s) if traffic is not None else None
    t2 = time.perf_counter()
    summary = summarise(sim, name=scenario.name, duration_s=scenario.duration_s)
    if scenario.vns.non_members:
        summary["membership"] = summarise_membership(sim)
    if result is not None:
        summary["traffic"] = summarise_traffic(result)
        if result.allocation is not None:
            summary["allocation"] = summarise_allocation(result.allocation,
                                                         scenario.duration_s, result.labels)
    return RunResult(sim, summary, t2 - t1, t1 - t0, result)
