"""From a scenario to a finished run: load, partition, generate, simulate, summarise.

Theory of operation: :func:`build` resolves everything the scenario leaves statistical or
symbolic -- the topology is loaded and split into segments, VNs placed and requests drawn
with seeded generators, fault targets checked against the real segment and link names
(errors name the scenario field) -- and returns a ready :class:`Simulation`. :func:`run`
advances it to the scenario's end, reporting progress in virtual seconds, and times the
wall clock *outside* the deterministic summary. With a ``traffic:`` section it is one
simulation: the traffic layer's VNs are placed with the others, it is attached to the
engine (it sees every stitch event as it happens), and the two advance together -- the
engine up to the traffic layer's next event, then that event.
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
from vnstitch.sim.parity import parity_summary
from vnstitch.sim.parity_records import ParityRecorder, sim_records
from vnstitch.sim.picks import busiest_adjacency
from vnstitch.sim.protocol_cores import ProtocolCoreFactory
from vnstitch.sim.scenario import Scenario, request_window
from vnstitch.sim.summary import summarise
from vnstitch.sim.traffic import TrafficSim
from vnstitch.sim.traffic_matrix import build_traffic
from vnstitch.sim.traffic_model import TrafficResult
from vnstitch.sim.traffic_summary import summarise_stitches, summarise_traffic
from vnstitch.sim.workload import (
    BUSIEST_TRANSIT,
    Fault,
    StitchRequest,
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
    #: the traffic layer itself, in its final state (paths, trees)
    traffic_sim: TrafficSim | None = None

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
        if f.link_pick is not None:
            try:
                busiest_adjacency([], sub)
            except ScenarioError as exc:
                raise ScenarioError(scenario.source, f"{f.field}.link", exc.problem) from None
        if f.link is not None and not sub.graph.has_edge(*f.link):
            raise ScenarioError(scenario.source, f"{f.field}.link",
                                f"no substrate link {f.link[0]}-{f.link[1]}")
        if f.at > scenario.duration_s:
            raise ScenarioError(scenario.source, f"{f.field}.at",
                                f"{f.at:g}s is after the end ({scenario.duration_s:g}s)")
        out.append(Fault(f.at, f.action, f.segment, f.link,
                         tuple(SegmentId(s) for s in f.segments), f.name, f.link_pick))
    return out


@dataclass(frozen=True)
class Workload:
    """The scenario's ``vns:`` and ``requests:`` drawn for one substrate (seeded: the
    simulator and the lab draw the same)."""

    placements: list[VirtualNetwork]  # members, one entry per (VN, segment)
    non_members: list[VirtualNetwork]  # segments that declare a VN without being members
    requests: list[StitchRequest]


def workload(scenario: Scenario, sub: Substrate) -> Workload:
    segments = sub.segments()
    rng = random.Random(derive_seed(scenario.seed, "workload"))
    placements = place_vns(segments, scenario.vns.count, scenario.vns.segments_per_vn, rng)
    non_members: list[VirtualNetwork] = []
    if scenario.vns.non_members:
        non_members = place_non_members(placements, segments, scenario.vns.non_members, rng)
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
            placements + non_members, rq.count, start_s=start, end_s=end,
            bandwidth_mbps=rq.bandwidth_mbps, rng=rng,
            max_latency_ms=rq.max_latency_ms, hop_limit=rq.hop_limit, hold_s=rq.hold_s)
    return Workload(placements, non_members, requests)


def build(
    scenario: Scenario,
    factory: FactoryMaker = default_factory,
    *,
    substrate: Substrate | None = None,
    check_every_step: bool = True,
    traffic: TrafficSim | None = None,
) -> Simulation:
    sub = substrate if substrate is not None else load_substrate(scenario)
    w = workload(scenario, sub)
    placements = w.placements
    own = traffic.placements(placements) if traffic is not None else []
    made = factory(scenario, sub)
    if w.non_members and isinstance(made, ProtocolCoreFactory):
        made.access = MemberPolicies(placements + own, placements + own + w.non_members,
                                     made.identity)
    placements = placements + w.non_members
    requests = w.requests
    sim = Simulation(
        sub, made, placements=placements + own, requests=requests,
        faults=_faults(scenario, sub), impairments=scenario.network, seed=scenario.seed,
        check_every_step=check_every_step, costs=scenario.rm_costs)
    if traffic is not None:
        traffic.attach(sim)
    return sim


def run(
    scenario: Scenario,
    factory: FactoryMaker = default_factory,
    *,
    substrate: Substrate | None = None,
    progress: Callable[[float], None] | None = None,
    check_every_step: bool = True,
) -> RunResult:
    t0 = time.perf_counter()
    sub = substrate if substrate is not None else load_substrate(scenario)
    # Data traffic (if any) rides the stitches; built first so a bad flow is reported
    # before the long part.
    traffic = build_traffic(scenario, sub)
    sim = build(scenario, factory, substrate=sub, check_every_step=check_every_step,
                traffic=traffic)
    recorder = ParityRecorder(sim)
    t1 = time.perf_counter()
    end = scenario.duration_s
    result = None
    if traffic is None:
        sim.run(end, progress)
    else:
        traffic.begin(end)
        while True:
            nxt = min(traffic.next_event(), end)
            sim.run(nxt, progress)  # stitch events reach the traffic layer as they happen
            traffic.integrate_to(nxt)
            if nxt >= end - 1e-9:
                break
            traffic.process(nxt)
        result = traffic.finish()
    t2 = time.perf_counter()
    summary = summarise(sim, name=scenario.name, duration_s=scenario.duration_s)
    if scenario.vns.non_members:
        summary["membership"] = summarise_membership(sim)
    if result is not None:
        assert traffic is not None and traffic.log is not None
        summary["stitches"] = summarise_stitches(traffic.log, [str(s) for s in sim.segments])
        summary["traffic"] = summarise_traffic(result)
        if result.allocation is not None:
            summary["allocation"] = summarise_allocation(result.allocation,
                                                         scenario.duration_s, result.labels)
    summary["parity"] = parity_summary(sim_records(recorder, scenario, result))
    return RunResult(sim, summary, t2 - t1, t1 - t0, result, traffic)
