"""The records of a traffic run and how its flows are resolved on the substrate.

Theory of operation: plain data -- a flow on node ids (:class:`SimFlow`), a path change
(:class:`Move`), a congestion episode, one monitoring interval, the whole result
(:class:`TrafficResult`) -- and :func:`resolve`, which checks a ``traffic:`` section's
flows against the loaded topology (errors name the field) and groups the flows of each
virtual network onto one stitch (:class:`~vnstitch.sim.stitched.Group`). The run itself
is :mod:`vnstitch.sim.traffic`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from vnstitch.model import Substrate
from vnstitch.routing.monitor import CongestionEvent
from vnstitch.routing.paths import all_pairs_k_shortest_paths
from vnstitch.sim.allocation import AllocationResult
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.stitched import Group, StitchedFlows
from vnstitch.sim.traffic_spec import FlowSpec, TrafficSpec

Arc = tuple[str, str]
Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SimFlow:
    """A flow resolved on the substrate: node ids, its home (shortest) path."""

    name: str
    qos_class: str
    src: str
    dst: str
    home: Path  # latency-shortest: a background flow's home, the allocator's first guess
    spec: FlowSpec
    group: int | None = None  # its VN's stitch group (None: background)
    reverse: bool = False  # runs from the stitch's target to its origin


@dataclass(frozen=True, slots=True)
class Move:
    """One make-before-break path change and when each step happened."""

    flow: str
    qos_class: str
    kind: str  # "reroute" | "return" | "allocate" | "stitch" | "stitch-return" | "igp"
    decided_s: float
    effective_s: float  # new path installed, traffic shifted
    removed_s: float  # old path removed
    old_path: Path
    new_path: Path
    reason: str


@dataclass
class Episode:
    arc: Arc
    onset_s: float
    peak_offered_util: float
    detected_s: float | None = None
    resolved_s: float | None = None
    #: "reroute" | "load" | "stitch_down" | "link_change" | None (still hot at the end)
    resolved_by: str | None = None
    stitched: bool = False  # a stitch's flow crossed the arc during the episode


@dataclass
class IntervalRecord:
    """One monitoring interval ending at ``end_s``: means over the interval."""

    end_s: float
    max_utilisation: float
    congested: list[Arc]
    offered: dict[str, float]  # per class, Mbit/s
    delivered: dict[str, float]


@dataclass
class TrafficResult:
    spec: TrafficSpec
    flows: list[SimFlow]
    labels: dict[str, str]
    duration_s: float
    intervals: list[IntervalRecord] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    events: list[CongestionEvent] = field(default_factory=list)
    offered_mbit: dict[str, float] = field(default_factory=dict)
    delivered_mbit: dict[str, float] = field(default_factory=dict)
    seconds_below_guarantee: dict[str, float] = field(default_factory=dict)
    final_paths: dict[str, Path] = field(default_factory=dict)
    returns_blocked: list[tuple[float, str, str]] = field(default_factory=list)  # t, flow, why
    allocation: AllocationResult | None = None  # with an ``allocation:`` section
    unattached_s: list[float] = field(default_factory=list)  # per flow
    unattached_mbit: dict[str, float] = field(default_factory=dict)  # per class
    flow_offered: list[float] = field(default_factory=list)  # Mbit per flow
    flow_delivered: list[float] = field(default_factory=list)
    flow_stitches: list[list[str]] = field(default_factory=list)  # commitment ids
    first_paths: dict[str, Path] = field(default_factory=dict)  # a VN flow's first links
    stitched: StitchedFlows | None = None  # with a protocol engine attached

    def name(self, path: Sequence[str]) -> str:
        return " > ".join(self.labels.get(n, n) for n in path)

    def link(self, arc: Arc) -> str:
        return f"{self.labels.get(arc[0], arc[0])}->{self.labels.get(arc[1], arc[1])}"


def _node(substrate: Substrate, raw: str, source: str, where: str) -> str:
    g = substrate.graph
    if raw in g:
        return raw
    hits = sorted(n for n, lab in g.nodes(data="label") if lab == raw)
    if len(hits) == 1:
        return str(hits[0])
    problem = "ambiguous label" if hits else "no such node (id or label)"
    raise ScenarioError(source, where, f"{problem} {raw!r} in {substrate.name}")


def resolve(spec: TrafficSpec, substrate: Substrate, source: str) -> tuple[
        list[SimFlow], dict[tuple[str, str], list[Path]], list[Group]]:
    """Flows on node ids with their home paths, the candidate paths per pair, and one
    stitch group per VN (its flows must join the same two segments)."""
    ends = [(_node(substrate, f.src, source, f"{f.field}.src"),
             _node(substrate, f.dst, source, f"{f.field}.dst")) for f in spec.flows]
    for f, (s, d) in zip(spec.flows, ends, strict=True):
        if s == d:
            raise ScenarioError(source, f"{f.field}.dst", f"{f.dst!r} is the same node as "
                                f"src {f.src!r}")
    cands = all_pairs_k_shortest_paths(substrate.graph, spec.reroute.k, pairs=set(ends))
    flows = []
    for f, (s, d) in zip(spec.flows, ends, strict=True):
        if not cands.get((s, d)):
            raise ScenarioError(source, f"{f.field}.dst", f"no path from {f.src!r} to "
                                f"{f.dst!r} in {substrate.name}")
        flows.append(SimFlow(f.name, f.qos_class, s, d, cands[s, d][0], f))
    seg = {str(n): str(x) for n, x in substrate.graph.nodes(data="segment")}
    index = {x: i for i, x in enumerate(sorted(set(seg.values())))}
    groups: list[Group] = []
    by_vn: dict[int, int] = {}
    for i, (f, fl) in enumerate(zip(spec.flows, flows, strict=True)):
        if f.vn is None:
            continue
        a, b = index[seg[fl.src]], index[seg[fl.dst]]
        if a == b:
            raise ScenarioError(source, f"{f.field}.dst", f"{f.dst!r} is in segment "
                                f"{seg[fl.dst]} like src {f.src!r}: VN traffic inside one "
                                "segment needs no stitch")
        first = f.reserve_mbps if f.reserve_mbps is not None else \
            next((x for _, x in f.schedule if x > 0), 0.0) if f.mbps <= 0 else f.mbps
        if f.vn not in by_vn:
            by_vn[f.vn] = len(groups)
            groups.append(Group(f.vn, a, b, [], 0.0))
        g = groups[by_vn[f.vn]]
        if {a, b} != {g.origin, g.target}:
            raise ScenarioError(source, f"{f.field}.vn", f"VN {f.vn} already joins segments "
                                f"{g.origin} and {g.target} (by index); a VN's flows share "
                                "one stitch")
        g.flows.append(i)
        g.bandwidth_mbps += first
        flows[i] = dataclasses.replace(fl, group=by_vn[f.vn], reverse=a != g.origin)
    for g in groups:
        g.bandwidth_mbps = max(1.0, g.bandwidth_mbps)
    return flows, {k: list(v) for k, v in cands.items()}, groups
