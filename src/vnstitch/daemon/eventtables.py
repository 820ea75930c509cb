"""Recording the core's events into the daemon's tables, counters and waiting callers.

Theory of operation: every output of the sans-I/O core that is neither a datagram nor a
dataplane change is an event (:mod:`vnstitch.protocol.api`). :func:`record_event` is the
one place the daemon turns such an event into bookkeeping:

* the stitch, reservation and tunnel tables of the :class:`~vnstitch.daemon.state.
  StateStore` (a stitch keeps its ``requested_at`` across re-establishments; a status
  change keeps the rest of the row);
* the counters behind ``routemgr show metrics`` and ``/metrics`` (``daemon.metrics``,
  ``daemon.faults``) and the route table (``daemon.routes``);
* the intent runner (:mod:`vnstitch.daemon.intents`), which decides on retries;
* the future of a caller waiting for a stitch's first outcome (``daemon.waiters``,
  resolved with a :class:`StitchOutcome`) -- resizes resolve theirs in
  :mod:`vnstitch.daemon.resizing`.

It returns whether the core's exported state should be persisted in the same commit;
the caller (:meth:`RouteManagerDaemon._execute <vnstitch.daemon.runtime.
RouteManagerDaemon>`) owns the ordering of record, persist, reconcile and send.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vnstitch.daemon.resizing import on_resized
from vnstitch.daemon.state import ReservationRecord, StateStore, StitchRecord
from vnstitch.protocol.api import (
    AccessRefused,
    Output,
    PeerFault,
    RouteChanged,
    StitchEstablished,
    StitchFailed,
    StitchResized,
    StitchTornDown,
    TunnelStateChanged,
)

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon")


@dataclass(slots=True)
class StitchOutcome:
    """The first outcome of a stitch request, as its caller's future resolves."""

    stitch_id: str
    established: bool
    detail: dict[str, Any] = field(default_factory=dict)


def record_event(daemon: RouteManagerDaemon, ev: Output) -> bool:
    """Update tables and counters for one event; True if the core state should be saved."""
    store = daemon.store
    if isinstance(ev, PeerFault):
        daemon.faults[ev.reason] += 1
        daemon.metrics["peer_faults"] += 1
        return False
    if isinstance(ev, AccessRefused):
        daemon.metrics["access_refused"] += 1
        log.warning("VNID %d: %s from %s refused (not_authorised: %s)", ev.vnid, ev.kind,
                    ev.origin, ev.cause)
        return ev.kind == "established"
    if isinstance(ev, RouteChanged):
        daemon.routes[int(ev.vnid)] = None if ev.via is None else tuple(ev.via)
        daemon.intents.on_route(int(ev.vnid), ev.now)
        return False
    if isinstance(ev, StitchEstablished):
        old = {s.stitch_id: s for s in store.stitches()}.get(ev.stitch_id)
        requested = old.requested_at if old else ev.requested_at
        with store.transaction():
            store.put_stitch(StitchRecord(
                ev.stitch_id, int(ev.vnid), tuple(ev.path), ev.bandwidth_mbps,
                ev.latency_ms, ev.cost, "up", requested, ev.now))
            store.put_reservation(ReservationRecord(
                ev.stitch_id, ev.stitch_id, int(ev.vnid), ev.bandwidth_mbps,
                tuple(ev.path), ev.now))
        daemon.metrics["stitches_established"] += 1
        daemon.intents.on_event(ev)
        _resolve(daemon, ev.stitch_id, True, {
            "path": list(ev.path), "bandwidth_mbps": ev.bandwidth_mbps,
            "latency_ms": ev.latency_ms, "cost": ev.cost,
            "setup_seconds": ev.now - ev.requested_at})
        return True
    if isinstance(ev, StitchFailed):
        _set_status(store, ev.stitch_id, int(ev.vnid), "failed", ev.now)
        store.delete_reservation(ev.stitch_id)
        daemon.metrics["stitches_failed"] += 1
        retry = daemon.intents.on_event(ev)
        _resolve(daemon, ev.stitch_id, False, {"reason": ev.reason.value, "detail": ev.detail,
                                               **retry})
        return True
    if isinstance(ev, StitchTornDown):
        status = "renegotiating" if ev.renegotiating else "down"
        _set_status(store, ev.stitch_id, int(ev.vnid), status, ev.now)
        store.delete_reservation(ev.stitch_id)
        daemon.metrics["stitches_torn_down"] += 1
        daemon.intents.on_event(ev)
        return True
    if isinstance(ev, StitchResized):
        return on_resized(daemon, ev)
    if isinstance(ev, TunnelStateChanged):
        store.put_tunnel(ev.tunnel_id, str(ev.peer), ev.new, ev.now)
        daemon.metrics["tunnel_transitions"] += 1
        return True
    return False


def _set_status(store: StateStore, stitch_id: str, vnid: int, status: str,
                now: float) -> None:
    old = {s.stitch_id: s for s in store.stitches()}.get(stitch_id)
    if old is None:
        old = StitchRecord(stitch_id, vnid, (), 0.0, 0.0, 0.0, status, now, now)
    store.put_stitch(StitchRecord(
        old.stitch_id, old.vnid, old.path, old.bandwidth_mbps, old.latency_ms, old.cost,
        status, old.requested_at, now))


def _resolve(daemon: RouteManagerDaemon, stitch_id: str, ok: bool,
             detail: dict[str, Any]) -> None:
    fut = daemon.waiters.pop(stitch_id, None)
    if fut is not None and not fut.done():
        fut.set_result(StitchOutcome(stitch_id, ok, detail))
