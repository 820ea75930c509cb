"""The discrete-event engine: a virtual clock, one event heap, one core per segment.

Theory of operation: time is a float of virtual seconds. Everything that will happen is an
entry ``(time, seq, kind, index, payload)`` on one ``heapq``; ``seq`` is a counter, so
entries at the same time pop in the order they were pushed and a run is a pure function
of its inputs and seed. The kinds are: a datagram delivered to RM ``index``, RM
``index``'s timer, a stitch request, a stitch release, a fault, an invariant check.

Each Route Manager core is driven only through the sans-I/O contract. After every call
into a core the engine applies its outputs -- :class:`SendDatagram` becomes one delivery
(or none, or two) through :class:`~vnstitch.sim.network.NetworkModel`,
:class:`DataplaneChange` updates that RM's in-memory dataplane, events go to
:class:`~vnstitch.sim.metrics.Metrics` -- and re-reads ``next_timer()``. Timers are
scheduled lazily: ``timer_at[i]`` is the one live timer entry of RM ``i``; an entry whose
time no longer matches is stale and skipped, so rescheduling never searches the heap.

Faults: a crash keeps only ``factory.export_state(core)`` and drops the core (datagrams
to it vanish, its timers die); a restart builds a core from that state. Link cuts and
partitions change the network model; each fault also schedules a stale-route check one
hold time (plus a grace of a few round trips) later.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from vnstitch.dataplane.objects import DataplaneObject
from vnstitch.errors import VnstitchError
from vnstitch.model.ids import VNID, RouteManagerId, SegmentId
from vnstitch.model.substrate import Substrate
from vnstitch.model.virtual import VirtualNetwork
from vnstitch.protocol.api import (
    DataplaneChange,
    Event,
    Output,
    PeerLink,
    RouteManagerCoreAPI,
    SendDatagram,
)
from vnstitch.protocol.core import RouteManagerCore
from vnstitch.sim.cores import CoreFactory
from vnstitch.sim.costs import CostClock, RmCosts
from vnstitch.sim.errors import SimError
from vnstitch.sim.metrics import Metrics, StitchRecord, StitchState
from vnstitch.sim.network import Impairments, NetworkModel
from vnstitch.sim.oracle import feasible_path
from vnstitch.sim.picks import adjacency_links, busiest_adjacency, busiest_transit
from vnstitch.sim.workload import BUSIEST_TRANSIT, Fault, FaultKind, StitchRequest

DELIVER, TIMER, REQUEST, RELEASE, FAULT, CHECK, TUNNEL_CHECK = range(7)
#: Period of the "committed stitch has its tunnel up or is being repaired" check.
TUNNEL_CHECK_INTERVAL_S = 5.0
#: Extra wait after a hold time before looking for stale routes: withdrawals need a few
#: network crossings to spread.
STALE_CHECK_GRACE_S = 1.0


class StitchObserver(Protocol):
    """Told of every protocol event and crash as it happens (the traffic layer)."""

    def on_event(self, rm: int, event: Event, now: float) -> None: ...

    def on_crash(self, rm: int, now: float) -> None: ...

    def on_restart(self, rm: int, now: float) -> None:
        """RM ``rm`` is back (from its saved state) and started."""

    def on_links(self, now: float) -> None:
        """Substrate links were cut or repaired (``net.down_links()`` has changed)."""


def derive_seed(seed: int, *parts: object) -> int:
    """An independent, stable sub-seed (``hash()`` is salted per process; sha256 is not)."""
    text = ":".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class Simulation:
    """One run: build with the substrate, the factory and the workload, then :meth:`run`."""

    def __init__(
        self,
        substrate: Substrate,
        factory: CoreFactory,
        *,
        placements: Sequence[VirtualNetwork],
        requests: Sequence[StitchRequest],
        faults: Sequence[Fault] = (),
        impairments: Impairments | None = None,
        seed: int = 1,
        check_every_step: bool = True,
        costs: RmCosts | None = None,
    ) -> None:
        self.substrate = substrate
        self.factory = factory
        self.seed = seed
        self.net = NetworkModel(substrate, impairments or Impairments(),
                                derive_seed(seed, "network"))
        self.segments: list[SegmentId] = self.net.segments
        self.seg_index = self.net.index
        self.rm_ids: list[RouteManagerId] = [factory.identity(s) for s in self.segments]
        self.rm_index = {rm: i for i, rm in enumerate(self.rm_ids)}
        if len(self.rm_index) != len(self.rm_ids):
            raise SimError("the core factory gave two segments the same Route Manager id")
        self.peers: list[list[PeerLink]] = [[] for _ in self.segments]
        self.neighbours: list[list[int]] = [[] for _ in self.segments]
        capacity: dict[tuple[int, int], float] = {}
        self.peer_latency: dict[tuple[int, int], float] = {}
        for adj in substrate.segment_adjacencies():
            a, b = self.seg_index[adj.a], self.seg_index[adj.b]
            lat = self.net.latency_ms[a][b]
            cap = adj.capacity_mbps
            self.peers[a].append(PeerLink(self.rm_ids[b], cap, lat, 1.0))
            self.peers[b].append(PeerLink(self.rm_ids[a], cap, lat, 1.0))
            self.neighbours[a].append(b)
            self.neighbours[b].append(a)
            capacity[(a, b) if a < b else (b, a)] = cap
            self.peer_latency[(a, b)] = self.peer_latency[(b, a)] = lat
        self.capacity = capacity
        self.placements = list(placements)
        hosts: dict[VNID, set[int]] = {}
        for vn in self.placements:
            if vn.segment not in self.seg_index:
                raise SimError(f"VN {vn.vnid} placed on unknown segment {vn.segment!r}")
            hosts.setdefault(vn.vnid, set()).add(self.seg_index[vn.segment])
        self.hosts = hosts
        self.metrics = Metrics(self.rm_ids, [len(n) for n in self.neighbours], capacity, hosts,
                               self._latency_ms)
        self.cores: list[RouteManagerCoreAPI | None] = [None] * len(self.segments)
        self.saved: dict[int, object] = {}
        self.incarnation = [0] * len(self.segments)
        self.dataplanes: list[dict[str, DataplaneObject]] = [{} for _ in self.segments]
        self.timer_at: list[float | None] = [None] * len(self.segments)
        self.restarted_at: list[float] = [-math.inf] * len(self.segments)
        self.check_every_step = check_every_step
        #: Route Managers' processing and tunnel costs (None: cost-free; sim/costs.py)
        self.costs = CostClock(costs, len(self.segments)) if costs is not None else None
        self.now = 0.0
        self.events = 0
        self._heap: list[tuple[float, int, int, int, Any]] = []
        self._seq = 0
        self._aliases: dict[str, int] = {}
        self._link_aliases: dict[str, list[tuple[str, str]]] = {}
        #: fault target aliases as they were resolved: alias -> segment id or "segA-segB"
        self.resolved_aliases: dict[str, str] = {}
        self._started = False
        self.observers: list[StitchObserver] = []
        for req in requests:
            if req.origin not in self.seg_index:
                raise SimError(f"request at {req.at}s starts on unknown segment {req.origin!r}")
            self._push(req.at, REQUEST, self.seg_index[req.origin], req)
        for fault in faults:
            self._push(fault.at, FAULT, -1, fault)
        self._push(TUNNEL_CHECK_INTERVAL_S, TUNNEL_CHECK, -1, None)

    # -- plumbing ----------------------------------------------------------------------
    def _push(self, at: float, kind: int, index: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, kind, index, payload))

    def _latency_ms(self, a: int, b: int) -> float:
        return self.net.latency_ms[a][b]

    def _apply(self, i: int, outs: list[Output], now: float) -> None:
        metrics = self.metrics
        src = self.rm_ids[i]
        # With costs, this step's datagrams leave after its handling and dataplane pass.
        leave = now if self.costs is None else self.costs.departure(i, outs, now)
        for out in outs:
            cls = out.__class__
            if cls is SendDatagram:
                j = self.rm_index.get(out.destination)  # type: ignore[union-attr]
                if j is None:
                    metrics.unknown_destinations += 1
                    continue
                payload: bytes = out.payload  # type: ignore[union-attr]
                metrics.sent[i] += 1
                metrics.sent_bytes[i] += len(payload)
                for delay in self.net.delays(i, j):
                    self._seq += 1
                    heapq.heappush(self._heap, (leave + delay, self._seq, DELIVER, j,
                                                (payload, src)))
            elif cls is DataplaneChange:
                dp = self.dataplanes[i]
                for key in out.remove:  # type: ignore[union-attr]
                    dp.pop(key, None)
                for obj in out.add:  # type: ignore[union-attr]
                    dp[obj.key] = obj
            else:
                metrics.on_event(i, out, now)  # type: ignore[arg-type]
                for obs in self.observers:
                    obs.on_event(i, out, now)  # type: ignore[arg-type]
        core = self.cores[i]
        if core is None:
            return
        nt = core.next_timer()
        if nt is not None:
            cur = self.timer_at[i]
            if cur is None or nt < cur:
                self.timer_at[i] = nt = max(nt, now)
                self._seq += 1
                heapq.heappush(self._heap, (nt, self._seq, TIMER, i, None))
        if self.check_every_step:
            metrics.check_usage(i, self.factory.link_usage(core), now)

    def _build(self, i: int) -> RouteManagerCoreAPI:
        seg = self.segments[i]
        seed = derive_seed(self.seed, "core", seg, self.incarnation[i])
        if i in self.saved:
            return self.factory.restore(seg, self.peers[i], self.saved[i], seed)
        return self.factory.build(seg, self.peers[i], seed)

    # -- running -----------------------------------------------------------------------
    def start(self) -> None:
        """Build and start every core and place the VNs (at time 0)."""
        if self._started:
            return
        self._started = True
        for i in range(len(self.segments)):
            self.cores[i] = self._build(i)
        for i, core in enumerate(self.cores):
            assert core is not None
            self._apply(i, core.start(0.0), 0.0)
        for vn in self.placements:
            i = self.seg_index[vn.segment]
            core = self.cores[i]
            assert core is not None
            self._apply(i, core.add_local_vn(vn, 0.0), 0.0)

    def run(self, until: float, progress: Callable[[float], None] | None = None) -> None:
        """Process every event up to virtual time ``until`` (inclusive)."""
        self.start()
        heap = self._heap
        cores = self.cores
        timer_at = self.timer_at
        apply = self._apply
        pop = heapq.heappop
        step = 0
        while heap and heap[0][0] <= until:
            at, _, kind, i, payload = pop(heap)
            self.now = at
            step += 1
            if kind == DELIVER:
                core = cores[i]
                if core is not None:
                    try:
                        outs = core.receive(payload[0], payload[1], at)
                    except VnstitchError as exc:
                        self._core_error(i, exc, at)
                        continue
                    apply(i, outs, at)
            elif kind == TIMER:
                core = cores[i]
                if core is None or timer_at[i] != at:
                    continue  # stale entry
                timer_at[i] = None
                nt = core.next_timer()
                if nt is not None and nt > at:
                    timer_at[i] = nt
                    self._push(nt, TIMER, i, None)
                    continue
                try:
                    outs = core.handle_timer(at)
                except VnstitchError as exc:
                    self._core_error(i, exc, at)
                    outs = []
                apply(i, outs, at)
            elif kind == REQUEST:
                self._request(i, payload, at)
            elif kind == RELEASE:
                self._release(i, payload, at)
            elif kind == FAULT:
                self._fault(payload, at)
            elif kind == CHECK:
                self.metrics.check_stale(at, payload, self.components())
            else:
                self.check_tunnels(at)
                self._push(at + TUNNEL_CHECK_INTERVAL_S, TUNNEL_CHECK, -1, None)
            if progress is not None and step % 4096 == 0:
                progress(at)
        self.events += step
        self.now = max(self.now, until)
        if progress is not None:
            progress(until)

    def _core_error(self, i: int, exc: VnstitchError, now: float) -> None:
        """A core raised one of vnstitch's own errors: a bug in the core, counted and
        logged so one bad step does not end a long run (the core keeps running)."""
        m = self.metrics
        key = type(exc).__name__
        m.core_errors[key] = m.core_errors.get(key, 0) + 1
        m.note(now, "core_error", f"RM {i} raised {key}: {exc}")

    # -- workload ----------------------------------------------------------------------
    def _request(self, i: int, req: StitchRequest, now: float) -> str | None:
        core = self.cores[i]
        bw = req.constraints.bandwidth_mbps
        if core is None:
            self.metrics.refused_before_core(i, req.vnid, bw, now, "origin_down")
            return None
        feasible = feasible_path(self, i, req.vnid, req.constraints) is not None
        sid, outs = core.request_stitch(req.vnid, req.constraints, now)
        rec = self.metrics.on_request(i, sid, req.vnid, bw=bw, at=now,
                                      feasible=feasible)
        self._apply(i, outs, now)
        if req.hold_s is not None:
            self._push(now + req.hold_s, RELEASE, i, rec)
        return sid

    def request(self, origin: int, req: StitchRequest, now: float) -> str | None:
        """Ask RM ``origin`` for a stitch now (the traffic layer's own requests); its id,
        or ``None`` when that RM is down."""
        return self._request(origin, req, now)

    def renegotiate(self, origin: int, stitch_id: str,
                    avoid: frozenset[tuple[RouteManagerId, ...]], now: float) -> str | None:
        """Ask RM ``origin`` to move stitch ``stitch_id`` off ``avoid``, make-before-break
        (see :mod:`vnstitch.protocol.origin`); the successor's id, ``None`` if RM down."""
        core = self.cores[origin]
        if not isinstance(core, RouteManagerCore):
            return None  # down, or a core that cannot renegotiate (a test double)
        old = self.metrics.records.get((origin, stitch_id))
        new_sid, outs = core.renegotiate_stitch(stitch_id, avoid, now)
        rec = self.metrics.on_request(origin, new_sid, old.vnid if old else VNID(0),
                                      bw=old.bandwidth_mbps if old else 0.0, at=now,
                                      feasible=False)  # not a request of the workload
        rec.replaces = stitch_id
        self._apply(origin, outs, now)
        return new_sid

    def _release(self, i: int, rec: StitchRecord, now: float) -> None:
        core = self.cores[i]
        if core is None or rec.state not in (StitchState.ESTABLISHED, StitchState.REPAIRING):
            if rec.state is StitchState.PENDING:
                self._push(now + 1.0, RELEASE, i, rec)  # not up yet: try again later
            return
        self.metrics.released(rec, now)
        self._apply(i, core.release_stitch(rec.stitch_id, now), now)

    # -- faults ------------------------------------------------------------------------
    def _segment(self, name: str) -> int:
        if name == BUSIEST_TRANSIT:
            if name not in self._aliases:
                seg = busiest_transit(self.live_paths(), [str(x) for x in self.segments])
                self._aliases[name] = self.seg_index[SegmentId(seg)]
                self.resolved_aliases[name] = seg
            return self._aliases[name]
        if name not in self.seg_index:
            raise SimError(f"fault names unknown segment {name!r}")
        return self.seg_index[SegmentId(name)]

    def _fault(self, fault: Fault, now: float) -> None:
        m = self.metrics
        if fault.kind is FaultKind.CRASH:
            assert fault.segment is not None
            i = self._segment(fault.segment)
            core = self.cores[i]
            if core is None:
                return
            self.saved[i] = self.factory.export_state(core)
            self.cores[i] = None
            if self.costs is not None:
                self.costs.crashed(i)
            self.timer_at[i] = None
            m.routes[i].clear()
            m.origin_crashed(i, now)
            for obs in self.observers:
                obs.on_crash(i, now)
            m.note(now, "fault", f"Route Manager of {self.segments[i]} crashed")
        elif fault.kind is FaultKind.RESTART:
            assert fault.segment is not None
            i = self._segment(fault.segment)
            if self.cores[i] is not None:
                return
            self.incarnation[i] += 1
            core = self._build(i)
            self.cores[i] = core
            self.restarted_at[i] = now
            m.note(now, "fault", f"Route Manager of {self.segments[i]} restarted from its "
                   "saved state")
            self._apply(i, core.start(now), now)
            for obs in self.observers:
                obs.on_restart(i, now)
        elif fault.kind is FaultKind.CUT_LINK:
            for a, b in self._links(fault):
                self.net.cut_link(a, b)
                m.note(now, "fault", f"substrate link {a}-{b} cut")
        elif fault.kind is FaultKind.REPAIR_LINK:
            for a, b in self._links(fault):
                self.net.repair_link(a, b)
                m.note(now, "fault", f"substrate link {a}-{b} repaired")
        elif fault.kind is FaultKind.PARTITION:
            self.net.partition(fault.name, set(fault.segments))
            m.note(now, "fault", f"partition {fault.name!r}: {len(fault.segments)} segment(s) "
                   "cut off")
        else:
            self.net.heal(fault.name)
            m.note(now, "fault", f"partition {fault.name!r} healed")
        if fault.kind not in (FaultKind.CRASH, FaultKind.RESTART):
            for obs in self.observers:
                obs.on_links(now)
        self._push(now + self.factory.hold_time_s + STALE_CHECK_GRACE_S, CHECK, -1,
                   self.components())

    def _links(self, fault: Fault) -> list[tuple[str, str]]:
        """The substrate links a cut/repair names; an alias is resolved the first time
        it fires (so a repair restores what the cut took)."""
        if fault.link_pick is None:
            assert fault.link is not None
            return [fault.link]
        if fault.link_pick not in self._link_aliases:
            a, b = busiest_adjacency(self.live_paths(), self.substrate)
            self._link_aliases[fault.link_pick] = adjacency_links(self.substrate, a, b)
            self.resolved_aliases[fault.link_pick] = f"{a}-{b}"
        return self._link_aliases[fault.link_pick]

    # -- views -------------------------------------------------------------------------
    def live_paths(self) -> list[list[str]]:
        """Segment paths (origin first) of the stitches established now."""
        return [[str(self.segments[k]) for k in r.path] for r in self.live_stitches()]

    def components(self) -> list[int]:
        """Component id of each RM in the graph of live, mutually reachable neighbours."""
        comp = [-1] * len(self.segments)
        lat = self.net.latency_ms
        label = 0
        for s in range(len(self.segments)):
            if comp[s] != -1 or self.cores[s] is None:
                continue
            comp[s] = label
            stack = [s]
            while stack:
                a = stack.pop()
                for b in self.neighbours[a]:
                    if comp[b] == -1 and self.cores[b] is not None and lat[a][b] != math.inf:
                        comp[b] = label
                        stack.append(b)
            label += 1
        return comp

    def check_tunnels(self, now: float) -> None:
        """Every stitch the origin reports established (for longer than the time a dead
        tunnel takes to be noticed) must have its tunnel up or degraded at the origin."""
        grace = self.factory.repair_bound_s
        states: dict[int, Mapping[str, str]] = {}
        for rec in self.metrics.records.values():
            if rec.state is not StitchState.ESTABLISHED or rec.established_at is None \
                    or now - rec.established_at < grace:
                continue
            core = self.cores[rec.origin]
            if core is None or now - self.restarted_at[rec.origin] < grace:
                continue  # the origin is (or was just) down; judged once it is back
            if rec.origin not in states:
                states[rec.origin] = self.factory.tunnel_states(core)
            self.metrics.check_tunnel(rec, states[rec.origin].get(rec.stitch_id), now)

    def live_stitches(self) -> list[StitchRecord]:
        return [r for r in self.metrics.records.values() if r.state is StitchState.ESTABLISHED]
