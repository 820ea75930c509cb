"""Data traffic in the simulator: QoS classes on substrate paths, congestion, reroute.

Theory of operation. Flows (:class:`~vnstitch.sim.traffic_spec.FlowSpec`) start on their
latency-shortest path; their offered rates are piecewise constant, so the run is an
exact event-driven fluid simulation whose events are: a flow's rate changes, a monitoring
sample is due (every ``interval_s``), a reroute takes effect. Between events nothing
changes, and every figure is an integral over those constant stretches.

* **Serving.** Each directed substrate arc carries the HTB tree the QoS policy would get
  there (:mod:`vnstitch.sim.htb`). A flow enters its first arc at its offered rate; what
  an arc passes on is what enters the next, so rates are found by a fixed point over the
  arcs (a few sweeps; a path has no loops). A flow's delivered rate is what leaves its
  last arc: computed, never assumed.
* **Monitoring.** At the end of each interval every arc reports its mean *carried*
  utilisation over that interval (what interface counters show) to the routing layer's
  :class:`~vnstitch.routing.monitor.CongestionMonitor` (thresholds, hysteresis).
* **Reroute.** While arcs are congested, :func:`~vnstitch.routing.monitor.plan_reroutes`
  moves the fewest flows (sized by their offered rates over the interval, as measured at
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
  hot to the moment it cools, and is resolved ``by reroute`` if a reroute taking effect
  cooled it, ``by load`` if the offered load fell by itself. Onset to resolution in
  monitoring intervals is the figure issue 7 bounds (3).

Pure: virtual time only, no I/O; the same inputs give the same result.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vnstitch.model import Substrate
from vnstitch.routing.monitor import (
    ArcState,
    CongestionEvent,
    CongestionMonitor,
    Flow,
    RerouteDecision,
    RerouteState,
    plan_reroutes,
    plan_returns,
)
from vnstitch.routing.paths import all_pairs_k_shortest_paths
from vnstitch.sim.allocation import AllocationResult, SimAllocation
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.htb import HtbTree, flows_share, tree_for_link
from vnstitch.sim.traffic_spec import FlowSpec, TrafficSpec

Arc = tuple[str, str]
Path = tuple[str, ...]
_EPS = 1e-9
#: Fixed-point sweeps over the arcs; a flow's rate can only fall along its path, and
#: sweeps stop as soon as nothing moves (usually after path-length sweeps).
_MAX_SWEEPS = 64


@dataclass(frozen=True, slots=True)
class SimFlow:
    """A flow resolved on the substrate: node ids, its home (shortest) path."""

    name: str
    qos_class: str
    src: str
    dst: str
    home: Path
    spec: FlowSpec


@dataclass(frozen=True, slots=True)
class Move:
    """One make-before-break path change and when each step happened."""

    flow: str
    qos_class: str
    kind: str  # "reroute" | "return"
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
    resolved_by: str | None = None  # "reroute" | "load" | None (still hot at the end)


@dataclass
class IntervalRecord:
    """One monitoring interval ending at ``end_s``: means over the interval."""

    end_s: float
    max_utilisation: float
    congested: list[Arc]
    offered: dict[str, float]  # per class, Mbit/s
    delivered: dict[str, float]


@dataclass
class _State:
    """Everything that is constant until the next event."""

    offered: list[float]
    delivered: list[float]
    carried: dict[Arc, float]
    below_guarantee: dict[str, bool]


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
        list[SimFlow], dict[tuple[str, str], list[Path]]]:
    """Flows on node ids with their home paths, and the candidate paths per pair."""
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
    return flows, {k: list(v) for k, v in cands.items()}


def _arcs(path: Sequence[str]) -> list[Arc]:
    return list(itertools.pairwise(path))


class TrafficSim:
    """One run over ``[0, duration_s]``; build, then :meth:`run` (see the module doc)."""

    def __init__(self, spec: TrafficSpec, substrate: Substrate, *,
                 source: str = "<traffic>") -> None:
        self.spec = spec
        self.flows, self.cands = resolve(spec, substrate, source)
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
        self.paths: list[Path] = [f.home for f in self.flows]
        self.planned: list[Path] = list(self.paths)  # paths including pending moves
        self.graph = g
        # The Predictive Resource Allocator (sim.allocation) rewrites tree and cap.
        self.alloc: SimAllocation | None = None

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
        delivered = [o[-1] if o else offered[i] for i, o in enumerate(out)]
        below = self._below_guarantee(offered, delivered, on_arc, inp)
        return _State(list(offered), delivered, carried, below)

    def _below_guarantee(self, offered: Sequence[float], delivered: Sequence[float],
                         on_arc: Mapping[Arc, list[tuple[int, int]]],
                         inp: Sequence[Sequence[float]]) -> dict[str, bool]:
        """Per class: does any of its flows get less than its guaranteed share end to end,
        i.e. less than ``min(offered, min over its arcs of guaranteed rate x the flow's
        share of its class's offered load there)``?"""
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
        spec = self.spec
        interval = spec.interval_s
        monitor = CongestionMonitor(spec.monitor)
        rstate = RerouteState()
        res = TrafficResult(spec, self.flows, self.labels, duration_s)
        classes = [c.name for c in spec.policy.classes]
        for key in ("offered_mbit", "delivered_mbit", "seconds_below_guarantee"):
            setattr(res, key, dict.fromkeys(classes, 0.0))
        changes = sorted({at for f in self.flows for at, _ in f.spec.schedule
                          if 0 < at < duration_s})
        pending: list[tuple[float, int, int, Move]] = []
        seq = itertools.count()
        t = 0.0
        self.paths = [f.home for f in self.flows]  # a run always starts from home
        self.planned = list(self.paths)
        self._start_allocation()
        state = self.serve([f.spec.offered_at(0.0) for f in self.flows])
        hot = self._hot(state.offered)
        open_ep: dict[Arc, Episode] = {}
        self._open(hot, open_ep, res, 0.0, state.offered)
        acc_carried: dict[Arc, float] = dict.fromkeys(self.cap, 0.0)
        acc_off = [0.0] * len(self.flows)
        acc_del = [0.0] * len(self.flows)
        samples = 1
        next_sample = interval
        while t < duration_s - _EPS:
            nxt = min(next_sample, changes[0] if changes else math.inf,
                      pending[0][0] if pending else math.inf, duration_s,
                      self.alloc.next_change(t) if self.alloc is not None else math.inf)
            dt = nxt - t
            for a, x in state.carried.items():
                acc_carried[a] += x * dt
            for i in range(len(self.flows)):
                c = self.flows[i].qos_class
                acc_off[i] += state.offered[i] * dt
                acc_del[i] += state.delivered[i] * dt
                res.offered_mbit[c] += state.offered[i] * dt
                res.delivered_mbit[c] += state.delivered[i] * dt
            for c, bad in state.below_guarantee.items():
                if bad:
                    res.seconds_below_guarantee[c] += dt
            t = nxt
            changed = False
            while True:
                activated = False
                while pending and pending[0][0] <= t + _EPS:
                    _, _, i, move = heapq.heappop(pending)
                    self.paths[i] = move.new_path
                    activated = changed = True
                if activated:
                    now_hot = self._hot(state.offered)
                    self._close(hot - now_hot, open_ep, t, "reroute")
                    self._open(now_hot - hot, open_ep, res, t, state.offered)
                    hot = now_hot
                if changes and changes[0] <= t + _EPS:
                    changes.pop(0)
                    offered = [f.spec.offered_at(t) for f in self.flows]
                    now_hot = self._hot(offered)
                    self._close(hot - now_hot, open_ep, t, "load")
                    self._open(now_hot - hot, open_ep, res, t, offered)
                    hot = now_hot
                    state.offered = offered
                    changed = True
                for a in hot:
                    open_ep[a].peak_offered_util = max(open_ep[a].peak_offered_util,
                                                       self._load(state.offered, a) / self.cap[a])
                if next_sample <= t + _EPS:
                    util = {a: acc_carried[a] / (self.cap[a] * interval) for a in self.cap}
                    mean_off = [x / interval for x in acc_off]
                    self._sample(t, util=util, mean_offered=mean_off, acc_del=acc_del,
                                 monitor=monitor, rstate=rstate, res=res, open_ep=open_ep,
                                 pending=pending, seq=seq)
                    acc_carried = dict.fromkeys(self.cap, 0.0)
                    acc_off = [0.0] * len(self.flows)
                    acc_del = [0.0] * len(self.flows)
                    samples += 1
                    next_sample = samples * interval  # no drift from repeated sums
                if not (pending and pending[0][0] <= t + _EPS):
                    break
            if self.alloc is not None:  # reservations or bought capacity may have changed
                tree, cap = self.alloc.dataplane(t, self.planned)
                if tree != self.tree or cap != self.cap:
                    self.tree, self.cap = tree, cap
                    changed = True
            if changed:
                state = self.serve(state.offered)
        for ep in open_ep.values():
            ep.resolved_by = None
        res.final_paths = {f.name: p for f, p in zip(self.flows, self.paths, strict=True)}
        if self.alloc is not None:
            res.allocation = self.alloc.finish(duration_s)
        return res

    def _returns(self, t: float, sized: Sequence[Flow], rstate: RerouteState,
                 res: TrafficResult) -> list[RerouteDecision]:
        """:func:`plan_returns` on a trial state; a return the allocator cannot host is
        recorded and its flow left out, and the planner may pick another flow."""
        rr = self.spec.reroute
        home = {f.name: f.home for f in self.flows}
        while True:
            trial = RerouteState(dict(rstate.last_moved))
            decisions = plan_returns(t, sized, self.cap, home, state=trial,
                                     below=rr.return_below, hold_down_s=rr.hold_down_s,
                                     max_moves=1)
            refused = False
            for d in decisions:
                ok, why = (self.alloc.can_host(d.flow_id, d.new_path, t, self.planned)
                           if self.alloc is not None else (True, ""))
                if not ok:
                    res.returns_blocked.append((t, d.flow_id, why))
                    del home[d.flow_id]
                    refused = True
            if not refused:
                rstate.last_moved.update(trial.last_moved)
                return decisions

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

    def _allocate(self, t: float, offered: Sequence[float], delivered: Sequence[float], *,
                  res: TrafficResult, pending: list[tuple[float, int, int, Move]],
                  seq: itertools.count[int], rstate: RerouteState) -> None:
        """Run the allocator; its reroutes are make-before-break moves like any other."""
        assert self.alloc is not None
        install = self.spec.reroute.install_s
        for i, path in sorted(self.alloc.decide(t, offered, delivered, self.planned).items()):
            f = self.flows[i]
            move = Move(f.name, f.qos_class, "allocate", t, t + install, t + 2 * install,
                        self.planned[i], path, "allocator: the provider could not scale a "
                        "link of its path; routing found one with room")
            self.planned[i] = path
            rstate.last_moved[f.name] = t  # the return planner's hold-down applies
            res.moves.append(move)
            heapq.heappush(pending, (move.effective_s, next(seq), i, move))

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

    def _sample(self, t: float, *, util: dict[Arc, float], mean_offered: Sequence[float],
                acc_del: Sequence[float], monitor: CongestionMonitor, rstate: RerouteState,
                res: TrafficResult, open_ep: dict[Arc, Episode],
                pending: list[tuple[float, int, int, Move]], seq: itertools.count[int]
                ) -> None:
        spec, interval = self.spec, self.spec.interval_s
        events = monitor.observe(t, util)
        res.events.extend(events)
        for ev in events:
            if ev.new is ArcState.CONGESTED and ev.arc in open_ep \
                    and open_ep[ev.arc].detected_s is None:
                open_ep[ev.arc].detected_s = t
        congested = monitor.congested()
        offered_cls: dict[str, float] = {}
        delivered_cls: dict[str, float] = {}
        for i, f in enumerate(self.flows):
            offered_cls[f.qos_class] = offered_cls.get(f.qos_class, 0.0) + mean_offered[i]
            delivered_cls[f.qos_class] = (delivered_cls.get(f.qos_class, 0.0)
                                          + acc_del[i] / interval)
        res.intervals.append(IntervalRecord(t, max(util.values(), default=0.0),
                                            list(congested), offered_cls, delivered_cls))
        sized = [Flow(f.name, f.src, f.dst, mean_offered[i], self.planned[i], f.qos_class)
                 for i, f in enumerate(self.flows)]
        rr = spec.reroute
        decisions: list[RerouteDecision]
        if congested:
            movable = frozenset(rr.classes) if rr.classes is not None else None
            decisions = plan_reroutes(t, sized, self.cap, congested, self.cands,
                                      state=rstate, target=rr.target,
                                      hold_down_s=rr.hold_down_s, movable_classes=movable)
            kind = "reroute"
        elif rr.returns:
            decisions = self._returns(t, sized, rstate, res)
            kind = "return"
        else:
            decisions = []
        index = {f.name: i for i, f in enumerate(self.flows)}
        for d in decisions:
            i = index[d.flow_id]
            move = Move(d.flow_id, self.flows[i].qos_class, kind, t, t + rr.install_s,
                        t + 2 * rr.install_s, d.old_path, d.new_path, d.reason)
            self.planned[i] = d.new_path
            res.moves.append(move)
            heapq.heappush(pending, (move.effective_s, next(seq), i, move))
        if self.alloc is not None:
            self._allocate(t, mean_offered, [x / interval for x in acc_del], res=res,
                           pending=pending, seq=seq, rstate=rstate)


def run_traffic(spec: TrafficSpec, substrate: Substrate, duration_s: float, *,
                source: str = "<traffic>") -> TrafficResult:
    """Build and run one traffic simulation (see the module docstring)."""
    return TrafficSim(spec, substrate, source=source).run(duration_s)


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def summarise_traffic(res: TrafficResult) -> dict[str, Any]:
    """The ``traffic`` section of the run summary: plain, rounded, deterministic."""
    spec, interval = res.spec, res.spec.interval_s
    episodes: list[dict[str, Any]] = []
    for ep in res.episodes:
        spent = None if ep.resolved_s is None else (ep.resolved_s - ep.onset_s) / interval
        episodes.append({
            "link": res.link(ep.arc), "arc": list(ep.arc), "onset_s": _r(ep.onset_s),
            "detected_s": _r(ep.detected_s), "resolved_s": _r(ep.resolved_s),
            "resolved_by": ep.resolved_by, "intervals_to_resolve": _r(spent),
            "peak_offered_utilisation": _r(ep.peak_offered_util, 4)})
    by_reroute = [e["intervals_to_resolve"] for e in episodes if e["resolved_by"] == "reroute"]
    # every episode, however it ended (still hot: until the end of the run)
    spans = [((ep.resolved_s if ep.resolved_s is not None else res.duration_s) - ep.onset_s)
             / interval for ep in res.episodes]
    moves_per_flow: dict[str, list[float]] = {}
    for m in res.moves:
        moves_per_flow.setdefault(m.flow, []).append(m.effective_s)
    gaps = [b - a for ts in moves_per_flow.values() for a, b in itertools.pairwise(ts)]
    classes: dict[str, Any] = {}
    shortfall = {c: max(0.0, res.offered_mbit[c] - res.delivered_mbit[c])
                 for c in res.offered_mbit}
    total_short = sum(shortfall.values())
    # Classes under the allocator have no one guarantee: it follows the reservations.
    allocated = set(spec.allocation.classes) if spec.allocation is not None else set()
    for c in spec.policy.classes:
        worst = [iv.delivered[c.name] / iv.offered[c.name] for iv in res.intervals
                 if iv.offered.get(c.name, 0.0) > _EPS]
        off = res.offered_mbit[c.name]
        classes[c.name] = {
            "priority": c.priority,
            "stitched": c.name in spec.stitched_classes,
            "allocated": c.name in allocated,
            # Under allocation: the static guarantee, which holds until the first decision.
            "guaranteed_mbps": _r(c.guaranteed_mbps), "max_mbps": _r(c.max_mbps),
            "offered_mbit": _r(off, 1), "delivered_mbit": _r(res.delivered_mbit[c.name], 1),
            "shortfall_mbit": _r(shortfall[c.name], 1),
            "delivered_fraction": _r(res.delivered_mbit[c.name] / off, 4) if off > 0 else None,
            "worst_interval_delivered_fraction": _r(min(worst), 4) if worst else None,
            "seconds_below_guarantee": _r(res.seconds_below_guarantee[c.name]),
        }
    lowest = spec.policy.classes[-1].name
    return {
        "interval_s": interval,
        "borrow": spec.borrow,
        "flows": len(res.flows),
        "monitor": {"high": spec.monitor.high, "low": spec.monitor.low,
                    "raise_samples": spec.monitor.raise_samples,
                    "clear_samples": spec.monitor.clear_samples},
        "samples": len(res.intervals),
        "max_link_utilisation_sampled": _r(max((iv.max_utilisation for iv in res.intervals),
                                               default=0.0), 4),
        "congestion_episodes": episodes,
        "congestion_resolved_by_reroute": len(by_reroute),
        "congestion_unresolved_at_end": sum(1 for e in episodes if e["resolved_by"] is None),
        "max_intervals_to_reroute": max(by_reroute) if by_reroute else None,
        "max_intervals_congested": _r(max(spans)) if spans else None,
        "reroutes": sum(1 for m in res.moves if m.kind == "reroute"),
        "returns": sum(1 for m in res.moves if m.kind == "return"),
        "returns_blocked_by_reservation": len(res.returns_blocked),
        "allocator_moves": sum(1 for m in res.moves if m.kind == "allocate"),
        "max_path_changes_per_flow": max((len(v) for v in moves_per_flow.values()), default=0),
        "min_seconds_between_moves_of_a_flow": _r(min(gaps)) if gaps else None,
        "moves": [{"flow": m.flow, "class": m.qos_class, "kind": m.kind,
                   "decided_s": _r(m.decided_s), "effective_s": _r(m.effective_s),
                   "old_path_removed_s": _r(m.removed_s), "old_path": res.name(m.old_path),
                   "new_path": res.name(m.new_path), "reason": m.reason} for m in res.moves],
        "classes": classes,
        "stitched_classes": list(spec.stitched_classes),
        "stitched_guarantee_kept": all(res.seconds_below_guarantee[c] == 0.0
                                       for c in spec.stitched_classes),
        "shortfall_mbit_total": _r(total_short, 1),
        "lowest_class": lowest,
        "lowest_class_share_of_shortfall": _r(shortfall[lowest] / total_short, 4)
        if total_short > _EPS else None,
    }
