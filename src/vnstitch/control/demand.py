"""When an origin Route Manager asks for a VN's stitch: on demand, not at a fixed time.

Theory of operation. A real Route Manager has no schedule for its stitches: it asks for
one when the VN's traffic is offered and its discovery knows where the VN is. One
:class:`VnDemand` per VN this RM originates, in :class:`StitchDemand`, is fed what the
driver sees -- traffic offered (:meth:`StitchDemand.offered`), the core's discovery
learning or losing a route to the VNID (:meth:`StitchDemand.route`, from a
``RouteChanged`` event and the core's typed ``route_views``), the outcome of each
attempt (:meth:`asked`, :meth:`up`, :meth:`failed`, :meth:`lost`) -- and
:meth:`StitchDemand.due` says which VNs to ask for now. The rules:

* **On demand.** A VN with traffic offered is asked for as soon as a remote route to
  its VNID is known -- at once when the route was known first, else at the route event.
* **No route yet.** With traffic offered and no route known after ``route_wait_s``,
  the origin asks anyway -- the query floods -- and again after each failure, on the
  daemon's schedule for a failure that is not the request's fault
  (:data:`vnstitch.protocol.intent.TRANSIENT`: capped exponential with jitter); a route
  learned meanwhile cuts the wait short. A blind query takes the first offer to arrive
  (:mod:`vnstitch.protocol.origin`: nothing to compare it with), the fastest to answer
  rather than the cheapest; the origin's re-optimisation
  (:meth:`vnstitch.control.reroute.StitchMover.cheaper`, fed by :func:`cheaper_routes`)
  moves the stitch, make-before-break, once discovery knows a cheaper route. So the
  wait trades unattached time for one renegotiation: the simulator asks at once
  (``route_wait_s = 0``); a runtime without re-optimisation should wait about one
  announcement period, by when every neighbour has announced what it knows.
* **Explicit time.** A VN given ``at`` (a scenario's ``stitch_at_s``, an operator's
  request) is asked for at that time whatever the traffic and the routes; its
  failures are retried as above.
* **Lost.** A stitch that went down with its origin is asked for again at once:
  requests outlive the Route Manager (the daemon keeps them as intents).

The daemon's stitches are operators' requests (an explicit time: now), kept as intents
(:mod:`vnstitch.protocol.intent`) that retry a failure on the same ``TRANSIENT``
schedule; :func:`wake_on_route` gives them the rule above that a route learned cuts
a wait short, so both runtimes ask again at the same moment.

The time before the first commit stays the driver's to count (the simulator counts the
traffic offered then as unattached). States are an Enum with a transition table; an
invalid transition raises. Pure: ``now`` and the (jittered) retry schedule are passed
in.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vnstitch.control.errors import ControlError
from vnstitch.protocol.api import RouteView, StitchView
from vnstitch.protocol.intent import Intent, IntentState


class DemandState(enum.Enum):
    IDLE = "idle"  # never asked for
    ASKED = "asked"  # an attempt is in flight
    UP = "up"
    WAITING = "waiting"  # the last attempt failed, or the stitch was lost: retry due


DEMAND_TRANSITIONS: dict[DemandState, frozenset[DemandState]] = {
    DemandState.IDLE: frozenset({DemandState.ASKED, DemandState.WAITING}),
    DemandState.ASKED: frozenset({DemandState.UP, DemandState.WAITING}),
    DemandState.UP: frozenset({DemandState.WAITING}),
    DemandState.WAITING: frozenset({DemandState.ASKED, DemandState.WAITING}),
}


def cheaper_routes(stitches: Iterable[StitchView], routes: Iterable[RouteView]
                   ) -> dict[str, tuple[float, float]]:
    """Per established stitch of a core (its ``stitch_views``): its committed cost and
    the cost of the cheapest remote route its discovery knows (``route_views``) to the
    VN that could carry its bandwidth (inf: none) -- what
    :meth:`vnstitch.control.reroute.StitchMover.cheaper` re-optimises on, in both
    runtimes."""
    best: dict[int, list[tuple[float, float]]] = {}
    for r in routes:
        if r.via is not None:
            best.setdefault(int(r.vnid), []).append((r.bandwidth_mbps, r.cost))
    return {s.stitch_id: (s.cost, min((c for bw, c in best.get(int(s.vnid), ())
                                       if bw >= s.bandwidth_mbps - 1e-9), default=math.inf))
            for s in stitches if s.state == "established"}


def knows_route(views: Iterable[RouteView], vnid: int) -> bool:
    """Whether a core's discovery (its ``route_views``) knows a remote route to ``vnid``
    (a copy of the VN on the origin's own segment is no way to the other end)."""
    return any(int(v.vnid) == vnid and v.via is not None for v in views)


@dataclass(slots=True)
class VnDemand:
    vnid: int
    at: float | None = None  # an explicit time to ask (None: on demand)
    state: DemandState = DemandState.IDLE
    offered_since: float | None = None
    route_known: bool = False
    route_news: float | None = None  # when a route was learned since the last attempt
    failures: int = 0  # consecutive
    retry_at: float | None = None
    attempts: int = 0

    def move(self, new: DemandState) -> None:
        if new not in DEMAND_TRANSITIONS[self.state]:
            raise ControlError(f"stitch demand of VNID {self.vnid}: "
                               f"{self.state.value} -> {new.value}")
        self.state = new


class StitchDemand:
    """The stitch demand of one origin Route Manager (module docstring)."""

    def __init__(self, retry_delay: Callable[[int], float], *, route_wait_s: float) -> None:
        """``retry_delay(n)``: seconds to wait after ``n`` consecutive failures (the
        driver's schedule with its own random source: ``TRANSIENT.delay(n, rng)``, as the
        daemon's intents); ``route_wait_s``: how long to wait for a route before asking
        blind (the protocol's announcement period)."""
        if not (math.isfinite(route_wait_s) and route_wait_s >= 0):
            raise ControlError(f"route_wait_s {route_wait_s!r} is not a duration")
        self.retry_delay = retry_delay
        self.route_wait_s = route_wait_s
        self.vns: dict[int, VnDemand] = {}

    def add(self, vnid: int, *, at: float | None = None) -> VnDemand:
        if at is not None and not (math.isfinite(at) and at >= 0):
            raise ControlError(f"VNID {vnid}: explicit stitch time {at!r} is not a time")
        d = self.vns[vnid] = VnDemand(vnid, at)
        return d

    # -- what the driver sees -------------------------------------------------------------
    def offered(self, vnid: int, now: float) -> None:
        """The VN's traffic is offered (from ``now`` on, if it was not before)."""
        d = self.vns[vnid]
        if d.offered_since is not None:
            return
        d.offered_since = now
        if d.state is DemandState.IDLE and d.at is None and not d.route_known:
            d.retry_at = now + self.route_wait_s  # then ask blind (module docstring)

    def route(self, vnid: int, known: bool, now: float) -> None:
        """The origin's discovery knows (``known``) a remote route to ``vnid``, or no
        longer does."""
        d = self.vns.get(vnid)
        if d is None:
            return
        if known and not d.route_known:
            d.route_news = now
        d.route_known = known

    def asked(self, vnid: int, now: float) -> None:
        d = self.vns[vnid]
        d.move(DemandState.ASKED)
        d.route_news, d.retry_at = None, None
        d.attempts += 1

    def up(self, vnid: int) -> None:
        d = self.vns[vnid]
        if d.state is DemandState.ASKED:
            d.move(DemandState.UP)
            d.failures = 0

    def failed(self, vnid: int, now: float) -> None:
        """The attempt failed (or could not start): retry after the backoff, or when a
        route is learned, whichever comes first."""
        d = self.vns[vnid]
        d.move(DemandState.WAITING)
        d.failures += 1
        d.retry_at = now + self.retry_delay(d.failures)

    def lost(self, vnid: int, now: float) -> None:
        """The stitch went down with its origin: ask again at once."""
        d = self.vns[vnid]
        d.move(DemandState.WAITING)
        d.retry_at = now

    # -- decisions ------------------------------------------------------------------------
    def _due_at(self, d: VnDemand) -> float | None:
        if d.state is DemandState.IDLE:
            if d.at is not None:
                return d.at
            if d.offered_since is None:
                return None
            return d.offered_since if d.route_known else d.retry_at
        if d.state is DemandState.WAITING:
            if d.route_news is not None and d.retry_at is not None:
                return min(d.route_news, d.retry_at)
            return d.retry_at
        return None

    def due(self, now: float) -> list[int]:
        """The VNs to ask for at ``now`` (then call :meth:`asked` or :meth:`failed`)."""
        out: list[int] = []
        for vnid, d in sorted(self.vns.items()):
            at = self._due_at(d)
            if at is not None and at <= now + 1e-9:
                out.append(vnid)
        return out

    def next_timer(self) -> float | None:
        """The earliest time something may become due without an event (or None)."""
        times = [t for t in (self._due_at(d) for d in self.vns.values()) if t is not None]
        return min(times, default=None)


def wake_on_route(intents: Iterable[Intent], vnid: int, now: float) -> list[Intent]:
    """The daemon's side of the rule "a route learned cuts a wait short": every intent
    to ``vnid`` waiting to retry is due at ``now``; those changed."""
    woken: list[Intent] = []
    for i in intents:
        if i.vnid == vnid and i.state is IntentState.WAITING and \
                i.next_attempt_at is not None and i.next_attempt_at > now:
            i.next_attempt_at = now
            woken.append(i)
    return woken
