"""The kinds of timer a Route Manager core arms, as an Enum.

Theory of operation: a core keeps one deadline per (kind, key) -- the key names the
peer, stitch or reservation token it concerns -- and ``handle_timer(now)`` fires every
due one through a dispatch on its kind. The kinds are a closed set: arming a timer of a
kind not listed here raises (:meth:`TimerKind.of`), so a typo cannot arm a timer nobody
fires. Values are the short names used in logs and tests.
"""

from __future__ import annotations

import enum

from vnstitch.protocol.errors import ProtocolError


class TimerKind(enum.StrEnum):
    HELLO = "hello"  # periodic HELLO to every neighbour (key "")
    EXPIRE = "expire"  # a neighbour's hold time (key: peer)
    FLUSH = "flush"  # batched announcements to a neighbour, MRAI (key: peer)
    QUERY = "query"  # give up collecting offers (key: stitch)
    QUERY_RETRANSMIT = "qrtx"  # re-send an unanswered query (key: stitch)
    DECIDE = "decide"  # pick among the offers so far (key: stitch)
    RETRANSMIT = "rtx"  # re-send the outstanding HOLD/COMMIT (key: token)
    HOLD = "hold"  # an attempt's hold/commit deadline at the origin (key: token)
    RELAY = "relay"  # a transit hop re-sends a relayed COMMIT/ABORT (key: token)
    RESERVATION = "resv"  # a hold's expiry or a reservation's lease check (key: token)
    PROBE = "probe"  # next tunnel health probe (key: stitch)
    PROBE_RETRANSMIT = "prtx"  # re-send an unanswered probe (key: stitch)
    RESIZE_RETRANSMIT = "zrtx"  # re-send an in-place resize request (key: stitch)
    RESIZE_HOLD = "zhold"  # an origin's resize attempt deadline (key: stitch)
    RESIZE_RELAY = "zrelay"  # a hop re-sends a relayed resize (key: token)
    RESIZE_EXPIRE = "zexp"  # a hop's pending resize expires (key: token)
    HELD = "held"  # re-check a held path's tunnel end (key: token)

    @classmethod
    def of(cls, kind: str) -> TimerKind:
        try:
            return cls(kind)
        except ValueError:
            raise ProtocolError(f"unknown timer kind {kind!r}") from None
