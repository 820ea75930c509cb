"""One summary for a scenario run in either runtime, computed from plain event records.

Theory of operation. The simulator (virtual time) and the lab (wall-clock time since the
run began) each turn what they saw into the same records -- a stitch requested, up (with
its segment path), down; a fault applied; a flow's rate surging; a flow's offered and
delivered volume; a decision taken -- and call :func:`parity_summary`, the one pure
function that makes the summary both print. So a difference between the two is a
difference in what happened, never in how it was counted.

A *stitch* here is identified by its origin segment and VN (``"seg00/vn1"``): the
daemon keeps one live stitch per VN at an origin, and the simulator's make-before-break
successors and re-requests after a restart are the same connection to the user. Its
*setup* is its first up minus its first request. A *repair* is a down followed by an up
(its duration is the time between); a down never followed by an up is unfinished. A
*reroute* is an up whose path differs from the previous one; it is timed from the last
fault or surge before it. ``delivered_by_class`` is delivered over offered volume per
QoS class; ``decisions`` counts decisions by kind.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: The keys both runtimes print, in this order (extras follow them).
PARITY_KEYS = ("stitches_requested", "stitches_feasible", "stitches_established",
               "setup_seconds_median", "repair_seconds_max", "reroute_seconds_max",
               "delivered_by_class", "decisions")


@dataclass(frozen=True, slots=True)
class StitchRequested:
    at: float
    stitch: str
    vnid: int
    feasible: bool


@dataclass(frozen=True, slots=True)
class StitchUp:
    at: float
    stitch: str
    path: tuple[str, ...]  # segment ids, origin first


@dataclass(frozen=True, slots=True)
class StitchDown:
    at: float
    stitch: str
    reason: str


@dataclass(frozen=True, slots=True)
class FaultApplied:
    at: float
    kind: str  # the scenario's action: cut_link, crash, ...
    target: str


@dataclass(frozen=True, slots=True)
class Surge:
    """A flow's offered rate rose from a non-zero rate (a congestion trigger)."""

    at: float
    flow: str


@dataclass(frozen=True, slots=True)
class FlowDelivery:
    flow: str
    qos_class: str
    offered_mbit: float
    delivered_mbit: float


@dataclass(frozen=True, slots=True)
class DecisionMade:
    at: float
    kind: str
    subject: str


Record = (StitchRequested | StitchUp | StitchDown | FaultApplied | Surge | FlowDelivery
          | DecisionMade)


def stitch_key(origin: str, vnid: int) -> str:
    return f"{origin}/vn{vnid}"


def surges(flow: str, start_mbps: float, schedule: Sequence[tuple[float, float]]
           ) -> list[Surge]:
    """The surges in one flow's rate schedule (a rise from a non-zero rate)."""
    out, rate = [], start_mbps
    for at, mbps in schedule:
        if rate > 0 and mbps > rate:
            out.append(Surge(at, flow))
        rate = mbps
    return out


def _r(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(x, nd)


def parity_summary(records: Iterable[Record]) -> dict[str, Any]:
    """The summary of one run (module docstring); deterministic for the same records."""
    recs = sorted(records, key=lambda r: getattr(r, "at", float("inf")))
    requested: dict[str, StitchRequested] = {}
    feasible: set[str] = set()
    first_up: dict[str, float] = {}
    last_path: dict[str, tuple[str, ...]] = {}
    down_since: dict[str, float] = {}
    repairs: list[float] = []
    reroutes: list[float] = []
    triggers: list[float] = []
    faults = 0
    offered: dict[str, float] = {}
    delivered: dict[str, float] = {}
    decisions: dict[str, int] = {}
    for r in recs:
        if isinstance(r, StitchRequested):
            requested.setdefault(r.stitch, r)
            if r.feasible:
                feasible.add(r.stitch)
        elif isinstance(r, StitchUp):
            first_up.setdefault(r.stitch, r.at)
            if r.stitch in down_since:
                repairs.append(r.at - down_since.pop(r.stitch))
            old = last_path.get(r.stitch)
            if old is not None and old != r.path:
                before = [t for t in triggers if t <= r.at]
                if before:
                    reroutes.append(r.at - before[-1])
            last_path[r.stitch] = r.path
        elif isinstance(r, StitchDown):
            if r.stitch in last_path:
                down_since.setdefault(r.stitch, r.at)
        elif isinstance(r, FaultApplied):
            faults += 1
            triggers.append(r.at)
        elif isinstance(r, Surge):
            triggers.append(r.at)
        elif isinstance(r, FlowDelivery):
            offered[r.qos_class] = offered.get(r.qos_class, 0.0) + r.offered_mbit
            delivered[r.qos_class] = delivered.get(r.qos_class, 0.0) + r.delivered_mbit
        else:
            decisions[r.kind] = decisions.get(r.kind, 0) + 1
    setups = [first_up[k] - requested[k].at for k in first_up if k in requested]
    return {
        "stitches_requested": len(requested),
        "stitches_feasible": len(feasible),
        "stitches_established": sum(1 for k in first_up if k in requested),
        "setup_seconds_median": _r(statistics.median(setups)) if setups else None,
        "repair_seconds_max": _r(max(repairs)) if repairs else None,
        "reroute_seconds_max": _r(max(reroutes)) if reroutes else None,
        "delivered_by_class": {c: _r(delivered[c] / offered[c]) if offered[c] > 0 else None
                               for c in sorted(offered)},
        "decisions": dict(sorted(decisions.items())),
        "faults": faults,
        "repairs": len(repairs),
        "repairs_unfinished": len(down_since),
        "stitches_up_at_end": sum(1 for k in last_path if k not in down_since),
    }


def parity_rows(summary: dict[str, Any]) -> list[tuple[str, object]]:
    """The summary as (measure, value) rows for a table (both CLIs print these)."""
    def show(v: object) -> object:
        if isinstance(v, dict):
            return ", ".join(f"{k}: {x}" for k, x in v.items()) or "none"
        return "-" if v is None else v
    return [(k, show(v)) for k, v in summary.items()]
