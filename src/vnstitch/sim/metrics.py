"""Statistics and invariant checks of one simulation run.

Theory of operation: the engine feeds every event a core emits to :meth:`Metrics.on_event`
together with the index of the emitting Route Manager. From those events alone the
collector keeps: one :class:`StitchRecord` per request (setup time, path, repairs, final
state), each RM's discovery table (to time convergence and to find stale routes), and a
ledger of the bandwidth live stitches hold on each segment adjacency. Invariants:

* *no over-commit*: after each core step the engine passes the core's own reserved vs
  capacity per neighbour link; reserved above capacity is a violation;
* *no loop*: an established path or an announced route that repeats a Route Manager;
* *no black hole*: at checks scheduled one hold time after each fault, a route to a VNID
  none of whose hosts is reachable any more is a stale route;
* *every committed stitch is served*: at the end each stitch counted as established has
  not been torn down without being repaired (``tunnel_invariant_violations``).

Figures are rounded in :meth:`summary` so the same seed gives the same bytes.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import (
    Event,
    PeerFault,
    RouteChanged,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
    TunnelStateChanged,
)
from vnstitch.sim.cores import LinkUsage

LOG_LIMIT = 20_000


class StitchState(enum.StrEnum):
    PENDING = "pending"
    ESTABLISHED = "established"
    REPAIRING = "repairing"
    FAILED = "failed"
    DOWN = "down"
    RELEASED = "released"


@dataclass(slots=True)
class StitchRecord:
    origin: int
    stitch_id: str
    vnid: VNID
    bandwidth_mbps: float
    requested_at: float
    feasible: bool
    state: StitchState = StitchState.PENDING
    setup_s: float | None = None
    setup_rtts: float | None = None
    path_rtt_ms: float | None = None
    path: tuple[int, ...] = ()
    paths: list[tuple[int, ...]] = field(default_factory=list)
    reason: str | None = None
    torn_at: float | None = None
    repairs: list[float] = field(default_factory=list)
    repaired_at: float | None = None
    established_at: float | None = None
    ended_at: float | None = None
    #: A make-before-break successor: the stitch it replaces once established.
    replaces: str | None = None
    #: Released because its successor came up (not lost).
    replaced: bool = False


@dataclass(slots=True)
class LogEntry:
    at: float
    kind: str
    text: str


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))
    return s[k]


class Metrics:
    """Collects events and invariant results; see the module docstring."""

    def __init__(
        self,
        rm_ids: Sequence[RouteManagerId],
        degree: Sequence[int],
        capacity: dict[tuple[int, int], float],
        hosts: dict[VNID, set[int]],
        latency_ms: Any,
    ) -> None:
        self.rm_index = {rm: i for i, rm in enumerate(rm_ids)}
        self.n = len(rm_ids)
        self.degree = list(degree)
        self.capacity = capacity
        self.hosts = hosts
        self._latency_ms = latency_ms  # callable (i, j) -> ms, current network
        self.records: dict[tuple[int, str], StitchRecord] = {}
        self.routes: list[dict[VNID, tuple[int, ...]]] = [{} for _ in range(self.n)]
        self.expected: list[frozenset[VNID]] = [
            frozenset(v for v, hs in hosts.items() if hs - {i} and i not in hs)
            for i in range(self.n)
        ]
        self.missing = sum(len(e) for e in self.expected)
        self.convergence_s: float | None = 0.0 if self.missing == 0 else None
        self.sent = [0] * self.n
        self.sent_bytes = [0] * self.n
        self.ledger: dict[tuple[int, int], float] = {}
        self.ledger_peak_util = 0.0
        self.ledger_peak_mbps = 0.0
        self.core_peak_util = 0.0
        self.overcommit_violations = 0
        self.overcommit_checks = 0
        self.loops_detected = 0
        self.stale_checks: list[tuple[float, int]] = []
        self.peer_faults: dict[str, int] = {}
        self.tunnel_states: dict[str, int] = {}
        self.log: list[LogEntry] = []
        self.unknown_destinations = 0
        self.lost_in_crash = 0
        self.tunnel_checks = 0
        self.core_errors: dict[str, int] = {}
        self.tunnel_violations = 0

    # -- logging -----------------------------------------------------------------------
    def note(self, at: float, kind: str, text: str) -> None:
        if len(self.log) < LOG_LIMIT:
            self.log.append(LogEntry(at, kind, text))

    # -- requests ----------------------------------------------------------------------
    def on_request(self, origin: int, stitch_id: str, vnid: VNID, *, bw: float, at: float,
                   feasible: bool) -> StitchRecord:
        rec = StitchRecord(origin, stitch_id, vnid, bw, at, feasible)
        self.records[(origin, stitch_id)] = rec
        return rec

    def refused_before_core(self, origin: int, vnid: VNID, bw: float, at: float,
                            reason: str) -> None:
        """A request that never reached a core (its origin was down)."""
        key = (origin, f"lost-{len(self.records)}")
        rec = StitchRecord(origin, key[1], vnid, bw, at, False, StitchState.FAILED,
                           reason=reason, ended_at=at)
        self.records[key] = rec

    # -- events ------------------------------------------------------------------------
    def on_event(self, i: int, ev: Event, now: float) -> None:
        cls = ev.__class__
        if cls is RouteChanged:
            self._on_route(i, ev, now)  # type: ignore[arg-type]
        elif cls is StitchEstablished:
            self._on_established(i, ev, now)  # type: ignore[arg-type]
        elif cls is StitchFailed:
            self._on_failed(i, ev, now)  # type: ignore[arg-type]
        elif cls is StitchTornDown:
            self._on_torn(i, ev, now)  # type: ignore[arg-type]
        elif cls is PeerFault:
            reason = ev.reason  # type: ignore[union-attr]
            self.peer_faults[reason] = self.peer_faults.get(reason, 0) + 1
        elif cls is TunnelStateChanged:
            new = ev.new  # type: ignore[union-attr]
            self.tunnel_states[new] = self.tunnel_states.get(new, 0) + 1

    def _path_indices(self, path: Sequence[RouteManagerId]) -> tuple[int, ...]:
        idx = self.rm_index
        return tuple(idx[p] for p in path if p in idx)

    def _on_route(self, i: int, ev: RouteChanged, now: float) -> None:
        table = self.routes[i]
        v = ev.vnid
        expected = v in self.expected[i]
        if ev.via is None:
            if table.pop(v, None) is not None and expected:
                self.missing += 1
            return
        via = self._path_indices(ev.via)
        if via == (i,):
            # The best route is the RM's own copy of the VN: the event stream shows only
            # the best route per VNID, so remote copies of a local VN are not tracked.
            if table.pop(v, None) is not None and expected:
                self.missing += 1
            return
        if len(set(via)) != len(via) or i in via[1:]:
            self.loops_detected += 1
            self.note(now, "loop", f"RM {i} learned a looping route to VN {v}: {via}")
        if v not in table and expected:
            self.missing -= 1
            if self.missing == 0 and self.convergence_s is None:
                self.convergence_s = now
                self.note(now, "converged", "discovery converged: every RM knows every VN")
        table[v] = via

    def _ledger_add(self, path: tuple[int, ...], bw: float) -> None:
        for a, b in itertools.pairwise(path):
            key = (a, b) if a < b else (b, a)
            used = self.ledger.get(key, 0.0) + bw
            self.ledger[key] = used
            cap = self.capacity.get(key)
            if cap:
                self.ledger_peak_util = max(self.ledger_peak_util, used / cap)
            self.ledger_peak_mbps = max(self.ledger_peak_mbps, used)

    def _on_established(self, i: int, ev: StitchEstablished, now: float) -> None:
        rec = self.records.get((i, ev.stitch_id))
        if rec is None:
            return  # a stitch some other driver asked for; not ours to count
        path = self._path_indices(ev.path)
        if len(set(path)) != len(path):
            self.loops_detected += 1
        rtt = 2.0 * sum(self._latency_ms(a, b) for a, b in itertools.pairwise(path))
        if rec.state is StitchState.PENDING:
            rec.setup_s = now - rec.requested_at
            rec.path_rtt_ms = rtt
            rec.setup_rtts = rec.setup_s * 1000.0 / rtt if rtt > 0 else None
            rec.established_at = now
            self.note(now, "established",
                      f"stitch VN {ev.vnid} seg {path[0]}->{path[-1]} via {list(path)} "
                      f"in {rec.setup_s * 1000:.1f} ms")
        elif rec.torn_at is not None:
            rec.repairs.append(now - rec.torn_at)
            rec.repaired_at = now
            self.note(now, "repaired", f"stitch VN {ev.vnid} repaired via {list(path)} "
                      f"after {now - rec.torn_at:.2f} s")
            rec.torn_at = None
        if rec.state is StitchState.ESTABLISHED and rec.path:
            self._ledger_add(rec.path, -rec.bandwidth_mbps)
        rec.state = StitchState.ESTABLISHED
        rec.path = path
        rec.paths.append(path)
        self._ledger_add(path, rec.bandwidth_mbps)
        old = self.records.get((i, rec.replaces)) if rec.replaces else None
        if old is not None:
            old.replaced = True

    def _on_failed(self, i: int, ev: StitchFailed, now: float) -> None:
        rec = self.records.get((i, ev.stitch_id))
        if rec is None or rec.state in (StitchState.FAILED, StitchState.RELEASED):
            return
        if rec.state is StitchState.ESTABLISHED and rec.path:
            self._ledger_add(rec.path, -rec.bandwidth_mbps)
        rec.state = StitchState.DOWN if rec.established_at is not None else StitchState.FAILED
        rec.reason = str(ev.reason)
        rec.ended_at = now
        self.note(now, "failed", f"stitch VN {ev.vnid} from seg {i} failed: {ev.reason} "
                  f"({ev.detail})")

    def _on_torn(self, i: int, ev: StitchTornDown, now: float) -> None:
        rec = self.records.get((i, ev.stitch_id))
        if rec is None or rec.state is not StitchState.ESTABLISHED:
            return
        if rec.path:
            self._ledger_add(rec.path, -rec.bandwidth_mbps)
        rec.torn_at = now
        rec.reason = str(ev.reason)
        rec.state = StitchState.REPAIRING if ev.renegotiating else \
            StitchState.RELEASED if rec.replaced else StitchState.DOWN
        if not ev.renegotiating:
            rec.ended_at = now
        self.note(now, "torn_down", f"stitch VN {ev.vnid} from seg {i} torn down: {ev.reason}"
                  + (", re-negotiating" if ev.renegotiating else ""))

    def released(self, rec: StitchRecord, now: float) -> None:
        if rec.state is StitchState.ESTABLISHED and rec.path:
            self._ledger_add(rec.path, -rec.bandwidth_mbps)
        rec.state = StitchState.RELEASED
        rec.ended_at = now

    def origin_crashed(self, i: int, now: float) -> None:
        """Requests still pending at a crashed origin are lost with it."""
        for rec in self.records.values():
            if rec.origin == i and rec.state is StitchState.PENDING:
                rec.state = StitchState.FAILED
                rec.reason = "origin_crashed"
                rec.ended_at = now
                self.lost_in_crash += 1

    # -- invariants --------------------------------------------------------------------
    def check_usage(self, i: int, usage: Sequence[LinkUsage], now: float) -> None:
        self.overcommit_checks += 1
        for u in usage:
            if u.capacity_mbps > 0:
                util = u.reserved_mbps / u.capacity_mbps
                self.core_peak_util = max(self.core_peak_util, util)
            if u.reserved_mbps > u.capacity_mbps * (1 + 1e-9) + 1e-9:
                self.overcommit_violations += 1
                self.note(now, "overcommit", f"RM {i} reserved {u.reserved_mbps:g} Mbit/s "
                          f"of {u.capacity_mbps:g} towards {u.peer}")

    def check_tunnel(self, rec: StitchRecord, state: str | None, now: float) -> None:
        self.tunnel_checks += 1
        if state not in ("up", "degraded"):
            self.tunnel_violations += 1
            self.note(now, "tunnel", f"stitch {rec.stitch_id} (VN {rec.vnid}) is established "
                      f"but its tunnel is {state or 'missing'}")

    def check_stale(self, now: float, then: Sequence[int], component: Sequence[int]) -> int:
        """Count routes to VNIDs that no host of could be reached from the RM, neither
        right after the fault (``then``) nor now: a black hole that outlived the hold
        time. Component ids per RM; -1 marks a dead RM."""
        stale = 0
        for i, table in enumerate(self.routes):
            ci, ti = component[i], then[i]
            if ci < 0:
                continue
            for via in table.values():
                # the route leads to the VN's copy at the last RM of its path
                end = via[-1] if via else -1
                if end < 0 or (component[end] != ci and (ti < 0 or then[end] != ti)):
                    stale += 1
        self.stale_checks.append((now, stale))
        if stale:
            self.note(now, "stale", f"{stale} stale route(s) survive the hold time")
        return stale
