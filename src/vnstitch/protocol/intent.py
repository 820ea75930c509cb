"""Stitch intents: a requested stitch is desired state its origin keeps converging to.

Theory of operation. The core negotiates one *attempt* at a time (``request_stitch``
returns the attempt's stitch id) and reports its outcome as events; an attempt that
fails is over for the core. An :class:`Intent` is what the operator asked for -- VNID and
constraints -- and outlives attempts: its id is the first attempt's id, and
:class:`IntentTable` tracks which attempt currently serves it. The driver (the daemon,
or any runtime) feeds it the core's events and ``now``, and asks :meth:`IntentTable.poll`
what to do next; it returns :class:`StartAttempt` / :class:`AbandonAttempt` actions and
never calls the core itself.

Failures are classified by :class:`~vnstitch.protocol.api.FailureReason`:

- *transient* (peer lost, timeout, tunnel down, no route while a target restarts): the
  intent waits a short capped exponential backoff with jitter (:data:`TRANSIENT`) and
  tries again, for as long as it exists;
- *capacity* (bandwidth, latency, cost, hop limit, a lost reservation race): retried with
  a longer backoff (:data:`CAPACITY`) until the request's ``deadline`` (``None``: keep
  trying);
- *final* (the request itself is bad, ``local``; or the target's access policy refuses
  this origin, ``not_authorised`` -- retrying cannot change that): given up at once.

An attempt that produced no outcome for :data:`ATTEMPT_TIMEOUT_S` (e.g. lost in a crash
before the core saved it) is abandoned and retried. A second intent for a VNID that
already has a live one is refused (:meth:`IntentTable.refusal`): the dataplane holds
one VXLAN device per VNI and UDP port, so a second stitch would never reach the kernel.

States are an Enum with a transition table; an invalid transition raises. Jitter comes
from the random source the caller passes in. Intents serialise to JSON for the daemon's
SQLite store.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from typing import Any

from vnstitch.backoff import Backoff
from vnstitch.protocol.api import FailureReason, StitchConstraints
from vnstitch.protocol.errors import ProtocolError

#: Retry schedule after a transient failure: short, so a restarted peer is found fast.
TRANSIENT = Backoff(base_s=0.5, cap_s=2.0)
#: Retry schedule while the path lacks capacity (or breaks another constraint).
CAPACITY = Backoff(base_s=1.0, cap_s=30.0)
#: An attempt with no outcome for this long is abandoned and retried.
ATTEMPT_TIMEOUT_S = 30.0

_FINAL_REASONS = frozenset({FailureReason.LOCAL, FailureReason.NOT_AUTHORISED})
_CAPACITY_REASONS = frozenset({FailureReason.BANDWIDTH, FailureReason.LATENCY,
                               FailureReason.COST, FailureReason.HOP_LIMIT,
                               FailureReason.RESERVATION_REFUSED})


class IntentState(enum.Enum):
    NEGOTIATING = "negotiating"  # an attempt is in flight (or renegotiating)
    UP = "up"
    WAITING = "waiting"  # the last attempt failed; the next one is scheduled
    GAVE_UP = "gave_up"  # deadline passed, or the request itself is refused
    RELEASED = "released"


INTENT_TRANSITIONS: dict[IntentState, frozenset[IntentState]] = {
    IntentState.NEGOTIATING: frozenset({IntentState.NEGOTIATING, IntentState.UP,
                                        IntentState.WAITING, IntentState.GAVE_UP,
                                        IntentState.RELEASED}),
    IntentState.UP: frozenset({IntentState.UP, IntentState.NEGOTIATING,
                               IntentState.WAITING, IntentState.GAVE_UP,
                               IntentState.RELEASED}),
    IntentState.WAITING: frozenset({IntentState.NEGOTIATING, IntentState.GAVE_UP,
                                    IntentState.RELEASED}),
    IntentState.GAVE_UP: frozenset({IntentState.RELEASED}),
    IntentState.RELEASED: frozenset(),
}


class IntentError(ProtocolError):
    """An invalid intent transition or an unreadable stored intent."""


@dataclass(slots=True)
class Intent:
    intent_id: str
    vnid: int
    constraints: StitchConstraints
    created_at: float
    deadline: float | None  # capacity refusals are retried until then (None: forever)
    state: IntentState = IntentState.NEGOTIATING
    attempt_id: str = ""
    attempt_started_at: float = 0.0
    attempts: int = 0
    failures: int = 0  # consecutive
    last_failure: str | None = None
    next_attempt_at: float | None = None

    def move(self, new: IntentState) -> None:
        if new not in INTENT_TRANSITIONS[self.state]:
            raise IntentError(f"intent {self.intent_id}: {self.state.value} -> {new.value}")
        self.state = new

    @property
    def live(self) -> bool:
        return self.state not in (IntentState.GAVE_UP, IntentState.RELEASED)

    def to_json(self) -> dict[str, Any]:
        c = self.constraints
        return {"intent_id": self.intent_id, "vnid": self.vnid,
                "bandwidth_mbps": c.bandwidth_mbps,
                "max_latency_ms": None if math.isinf(c.max_latency_ms) else c.max_latency_ms,
                "max_cost": None if math.isinf(c.max_cost) else c.max_cost,
                "hop_limit": c.hop_limit, "created_at": self.created_at,
                "deadline": self.deadline, "state": self.state.value,
                "attempt_id": self.attempt_id, "attempt_started_at": self.attempt_started_at,
                "attempts": self.attempts, "failures": self.failures,
                "last_failure": self.last_failure, "next_attempt_at": self.next_attempt_at}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Intent:
        try:
            lat, cost = d["max_latency_ms"], d["max_cost"]
            intent = cls(
                str(d["intent_id"]), int(d["vnid"]),
                StitchConstraints(float(d["bandwidth_mbps"]),
                                  math.inf if lat is None else float(lat),
                                  math.inf if cost is None else float(cost),
                                  int(d["hop_limit"])),
                float(d["created_at"]),
                None if d["deadline"] is None else float(d["deadline"]),
                IntentState(d["state"]), str(d["attempt_id"]),
                float(d["attempt_started_at"]), int(d["attempts"]), int(d["failures"]),
                None if d["last_failure"] is None else str(d["last_failure"]),
                None if d["next_attempt_at"] is None else float(d["next_attempt_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise IntentError(f"unreadable intent: {exc}") from None
        numbers = [intent.constraints.bandwidth_mbps, intent.created_at,
                   intent.attempt_started_at, intent.deadline or 0.0,
                   intent.next_attempt_at or 0.0]
        if not all(math.isfinite(x) for x in numbers):
            raise IntentError(f"intent {intent.intent_id}: non-finite number")
        return intent


@dataclass(frozen=True, slots=True)
class StartAttempt:
    """Ask the core for a stitch for this intent (then call :meth:`IntentTable.started`)."""

    intent_id: str
    vnid: int
    constraints: StitchConstraints


@dataclass(frozen=True, slots=True)
class AbandonAttempt:
    """Release this attempt in the core: it produced no outcome in time."""

    intent_id: str
    attempt_id: str


IntentAction = StartAttempt | AbandonAttempt


class IntentTable:
    """Every intent of one origin Route Manager, keyed by intent id."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.intents: dict[str, Intent] = {}

    # -- requests -------------------------------------------------------------------------
    def refusal(self, vnid: int) -> str | None:
        """Why a new stitch to ``vnid`` is refused (None: it is not)."""
        for i in self.intents.values():
            if i.vnid == vnid and i.live:
                return (f"VNID {vnid} already has stitch {i.intent_id} ({i.state.value}) "
                        "from this Route Manager: one stitch per VNID (resize it, or "
                        "release it first)")
        return None

    def add(self, intent_id: str, vnid: int, constraints: StitchConstraints, now: float,
            deadline: float | None = None) -> Intent:
        """Record a new intent whose first attempt ``intent_id`` the core just started."""
        intent = Intent(intent_id, vnid, constraints, now, deadline)
        self.intents[intent_id] = intent
        self.started(intent_id, intent_id, now)
        return intent

    def started(self, intent_id: str, attempt_id: str, now: float) -> None:
        i = self.intents[intent_id]
        i.move(IntentState.NEGOTIATING)
        i.attempt_id, i.attempt_started_at = attempt_id, now
        i.attempts += 1
        i.next_attempt_at = None

    def release(self, intent_id: str) -> str:
        """Mark released (events of its attempt are then ignored); the attempt id."""
        i = self.intents[intent_id]
        i.move(IntentState.RELEASED)
        return i.attempt_id

    def forget(self, intent_id: str) -> None:
        self.intents.pop(intent_id, None)

    # -- lookups --------------------------------------------------------------------------
    def by_attempt(self, attempt_id: str) -> Intent | None:
        for i in self.intents.values():
            if i.attempt_id == attempt_id:
                return i
        return None

    def get(self, intent_id: str) -> Intent | None:
        return self.intents.get(intent_id)

    # -- outcomes of attempts -------------------------------------------------------------
    def established(self, attempt_id: str) -> Intent | None:
        i = self.by_attempt(attempt_id)
        if i is None or i.state is IntentState.RELEASED:
            return None
        i.move(IntentState.UP)
        i.failures = 0
        return i

    def renegotiating(self, attempt_id: str, now: float) -> Intent | None:
        i = self.by_attempt(attempt_id)
        if i is None or not i.live:
            return None
        i.move(IntentState.NEGOTIATING)
        i.attempt_started_at = now
        return i

    def failed(self, attempt_id: str, reason: FailureReason, detail: str,
               now: float) -> Intent | None:
        """The attempt is over: schedule the next one, or give up. The intent, if any."""
        i = self.by_attempt(attempt_id)
        if i is None or not i.live:
            return None
        i.failures += 1
        i.last_failure = f"{reason.value}: {detail}" if detail else reason.value
        if reason in _FINAL_REASONS:
            i.move(IntentState.GAVE_UP)
            i.next_attempt_at = None
            return i
        capacity = reason in _CAPACITY_REASONS
        at = now + (CAPACITY if capacity else TRANSIENT).delay(i.failures, self._rng)
        if capacity and i.deadline is not None and at > i.deadline:
            i.move(IntentState.GAVE_UP)
            i.next_attempt_at = None
            i.last_failure += " (retry deadline passed)"
            return i
        if i.state is not IntentState.WAITING:
            i.move(IntentState.WAITING)
        i.next_attempt_at = at
        return i

    # -- time -----------------------------------------------------------------------------
    def poll(self, now: float) -> list[IntentAction]:
        """What is due at ``now``: new attempts, and abandoning attempts that hang."""
        actions: list[IntentAction] = []
        for i in self.intents.values():
            if i.state is IntentState.WAITING and i.next_attempt_at is not None and \
                    i.next_attempt_at <= now:
                actions.append(StartAttempt(i.intent_id, i.vnid, i.constraints))
            elif i.state is IntentState.NEGOTIATING and \
                    now - i.attempt_started_at >= ATTEMPT_TIMEOUT_S:
                actions.append(AbandonAttempt(i.intent_id, i.attempt_id))
        return actions

    def abandoned(self, intent_id: str, now: float) -> None:
        """The driver released a hung attempt: count it as a transient failure."""
        i = self.intents[intent_id]
        self.failed(i.attempt_id, FailureReason.TIMEOUT,
                    f"no outcome within {ATTEMPT_TIMEOUT_S:g} s", now)

    def next_timer(self) -> float | None:
        times = [i.next_attempt_at for i in self.intents.values()
                 if i.state is IntentState.WAITING and i.next_attempt_at is not None]
        times += [i.attempt_started_at + ATTEMPT_TIMEOUT_S for i in self.intents.values()
                  if i.state is IntentState.NEGOTIATING]
        return min(times, default=None)
