"""The PRA's bandwidth plans as the controller's actions (pure, no clock, no I/O).

Theory of operation: :class:`~vnstitch.control.pra.PraController` plans each stitch
end's bandwidth consumer in whole units, and books what fits under the end's
negotiated bandwidth in its :class:`~vnstitch.control.controller.ReservationBook`.
:class:`PraBandwidthActions` turns that into the same actions the Route Manager
controller hands the daemon, so one driver applies both
(:func:`vnstitch.daemon.allocation.apply_bandwidth_actions`):

* a :class:`~vnstitch.control.model.Reserve` of what was booked, every interval (the
  HTB class's rate; its ceil stays the negotiated bandwidth, so after a resize the same
  rate is laid under the new ceil);
* a :class:`~vnstitch.control.model.ResizeStitch` when the plan is above the negotiated
  bandwidth -- or the end is measured at it (the counter is read after the HTB class, so
  demand above the cap never shows; :func:`~vnstitch.control.growth.needed_mbps`) -- for
  the :class:`~vnstitch.control.growth.GrowPolicy`'s run of intervals, on a stitch
  originated here. The grow rules, hold-down and outcome rows are the controller's own.

:class:`StitchWatch` is the other side of a stitch end's life: it turns the daemon's
stitch table into the core's stitching events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vnstitch.control.growth import GrowPolicy, needed_mbps
from vnstitch.control.model import (
    ControlAction,
    DecisionRecord,
    GrowRules,
    Reserve,
    ResizeStitch,
)
from vnstitch.control.pra import StitchEventKind
from vnstitch.protocol.api import StitchResized

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class BandwidthEnd:
    """A stitch end the PRA sizes: its consumer, stitch, device, negotiated bandwidth."""

    consumer: str
    stitch_id: str
    device: str
    negotiated_mbps: float
    originated: bool


@dataclass(slots=True)
class BandwidthActions:
    actions: list[ControlAction] = field(default_factory=list)
    records: list[DecisionRecord] = field(default_factory=list)


class PraBandwidthActions:
    """See the module docstring. ``grow``: None never asks to resize."""

    def __init__(self, grow: GrowRules | None) -> None:
        self.grow = GrowPolicy(grow) if grow is not None else None

    def step(self, now: float, ends: Sequence[BandwidthEnd], planned: Mapping[str, float],
             booked: Mapping[str, float], measured: Mapping[str, float]) -> BandwidthActions:
        """``planned``: the PRA's amount per consumer (may exceed the negotiated
        bandwidth); ``booked``: what its book holds (at most the negotiated bandwidth);
        ``measured``: this interval's rate per consumer. A consumer without a plan this
        interval (its forecast failed) is left as it is."""
        out = BandwidthActions()
        if self.grow is not None:
            self.grow.forget({e.stitch_id for e in ends})
        for e in ends:
            plan = planned.get(e.consumer)
            rate = booked.get(e.consumer)
            if plan is None or rate is None or rate <= 0:
                continue
            out.actions.append(Reserve(e.consumer, (e.device,), rate))
            if self.grow is None:
                continue
            short = plan if plan > e.negotiated_mbps + _EPS else None
            mbps = measured.get(e.consumer)
            ask, why = self.grow.consider(now, e.stitch_id, e.negotiated_mbps,
                                          needed_mbps(short, mbps, e.negotiated_mbps),
                                          originated=e.originated, reserved=rate)
            if ask is not None:
                out.actions.append(ResizeStitch(e.stitch_id, ask, why))
                out.records.append(DecisionRecord(now, e.consumer, "resize-requested", why,
                                                  measured_mbps=mbps, amount_mbps=ask,
                                                  consumer=e.consumer))
        return out

    def resize_outcome(self, ev: StitchResized) -> dict[str, Any] | None:
        """The decision row for a resize this asked for (None otherwise)."""
        return None if self.grow is None else self.grow.outcome(ev)


class StitchWatch:
    """Stitch table in, stitching events out: the daemon hands it the live stitches each
    interval (``stitch id -> (vnid, path)``) and gets which came (``new``), moved to
    another path (``renegotiated``) or went (``released``) since the last call."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, tuple[str, ...]]] = {}

    def diff(self, stitches: Mapping[str, tuple[int, tuple[str, ...]]],
             ) -> list[tuple[int, str, StitchEventKind]]:
        out: list[tuple[int, str, StitchEventKind]] = []
        for sid, (vnid, path) in sorted(stitches.items()):
            old = self._known.get(sid)
            if old is None:
                out.append((vnid, sid, StitchEventKind.NEW))
            elif old[1] != path:
                out.append((vnid, sid, StitchEventKind.RENEGOTIATED))
        out += [(vnid, sid, StitchEventKind.RELEASED)
                for sid, (vnid, _) in sorted(self._known.items()) if sid not in stitches]
        self._known = dict(stitches)
        return out
