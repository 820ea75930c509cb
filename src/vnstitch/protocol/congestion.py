"""Congestion reports: a Route Manager on a stitch's path tells its origin a link is hot.

Theory of operation. A Route Manager measures its own substrate links (the daemon's link
sampler, the simulator's fluid model) and decides with the controller's hysteresis
monitor that the link to neighbour ``N`` is congested. It then calls
:meth:`CongestionMixin.report_congestion` with that link and the measured utilisation;
the core finds every live reservation whose path crosses the link and, for each,

* if this RM is the stitch's origin: emits :class:`~vnstitch.protocol.api.
  CongestionReported` at once (no datagram to itself);
* otherwise sends a signed CONGESTION (token, path, reporter, link, severity, excess)
  to its
  previous hop on the path, which relays it hop by hop toward the origin, exactly as
  PATH_DOWN travels (each hop checks the sender is its next hop on the path and that it
  holds the reservation; anything else is a peer fault or a counted late message).

At the origin a CONGESTION for the current, established attempt of a stitch whose path
contains the link becomes ``CongestionReported``; for anything else (an old attempt, a
link not on the path) it is counted and dropped. The core decides nothing: the
controller (:mod:`vnstitch.control.reroute`) applies hold-down and dampening and, when
it moves the stitch, calls ``renegotiate_stitch`` (make-before-break, around the link).
No state is kept here, so nothing is persisted.
"""

from __future__ import annotations

import itertools
import math

from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.api import CongestionReported, Output
from vnstitch.protocol.errors import RemoteProtocolError
from vnstitch.protocol.messages import Congestion
from vnstitch.protocol.negotiation import StitchState
from vnstitch.protocol.reservation import ReservationState
from vnstitch.protocol.stitchbase import StitchingBase

#: Severity on the wire is utilisation in per mille, capped to the field's range.
SEVERITY_SCALE = 1000.0
SEVERITY_MAX = 65535
#: Excess on the wire: whole Mbit/s above the reporter's target (absent: not given).
EXCESS_MAX = (1 << 32) - 1


def crosses(path: tuple[RouteManagerId, ...], link: tuple[RouteManagerId, ...]) -> bool:
    """Do two adjacent RMs of ``path`` form ``link`` (either direction)?"""
    pairs = {frozenset(p) for p in itertools.pairwise(path)}
    return len(link) == 2 and frozenset(link) in pairs


class CongestionMixin(StitchingBase):
    def report_congestion(self, neighbour: RouteManagerId, utilisation: float,
                          now: float, *, excess_mbps: float | None = None) -> list[Output]:
        """The link between this RM and ``neighbour`` is congested (``excess_mbps``: what
        it carries above this RM's target, None if not known): tell the origin of every
        stitch crossing it (module docstring). Returns the outputs."""
        out: list[Output] = []
        link = (self.me, neighbour)
        severity = max(0, min(SEVERITY_MAX, round(utilisation * SEVERITY_SCALE)))
        excess = None if excess_mbps is None else \
            max(0, min(EXCESS_MAX, math.ceil(excess_mbps)))
        for res in list(self.reservations.values()):
            if res.state is not ReservationState.COMMITTED or not crosses(res.path, link):
                continue
            self.stat("congestion_reported")
            msg = Congestion(res.token, res.path, self.me, link, severity, excess)
            if res.index == 0:
                self._congestion_at_origin(msg, now, out)
            else:
                self.send(res.path[res.index - 1], msg, now, out)
        return out

    def _on_congestion(self, sender: RouteManagerId, m: Congestion, now: float,
                       out: list[Output]) -> None:
        i = self._pos(m.path, sender, forward=False)
        if m.at not in m.path or not crosses(m.path, m.link):
            raise RemoteProtocolError("malformed", "congestion: link or reporter off the path")
        res = self.reservations.get(m.token)
        if res is None or res.path != m.path:
            self.stat("late_congestion")
            return
        if i > 0:
            self.send(m.path[i - 1], m, now, out)
        else:
            self._congestion_at_origin(m, now, out)

    def _congestion_at_origin(self, m: Congestion, now: float, out: list[Output]) -> None:
        token = m.token
        req = self.requests.get(token.rsplit(".", 1)[0])
        if req is None or req.token != token or req.state is not StitchState.ESTABLISHED:
            self.stat("late_congestion")
            return
        self.stat("congestion_received")
        a, b = m.link
        out.append(CongestionReported(req.stitch_id, req.vnid, (a, b),
                                      m.severity / SEVERITY_SCALE, m.at, now,
                                      None if m.excess is None else float(m.excess)))
