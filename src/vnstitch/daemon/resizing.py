"""The daemon side of in-place stitch resizes the controller asks for.

Theory of operation: when to grow or shrink a stitch is the controller's decision
(:class:`~vnstitch.control.GrowPolicy`, :mod:`vnstitch.control.growth`). Here the daemon
only hands a request to the core's typed ``resize_stitch``
(:class:`~vnstitch.protocol.api.RouteManagerViews`), resolves the caller's future with the
outcome, feeds the outcome back to the controller and, on success, stores the stitch's
new bandwidth.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

from vnstitch.protocol.api import Output, StitchResized

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon


# -- the daemon side ------------------------------------------------------------------------


def request_resize(daemon: RouteManagerDaemon, stitch_id: str,
                   mbps: float) -> asyncio.Future[StitchResized]:
    """Ask the daemon's core to resize ``stitch_id`` in place; the future resolves with the
    outcome (at once when the core refuses locally)."""
    fut: asyncio.Future[StitchResized] = asyncio.get_running_loop().create_future()
    outputs: list[Output] = daemon.core.resize_stitch(stitch_id, mbps, daemon.now())
    at_once = [o for o in outputs if isinstance(o, StitchResized)]
    if at_once:
        fut.set_result(at_once[0])
    else:
        daemon.resize_waiters[stitch_id] = fut
    daemon.execute(outputs)
    return fut


def on_resized(daemon: RouteManagerDaemon, ev: StitchResized) -> bool:
    """Record a resize outcome; True when the stored state changed."""
    daemon.metrics["stitches_resized" if ev.ok else "resizes_failed"] += 1
    if daemon.allocation is not None:
        daemon.allocation.loop.resize_outcome(ev)
    if daemon.pra is not None:
        daemon.pra.resize_outcome(ev)
    if ev.reason != "in_progress":  # that answer is for the new request, not the pending one
        fut = daemon.resize_waiters.pop(ev.stitch_id, None)
        if fut is not None and not fut.done():
            fut.set_result(ev)
    if not ev.ok:
        return False
    store = daemon.store
    with store.transaction():
        for s in store.stitches():
            if s.stitch_id == ev.stitch_id:
                store.put_stitch(replace(s, bandwidth_mbps=ev.new_mbps, updated_at=ev.now))
        for r in store.reservations():
            if r.reservation_id == ev.stitch_id:
                store.put_reservation(replace(r, bandwidth_mbps=ev.new_mbps))
    return True
