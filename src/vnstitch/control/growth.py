"""When the controller asks the protocol to grow or shrink a stitch in place (pure, no clock).

Theory of operation. The controller (:mod:`vnstitch.control.controller`) caps each
stitch's HTB reservation at the bandwidth the protocol negotiated; a forecast above it
is a ``shortfall``. :class:`GrowPolicy` turns persistent shortfalls into requests for
an in-place resize (``RouteManagerCore.resize_stitch``, :mod:`vnstitch.protocol.resize`):

* only on a stitch **originated here** (only the origin may resize);
* after ``grow_after`` consecutive intervals with a shortfall (one spike is not enough;
  0 disables growing);
* to ``max(negotiated + unit, ceil(needed x (1 + grow_headroom) / unit) x unit)`` where
  ``needed`` is the reservation the allocator wanted (the forecast at the class's
  newsvendor quantile): the headroom keeps a still-growing demand from asking again
  at the next interval, the whole units match the allocator's steps;
* a stitch measured at (``SATURATED`` x) its negotiated bandwidth also counts as a
  shortfall, needing at least what was measured: the counter is read after the HTB class
  that caps the stitch, so demand above the cap never shows in it -- the forecast of a
  saturated stitch sits at the cap, not above. Growing by the headroom each time probes
  upward until the measured rate falls below the cap;
* at most one request in flight per stitch; after a refusal or timeout no new request
  for ``grow_holddown_s`` (the path is full: asking every interval would only load it);
* never beyond ``grow_max_factor`` x the bandwidth the stitch had when the policy first
  saw it: elastic traffic (TCP) fills any ceiling, so the saturation rule alone would
  grow a stitch carrying a bulk transfer until the path refuses.

It also gives grown capacity back (off unless ``shrink_after`` > 0): when the allocator's
reservation stays below ``shrink_below`` x the negotiated bandwidth for ``shrink_after``
consecutive intervals without a shortfall, it asks to shrink to ``ceil(peak x (1 +
grow_headroom) / unit) x unit`` (``peak``: the largest reservation of those intervals),
never below the bandwidth the stitch had when the policy first saw it -- so a shrink only
undoes growth, never what the requester asked for.

Each request and each outcome (:class:`~vnstitch.protocol.api.StitchResized`) becomes a
decision row with a reason, shown by ``vnstitch routemgr show allocations``.

"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vnstitch.control.model import GrowRules
from vnstitch.protocol.api import StitchResized

#: A measured rate at or above this fraction of the negotiated bandwidth is saturation.
SATURATED = 0.95


def needed_mbps(shortfall: float | None, measured: float | None,
                negotiated: float) -> float | None:
    """What the stitch needs beyond its negotiated bandwidth, or None: the allocator's
    shortfall, or -- the cap hides demand above it -- a measured rate at the cap."""
    if measured is not None and measured >= SATURATED * negotiated:
        return max(shortfall or 0.0, measured)
    return shortfall


@dataclass(slots=True)
class _Track:
    floor: float  # the negotiated bandwidth when first seen: shrinks never go below it
    streak: int = 0  # consecutive intervals with a shortfall
    low: int = 0  # consecutive intervals well below the negotiated bandwidth
    low_peak: float = 0.0  # the largest reservation during ``low``
    pending: float | None = None  # Mbit/s of the resize in flight
    holddown_until: float = -math.inf


class GrowPolicy:
    """Decides, per interval and stitch, whether to ask for a grow (module docstring)."""

    def __init__(self, config: GrowRules) -> None:
        self.config = config
        self._tracks: dict[str, _Track] = {}

    def target(self, negotiated: float, needed: float, floor: float | None = None) -> float:
        """Mbit/s to ask for; with ``floor`` (the original bandwidth) at most
        ``grow_max_factor`` x it."""
        unit = self.config.unit_mbps
        want = math.ceil(needed * (1.0 + self.config.grow_headroom) / unit - 1e-9) * unit
        want = max(negotiated + unit, want)
        if floor is not None:
            want = min(want, self.limit(floor))
        return want

    def limit(self, floor: float) -> float:
        """The most a stitch that started at ``floor`` Mbit/s may grow to (whole units)."""
        unit = self.config.unit_mbps
        return max(floor, math.floor(floor * self.config.grow_max_factor / unit + 1e-9) * unit)

    def consider(self, now: float, stitch_id: str, negotiated: float, needed: float | None,
                 *, originated: bool, reserved: float | None = None
                 ) -> tuple[float | None, str]:
        """(Mbit/s to ask for, or None; why). ``needed`` is None without a shortfall;
        ``reserved`` is what the allocator reserved this interval."""
        c = self.config
        track = self._tracks.setdefault(stitch_id, _Track(negotiated))
        if needed is None:
            track.streak = 0
            return self._consider_shrink(now, track, negotiated, originated, reserved)
        track.low, track.low_peak = 0, 0.0
        track.streak += 1
        if c.grow_after == 0:
            return None, "growing is disabled (grow_after: 0)"
        if not originated:
            return None, "not originated here (only the origin may resize)"
        if track.pending is not None:
            return None, f"a resize to {track.pending:g} Mbit/s is in flight"
        if now < track.holddown_until:
            return None, (f"hold-down after a failed resize until t={track.holddown_until:.3f}")
        if track.streak < c.grow_after:
            return None, f"shortfall {track.streak}/{c.grow_after} intervals before a resize"
        if negotiated >= self.limit(track.floor) - 1e-9:
            return None, (f"at the growth limit: {negotiated:g} Mbit/s = grow_max_factor "
                          f"{c.grow_max_factor:g} x the original {track.floor:g}")
        track.streak = 0
        track.pending = self.target(negotiated, needed, track.floor)
        return track.pending, (f"shortfall for {c.grow_after} interval(s): asking the path to "
                               f"grow {negotiated:g} -> {track.pending:g} Mbit/s (needed "
                               f"{needed:.3g} + {c.grow_headroom:.0%} headroom, whole "
                               f"{c.unit_mbps:g} Mbit/s units)")

    def _consider_shrink(self, now: float, track: _Track, negotiated: float,
                         originated: bool, reserved: float | None) -> tuple[float | None, str]:
        c = self.config
        if c.shrink_after == 0 or not originated or reserved is None or \
                track.pending is not None or now < track.holddown_until or \
                reserved >= c.shrink_below * negotiated or negotiated <= track.floor:
            track.low, track.low_peak = 0, 0.0
            return None, ""
        track.low += 1
        track.low_peak = max(track.low_peak, reserved)
        if track.low < c.shrink_after:
            return None, ""
        unit = c.unit_mbps
        want = max(track.floor,
                   math.ceil(track.low_peak * (1.0 + c.grow_headroom) / unit - 1e-9) * unit)
        peak, track.low, track.low_peak = track.low_peak, 0, 0.0
        if want >= negotiated:
            return None, ""
        track.pending = want
        return want, (f"reserved at most {peak:.3g} Mbit/s (< {c.shrink_below:.0%} of the "
                      f"negotiated {negotiated:g}) for {c.shrink_after} interval(s): asking "
                      f"the path to shrink to {want:g} Mbit/s (not below the original "
                      f"{track.floor:g})")

    def outcome(self, ev: StitchResized) -> dict[str, Any] | None:
        """The decision row for a resize outcome, or None if we did not ask for it."""
        track = self._tracks.get(ev.stitch_id)
        if track is None or track.pending is None:
            return None
        track.pending = None
        if ev.ok:
            action, reason = "resized", (f"the path granted {ev.new_mbps:g} Mbit/s (was "
                                         f"{ev.old_mbps:g}); HTB ceil and reservation follow")
        else:
            track.holddown_until = ev.now + self.config.grow_holddown_s
            action, reason = "resize-refused", (
                f"the path refused {ev.new_mbps:g} Mbit/s ({ev.reason}"
                f"{': ' + ev.detail if ev.detail else ''}); staying at {ev.old_mbps:g}, "
                f"no new request for {self.config.grow_holddown_s:g} s")
        return {"now": round(ev.now, 3), "stitch_id": ev.stitch_id, "action": action,
                "reason": reason, "old_mbps": ev.old_mbps, "new_mbps": ev.new_mbps,
                "ok": ev.ok}

    def forget(self, live: set[str]) -> None:
        for sid in [s for s in self._tracks if s not in live]:
            del self._tracks[sid]

    def pending(self, stitch_id: str) -> float | None:
        track = self._tracks.get(stitch_id)
        return None if track is None else track.pending
