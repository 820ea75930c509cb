"""Admission control and reservation holds (phase one and two of a stitch).

Theory of operation: the :class:`Ledger` keeps, per neighbour link, the capacity and the
bandwidth held or committed by each reservation token, plus an RM-wide total against the
segment's offered capacity. :meth:`Ledger.admit` checks *all* of a reservation's links
and the RM total before taking anything, so a refusal leaves no partial hold; since the
core is single-threaded, concurrent requests are serialised here and can never
over-commit. A :class:`Reservation` is one RM's part of a stitch (its previous and next
hop on the path) with a state machine: HELD (with an expiry) -> COMMITTED (with a lease
kept by its neighbours on the path, see :mod:`vnstitch.protocol.leases`) -> RELEASED, or
EXPIRED when a hold runs out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.errors import ProtocolError
from vnstitch.protocol.fsm import Machine

#: Slack for float comparisons of bandwidth sums.
EPSILON_MBPS = 1e-6


class ReservationState(enum.Enum):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


RESERVATION_TRANSITIONS: dict[ReservationState, frozenset[ReservationState]] = {
    ReservationState.HELD: frozenset({ReservationState.COMMITTED, ReservationState.RELEASED,
                                      ReservationState.EXPIRED}),
    ReservationState.COMMITTED: frozenset({ReservationState.RELEASED, ReservationState.EXPIRED}),
    ReservationState.RELEASED: frozenset(),
    ReservationState.EXPIRED: frozenset(),
}


@dataclass
class Reservation:
    token: str
    stitch_id: str
    path: tuple[RouteManagerId, ...]
    index: int  # this RM's position on the path
    bandwidth_mbps: float
    expires: float
    machine: Machine[ReservationState] = field(default_factory=lambda: Machine(
        "reservation", RESERVATION_TRANSITIONS, ReservationState.HELD))
    # Hop-by-hop reliability (not persisted): the HOLD or COMMIT this RM passed on and is
    # retransmitting to ``path[index + 1]`` until its answer comes back (or ``relay_until``),
    # and the answers seen, replayed to a retransmitted request instead of forwarding it.
    relay: Any = None
    relay_rto: float = 0.0
    relay_until: float = 0.0
    hold_answer: Any = None
    commit_answer: Any = None
    # Lease upkeep (not persisted; a restore counts as a confirmation): when it was
    # committed, and when each neighbour on the path last confirmed it.
    committed_at: float = 0.0
    confirmed: dict[RouteManagerId, float] = field(default_factory=dict)
    last_call: bool = False  # the lease ran out and a last LEASES(QUERY) went out
    # In-place resize (:mod:`vnstitch.protocol.resize`, not persisted): the highest resize
    # number seen, the amount tentatively admitted for it (the ledger holds the larger of
    # it and ``bandwidth_mbps`` until the answer), the answer seen (replayed to a
    # retransmission) and the RESIZE this RM is relaying to its next hop.
    resize_seq: int = 0
    resize_to: float | None = None
    resize_answer: Any = None
    resize_relay: Any = None
    resize_rto: float = 0.0

    @property
    def links(self) -> tuple[RouteManagerId, ...]:
        """The neighbour links this RM reserves on: toward the previous and next hop."""
        out = []
        if self.index > 0:
            out.append(self.path[self.index - 1])
        if self.index < len(self.path) - 1:
            out.append(self.path[self.index + 1])
        return tuple(out)

    @property
    def state(self) -> ReservationState:
        return self.machine.state

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "stitch_id": self.stitch_id, "path": list(self.path),
                "index": self.index, "bandwidth_mbps": self.bandwidth_mbps,
                "expires": self.expires, "state": self.state.value}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reservation:
        r = cls(d["token"], d["stitch_id"], tuple(RouteManagerId(p) for p in d["path"]),
                int(d["index"]), float(d["bandwidth_mbps"]), float(d["expires"]))
        r.machine.state = ReservationState(d["state"])
        return r


class Ledger:
    """Capacity and reservations per neighbour link and for the RM as a whole."""

    def __init__(self, capacities: dict[RouteManagerId, float], rm_capacity: float) -> None:
        self.capacity = dict(capacities)
        self.rm_capacity = rm_capacity
        self._link: dict[RouteManagerId, dict[str, float]] = {p: {} for p in capacities}
        self._rm: dict[str, float] = {}
        # Sums of the above, kept current (read on every route candidate and query).
        self._link_total: dict[RouteManagerId, float] = {p: 0.0 for p in capacities}

    def reserved(self, peer: RouteManagerId) -> float:
        return self._link_total.get(peer, 0.0)

    def _retotal(self, peer: RouteManagerId) -> None:
        # re-summed, not incremented, so float drift never accumulates
        self._link_total[peer] = sum(self._link[peer].values())

    def available(self, peer: RouteManagerId) -> float:
        return max(0.0, self.capacity.get(peer, 0.0) - self.reserved(peer))

    def rm_available(self) -> float:
        return max(0.0, self.rm_capacity - sum(self._rm.values()))

    def admit(self, token: str, links: tuple[RouteManagerId, ...],
              mbps: float) -> tuple[bool, RouteManagerId | None, float]:
        """Reserve ``mbps`` on every link in ``links`` and the RM total, or nothing.

        Returns (ok, refusing link or None for the RM total, what was available there).
        """
        for peer in links:
            if peer not in self.capacity:
                return False, peer, 0.0
            avail = self.available(peer) + self._link[peer].get(token, 0.0)
            if avail + EPSILON_MBPS < mbps:
                return False, peer, avail
        rm_avail = self.rm_available() + self._rm.get(token, 0.0)
        if rm_avail + EPSILON_MBPS < mbps:
            return False, None, rm_avail
        for peer in links:
            self._link[peer][token] = mbps
            self._retotal(peer)
        self._rm[token] = mbps
        return True, None, mbps

    def release(self, token: str) -> None:
        for peer, holds in self._link.items():
            if holds.pop(token, None) is not None:
                self._retotal(peer)
        self._rm.pop(token, None)

    def usage(self) -> dict[RouteManagerId, tuple[float, float]]:
        """Per neighbour link: (reserved Mbit/s, capacity Mbit/s) -- for invariant checks."""
        return {p: (self.reserved(p), c) for p, c in self.capacity.items()}

    def check_invariant(self) -> None:
        """Raise ProtocolError if anything is over-committed (tests call this every step)."""
        for peer, (used, cap) in self.usage().items():
            if used > cap + EPSILON_MBPS:
                raise ProtocolError(f"link to {peer} over-committed: {used} > {cap}")
        if sum(self._rm.values()) > self.rm_capacity + EPSILON_MBPS:
            raise ProtocolError("Route Manager offered capacity over-committed")
