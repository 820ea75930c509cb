"""Traffic on the negotiated stitches: which stitch a flow rides, on which substrate links.

Theory of operation. Each virtual network of the ``traffic:`` section is one *group*: its
flows join the same two segments, and the traffic layer asks the origin segment's Route
Manager for one stitch for it (:meth:`StitchedFlows.request`). The protocol's events
(:class:`StitchLog`, an engine observer) open and close *commitments*: one per
established path of a stitch, id ``STITCH/N``; a repair after a crash or cut ends one
commitment and, when the stitch is up again, opens the next. A flow rides its group's
open commitment, on the substrate path through that commitment's segments
(:func:`segment_route`: the latency-shortest path from the flow's source node to its
destination node that visits exactly those segments in order, over links that are not
cut; inside a segment the segment's own IGP picks the links, and re-picks them when a
link is cut or repaired). No open commitment, or no uncut path through its segments:
the flow is *unattached*, its traffic offered and not delivered.

Congestion (:meth:`StitchedFlows.plan`). Each substrate arc belongs to the Route Manager
of its tail node's segment; that RM measures the arc (interval-mean carried load, fed to
:class:`~vnstitch.routing.monitor.CongestionMonitor`) and names the element to avoid: its
own segment for an arc inside a transit segment, the adjacency of the two segments for an
arc between segments. The origin of every stitch crossing the arc knows its own stitch's
rate (bytes into its tunnel). The simulator hands the owner's finding to those origins
directly; no wire message carries it yet. Origins move their stitches, largest first,
until the arc's predicted load is under ``target``: a make-before-break renegotiation
around the element (:meth:`vnstitch.protocol.core.RouteManagerCore.renegotiate_stitch`),
accepting a costlier path. A stitch moved less than ``hold_down_s`` ago stays. An arc
inside an end segment cannot be avoided by stitching (only that segment's IGP could):
it is counted, not moved. A moved stitch returns -- another renegotiation, avoiding
nothing, which picks the cheapest path -- once ``hold_down_s`` has passed, nothing is
congested, its home path was cheaper, and every arc of that path would stay under
``return_below`` with the stitch back on it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx

from vnstitch.model.ids import VNID, RouteManagerId, SegmentId
from vnstitch.protocol.api import (
    Event,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
)
from vnstitch.sim.engine import Simulation
from vnstitch.sim.workload import StitchRequest

Arc = tuple[str, str]
Path = tuple[str, ...]
Element = tuple[RouteManagerId, ...]


def segment_route(graph: nx.Graph, segs: Sequence[str], src: str, dst: str,
                  down: Collection[tuple[str, str]] = ()) -> Path | None:
    """Latency-shortest substrate path ``src`` .. ``dst`` through ``segs`` in order,
    over links not ``down`` (node pairs, sorted)."""
    seg = nx.get_node_attributes(graph, "segment")
    if not segs or seg.get(src) != segs[0] or seg.get(dst) != segs[-1]:
        return None
    layers = {s: k for k, s in enumerate(segs)}
    if len(layers) != len(segs):
        return None
    h: nx.DiGraph = nx.DiGraph()
    for u, v, d in graph.edges(data=True):
        if (min(u, v), max(u, v)) in down:
            continue
        w = float(d["latency_ms"])
        for a, b in ((u, v), (v, u)):
            ka, kb = layers.get(seg[a]), layers.get(seg[b])
            if ka is None or kb is None:
                continue
            if ka == kb or kb == ka + 1:
                h.add_edge((a, ka), (b, kb), w=w)
    try:
        nodes = nx.shortest_path(h, (src, 0), (dst, len(segs) - 1), weight="w")
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return None
    return tuple(str(n) for n, _ in nodes)


@dataclass
class Commitment:
    """One established path of one stitch, from commit to its end."""

    id: str
    origin: int
    stitch_id: str
    vnid: int
    path: tuple[int, ...]  # segment indices, origin first
    bandwidth_mbps: float
    cost: float
    committed_s: float
    ended_s: float | None = None
    end_reason: str | None = None


class StitchLog:
    """Commitments from the protocol's events (module docstring)."""

    def __init__(self, rm_index: Mapping[RouteManagerId, int]) -> None:
        self.rm_index = rm_index
        self.all: list[Commitment] = []
        self.open: dict[tuple[int, str], Commitment] = {}
        self.count: dict[tuple[int, str], int] = {}
        self.failed: dict[tuple[int, str], str] = {}
        #: old stitch id -> successor, for stitches the traffic layer moved
        self.replaced_by: dict[tuple[int, str], str] = {}

    def _close(self, key: tuple[int, str], now: float, why: str) -> None:
        c = self.open.pop(key, None)
        if c is not None:
            c.ended_s, c.end_reason = now, why

    def on_event(self, rm: int, ev: Event, now: float) -> None:
        if isinstance(ev, StitchEstablished):
            key = (rm, ev.stitch_id)
            self._close(key, now, "moved")
            n = self.count[key] = self.count.get(key, 0) + 1
            c = Commitment(f"{ev.stitch_id}/{n}", rm, ev.stitch_id, int(ev.vnid),
                           tuple(self.rm_index[r] for r in ev.path), ev.bandwidth_mbps,
                           ev.cost, now)
            self.open[key] = c
            self.all.append(c)
        elif isinstance(ev, StitchTornDown):
            key = (rm, ev.stitch_id)
            if key in self.replaced_by:
                why = "replaced"
            elif ev.renegotiating:
                why = f"repairing ({ev.reason})"
            else:
                why = "released" if str(ev.reason) == "local" else str(ev.reason)
            self._close(key, now, why)
        elif isinstance(ev, StitchFailed):
            self.failed[(rm, ev.stitch_id)] = f"{ev.reason}: {ev.detail}"

    def on_crash(self, rm: int, now: float) -> None:
        for key in [k for k in self.open if k[0] == rm]:
            self._close(key, now, "origin_crashed")


@dataclass
class Group:
    """The flows of one VN and the stitch that carries them."""

    vnid: int
    origin: int  # segment index
    target: int
    flows: list[int]
    bandwidth_mbps: float
    sid: str | None = None
    successor: str | None = None
    home_cost: float | None = None
    home_path: tuple[int, ...] = ()  # segment indices of its first commitment
    last_move_s: float = -float("inf")
    moved_from: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StitchMove:
    group: int
    kind: str  # "renegotiate" | "return"
    decided_s: float
    old_stitch: str
    new_stitch: str
    avoid: str
    reason: str


class StitchedFlows:
    """The traffic layer's side of the protocol: requests, bindings, renegotiations."""

    def __init__(self, sim: Simulation, log: StitchLog, groups: list[Group]) -> None:
        self.sim, self.log, self.groups = sim, log, groups
        self.seg_names = [str(s) for s in sim.segments]
        self.moves: list[StitchMove] = []
        self.unavoidable: list[tuple[float, Arc, str]] = []

    def request(self, now: float) -> None:
        """Ask for each group's stitch; again (each monitoring interval) after one failed."""
        for g in self.groups:
            if g.sid is None or ((g.origin, g.sid) in self.log.failed
                                 and (g.origin, g.sid) not in self.log.open):
                g.sid = self.sim.request(g.origin, StitchRequest(
                    now, self.sim.segments[g.origin], VNID(g.vnid),
                    StitchConstraints(g.bandwidth_mbps)), now)

    def commitment(self, g: Group) -> Commitment | None:
        return None if g.sid is None else self.log.open.get((g.origin, g.sid))

    def adopt_successors(self) -> bool:
        """Point each group at its successor once that is established; True if any moved."""
        changed = False
        for g in self.groups:
            if g.successor is None:
                continue
            key = (g.origin, g.successor)
            if key in self.log.open:
                assert g.sid is not None
                self.log.replaced_by[(g.origin, g.sid)] = g.successor
                g.sid, g.successor = g.successor, None
                changed = True
                if g.home_cost is None:
                    g.home_cost = self.log.open[key].cost
            elif key in self.log.failed:
                g.successor = None
        return changed

    def segments_of(self, c: Commitment, reverse: bool) -> list[str]:
        segs = [self.seg_names[k] for k in c.path]
        return segs[::-1] if reverse else segs

    # -- decisions ------------------------------------------------------------------------
    def element(self, arc: Arc, seg_of: Mapping[str, str]) -> tuple[Element, str, set[int]]:
        """What the arc's owner asks to avoid, its label, and the segments it involves."""
        a, b = seg_of[arc[0]], seg_of[arc[1]]
        ia, ib = self.sim.seg_index[SegmentId(a)], self.sim.seg_index[SegmentId(b)]
        rm = self.sim.rm_ids
        if ia == ib:
            return (rm[ia],), f"segment {a}", {ia}
        return (rm[ia], rm[ib]), f"adjacency {a}-{b}", {ia, ib}

    def plan(self, now: float, congested: Sequence[Arc], util: Mapping[Arc, float],
             cap: Mapping[Arc, float], *, group_load: Mapping[int, Mapping[Arc, float]],
             seg_of: Mapping[str, str], target: float, hold_down_s: float,
             names: Mapping[Arc, str]) -> set[int]:
        """Renegotiate stitches off congested arcs (module docstring); the groups asked."""
        load = {a: util[a] * cap[a] for a in congested}
        asked: set[int] = set()
        for arc in sorted(congested, key=lambda a: (-util[a], a)):
            elem, label, segs = self.element(arc, seg_of)
            on_arc = sorted((k for k, gl in group_load.items() if gl.get(arc, 0.0) > 0),
                            key=lambda k: (-group_load[k][arc], k))
            for k in on_arc:
                if load[arc] <= target * cap[arc]:
                    break
                g = self.groups[k]
                if k in asked or g.successor is not None or g.sid is None \
                        or now - g.last_move_s < hold_down_s:
                    continue
                if len(elem) == 1 and segs & {g.origin, g.target}:
                    self.unavoidable.append((now, arc, f"VN {g.vnid}: {label} is an end "
                                             "of the stitch"))
                    continue
                new = self.sim.renegotiate(g.origin, g.sid, frozenset({elem}), now)
                if new is None:
                    continue
                c = self.commitment(g)
                if g.home_cost is None and c is not None:
                    g.home_cost = c.cost
                g.successor, g.last_move_s = new, now
                asked.add(k)
                for a, x in group_load[k].items():
                    if a in load:
                        load[a] -= x
                self.moves.append(StitchMove(
                    k, "renegotiate", now, g.sid, new, label,
                    f"arc {names[arc]} congested at {util[arc]:.0%}; renegotiating VN "
                    f"{g.vnid}'s stitch ({group_load[k][arc]:.0f} Mbit/s) around {label}"))
        return asked

    def plan_returns(self, now: float, util: Mapping[Arc, float], cap: Mapping[Arc, float],
                     home_add: Mapping[int, Mapping[Arc, float]], *, below: float,
                     hold_down_s: float) -> None:
        """Bring one moved stitch home when its home path has room (module docstring)."""
        for k, add in sorted(home_add.items()):
            g = self.groups[k]
            c = self.commitment(g)
            if c is None or g.successor is not None or g.sid is None or \
                    g.home_cost is None or c.cost <= g.home_cost + 1e-9 or \
                    now - g.last_move_s < hold_down_s:
                continue
            ok = all(util.get(a, 0.0) + x / cap[a] < below for a, x in add.items())
            if not ok:
                continue
            new = self.sim.renegotiate(g.origin, g.sid, frozenset(), now)
            if new is None:
                continue
            g.successor, g.last_move_s = new, now
            self.moves.append(StitchMove(
                k, "return", now, g.sid, new, "",
                f"congestion cleared; VN {g.vnid}'s home path (cost {g.home_cost:g} < "
                f"{c.cost:g}) stays under {below:.0%}, held {hold_down_s:g} s"))
            return
