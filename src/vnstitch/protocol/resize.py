"""In-place, hitless resize of an established stitch's bandwidth (grow or shrink).

Theory of operation (origin O .. transit T .. target X, stitch ESTABLISHED at ``old``)::

    O: RESIZE(seq, new) -> T: RESIZE -> X   (each hop admits max(old, new) on its links)
    O <- RESIZE_OK  T <- RESIZE_OK  X       (each hop commits ``new``; both tunnel ends'
                                             HTB class follows)
    ... or a hop that cannot admit the delta answers RESIZE_REFUSED, and every hop back
    to O drops the tentative amount: the stitch stays ESTABLISHED at ``old``.

The tunnel and the committed reservation are never touched until the answer: a grow
keeps the old amount reserved throughout and only *adds* the delta tentatively (the
ledger holds ``max(old, new)`` for the token, so :meth:`Ledger.admit` checks exactly the
delta); a shrink admits nothing (``max`` is the old amount) and releases on the way
back. So a refusal is always possible to undo, and either way there is no outage. The
target commits on receipt (its link is the last one checked) and answers; each hop
commits as RESIZE_OK passes back through it, so after the answer every hop's committed
reservation -- and the lease digest it puts in its HELLO, which covers the amount --
carries ``new``. RESIZE and RESIZE_OK are end-to-end signed by the end that sent them
(the amount both tunnel ends shape to cannot be changed by a transit RM).

Numbers and reliability. Each reservation counts its resizes (``seq``); a hop ignores a
lower number than it has seen (stale, e.g. from before a renegotiation: counted), replays
its answer to a repeat of the current one, and a higher one supersedes a tentative older
one. Like HOLD, RESIZE is retransmitted end to end by the origin and hop by hop by every
transit RM until the answer comes back through it; a hop's tentative amount expires by
itself after ``2 x hold_timeout_s`` without an answer. The origin allows one resize in
flight per stitch and gives up after ``hold_timeout_s`` (``StitchResized(ok=False,
reason="timeout")``); since some hops may already have committed the new amount, it
then *settles*: it sends a fresh resize to ``min(old, new)``, which no hop can refuse
for capacity, so every hop ends at one amount (a timed-out shrink thus takes effect
after all, reported as ``reason="settled"``); an origin restarted with a resize in flight
settles the same way. A teardown or renegotiation abandons the resize
(``reason="torn_down"``); its late answers find no attempt and are counted.

Origin attempts are :class:`ResizeAttempt` objects with a small state machine; timer
kinds: ``zrtx`` / ``zhold`` [stitch] (origin retransmission, timeout), ``zrelay`` /
``zexp`` [token] (hop retransmission, tentative expiry).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

from vnstitch.dataplane.objects import RateLimit
from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.api import DataplaneChange, Output, StitchResized
from vnstitch.protocol.errors import RemoteProtocolError
from vnstitch.protocol.fsm import Machine
from vnstitch.protocol.grants import NOT_AUTHORISED
from vnstitch.protocol.membership import MembershipMixin
from vnstitch.protocol.messages import MsgType, Resize, ResizeRefused
from vnstitch.protocol.negotiation import StitchRequest, StitchState
from vnstitch.protocol.reservation import Reservation, ReservationState
from vnstitch.protocol.stitchbase import NO_SIG
from vnstitch.protocol.timers import TimerKind
from vnstitch.protocol.tunnels import TunnelState


class ResizeState(enum.Enum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REFUSED = "refused"
    TIMED_OUT = "timed_out"
    ABANDONED = "abandoned"


RESIZE_TRANSITIONS: dict[ResizeState, frozenset[ResizeState]] = {
    ResizeState.PENDING: frozenset({ResizeState.CONFIRMED, ResizeState.REFUSED,
                                    ResizeState.TIMED_OUT, ResizeState.ABANDONED}),
    ResizeState.CONFIRMED: frozenset(),
    ResizeState.REFUSED: frozenset(),
    ResizeState.TIMED_OUT: frozenset(),
    ResizeState.ABANDONED: frozenset(),
}


@dataclass
class ResizeAttempt:
    """The origin's one resize in flight for a stitch."""

    stitch_id: str
    token: str
    seq: int
    old_mbps: float
    new_mbps: float
    message: Resize
    rto: float
    #: A settle after a timeout (see the module docstring): not the user's request.
    settle: bool = False
    machine: Machine[ResizeState] = field(default_factory=lambda: Machine(
        "resize", RESIZE_TRANSITIONS, ResizeState.PENDING))


def _sid(token: str) -> str:
    return token.rsplit(".", 1)[0]


class ResizeMixin(MembershipMixin):
    resizes: dict[str, ResizeAttempt]

    # -- shared helpers -------------------------------------------------------------------
    def _resize_ledger(self, res: Reservation, mbps: float, now: float,
                       out: list[Output]) -> None:
        """Set this RM's amount for ``res`` to ``mbps`` (never more than it holds now, so
        it cannot fail)."""
        ok, _, _ = self.ledger.admit(res.token, res.links, mbps)
        if not ok:  # cannot happen while mbps <= what the token holds; never over-commit
            self.stat("resize_ledger_refused")
        self.capacity_changed(res.links, now, out)

    def _retune(self, token: str, mbps: float, out: list[Output]) -> None:
        """Our tunnel end of ``token`` shapes to ``mbps`` from now on."""
        tun = self.tunnels.get(token)
        if tun is None:
            return
        tun.bandwidth_mbps = mbps
        if tun.state not in (TunnelState.REQUESTED, TunnelState.DOWN):
            rl = [o for o in tun.dataplane_objects(self.config.route_metric)
                  if isinstance(o, RateLimit)]
            out.append(DataplaneChange(add=tuple(rl)))

    def _sign_resize(self, kind: MsgType, token: str, path: tuple[RouteManagerId, ...],
                     seq: int, mbps: float) -> Resize:
        m = Resize(kind, token, path, seq, mbps, NO_SIG)
        return dataclasses.replace(m, keysig=self.identity.sign(m.key_material()))

    # -- origin ---------------------------------------------------------------------------
    def resize_stitch(self, stitch_id: str, bandwidth_mbps: float,
                      now: float) -> list[Output]:
        out: list[Output] = []
        req = self.requests.get(stitch_id)
        res = self.reservations.get(req.token) if req is not None and req.token else None
        old = req.constraints.bandwidth_mbps if req is not None else 0.0

        def no(reason: str, detail: str) -> list[Output]:
            out.append(StitchResized(stitch_id, old, bandwidth_mbps, False, reason, now, detail))
            return out

        if req is None or req.state is not StitchState.ESTABLISHED or res is None or \
                res.state is not ReservationState.COMMITTED:
            return no("not_established", "only an established stitch originated here")
        if not bandwidth_mbps > 0 or bandwidth_mbps == float("inf"):
            return no("local", f"bandwidth must be > 0 Mbit/s, not {bandwidth_mbps:g}")
        if stitch_id in self.resizes:
            att = self.resizes[stitch_id]
            return no("in_progress", f"a resize to {att.new_mbps:g} Mbit/s is in flight")
        if bandwidth_mbps == res.bandwidth_mbps:
            out.append(StitchResized(stitch_id, old, old, True, "resized", now, "unchanged"))
            return out
        ok, at, avail = self.ledger.admit(res.token, res.links,
                                          max(res.bandwidth_mbps, bandwidth_mbps))
        if not ok:
            where = f"own link to {at[:8]}" if at is not None else "this RM's offered total"
            return no("bandwidth" if at is not None else "rm_capacity",
                      f"{where} has {avail:g} Mbit/s, need {bandwidth_mbps:g}")
        self.capacity_changed(res.links, now, out)
        self._send_resize(req, res, bandwidth_mbps, now, out, settle=False)
        return out

    def _send_resize(self, req: StitchRequest, res: Reservation, mbps: float, now: float,
                     out: list[Output], *, settle: bool) -> None:
        res.resize_seq += 1
        msg = self._sign_resize(MsgType.RESIZE, res.token, res.path, res.resize_seq, mbps)
        att = ResizeAttempt(req.stitch_id, res.token, res.resize_seq, res.bandwidth_mbps,
                            mbps, msg, self._rto(req.latency_ms), settle)
        self.resizes[req.stitch_id] = att
        self.send(res.path[1], msg, now, out)
        self.set_timer(TimerKind.RESIZE_RETRANSMIT, req.stitch_id, now + att.rto)
        self.set_timer(TimerKind.RESIZE_HOLD, req.stitch_id, now + self.timers_cfg.hold_timeout_s)

    def _resize_attempt(self, token: str, seq: int) -> ResizeAttempt | None:
        """The origin's attempt this answer belongs to, or None (stale: counted)."""
        att = self.resizes.get(_sid(token))
        req = self.requests.get(_sid(token))
        if att is None or att.token != token or att.seq != seq or req is None or \
                req.token != token or req.state is not StitchState.ESTABLISHED:
            self.stat("resize_stale_answer")
            return None
        return att

    def _resize_done(self, att: ResizeAttempt, state: ResizeState) -> None:
        att.machine.move(state)
        self.resizes.pop(att.stitch_id, None)
        self.cancel_timer(TimerKind.RESIZE_RETRANSMIT, att.stitch_id)
        self.cancel_timer(TimerKind.RESIZE_HOLD, att.stitch_id)

    def _resize_ok_at_origin(self, m: Resize, now: float, out: list[Output]) -> None:
        att = self._resize_attempt(m.token, m.seq)
        if att is None:
            return
        if not self.trust.verify(m.path[-1], m.keysig, m.key_material()):
            raise RemoteProtocolError("bad_keysig", "RESIZE_OK")
        req, res = self.requests[att.stitch_id], self.reservations[att.token]
        self._resize_done(att, ResizeState.CONFIRMED)
        self._commit_resize(res, att.new_mbps, now, out)
        before = req.constraints.bandwidth_mbps
        req.constraints = dataclasses.replace(req.constraints, bandwidth_mbps=att.new_mbps)
        if not att.settle:
            self.stat("resizes_confirmed")
            out.append(StitchResized(att.stitch_id, att.old_mbps, att.new_mbps, True,
                                     "resized", now))
        elif att.new_mbps != before:  # a timed-out shrink took effect after all
            out.append(StitchResized(att.stitch_id, before, att.new_mbps, True, "settled",
                                     now))

    def _resize_refused_at_origin(self, m: ResizeRefused, now: float,
                                  out: list[Output]) -> None:
        att = self._resize_attempt(m.token, m.seq)
        if att is None:
            return
        res = self.reservations[att.token]
        self._resize_done(att, ResizeState.REFUSED)
        self._resize_ledger(res, res.bandwidth_mbps, now, out)
        self.stat("resizes_refused")
        if not att.settle:
            out.append(StitchResized(
                att.stitch_id, att.old_mbps, att.new_mbps, False, m.reason, now,
                f"{m.at[:8]} refused ({m.reason}): {m.available_mbps:g} Mbit/s available, "
                f"need {att.new_mbps:g}"))

    def _resize_timer(self, kind: TimerKind, sid: str, now: float, out: list[Output]) -> None:
        att = self.resizes.get(sid)
        req = self.requests.get(sid)
        if att is None or req is None:
            return
        res = self.reservations[att.token]
        if kind == TimerKind.RESIZE_RETRANSMIT:
            self.stat("resize_retransmissions")
            self.send(res.path[1], att.message, now, out)
            att.rto = min(self.timers_cfg.retransmit_max_s, 2.0 * att.rto)
            self.set_timer(TimerKind.RESIZE_RETRANSMIT, sid, now + att.rto)
            return
        self._resize_done(att, ResizeState.TIMED_OUT)
        self.stat("resizes_timed_out")
        self._resize_ledger(res, res.bandwidth_mbps, now, out)
        if not att.settle:
            out.append(StitchResized(sid, att.old_mbps, att.new_mbps, False, "timeout", now,
                                     "no answer from the path; settling every hop at "
                                     f"{min(att.old_mbps, att.new_mbps):g} Mbit/s"))
        # Some hops may have committed the new amount: settle all of them at the smaller
        # one, which none can refuse for capacity.
        self._send_resize(req, res, min(att.old_mbps, att.new_mbps), now, out, settle=True)

    def _resize_abandon(self, req: StitchRequest, now: float, out: list[Output]) -> None:
        """The stitch is being torn down or renegotiated: its resize is void."""
        att = self.resizes.get(req.stitch_id)
        if att is None:
            return
        self._resize_done(att, ResizeState.ABANDONED)
        if not att.settle:
            out.append(StitchResized(req.stitch_id, att.old_mbps, att.new_mbps, False,
                                     "torn_down", now, "the stitch went down meanwhile"))

    def export_resizes(self) -> list[list[object]]:
        return [[a.stitch_id, a.token, a.seq, a.old_mbps, a.new_mbps]
                for a in self.resizes.values()]

    def resume_resizes(self, saved: list[list[object]], now: float,
                       out: list[Output]) -> None:
        """After a restart the answer to a resize in flight is lost (and some hops may
        have committed it): settle every hop as after a timeout."""
        for sid, token, seq, old, new in saved:
            req = self.requests.get(str(sid))
            res = self.reservations.get(str(token))
            if req is None or res is None or req.token != token or \
                    req.state is not StitchState.ESTABLISHED:
                continue
            res.resize_seq = max(res.resize_seq, int(str(seq)))
            old_f, new_f = float(str(old)), float(str(new))
            out.append(StitchResized(req.stitch_id, old_f, new_f, False, "timeout", now,
                                     "restarted while the resize was in flight; settling"))
            self._send_resize(req, res, min(old_f, new_f), now, out, settle=True)

    # -- every hop ------------------------------------------------------------------------
    def _commit_resize(self, res: Reservation, mbps: float, now: float,
                       out: list[Output]) -> None:
        res.bandwidth_mbps = mbps
        res.resize_to = None
        self._resize_ledger(res, mbps, now, out)
        self._retune(res.token, mbps, out)

    def _on_resize(self, sender: RouteManagerId, m: Resize, now: float,
                   out: list[Output]) -> None:
        i = self._pos(m.path, sender, forward=True)
        target = i == len(m.path) - 1
        res = self.reservations.get(m.token)

        def refuse(reason: str, avail: float) -> None:
            ans = ResizeRefused(m.token, m.path, m.seq, self.me, reason, avail)
            if res is not None:
                res.resize_answer = ans
            self.send(sender, ans, now, out)

        if res is None or res.state is not ReservationState.COMMITTED or res.path != m.path:
            self.stat("resize_without_reservation")
            refuse("released", 0.0)
            return
        if m.seq < res.resize_seq:
            self.stat("resize_stale")
            return
        if m.seq == res.resize_seq:
            self.stat("resize_duplicate")
            if res.resize_answer is not None:
                self.send(sender, res.resize_answer, now, out)
            elif res.resize_relay is None and not target:
                self._resize_relay(res, m, now, out)
            return
        if target and not self.trust.verify(m.path[0], m.keysig, m.key_material()):
            refuse("bad_keysig", 0.0)  # before taking its number: a forgery blocks nothing
            return
        if target and not self.authorise_resize(m.token, m.path[0], now, out):
            refuse(NOT_AUTHORISED, 0.0)  # the old amount stays until enforcement
            return
        if res.resize_to is not None:  # superseded: drop the older tentative amount
            self._resize_abort(res, now, out)
        res.resize_seq, res.resize_answer = m.seq, None
        ok, at, avail = self.ledger.admit(m.token, res.links,
                                          max(res.bandwidth_mbps, m.bandwidth_mbps))
        if not ok:
            self.stat("resize_refused_here")
            refuse("bandwidth" if at is not None else "rm_capacity", avail)
            return
        self.capacity_changed(res.links, now, out)
        if target:
            self._commit_resize(res, m.bandwidth_mbps, now, out)
            res.resize_answer = self._sign_resize(MsgType.RESIZE_OK, m.token, m.path, m.seq,
                                                  m.bandwidth_mbps)
            self.send(sender, res.resize_answer, now, out)
            return
        res.resize_to = m.bandwidth_mbps
        self.set_timer(TimerKind.RESIZE_EXPIRE, m.token, now + 2.0 * self.timers_cfg.hold_timeout_s)
        self._resize_relay(res, m, now, out)

    def _resize_relay(self, res: Reservation, m: Resize, now: float,
                      out: list[Output]) -> None:
        res.resize_relay = m
        res.resize_rto = res.relay_rto or 4 * self.timers_cfg.retransmit_min_s
        self.send(res.path[res.index + 1], m, now, out)
        self.set_timer(TimerKind.RESIZE_RELAY, res.token, now + res.resize_rto)

    def _resize_abort(self, res: Reservation, now: float, out: list[Output]) -> None:
        """Drop the tentative amount: back to the committed one."""
        res.resize_to = None
        res.resize_relay = None
        self.cancel_timer(TimerKind.RESIZE_RELAY, res.token)
        self.cancel_timer(TimerKind.RESIZE_EXPIRE, res.token)
        if res.state is ReservationState.COMMITTED:
            self._resize_ledger(res, res.bandwidth_mbps, now, out)

    def _resize_hop_timer(self, kind: TimerKind, token: str, now: float, out: list[Output]) -> None:
        res = self.reservations.get(token)
        if res is None or res.resize_to is None:
            return
        if kind == TimerKind.RESIZE_EXPIRE or res.state is not ReservationState.COMMITTED:
            self.stat("resize_expired")  # or released meanwhile: nothing left to relay
            self._resize_abort(res, now, out)
        elif res.resize_relay is not None:
            self.stat("resize_relay_retransmissions")
            self.send(res.path[res.index + 1], res.resize_relay, now, out)
            res.resize_rto = min(self.timers_cfg.retransmit_max_s, 2 * res.resize_rto)
            self.set_timer(TimerKind.RESIZE_RELAY, token, now + res.resize_rto)

    def _on_resize_answer(self, sender: RouteManagerId, m: Resize | ResizeRefused,
                          now: float, out: list[Output]) -> None:
        """RESIZE_OK or RESIZE_REFUSED on its way back to the origin."""
        i = self._pos(m.path, sender, forward=False)
        if i == 0:
            if isinstance(m, ResizeRefused):
                self._resize_refused_at_origin(m, now, out)
            else:
                self._resize_ok_at_origin(m, now, out)
            return
        res = self.reservations.get(m.token)
        if res is None or res.state is not ReservationState.COMMITTED or \
                m.seq != res.resize_seq or res.resize_answer is not None:
            self.stat("resize_stale_answer")
            return
        if isinstance(m, ResizeRefused):
            self._resize_abort(res, now, out)
        elif res.resize_to != m.bandwidth_mbps:
            # our tentative amount expired (the origin has timed out and will settle), or
            # the answer names another amount than we admitted: not ours to commit
            self.stat("resize_late_answer")
            return
        else:
            self.cancel_timer(TimerKind.RESIZE_RELAY, res.token)
            self.cancel_timer(TimerKind.RESIZE_EXPIRE, res.token)
            res.resize_relay = None
            self._commit_resize(res, m.bandwidth_mbps, now, out)
        res.resize_answer = m
        self.send(m.path[i - 1], m, now, out)
