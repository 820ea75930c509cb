"""Negotiation at the origin: the stitch request's state, offer feasibility and policy.

Theory of operation. A stitch request moves QUERYING (path query sent, offers arriving)
-> HOLDING (phase one along the chosen path) -> COMMITTING (phase two) -> ESTABLISHED.
A refused or timed-out hold moves HOLDING -> HOLDING with the next feasible offer, or to
FAILED. A tunnel that dies moves ESTABLISHED -> QUERYING (re-negotiation). RELEASED and
FAILED are terminal. :func:`violation` names the first constraint an offer breaks;
:func:`rank` is the default policy (cheapest, ties by latency, then fewer hops); the
failure detail names the failing constraint and the best offer seen.

Offers are accepted without waiting when they are at least as good as the best route
discovery knows (they cannot be beaten by anything discovery has seen); otherwise the
origin waits a fraction of the first offer's round trip for better ones.

A renegotiation around an element (a congested transit segment or adjacency) is a new
request that ``replaces`` the established one and avoids the element: offers
touching it are infeasible (:func:`touches`), so it may settle on a costlier path.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import FailureReason, StitchConstraints
from vnstitch.protocol.fsm import Machine
from vnstitch.protocol.messages import Message, Offer


class StitchState(enum.Enum):
    QUERYING = "querying"
    HOLDING = "holding"
    COMMITTING = "committing"
    ESTABLISHED = "established"
    FAILED = "failed"
    RELEASED = "released"


STITCH_TRANSITIONS: dict[StitchState, frozenset[StitchState]] = {
    StitchState.QUERYING: frozenset({StitchState.HOLDING, StitchState.FAILED,
                                     StitchState.RELEASED}),
    StitchState.HOLDING: frozenset({StitchState.HOLDING, StitchState.COMMITTING,
                                    StitchState.FAILED, StitchState.RELEASED}),
    StitchState.COMMITTING: frozenset({StitchState.ESTABLISHED, StitchState.HOLDING,
                                       StitchState.FAILED, StitchState.RELEASED}),
    StitchState.ESTABLISHED: frozenset({StitchState.QUERYING, StitchState.RELEASED}),
    StitchState.FAILED: frozenset(),
    StitchState.RELEASED: frozenset(),
}


def violation(offer: Offer, c: StitchConstraints) -> FailureReason | None:
    """The first constraint ``offer`` breaks (bandwidth, latency, cost, hops) or None."""
    if offer.bottleneck_mbps < c.bandwidth_mbps:
        return FailureReason.BANDWIDTH
    if offer.latency_ms > c.max_latency_ms:
        return FailureReason.LATENCY
    if offer.cost > c.max_cost:
        return FailureReason.COST
    if len(offer.path) - 1 > c.hop_limit:
        return FailureReason.HOP_LIMIT
    return None


def touches(path: Sequence[RouteManagerId],
            avoid: Collection[tuple[RouteManagerId, ...]]) -> bool:
    """Does ``path`` cross an avoided element: a segment ``(rm,)`` anywhere on it, or an
    adjacency ``(a, b)`` as consecutive hops in either direction?"""
    if not avoid:
        return False
    hops = set(path)
    links = {frozenset(p) for p in itertools.pairwise(path)}
    return any(e[0] in hops if len(e) == 1 else frozenset(e) in links for e in avoid)


def rank(offer: Offer) -> tuple[float, float, int, tuple[str, ...]]:
    return (offer.cost, offer.latency_ms, len(offer.path), offer.path)


def describe(offer: Offer) -> str:
    return (f"{len(offer.path) - 1} hop(s), {offer.bottleneck_mbps:g} Mbit/s, "
            f"{offer.latency_ms:.3g} ms, cost {offer.cost:g}")


@dataclass
class StitchRequest:
    """The origin's record of one stitch (across re-negotiations)."""

    stitch_id: str
    vnid: VNID
    constraints: StitchConstraints
    requested_at: float
    machine: Machine[StitchState] = field(default_factory=lambda: Machine(
        "stitch", STITCH_TRANSITIONS, StitchState.QUERYING))
    attempt: int = 0
    query_id: bytes = b""
    query_sent_at: float = 0.0
    offers: list[Offer] = field(default_factory=list)
    tried: set[tuple[RouteManagerId, ...]] = field(default_factory=set)
    refusals: list[str] = field(default_factory=list)
    token: str = ""
    path: tuple[RouteManagerId, ...] = ()
    latency_ms: float = 0.0
    cost: float = 0.0
    decide_at: float | None = None
    renegotiating: bool = False
    #: Every query id of the current round (one per retransmission) -> when it was sent.
    query_ids: dict[bytes, float] = field(default_factory=dict)
    #: Current retransmission timeout of the outstanding exchange (seconds).
    rto: float = 0.0
    #: The HOLD or COMMIT awaiting its answer (resent unchanged on retransmission).
    outstanding: Message | None = None
    #: Elements no offer may touch: ``(rm,)`` a segment, ``(a, b)`` the adjacency a-b.
    avoid: frozenset[tuple[RouteManagerId, ...]] = frozenset()
    #: The stitch this one replaces once it is established (make-before-break).
    replaces: str = ""
    #: Leave the replaced stitch established when this one is (the caller releases it
    #: once the new tunnel carries traffic: make-before-break in the dataplane too).
    keep_replaced: bool = False
    #: Targets that refused this round as ``not_authorised`` (what they said; who).
    denials: list[str] = field(default_factory=list)
    denied: set[RouteManagerId] = field(default_factory=set)

    @property
    def state(self) -> StitchState:
        return self.machine.state

    def feasible(self) -> list[Offer]:
        ok = [o for o in self.offers if violation(o, self.constraints) is None
              and o.path not in self.tried and not touches(o.path, self.avoid)]
        return sorted(ok, key=rank)

    def failure(self) -> tuple[FailureReason, str]:
        """Why no offer works: the failing constraint and the best offer seen."""
        if self.denials and len(self.denials) >= len(self.refusals) and (
                self.refusals or not self.offers):
            return FailureReason.NOT_AUTHORISED, "; ".join(self.denials[-3:])
        if self.refusals:
            return FailureReason.RESERVATION_REFUSED, "; ".join(self.refusals[-3:])
        if not self.offers:
            return FailureReason.NO_ROUTE, f"no Route Manager offered a path to VNID {self.vnid}"
        c = self.constraints
        best = min(self.offers, key=lambda o: (-o.bottleneck_mbps, rank(o)))
        reason = violation(best, c) or FailureReason.NO_ROUTE
        need = {FailureReason.BANDWIDTH: f"bandwidth {c.bandwidth_mbps:g} Mbit/s",
                FailureReason.LATENCY: f"latency <= {c.max_latency_ms:g} ms",
                FailureReason.COST: f"cost <= {c.max_cost:g}",
                FailureReason.HOP_LIMIT: f"hop limit {c.hop_limit}"}.get(reason, "a path")
        return reason, (f"no offer meets {need}; best of {len(self.offers)} offer(s): "
                        f"{describe(best)}")

    def to_dict(self) -> dict[str, Any]:
        c = self.constraints
        return {"stitch_id": self.stitch_id, "vnid": int(self.vnid),
                "constraints": [c.bandwidth_mbps, c.max_latency_ms, c.max_cost, c.hop_limit],
                "requested_at": self.requested_at, "state": self.state.value,
                "attempt": self.attempt, "token": self.token, "path": list(self.path),
                "latency_ms": self.latency_ms, "cost": self.cost,
                "avoid": [list(e) for e in sorted(self.avoid)], "replaces": self.replaces,
                "keep_replaced": self.keep_replaced}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StitchRequest:
        bw, lat, cost, hops = d["constraints"]
        r = cls(d["stitch_id"], VNID(int(d["vnid"])),
                StitchConstraints(float(bw), float(lat), float(cost), int(hops)),
                float(d["requested_at"]))
        r.machine.state = StitchState(d["state"])
        r.attempt = int(d["attempt"])
        r.token = d["token"]
        r.path = tuple(RouteManagerId(p) for p in d["path"])
        r.latency_ms = float(d["latency_ms"])
        r.cost = float(d["cost"])
        r.avoid = frozenset(tuple(RouteManagerId(x) for x in e) for e in d.get("avoid", []))
        r.replaces = str(d.get("replaces", ""))
        r.keep_replaced = bool(d.get("keep_replaced", False))
        return r
