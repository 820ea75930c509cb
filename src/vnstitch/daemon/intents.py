"""The daemon side of stitch intents: store them, feed them events, run their timer.

Theory of operation. :class:`~vnstitch.protocol.intent.IntentTable` (pure) decides; this
module is the thin layer that applies its decisions to one daemon: a stitch request
becomes an intent stored in SQLite (``intents`` table) next to its first attempt; the
core's stitch events are passed to the table; :meth:`IntentRunner.poll` runs at the
table's ``next_timer()`` and starts new attempts (``core.request_stitch``) or releases
hung ones; a route learned to a waiting intent's VNID starts its attempt at once
(:meth:`IntentRunner.on_route`). Stitch rows and reservations stay keyed by the core's
attempt id (the allocation loop and resizes speak the core's ids); the operator sees the intent id,
which is the first attempt's id, and ``show stitches`` joins the two. A restart reloads
the intents, so a stitch comes back after a crash of any Route Manager on its path.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vnstitch.control.demand import knows_route, wake_on_route
from vnstitch.daemon.errors import ControlError
from vnstitch.daemon.heldsampler import HoldsPaths
from vnstitch.daemon.state import StitchRecord
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import (
    FailureReason,
    Output,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
)
from vnstitch.protocol.intent import (
    AbandonAttempt,
    Intent,
    IntentState,
    IntentTable,
    StartAttempt,
)

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon.intents")


@dataclass(slots=True)
class IntentRunner:
    daemon: RouteManagerDaemon
    table: IntentTable
    _timer: asyncio.TimerHandle | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def restore(self) -> None:
        for intent in self.daemon.store.intents():
            self.table.intents[intent.intent_id] = intent

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- requests -------------------------------------------------------------------------
    def request(self, vnid: VNID, constraints: StitchConstraints, now: float,
                retry_for_s: float | None) -> tuple[str, list[Output]]:
        """Start a new intent (refused when the VNID has a live one)."""
        refusal = self.table.refusal(int(vnid))
        if refusal is not None:
            raise ControlError(f"stitch: {refusal}")
        d = self.daemon
        stitch_id, outputs = d.core.request_stitch(vnid, constraints, now)
        deadline = None if retry_for_s is None else now + retry_for_s
        intent = self.table.add(stitch_id, int(vnid), constraints, now, deadline)
        with d.store.transaction():
            d.store.put_stitch(StitchRecord(stitch_id, int(vnid), (),
                                            constraints.bandwidth_mbps, 0.0, 0.0,
                                            "requested", now, now))
            d.store.put_intent(intent)
        return stitch_id, outputs

    def attempt_of(self, stitch_id: str) -> str:
        """The core's id for the stitch the operator calls ``stitch_id``."""
        intent = self.table.get(stitch_id)
        return intent.attempt_id if intent is not None else stitch_id

    def known(self, stitch_id: str) -> bool:
        return self.table.get(stitch_id) is not None

    def release(self, stitch_id: str) -> list[Output]:
        """Release the intent and its current attempt; the core's outputs."""
        d = self.daemon
        intent = self.table.get(stitch_id)
        attempt = stitch_id
        if intent is not None:
            attempt = intent.attempt_id if intent.state is IntentState.RELEASED else \
                self.table.release(stitch_id)
        outputs = d.core.release_stitch(attempt, d.now())
        if intent is not None and isinstance(d.core, HoldsPaths):
            # The operator's release: a path held for this VN goes too (not a retry's).
            outputs += d.core.release_held_paths(VNID(intent.vnid), d.now())
        if intent is not None:
            self.table.forget(stitch_id)
            d.store.delete_intent(stitch_id)
            self.schedule()
        return outputs

    def succeeded(self, old: str, new: str, now: float) -> None:
        """Stitch ``new`` replaced ``old`` (make-before-break): the intent follows it."""
        intent = self.table.by_attempt(old)
        if intent is None:
            return
        self.table.started(intent.intent_id, new, now)
        d = self.daemon
        with d.store.transaction():
            d.store.delete_stitch(old)
            d.store.delete_reservation(old)
            d.store.put_intent(intent)

    # -- events ---------------------------------------------------------------------------
    def on_event(self, ev: Output) -> dict[str, Any]:
        """Feed one core event to the table; extra detail for the requester, if any."""
        intent: Intent | None = None
        if isinstance(ev, StitchEstablished):
            intent = self.table.established(ev.stitch_id)
        elif isinstance(ev, StitchFailed):
            intent = self.table.failed(ev.stitch_id, ev.reason, ev.detail, ev.now)
        elif isinstance(ev, StitchTornDown):
            if ev.renegotiating:
                intent = self.table.renegotiating(ev.stitch_id, ev.now)
            elif ev.reason is not FailureReason.LOCAL:
                intent = self.table.failed(ev.stitch_id, ev.reason, "torn down", ev.now)
        if intent is None:
            return {}
        self.daemon.store.put_intent(intent)
        self.schedule()
        if intent.state is IntentState.WAITING and intent.next_attempt_at is not None:
            return {"retrying": True, "next_attempt_in_s": round(
                max(0.0, intent.next_attempt_at - self.daemon.now()), 3)}
        if intent.state is IntentState.GAVE_UP:
            return {"retrying": False}
        return {}

    def on_route(self, vnid: int, now: float) -> None:
        """Discovery changed its routes to ``vnid``: with a remote one known, an intent
        to it waiting to retry asks now (:func:`vnstitch.control.demand.wake_on_route`,
        the rule the simulator's origins follow too)."""
        d = self.daemon
        if not knows_route(d.core.route_views(), vnid):
            return
        woken = wake_on_route(self.table.intents.values(), vnid, now)
        for intent in woken:
            d.store.put_intent(intent)
        if woken:
            self.schedule()

    # -- timer ----------------------------------------------------------------------------
    def schedule(self) -> None:
        d = self.daemon
        loop = d.loop
        if loop is None or not d.store_open:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self.table.next_timer()
        if at is not None:
            self._timer = loop.call_later(max(0.0, at - d.now()), self.poll)

    def poll(self) -> None:
        self._timer = None
        d = self.daemon
        if not d.store_open:
            return
        now = d.now()
        for action in self.table.poll(now):
            try:
                if isinstance(action, StartAttempt):
                    self._start(action, now)
                elif isinstance(action, AbandonAttempt):
                    outputs = d.core.release_stitch(action.attempt_id, now)
                    self.table.abandoned(action.intent_id, now)
                    d.store.put_intent(self.table.intents[action.intent_id])
                    d.execute(outputs)
            except Exception:  # one intent's bug must not stop the others' retries
                log.exception("intent %s: %s failed", action.intent_id, action)
                d.metrics["intent_errors"] += 1
        self.schedule()

    def _start(self, action: StartAttempt, now: float) -> None:
        d = self.daemon
        intent = self.table.intents[action.intent_id]
        old = intent.attempt_id
        attempt, outputs = d.core.request_stitch(VNID(action.vnid), action.constraints, now)
        self.table.started(action.intent_id, attempt, now)
        with d.store.transaction():
            if old != attempt:
                d.store.delete_stitch(old)
                d.store.delete_reservation(old)
            d.store.put_stitch(StitchRecord(attempt, action.vnid, (),
                                            action.constraints.bandwidth_mbps, 0.0, 0.0,
                                            "requested", intent.created_at, now))
            d.store.put_intent(intent)
        d.metrics["intent_attempts"] += 1
        log.info("stitch %s: attempt %d (%s) after %s", action.intent_id, intent.attempts,
                 attempt, intent.last_failure)
        d.execute(outputs)

    # -- views ----------------------------------------------------------------------------
    def row_fields(self, attempt_id: str, now: float) -> dict[str, Any]:
        """The intent columns of ``show stitches`` for the stitch row ``attempt_id``."""
        intent = self.table.by_attempt(attempt_id)
        if intent is None:
            return {"stitch_id": attempt_id, "desired": "released", "attempts": None,
                    "last_failure": None, "next_attempt_s": None}
        nxt = intent.next_attempt_at
        return {"stitch_id": intent.intent_id,
                "desired": "up" if intent.live else intent.state.value,
                "intent": intent.state.value, "attempts": intent.attempts,
                "last_failure": intent.last_failure,
                "next_attempt_s": None if nxt is None else round(max(0.0, nxt - now), 3)}
