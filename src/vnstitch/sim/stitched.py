"""Traffic on the negotiated stitches: which stitch a flow rides, on which substrate links.

Theory of operation. Each virtual network of the ``traffic:`` section is one *group*: its
flows join the same two segments, and the traffic layer asks the origin segment's Route
Manager for one stitch for it -- when the origin's own controller asks
(:class:`vnstitch.control.demand.StitchDemand`: as soon as the VN's traffic is offered,
whether or not the origin's discovery knows a route to the VNID yet, with a backoff
after a failure; or at the scenario's explicit ``stitch_at_s``), see
:meth:`StitchedFlows.ask_due`. The protocol's events
(:class:`StitchLog`, an engine observer) open and close *commitments*: one per
established path of a stitch, id ``STITCH/N``; a repair after a crash or cut ends one
commitment and, when the stitch is up again, opens the next. A flow rides its group's
open commitment, on the substrate path through that commitment's segments
(:func:`segment_route`: the latency-shortest path from the flow's source node to its
destination node that visits exactly those segments in order, over links that are not
cut; inside a segment the segment's own IGP picks the links, and re-picks them when a
link is cut or repaired). No open commitment, or no uncut path through its segments:
the flow is *unattached*, its traffic offered and not delivered.

Moves. The decision to move a stitch is the Route Manager controller's
(:mod:`vnstitch.sim.stitch_control` drives one per simulated RM, over one table of the
origins' decisions, :attr:`StitchedFlows.mover`); this module only starts what they
ask (:meth:`StitchedFlows.renegotiate`; :meth:`StitchedFlows.element` names the element
behind a link), adopts successors once established, tells the origins' table at once
and the controllers at their next step which stitch replaced which
(:attr:`StitchedFlows.replaced`) and which renegotiation found no path
(:attr:`StitchedFlows.failed_moves`). The origin's own decision is re-optimisation
(:meth:`vnstitch.control.reroute.StitchMover.cheaper`): when its stitch commits and
whenever its discovery's best route to the VN changes, the origin compares the
committed cost with the cheapest route known (both from the core's typed views,
:func:`vnstitch.control.demand.cheaper_routes`) and moves the stitch onto a cheaper one,
make-before-break. So a stitch asked for before discovery knew where the VN is (the
first offer taken, :mod:`vnstitch.control.demand`) ends on the cheapest path.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx

from vnstitch.control.demand import StitchDemand, cheaper_routes, knows_route
from vnstitch.control.model import Renegotiate
from vnstitch.control.reroute import StitchMover
from vnstitch.model.ids import VNID, RouteManagerId, SegmentId
from vnstitch.protocol.api import (
    Event,
    RouteChanged,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
)
from vnstitch.protocol.core import RouteManagerCore
from vnstitch.protocol.intent import TRANSIENT
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
        #: stitches that were up when their origin crashed
        self.lost: set[tuple[int, str]] = set()

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
            self.lost.add(key)


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


@dataclass(frozen=True, slots=True)
class StitchMove:
    group: int
    kind: str  # "renegotiate" (around an element) | "return" | "reoptimise"
    decided_s: float
    old_stitch: str
    new_stitch: str
    avoid: str
    reason: str


class StitchedFlows:
    """The traffic layer's side of the protocol: requests, bindings, renegotiations."""

    def __init__(self, sim: Simulation, log: StitchLog, groups: list[Group], *,
                 at: float | None = None) -> None:
        """``at``: the scenario's explicit time to ask for every stitch (None: on
        demand; the origins' controllers each decide, :mod:`vnstitch.control.demand`)."""
        self.sim, self.log, self.groups = sim, log, groups
        rng = random.Random(sim.seed)  # the retries' jitter, seeded like the run
        # Asked at once, route known or not: a blind first offer is re-optimised once
        # discovery knows a cheaper route (module docstring).
        self.demand = StitchDemand(lambda n: TRANSIENT.delay(n, rng), route_wait_s=0.0)
        for g in groups:
            self.demand.add(g.vnid, at=at)
        self.seg_names = [str(s) for s in sim.segments]
        self.moves: list[StitchMove] = []
        self.unavoidable: list[tuple[float, Arc, str]] = []
        #: (old, successor, committed) and stitches whose renegotiation failed, since the
        #: controllers last heard (they drain both)
        #: (old, new, its commit time, whether a hold-down starts: a congestion move)
        self.replaced: list[tuple[str, str, float, bool]] = []
        self.failed_moves: list[str] = []
        #: The origins' move decisions (set by the controllers' driver when they start).
        self.mover: StitchMover | None = None

    def offered(self, now: float, rates: Sequence[float], *, ask: bool = True) -> None:
        """The traffic each group offers at ``now`` (per flow) to its demand; then ask
        for what is due (``ask``: the engine runs)."""
        for g in self.groups:
            if any(rates[i] > 0 for i in g.flows):
                self.demand.offered(g.vnid, now)
        if ask:
            self.ask_due(now)

    def next_ask(self, now: float) -> float:
        """When a demand next asks by itself (never before ``now``; inf: never)."""
        at = self.demand.next_timer()
        return math.inf if at is None else max(at, now)

    def ask_due(self, now: float) -> None:
        """Ask each group's origin for the stitches its demand says are due."""
        due = set(self.demand.due(now))
        for g in self.groups:
            core = self.sim.cores[g.origin]
            if g.vnid not in due or (isinstance(core, RouteManagerCore) and not any(
                    v.via is None and int(v.vnid) == g.vnid for v in core.route_views())):
                continue  # not placed on its origin yet: asked at its own route event
            g.sid, g.successor = self.sim.request(g.origin, StitchRequest(
                now, self.sim.segments[g.origin], VNID(g.vnid),
                StitchConstraints(g.bandwidth_mbps)), now), None
            self.demand.asked(g.vnid, now)
            # The origin down, or a failure the core reported while asked (before the
            # id was known here): retried on the demand's backoff.
            if g.sid is None or (g.origin, g.sid) in self.log.failed:
                self.demand.failed(g.vnid, now)

    def on_event(self, rm: int, ev: Event, now: float) -> None:
        """Feed the demand what the origin's core reports: routes and its attempts."""
        for g in self.groups:
            if g.origin != rm:
                continue
            if isinstance(ev, RouteChanged) and int(ev.vnid) == g.vnid:
                core = self.sim.cores[rm]
                known = isinstance(core, RouteManagerCore) and \
                    knows_route(core.route_views(), g.vnid)
                self.demand.route(g.vnid, known, now)
                self.ask_due(now)
                self.reoptimise(g, now)
            elif isinstance(ev, StitchEstablished) and ev.stitch_id == g.sid:
                self.demand.up(g.vnid)
                self.reoptimise(g, now)
            elif isinstance(ev, StitchFailed) and ev.stitch_id == g.sid:
                self.demand.failed(g.vnid, now)

    def request_lost(self, rm: int, now: float) -> None:
        """Ask again for the stitches of origin ``rm`` that went down when it crashed."""
        for g in self.groups:
            if g.origin == rm and g.sid is not None and (rm, g.sid) in self.log.lost:
                self.log.lost.discard((rm, g.sid))
                g.sid, g.successor = None, None
                self.demand.lost(g.vnid, now)
        self.ask_due(now)

    def commitment(self, g: Group) -> Commitment | None:
        return None if g.sid is None else self.log.open.get((g.origin, g.sid))

    def adopt_successors(self) -> bool:
        """Point each group at its successor once that is established; True if any moved."""
        changed = False
        for g in self.groups:
            if g.successor is None:
                continue
            key = (g.origin, g.successor)
            move = next((m for m in reversed(self.moves) if m.new_stitch == g.successor),
                        None)
            hold = move is None or move.kind != "reoptimise"
            if key in self.log.open:
                assert g.sid is not None
                self.log.replaced_by[(g.origin, g.sid)] = g.successor
                made = self.log.open[key].committed_s
                if self.mover is not None:
                    self.mover.moved(made, g.sid, g.successor, hold=hold)
                self.replaced.append((g.sid, g.successor, made, hold))
                g.sid, g.successor = g.successor, None
                changed = True
            elif key in self.log.failed:
                if g.sid is not None and hold:
                    self.failed_moves.append(g.sid)
                elif g.sid is not None and self.mover is not None:
                    self.mover.failed(g.sid)  # stays; no hold-down (re-optimisation)
                g.successor = None
        return changed

    def reoptimise(self, g: Group, now: float) -> None:
        """The origin's re-optimisation of ``g``'s stitch (module docstring)."""
        core = self.sim.cores[g.origin]
        if self.mover is None or g.sid is None or g.successor is not None or \
                not isinstance(core, RouteManagerCore):
            return
        have = cheaper_routes(core.stitch_views(), core.route_views()).get(g.sid)
        if have is None:
            return
        acts, _ = self.mover.cheaper(now, g.sid, *have)
        for act in acts:
            self.renegotiate(now, act, "reoptimise")

    def renegotiate(self, now: float, act: Renegotiate, kind: str,
                    around: tuple[Arc, Mapping[str, str]] | None = None) -> int | None:
        """Start what a controller asked (a :class:`StitchMove` ``kind``): ``act``'s
        stitch renegotiated around the element behind an arc (``around``: the arc
        ``act.around`` names, and each node's segment), or onto the best path now.
        The group asked to move, or None."""
        k = next((k for k, g in enumerate(self.groups) if g.sid == act.stitch_id), None)
        if k is None:
            return None
        g = self.groups[k]
        if g.successor is not None:
            return None  # a renegotiation of this stitch is already under way
        label = ""
        avoid: frozenset[Element] = frozenset()
        if around is not None:
            elem, label, _ = self.element(*around)
            avoid = frozenset({elem})
        new = self.sim.renegotiate(g.origin, act.stitch_id, avoid, now)
        if new is None:
            if self.mover is not None:
                self.mover.failed(act.stitch_id)
            return None
        g.successor = new
        self.moves.append(StitchMove(k, kind, now, act.stitch_id, new, label,
                                     f"VN {g.vnid}: {act.reason}"
                                     + (f" ({label})" if label else "")))
        return k

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
