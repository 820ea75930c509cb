"""Data traffic in the simulator: QoS classes on the negotiated stitches, congestion, reroute.

Theory of operation. Flows (:class:`~vnstitch.sim.traffic_spec.FlowSpec`) of a virtual
network ride the stitch the protocol committed for that VN, on that commitment's
substrate path (:mod:`vnstitch.sim.stitched`); with no commitment their traffic is
offered, not delivered, and counted (``unattached_seconds``) -- never routed some other
way. Background flows (from a traffic matrix) are substrate traffic on latency-shortest
paths. Offered rates are piecewise constant, so the run is an exact event-driven fluid
simulation whose events are: a flow's rate changes, a monitoring sample is due (every
``interval_s``), a background reroute takes effect, and -- from the protocol engine,
through :meth:`TrafficSim.on_event` -- a stitch is committed, moved or torn down. Between
events nothing changes, and every figure is an integral over those constant stretches.
The runner interleaves the two: the engine runs up to the traffic layer's next event, its
stitch events reach the traffic layer as they happen (which first integrates up to that
moment), then the traffic layer processes its own event.

* **Serving.** Each directed substrate arc carries the HTB tree the QoS policy would get
  there (:mod:`vnstitch.routing.htb`). A flow enters its first arc at its offered rate; what
  an arc passes on is what enters the next, so rates are found by a fixed point over the
  arcs (a few sweeps; a path has no loops). A flow's delivered rate is what leaves its
  last arc: computed, never assumed.
* **Monitoring.** At the end of each interval every arc reports its mean *carried*
  utilisation over that interval (what interface counters show) to the routing layer's
  :class:`~vnstitch.routing.monitor.CongestionMonitor` (thresholds, hysteresis).
* **Stitches move.** Each simulated RM's controller (:mod:`vnstitch.sim.stitch_control`
  drives :class:`vnstitch.control.Controller`) watches the arcs it owns and asks to
  renegotiate stitches crossing a congested one around it, make-before-break; their
  flows move when the successor is committed. After the hold-down, a moved stitch is
  asked back when the link it left has room.
* **Background reroute.** While arcs are congested, :func:`~vnstitch.routing.monitor.plan_reroutes`
  moves the fewest background flows (sized by their offered rates over the interval, as measured at
  the network edge) onto one of ``k`` shortest alternatives; otherwise
  :func:`~vnstitch.routing.monitor.plan_returns` brings one flow home when its home path
  has room. A flow under allocation goes home only if the allocator can also host its
  reservation there (:meth:`~vnstitch.sim.allocation.SimAllocation.can_host`): it was
  moved because a home link could not, and load alone would send it back to be moved
  away again. A refused return is counted. Both respect the hold-down (dampening).
  Every move is make-before-break: the new path is installed during ``install_s``,
  traffic shifts when it is up (the flow is never without a path), and the old path is
  removed ``install_s`` later.
* **Ground truth.** An arc is *hot* while the offered load routed over it exceeds the
  monitor's ``high`` threshold. A congestion episode runs from the moment an arc turns
  hot to the moment it cools, and is resolved ``by reroute`` if a reroute or a stitch
  move taking effect cooled it, ``by load`` if the offered load fell by itself,
  ``by stitch_down`` if the traffic left with a torn-down stitch. Onset to resolution in
  monitoring intervals is the figure issue 7 bounds (3).

Pure: virtual time only, no I/O; the same inputs give the same result.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vnstitch.model import Substrate
from vnstitch.model.ids import VNID
from vnstitch.model.virtual import Component, VirtualNetwork
from vnstitch.protocol.api import Event
from vnstitch.routing.htb import HtbTree, flows_share, tree_for_link
from vnstitch.routing.monitor import (
    ArcState,
    CongestionMonitor,
    Flow,
    RerouteDecision,
    RerouteLoop,
)
from vnstitch.sim.allocation import SimAllocation
from vnstitch.sim.engine import Simulation
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.stitch_control import StitchControl
from vnstitch.sim.stitched import StitchedFlows, StitchLog, StitchMove, segment_route
from vnstitch.sim.traffic_model import (
    Episode,
    IntervalRecord,
    Move,
    TrafficResult,
    resolve,
)
from vnstitch.sim.traffic_spec import TrafficSpec

Arc = tuple[str, str]
Path = tuple[str, ...]
_EPS = 1e-9
#: Fixed-point sweeps over the arcs; a flow's rate can only fall along its path, and
#: sweeps stop as soon as nothing moves (usually after path-length sweeps).
_MAX_SWEEPS = 64


@dataclass
class _State:
    """Everything that is constant until the next event."""

    offered: list[float]
    delivered: list[float]
    carried: dict[Arc, float]
    below_guarantee: dict[str, bool]



def _arcs(path: Sequence[str]) -> list[Arc]:
    return list(itertools.pairwise(path))


class TrafficSim:
    """One run over ``[0, duration_s]``: build, then :meth:`run` alone (background flows
    only), or :meth:`attach` to a protocol engine and step it (module docstring)."""

    def __init__(self, spec: TrafficSpec, substrate: Substrate, *,
                 source: str = "<traffic>") -> None:
        self.spec = spec
        self.source = source
        self.flows, self.cands, self.groups = resolve(spec, substrate, source)
        g = substrate.graph
        self.cap: dict[Arc, float] = {}
        for u, v, d in g.edges(data=True):
            self.cap[u, v] = self.cap[v, u] = float(d["capacity_mbps"])
        trees: dict[float, HtbTree] = {}
        self.tree: dict[Arc, HtbTree] = {}
        for arc, c in self.cap.items():
            if c not in trees:
                trees[c] = tree_for_link(spec.policy, c, spec.borrow)
            self.tree[arc] = trees[c]
        self.guaranteed = {c.name: c.guaranteed_mbps / spec.policy.link_mbps
                           for c in spec.policy.classes}  # per Mbit/s of link
        self.labels = {str(n): str(lab) for n, lab in g.nodes(data="label") if lab}
        self.seg_of = {str(n): str(x) for n, x in g.nodes(data="segment")}
        self.graph = g
        self.paths: list[Path] = self._start_paths()
        self.planned: list[Path] = list(self.paths)  # paths including pending moves
        # The Predictive Resource Allocator (sim.allocation) rewrites tree and cap.
        self.alloc: SimAllocation | None = None
        self.stitched: StitchedFlows | None = None
        self.log: StitchLog | None = None
        self.down: set[tuple[str, str]] = set()  # substrate links cut (sorted node pairs)

    def _start_paths(self) -> list[Path]:
        """Background flows start home; VN flows start unattached."""
        return [() if f.group is not None else f.home for f in self.flows]

    # -- the protocol side ---------------------------------------------------------------
    def placements(self, taken: Sequence[VirtualNetwork]) -> list[VirtualNetwork]:
        """Each VN of the traffic on its two segments (its flows' ends)."""
        used = {vn.vnid for vn in taken}
        segs = sorted(set(self.seg_of.values()))
        out: list[VirtualNetwork] = []
        for k, g in enumerate(self.groups):
            f = self.spec.flows[g.flows[0]]
            if g.vnid in used:
                raise ScenarioError(self.source, f"{f.field}.vn", f"VNID {g.vnid} is one "
                                    "of the vns: section's; pick another")
            for j, s in enumerate((g.origin, g.target)):
                net = ipaddress.ip_network((0xAC100000 + ((2 * k + j) << 8), 24))
                out.append(VirtualNetwork(VNID(g.vnid), segs[s],  # type: ignore[arg-type]
                                          (Component.parse(str(net)),),
                                          application=f"vn{g.vnid}"))
        return out

    def attach(self, sim: Simulation) -> None:
        """Ride ``sim``'s stitches: observe its events, ask it for stitches and moves."""
        self.log = StitchLog(sim.rm_index)
        self.stitched = StitchedFlows(sim, self.log, self.groups, at=self.spec.stitch_at_s)
        sim.observers.append(self)

    def on_event(self, rm: int, event: Event, now: float) -> None:
        if self.log is None or not hasattr(self, "res"):
            return
        self.integrate_to(now)
        self.log.on_event(rm, event, now)
        assert self.stitched is not None
        self.stitched.on_event(rm, event, now)
        self._rebind(now)

    def on_crash(self, rm: int, now: float) -> None:
        if self.log is None or not hasattr(self, "res"):
            return
        self.integrate_to(now)
        self.log.on_crash(rm, now)
        self._rebind(now)

    def on_restart(self, rm: int, now: float) -> None:
        """A Route Manager's stitch requests outlive it (the daemon keeps them as
        intents): the groups whose stitch went down with it ask again."""
        if self.stitched is None or not hasattr(self, "res"):
            return
        self.stitched.request_lost(rm, now)

    def on_links(self, now: float) -> None:
        if self.stitched is None or not hasattr(self, "res"):
            return
        self.integrate_to(now)
        before, self.down = self.down, set(self.stitched.sim.net.down_links())
        if self.control is not None:  # the RMs at a cut link's ends see it at once
            cut = self.down - before
            self.control.links_down(now, [a for a in self.cap if (min(a), max(a)) in cut],
                                    self.down)
        self._rebind(now, links=True)

    def _rebind(self, t: float, *, links: bool = False) -> None:
        """Each VN flow onto its group's open commitment (or unattached); with ``links``
        (a cut or repair), every VN flow's links are picked again."""
        st = self.stitched
        if st is None:
            return
        moved = st.adopt_successors()
        changed = False
        down = self.down
        for i, f in enumerate(self.flows):
            if f.group is None:
                continue
            g = self.groups[f.group]
            c = st.commitment(g)
            ids = self.res.flow_stitches[i]
            same = c is not None and bool(ids) and ids[-1] == c.id
            if same and self.paths[i] and not links:
                continue  # same commitment: keep its links (the allocator may move them)
            path: Path = ()
            if c is not None:
                path = segment_route(self.graph, st.segments_of(c, f.reverse),
                                     f.src, f.dst, down) or ()
                if path and (not ids or ids[-1] != c.id):
                    ids.append(c.id)
            if path != self.paths[i]:
                old = self.paths[i]
                self.paths[i] = self.planned[i] = path
                changed = True
                if path:
                    self.res.first_paths.setdefault(f.name, path)
                if old and path and same:
                    self.res.moves.append(Move(
                        f.name, f.qos_class, "igp", t, t, t, old, path, "a substrate link "
                        "was cut or repaired: the segments re-picked the stitch's links"))
                elif old and path:
                    why = self._last_move(f.group)
                    kind = "stitch" if why is None or why.kind == "renegotiate" else \
                        "stitch-return" if why.kind == "return" else "stitch-cheaper"
                    # Make-before-break: decided at a sample, effective when the successor
                    # is committed; the old stitch is released in that same step.
                    self.res.moves.append(Move(
                        f.name, f.qos_class, kind, why.decided_s if why else t, t, t, old,
                        path, why.reason if why else "stitch renegotiated by the protocol"))
        if changed:
            self._paths_changed(t, "reroute" if moved else "link_change" if links
                                else "stitch_down")

    def _segs(self, path: Path) -> list[str]:
        return [k for k, _ in itertools.groupby(self.seg_of[n] for n in path)]

    def _last_move(self, group: int) -> StitchMove | None:
        st = self.stitched
        assert st is not None
        last = [m for m in st.moves if m.group == group]
        return last[-1] if last else None

    # -- serving ---------------------------------------------------------------------
    def serve(self, offered: Sequence[float]) -> _State:
        """Rates out of every hop by a fixed point over the arcs (module docstring)."""
        flows, paths = self.flows, self.paths
        hops = [_arcs(p) for p in paths]
        inp = [[offered[i]] * len(h) for i, h in enumerate(hops)]
        out = [list(x) for x in inp]
        on_arc: dict[Arc, list[tuple[int, int]]] = {}
        for i, h in enumerate(hops):
            for j, a in enumerate(h):
                on_arc.setdefault(a, []).append((i, j))
        for _ in range(_MAX_SWEEPS):
            for a, users in on_arc.items():
                rates = flows_share(self.tree[a], [(flows[i].qos_class, inp[i][j])
                                                   for i, j in users])
                for (i, j), r in zip(users, rates, strict=True):
                    out[i][j] = r
            moved = False
            for i, h in enumerate(hops):
                for j in range(1, len(h)):
                    if abs(inp[i][j] - out[i][j - 1]) > _EPS:
                        inp[i][j] = out[i][j - 1]
                        moved = True
            if not moved:
                break
        carried = {a: sum(out[i][j] for i, j in users) for a, users in on_arc.items()}
        # No path: an unattached VN flow delivers nothing (never routed some other way).
        delivered = [o[-1] if o else 0.0 for o in out]
        below = self._below_guarantee(offered, delivered, on_arc, inp)
        return _State(list(offered), delivered, carried, below)

    def _below_guarantee(self, offered: Sequence[float], delivered: Sequence[float],
                         on_arc: Mapping[Arc, list[tuple[int, int]]],
                         inp: Sequence[Sequence[float]]) -> dict[str, bool]:
        """Per class: does any of its flows on a path get less than its guaranteed share
        end to end, i.e. less than ``min(offered, min over its arcs of guaranteed rate x
        the flow's share of its class's offered load there)``? (An unattached flow is
        counted as unattached, not as a QoS shortfall.)"""
        share = [math.inf] * len(self.flows)
        for a, users in on_arc.items():
            demand: dict[str, float] = {}
            for i, j in users:
                c = self.flows[i].qos_class
                demand[c] = demand.get(c, 0.0) + inp[i][j]
            for i, j in users:
                c = self.flows[i].qos_class
                if demand[c] > _EPS:
                    g = self._guaranteed_rate(a, c) * inp[i][j] / demand[c]
                    share[i] = min(share[i], g)
        below = dict.fromkeys(self.guaranteed, False)
        for i, f in enumerate(self.flows):
            if not self.paths[i]:
                continue
            owed = min(offered[i], share[i])
            if delivered[i] < owed * (1 - 1e-6) - _EPS:
                below[f.qos_class] = True
        return below

    def _guaranteed_rate(self, a: Arc, c: str) -> float:
        if self.alloc is None:
            return self.guaranteed[c] * self.cap[a]
        return next(leaf.rate_mbps for leaf in self.tree[a].classes if leaf.name == c)

    # -- the run ---------------------------------------------------------------------
    def run(self, duration_s: float) -> TrafficResult:
        """Alone, without a protocol engine: VN flows stay unattached."""
        self.begin(duration_s)
        while self.t < duration_s - _EPS:
            nxt = min(self.next_event(), duration_s)
            self.integrate_to(nxt)
            self.process(nxt)
        return self.finish()

    def begin(self, duration_s: float) -> None:
        spec = self.spec
        self.duration_s = duration_s
        rr = spec.reroute
        self.loop = RerouteLoop(CongestionMonitor(spec.monitor), target=rr.target,
                                hold_down_s=rr.hold_down_s, returns=rr.returns,
                                return_below=rr.return_below,
                                movable_classes=frozenset(rr.classes)
                                if rr.classes is not None else None)
        res = self.res = TrafficResult(spec, self.flows, self.labels, duration_s)
        classes = [c.name for c in spec.policy.classes]
        for key in ("offered_mbit", "delivered_mbit", "seconds_below_guarantee",
                    "unattached_mbit"):
            setattr(res, key, dict.fromkeys(classes, 0.0))
        n = len(self.flows)
        res.unattached_s, res.flow_offered, res.flow_delivered = [0.0] * n, [0.0] * n, \
            [0.0] * n
        res.flow_stitches = [[] for _ in range(n)]
        res.stitched = self.stitched
        self.changes = sorted({at for f in self.flows for at, _ in f.spec.schedule
                               if 0 < at < duration_s})
        self.pending: list[tuple[float, int, int, Move]] = []
        self.seq = itertools.count()
        self.t = 0.0
        self.down = set()
        self.paths = self._start_paths()  # a run always starts from home / unattached
        self.planned = list(self.paths)
        self.control: StitchControl | None = None
        if self.stitched is not None:
            self.control = StitchControl(spec, self.stitched, self.seg_of, sorted(self.cap),
                                         self.res.link)
        self._start_allocation()
        if self.control is not None:
            self.control.start(0.0, self.cap)
        self.state = self.serve([f.spec.offered_at(0.0) for f in self.flows])
        if self.stitched is not None:  # asked once the engine runs (process, on_event)
            self.stitched.offered(0.0, self.state.offered, ask=False)
        self.hot = self._hot(self.state.offered)
        self.open_ep: dict[Arc, Episode] = {}
        self._open(self.hot, self.open_ep, res, 0.0, self.state.offered)
        self._reset_acc()
        self.samples = 1
        self.next_sample = spec.interval_s

    def _reset_acc(self) -> None:
        self.acc_carried: dict[Arc, float] = dict.fromkeys(self.cap, 0.0)
        self.acc_off = [0.0] * len(self.flows)
        self.acc_del = [0.0] * len(self.flows)
        self.acc_unattached = [0.0] * len(self.flows)  # offered while unattached

    def next_event(self) -> float:
        return min(self.next_sample, self.changes[0] if self.changes else math.inf,
                   self.pending[0][0] if self.pending else math.inf,
                   self.stitched.next_ask(self.t) if self.stitched is not None else math.inf,
                   self.alloc.next_change(self.t) if self.alloc is not None else math.inf)

    def integrate_to(self, nxt: float) -> None:
        """Accumulate the constant state over ``[t, nxt]``."""
        dt = nxt - self.t
        if dt <= 0:
            return
        state, res = self.state, self.res
        for a, x in state.carried.items():
            self.acc_carried[a] += x * dt
        for i in range(len(self.flows)):
            c = self.flows[i].qos_class
            off, got = state.offered[i] * dt, state.delivered[i] * dt
            self.acc_off[i] += off
            self.acc_del[i] += got
            res.offered_mbit[c] += off
            res.delivered_mbit[c] += got
            res.flow_offered[i] += off
            res.flow_delivered[i] += got
            if not self.paths[i]:
                res.unattached_s[i] += dt
                res.unattached_mbit[c] += off
                self.acc_unattached[i] += off
        for c, bad in state.below_guarantee.items():
            if bad:
                res.seconds_below_guarantee[c] += dt
        self.t = nxt

    def _paths_changed(self, t: float, why: str) -> None:
        now_hot = self._hot(self.state.offered)
        self._close(self.hot - now_hot, self.open_ep, t, why)
        self._open(now_hot - self.hot, self.open_ep, self.res, t, self.state.offered)
        self.hot = now_hot
        self._mark_stitched()
        self.state = self.serve(self.state.offered)

    def _mark_stitched(self) -> None:
        for a, ep in self.open_ep.items():
            if not ep.stitched:
                ep.stitched = any(f.group is not None and a in _arcs(self.paths[i])
                                  for i, f in enumerate(self.flows))

    def process(self, t: float) -> None:
        """Everything of the traffic layer's own that is due at ``t``."""
        res, state = self.res, self.state
        changed = False
        while True:
            activated = False
            while self.pending and self.pending[0][0] <= t + _EPS:
                _, _, i, move = heapq.heappop(self.pending)
                self.paths[i] = move.new_path
                activated = changed = True
            if activated:
                now_hot = self._hot(state.offered)
                self._close(self.hot - now_hot, self.open_ep, t, "reroute")
                self._open(now_hot - self.hot, self.open_ep, res, t, state.offered)
                self.hot = now_hot
            if self.changes and self.changes[0] <= t + _EPS:
                self.changes.pop(0)
                offered = [f.spec.offered_at(t) for f in self.flows]
                now_hot = self._hot(offered)
                self._close(self.hot - now_hot, self.open_ep, t, "load")
                self._open(now_hot - self.hot, self.open_ep, res, t, offered)
                self.hot = now_hot
                state.offered = offered
                changed = True
            for a in self.hot:
                self.open_ep[a].peak_offered_util = max(
                    self.open_ep[a].peak_offered_util,
                    self._load(state.offered, a) / self.cap[a])
            self._mark_stitched()
            if self.next_sample <= t + _EPS:
                interval = self.spec.interval_s
                util = {a: self.acc_carried[a] / (self.cap[a] * interval) for a in self.cap}
                mean_off = [x / interval for x in self.acc_off]
                self._sample(t, util, mean_off)
                self._reset_acc()
                self.samples += 1
                self.next_sample = self.samples * interval  # no drift from repeated sums
            if not (self.pending and self.pending[0][0] <= t + _EPS):
                break
        if self.stitched is not None:  # traffic offered now may be a VN's first
            self.stitched.offered(t, state.offered)
        if self.alloc is not None:  # reservations or bought capacity may have changed
            tree, cap = self.alloc.dataplane(t, self.planned)
            if tree != self.tree or cap != self.cap:
                self.tree, self.cap = tree, cap
                changed = True
        if changed:
            self.state = self.serve(state.offered)

    def finish(self) -> TrafficResult:
        res = self.res
        for ep in self.open_ep.values():
            ep.resolved_by = None
        res.final_paths = {f.name: p for f, p in zip(self.flows, self.paths, strict=True)}
        if self.alloc is not None:
            res.allocation = self.alloc.finish(self.duration_s)
        return res

    def _may_return(self, t: float, d: RerouteDecision) -> bool:
        """A return the allocator cannot host is refused and recorded (it was moved
        because a home link could not host it; load alone would send it back)."""
        if self.alloc is None:
            return True
        ok, why = self.alloc.can_host(d.flow_id, d.new_path, t, self.planned)
        if not ok:
            self.res.returns_blocked.append((t, d.flow_id, why))
        return ok

    def _start_allocation(self) -> None:
        """A fresh allocator per run, over the static trees and physical capacities."""
        spec = self.spec.allocation
        if spec is None:
            return
        cap0 = self.alloc.cap0 if self.alloc is not None else self.cap
        self.alloc = SimAllocation(
            spec, policy=self.spec.policy, borrow=self.spec.borrow,
            interval_s=self.spec.interval_s, graph=self.graph, cap=cap0,
            flows=[(f.name, f.qos_class, f.src, f.dst, f.home) for f in self.flows])
        self.tree, self.cap = self.alloc.dataplane(0.0, self.planned)

    def _allocate(self, t: float, offered: Sequence[float],
                  delivered: Sequence[float]) -> None:
        """Run the allocator; its reroutes are make-before-break moves like any other."""
        assert self.alloc is not None
        install = self.spec.reroute.install_s
        for i, path in sorted(self.alloc.decide(t, offered, delivered, self.planned).items()):
            f = self.flows[i]
            if f.group is not None and self._segs(path) != self._segs(self.planned[i]):
                continue  # a VN flow may change links only inside its stitch's segments
            move = Move(f.name, f.qos_class, "allocate", t, t + install, t + 2 * install,
                        self.planned[i], path, "allocator: the provider could not scale a "
                        "link of its path; routing found one with room")
            self.planned[i] = path
            self.loop.state.last_moved[f.name] = t  # the return planner's hold-down applies
            self.res.moves.append(move)
            heapq.heappush(self.pending, (move.effective_s, next(self.seq), i, move))

    def _load(self, offered: Sequence[float], arc: Arc) -> float:
        return sum(offered[i] for i, p in enumerate(self.paths) if arc in _arcs(p))

    def _hot(self, offered: Sequence[float]) -> set[Arc]:
        load: dict[Arc, float] = {}
        for i, p in enumerate(self.paths):
            for a in _arcs(p):
                load[a] = load.get(a, 0.0) + offered[i]
        high = self.spec.monitor.high
        return {a for a, x in load.items() if x > high * self.cap[a] + _EPS}

    @staticmethod
    def _close(arcs: set[Arc], open_ep: dict[Arc, Episode], t: float, why: str) -> None:
        for a in sorted(arcs):
            ep = open_ep.pop(a)
            ep.resolved_s, ep.resolved_by = t, why

    def _open(self, arcs: set[Arc], open_ep: dict[Arc, Episode], res: TrafficResult,
              t: float, offered: Sequence[float]) -> None:
        for a in sorted(arcs):
            ep = Episode(a, t, self._load(offered, a) / self.cap[a])
            open_ep[a] = ep
            res.episodes.append(ep)

    def _sample(self, t: float, util: dict[Arc, float],
                mean_offered: Sequence[float]) -> None:
        """End of a monitoring interval: record it, then the routing layer's loop and
        the stitches' plan decide; moves are make-before-break."""
        spec, interval, res, open_ep = self.spec, self.spec.interval_s, self.res, self.open_ep
        acc_del = self.acc_del
        events = self.loop.observe(t, util)
        res.events.extend(events)
        for ev in events:
            if ev.new is ArcState.CONGESTED and ev.arc in open_ep \
                    and open_ep[ev.arc].detected_s is None:
                open_ep[ev.arc].detected_s = t
        congested = self.loop.congested()
        offered_cls: dict[str, float] = {}
        delivered_cls: dict[str, float] = {}
        for i, f in enumerate(self.flows):
            # what the links were offered: traffic without a stitch is counted apart
            attached = mean_offered[i] - self.acc_unattached[i] / interval
            offered_cls[f.qos_class] = offered_cls.get(f.qos_class, 0.0) + attached
            delivered_cls[f.qos_class] = (delivered_cls.get(f.qos_class, 0.0)
                                          + acc_del[i] / interval)
        res.intervals.append(IntervalRecord(t, max(util.values(), default=0.0),
                                            list(congested), offered_cls, delivered_cls))
        rr = spec.reroute
        asked: set[int] = set()
        if self.control is not None:
            asked = self.control.step(t, self.acc_carried, self.cap, flows=self.flows,
                                      paths=self.paths, offered=mean_offered)
        # VN flows count in the load but move only with their stitch: no candidates.
        sized = [Flow(f.name, f.src if f.group is None else f"vn:{f.name}", f.dst,
                      mean_offered[i], self.planned[i], f.qos_class)
                 for i, f in enumerate(self.flows) if f.group not in asked]
        home = {f.name: f.home for f in self.flows if f.group is None}
        kind, decisions = self.loop.decide(t, sized, self.cap, self.cands, home=home,
                                           may_return=lambda d: self._may_return(t, d))
        index = {f.name: i for i, f in enumerate(self.flows)}
        for d in decisions:
            i = index[d.flow_id]
            move = Move(d.flow_id, self.flows[i].qos_class, kind, t, t + rr.install_s,
                        t + 2 * rr.install_s, d.old_path, d.new_path, d.reason)
            self.planned[i] = d.new_path
            res.moves.append(move)
            heapq.heappush(self.pending, (move.effective_s, next(self.seq), i, move))
        if self.alloc is not None:
            self._allocate(t, mean_offered, [x / interval for x in acc_del])


def run_traffic(spec: TrafficSpec, substrate: Substrate, duration_s: float, *,
                source: str = "<traffic>") -> TrafficResult:
    """Build and run one traffic simulation alone (background flows; see the module doc)."""
    return TrafficSim(spec, substrate, source=source).run(duration_s)
