"""Stitching: the roles of a Route Manager in a stitch, composed; timers and dispatch.

Theory of operation. One RM can be, for different stitches at once, the origin
(:mod:`~vnstitch.protocol.origin`: query, choose, reserve, re-negotiate), a hop on the
path (:mod:`~vnstitch.protocol.pathhops`: forward queries, hold, commit, abort and
report a broken path), a tunnel end (:mod:`~vnstitch.protocol.probes`: end-to-end health
probes) a neighbour keeping shared reservations alive
(:mod:`~vnstitch.protocol.leases`) and the in-place resize of an established stitch
(:mod:`~vnstitch.protocol.resize`), and congestion reports toward the origin
(:mod:`~vnstitch.protocol.congestion`). :class:`StitchingMixin` joins the six over the
core's state, routes each stitching message and timer to its role, and re-arms
everything after a restore. Timer kinds (key in brackets):

* ``query`` / ``decide`` [stitch]: stop collecting offers, pick one;
* ``qrtx`` [stitch]: retransmit the query (a fresh wave);
* ``rtx`` [token]: the origin retransmits its HOLD / COMMIT;
* ``hold`` [token]: the origin gives the attempt up;
* ``relay`` [token]: a hop retransmits the HOLD / COMMIT it passed on;
* ``resv`` [token]: a hold's expiry, a committed reservation's lease check;
* ``probe`` / ``prtx`` [stitch]: the origin's probe interval, probe retransmission;
* ``zrtx`` / ``zhold`` [stitch], ``zrelay`` / ``zexp`` [token]: an in-place resize
  (:mod:`~vnstitch.protocol.resize`);
* ``held`` [token]: re-check a given-up path's tunnel end the origin still holds in the
  kernel (:mod:`~vnstitch.protocol.heldpaths`).
"""

from __future__ import annotations

from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.api import DataplaneChange, FailureReason, Output
from vnstitch.protocol.congestion import CongestionMixin
from vnstitch.protocol.grants import QueryRefused, Revocations
from vnstitch.protocol.heldpaths import HeldPathMixin
from vnstitch.protocol.leases import LeaseMixin
from vnstitch.protocol.messages import (
    Congestion,
    Hold,
    HoldOk,
    HoldRefused,
    Leases,
    Message,
    MsgType,
    Offer,
    PathSignal,
    Probe,
    Query,
    Resize,
    ResizeRefused,
)
from vnstitch.protocol.negotiation import StitchState, rank
from vnstitch.protocol.origin import OriginMixin
from vnstitch.protocol.pathhops import PathHopMixin
from vnstitch.protocol.probes import ProbeMixin
from vnstitch.protocol.reservation import ReservationState
from vnstitch.protocol.resize import ResizeMixin
from vnstitch.protocol.timers import TimerKind
from vnstitch.protocol.tunnels import TunnelState


class StitchingMixin(OriginMixin, PathHopMixin, LeaseMixin, ProbeMixin, ResizeMixin,
                     CongestionMixin, HeldPathMixin):
    # -- timers ---------------------------------------------------------------------------
    def fire_stitching_timer(self, kind: TimerKind, key: str, now: float,
                             out: list[Output]) -> None:
        if kind in (TimerKind.QUERY, TimerKind.DECIDE):
            req = self.requests.get(key)
            if req is not None and req.state is StitchState.QUERYING:
                self._decide(req, now, out)
        elif kind == TimerKind.QUERY_RETRANSMIT:
            req = self.requests.get(key)
            if req is not None and req.state is StitchState.QUERYING and not req.feasible():
                self._backoff(req)
                self._query_wave(req, now, out)
        elif kind == TimerKind.RETRANSMIT:
            req = self.requests.get(key.rsplit(".", 1)[0])
            if req is not None and req.token == key and req.outstanding is not None and \
                    req.state in (StitchState.HOLDING, StitchState.COMMITTING):
                self.stat("retransmissions")
                self.send(req.path[1], req.outstanding, now, out)
                self.set_timer(TimerKind.RETRANSMIT, key, now + self._backoff(req))
        elif kind == TimerKind.RELAY:
            self._relay_retransmit(key, now, out)
        elif kind == TimerKind.PROBE_RETRANSMIT:
            self._probe_retransmit(key, now, out)
        elif kind == TimerKind.HOLD:
            req = self.requests.get(key.rsplit(".", 1)[0])
            if req is not None and req.token == key:
                self._attempt_failed(req, f"attempt {key} timed out", now, out,
                                     FailureReason.TIMEOUT)
        elif kind == TimerKind.RESERVATION:
            self._reservation_timer(key, now, out)
        elif kind == TimerKind.PROBE:
            self._probe_tick(key, now, out)
        elif kind in (TimerKind.RESIZE_RETRANSMIT, TimerKind.RESIZE_HOLD):
            self._resize_timer(kind, key, now, out)
        elif kind in (TimerKind.RESIZE_RELAY, TimerKind.RESIZE_EXPIRE):
            self._resize_hop_timer(kind, key, now, out)
        elif kind == TimerKind.HELD:
            self._held_timer(key, now, out)

    # -- dispatch -------------------------------------------------------------------------
    def dispatch_stitching(self, sender: RouteManagerId, msg: Message, now: float,
                           out: list[Output]) -> None:
        if isinstance(msg, Query):
            self._on_query(sender, msg, now, out)
        elif isinstance(msg, Offer):
            i = self._pos(msg.path, sender, forward=False)
            if i > 0:
                self.send(msg.path[i - 1], msg, now, out)
            elif self.offer_admitted(msg, now, out):
                self._on_offer(msg, now, out)
        elif isinstance(msg, Hold):
            self._on_hold(sender, msg, now, out)
        elif isinstance(msg, HoldOk):
            i = self._pos(msg.path, sender, forward=False)
            if i > 0:
                res = self.reservations.get(msg.token)
                if res is not None:
                    res.hold_answer = msg
                    self._relay_done(res)
                self.send(msg.path[i - 1], msg, now, out)
            else:
                self._on_hold_ok(msg, now, out)
        elif isinstance(msg, HoldRefused):
            self._on_refused(sender, msg, now, out)
        elif isinstance(msg, PathSignal):
            self._on_signal(sender, msg, now, out)
        elif isinstance(msg, Probe):
            self._on_probe(sender, msg, now, out)
        elif isinstance(msg, Leases):
            self._on_leases(sender, msg, now, out)
        elif isinstance(msg, Resize) and msg.kind is MsgType.RESIZE:
            self._on_resize(sender, msg, now, out)
        elif isinstance(msg, Resize | ResizeRefused):
            self._on_resize_answer(sender, msg, now, out)
        elif isinstance(msg, QueryRefused):
            self._on_query_refused(sender, msg, now, out)
        elif isinstance(msg, Revocations):
            self._on_revocations(sender, msg, now, out)
        elif isinstance(msg, Congestion):
            self._on_congestion(sender, msg, now, out)

    # -- restore --------------------------------------------------------------------------
    def resume_after_restore(self, now: float, out: list[Output]) -> None:
        """Re-arm timers after :meth:`from_state`; unfinished requests query again. A
        restore counts as a confirmation of every committed lease: the neighbours confirm
        or contradict it at their next HELLO."""
        for res in self.reservations.values():
            if res.state is ReservationState.COMMITTED:
                res.committed_at = now
                self.set_timer(TimerKind.RESERVATION, res.token, now + self._lease())
            elif res.index > 0:
                self.set_timer(TimerKind.RESERVATION, res.token,
                               max(res.expires, now + self._lease()))
        self.restore_held(self._restored_held, now)
        objs = [o for t in self.tunnels.values() if t.state is not TunnelState.REQUESTED
                for o in t.dataplane_objects(self.config.route_metric)]
        objs += [o for h in self.held.values()
                 for o in h.tunnel.dataplane_objects(self.config.route_metric)]
        if objs:
            out.append(DataplaneChange(add=tuple(objs)))
        for req in self.requests.values():
            if req.state is StitchState.ESTABLISHED and req.token in self.tunnels:
                self._send_probe(req, self.tunnels[req.token], now, out)
            elif req.state in (StitchState.QUERYING, StitchState.HOLDING,
                               StitchState.COMMITTING):
                self._abandon_attempt(req, now, out, hold=True)
                req.machine.state = StitchState.QUERYING
                self._send_query(req, now, out)


__all__ = ["StitchingMixin", "rank"]
