"""Reservation leases, kept alive by neighbours in bulk (refresh reduction, as in RSVP).

Theory of operation. A committed reservation lives only while the neighbours it shares
with this RM (its previous and next hop on the path) keep confirming it: each side's
confirmation is dated, and the reservation expires ``lease_s`` after the older of the
two. Confirmation costs no message of its own. Every HELLO (one per neighbour per
announce interval, sent anyway for discovery) carries a 64-bit digest and the count of
the committed reservations the two RMs share; the neighbour computes the same over its
own reservations (token and committed amount, so both ends of a link agree on a
resize), and when they agree every shared reservation is confirmed at once,
however many stitches cross the link. When they disagree (a commit in flight, a release
that did not reach one side) the receiver asks with LEASES(QUERY); the answer,
LEASES(LIVE), lists the committed tokens (chunked), which confirms those the asker
holds; tokens it does not hold come back in LEASES(GONE), and the other side releases
them. So steady-state lease upkeep is part of the per-neighbour HELLO, independent of the
number of stitches and of path lengths.

When a lease runs out the RM first makes a last call: LEASES(QUERY) to the silent
neighbour(s), and waits ``2 x retransmit_max_s`` for the answer (lost HELLOs on a lossy
link should not tear a working stitch down). A reservation still unconfirmed then (its
neighbour crashed or is cut off for the lease time, or stopped listing it) is released,
and both ends of the path are told: PATH_DOWN
toward the origin, which re-negotiates, ABORT toward the target, which takes its tunnel
end down. That is how a transit RM's crash reaches the origin: the tunnel itself (and so
the end-to-end probes) may well keep working without it. A hold not yet committed just
expires after its hold time (the origin's own timer handles the attempt).

An *end* of the path whose tunnel demonstrably carries the far end's authenticated probes
does not give up a lease that ran out (:meth:`~vnstitch.protocol.heldpaths.HeldPathMixin.
_lease_kept_by_datapath`): its neighbour's confirmations may only have been lost, e.g. to
a flood that fills this RM's receive buffer, and a working stitch must not be torn down
for that. It keeps asking the neighbour, for at most ``datapath_hold_s`` past the lease.
"""

from __future__ import annotations

import hashlib

from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.api import Output
from vnstitch.protocol.messages import MAX_TOKENS, Hello, LeaseOp, Leases
from vnstitch.protocol.reservation import Reservation, ReservationState
from vnstitch.protocol.stitchbase import StitchingBase
from vnstitch.protocol.timers import TimerKind

_MASK64 = (1 << 64) - 1
_LIVE = (ReservationState.HELD, ReservationState.COMMITTED)


def lease_hash(token: str, bandwidth_mbps: float) -> int:
    """One committed reservation: its token and committed amount, so a resize that one
    side of a link has committed and the other not yet shows as a mismatch."""
    text = f"{token}|{float(bandwidth_mbps)!r}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def lease_digest(leases: list[tuple[str, float]]) -> int:
    """Order-independent digest of (token, committed Mbit/s) pairs (sum of 64-bit hashes)."""
    return sum(lease_hash(t, bw) for t, bw in leases) & _MASK64


class LeaseMixin(StitchingBase):
    def _shared(self, peer: RouteManagerId) -> list[str]:
        """Tokens of our committed reservations in which ``peer`` is our neighbour."""
        return sorted(t for t, r in self.reservations.items()
                      if r.state is ReservationState.COMMITTED and peer in r.links)

    def _digest(self, tokens: list[str]) -> int:
        return lease_digest([(t, self.reservations[t].bandwidth_mbps) for t in tokens])

    def lease_summary(self, peer: RouteManagerId) -> tuple[int, int]:
        """(digest, count) of what we share with ``peer``, for our HELLO to it."""
        tokens = self._shared(peer)
        return self._digest(tokens), len(tokens)

    def _confirm(self, res: Reservation, peer: RouteManagerId, now: float) -> None:
        res.confirmed[peer] = now

    def _last_call_s(self) -> float:
        """How long a lease's last call waits for an answer (a few retransmission
        timeouts: the neighbour is one hop away)."""
        return 2.0 * self.timers_cfg.retransmit_max_s

    def on_hello_leases(self, peer: RouteManagerId, msg: Hello, now: float,
                        out: list[Output]) -> None:
        tokens = self._shared(peer)
        if (self._digest(tokens), len(tokens)) == (msg.lease_digest, msg.leases):
            for t in tokens:
                self._confirm(self.reservations[t], peer, now)
            return
        self.stat("lease_mismatch")
        self.send(peer, Leases(LeaseOp.QUERY, ()), now, out)

    def _on_leases(self, peer: RouteManagerId, m: Leases, now: float,
                   out: list[Output]) -> None:
        if m.op is LeaseOp.QUERY:
            tokens = self._shared(peer)
            for i in range(0, len(tokens), MAX_TOKENS):
                self.send(peer, Leases(LeaseOp.LIVE, tuple(tokens[i:i + MAX_TOKENS])), now, out)
            return
        gone: list[str] = []
        for t in m.tokens:
            res = self.reservations.get(t)
            held = res is not None and res.state in _LIVE and peer in res.links
            if m.op is LeaseOp.LIVE:
                if held:
                    assert res is not None
                    self._confirm(res, peer, now)
                else:
                    gone.append(t)
            elif held:  # GONE: the neighbour holds none of it, so the path is broken
                assert res is not None
                self.stat("lease_gone")
                self._tear_down_path(res, now, out, skip=peer)
        for i in range(0, len(gone), MAX_TOKENS):
            self.send(peer, Leases(LeaseOp.GONE, tuple(gone[i:i + MAX_TOKENS])), now, out)

    def _reservation_timer(self, token: str, now: float, out: list[Output]) -> None:
        """The ``resv`` timer: a hold's expiry, or a committed reservation's lease check
        (re-armed lazily to the older confirmation + lease, so refreshing costs no timer
        operation)."""
        res = self.reservations.get(token)
        if res is None:
            return
        if res.state not in _LIVE:  # ended a while ago (_forget_later): forget it
            del self.reservations[token]
            self.stat("reservations_forgotten")
            return
        if res.state is ReservationState.COMMITTED:
            lease = self._lease()
            due = min((res.confirmed.get(p, res.committed_at) for p in res.links),
                      default=res.committed_at) + lease
            if due > now:
                res.last_call = False
                self.set_timer(TimerKind.RESERVATION, token, due)
                return
            if self._lease_kept_by_datapath(res, due, now, out):  # heldpaths.py
                return
            if not res.last_call:
                # Before giving up, ask the silent side(s) once: their HELLOs may only
                # have been lost. A live neighbour's LEASES(LIVE) answer confirms in time.
                res.last_call = True
                self.stat("lease_last_call")
                for p in res.links:
                    if res.confirmed.get(p, res.committed_at) + lease <= now:
                        self.send(p, Leases(LeaseOp.QUERY, ()), now, out)
                self.set_timer(TimerKind.RESERVATION, token, now + self._last_call_s())
                return
            self.stat("lease_expired")
            self._tear_down_path(res, now, out)
            return
        res.machine.move(ReservationState.EXPIRED)
        self.ledger.release(token)
        self._forget_later(res, now)
        self.capacity_changed(res.links, now, out)
        self._tunnel_down(token, now, out)
