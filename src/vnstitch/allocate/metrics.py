"""Scoring an allocation against the demand it had to serve, and comparing trade-offs.

Theory of operation
-------------------
A :class:`Tally` holds sums, not ratios, so tallies of several traces (e.g. the four
CloudWatch CPU files) pool exactly by adding. From a tally:

* ``under_rate``        = P(alloc < demand) over all (step, series) cells;
* ``unserved_fraction`` = sum max(0, d - a) / sum d;
* ``slack``             = sum max(0, a - d) / sum d;
* ``changes_per_hour``  = allocation changes between consecutive test steps, per series
  per hour of test window;
* ``total_cost[r]``     = (r * sum max(0, d - a) + sum max(0, a - d)) / sum d, i.e. the
  cost with c_over = 1 and c_under = r, normalised by the demand served.

A trade-off curve is a set of (slack, unserved) points from sweeping one policy knob.
:func:`curve_below` compares two curves on the slack range both cover: each is reduced
to its lower envelope (the best unserved reachable at that slack or less), interpolated
on a common grid (ours as a step function through the points it reached, theirs linearly
interpolated -- the comparison leans against us), and "below" means never above the
other anywhere on that grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.policy import FloatArray

COST_RATIOS: tuple[float, ...] = (1.0, 5.0, 10.0, 50.0)


@dataclass(slots=True)
class Tally:
    demand: float = 0.0
    unserved: float = 0.0
    idle: float = 0.0
    under_cells: int = 0
    cells: int = 0
    changes: int = 0
    series_hours: float = 0.0

    def add(self, other: Tally) -> Tally:
        return Tally(self.demand + other.demand, self.unserved + other.unserved,
                     self.idle + other.idle, self.under_cells + other.under_cells,
                     self.cells + other.cells, self.changes + other.changes,
                     self.series_hours + other.series_hours)

    @property
    def under_rate(self) -> float:
        return self.under_cells / self.cells if self.cells else float("nan")

    @property
    def unserved_fraction(self) -> float:
        return self.unserved / self.demand if self.demand > 0 else float("nan")

    @property
    def slack(self) -> float:
        return self.idle / self.demand if self.demand > 0 else float("nan")

    @property
    def changes_per_hour(self) -> float:
        return self.changes / self.series_hours if self.series_hours > 0 else float("nan")

    def cost(self, ratio: float) -> float:
        if self.demand <= 0:
            return float("nan")
        return (ratio * self.unserved + self.idle) / self.demand


def tally(demand: FloatArray, alloc: FloatArray, step_seconds: float) -> Tally:
    """Score ``alloc`` against ``demand`` (both (steps, series), same units)."""
    if demand.shape != alloc.shape or demand.ndim != 2:
        raise AllocateError(f"demand {demand.shape} and allocation {alloc.shape} must be "
                            f"equal 2-D shapes")
    gap = demand - alloc
    n_steps, n_series = demand.shape
    changes = int(np.count_nonzero(np.diff(alloc, axis=0))) if n_steps > 1 else 0
    return Tally(
        demand=float(demand.sum()),
        unserved=float(np.maximum(gap, 0.0).sum()),
        idle=float(np.maximum(-gap, 0.0).sum()),
        under_cells=int(np.count_nonzero(gap > 1e-12)),
        cells=demand.size,
        changes=changes,
        series_hours=n_series * n_steps * step_seconds / 3600.0,
    )


def summary(t: Tally, ratio_costs: dict[float, float] | None = None) -> dict[str, object]:
    """The per-policy JSON object; ``ratio_costs`` overrides ``total_cost`` per ratio."""
    costs = ratio_costs if ratio_costs is not None else {r: t.cost(r) for r in COST_RATIOS}
    return {
        "under_rate": t.under_rate,
        "unserved_fraction": t.unserved_fraction,
        "slack": t.slack,
        "changes_per_hour": t.changes_per_hour,
        "total_cost": {f"{r:g}": costs[r] for r in COST_RATIOS},
    }


@dataclass(frozen=True, slots=True)
class TradeoffPoint:
    knob: float  # the swept parameter (quantile, target utilisation or headroom)
    slack: float
    unserved: float


@dataclass(frozen=True, slots=True)
class CurveComparison:
    below: bool
    slack_range: tuple[float, float]
    worst_margin: float  # max over the grid of (ours - theirs); <= 0 means below
    grid_points: int = field(default=0)


def lower_envelope(points: Sequence[TradeoffPoint]) -> tuple[FloatArray, FloatArray]:
    """(slack, unserved) of the Pareto front: best unserved at that slack or less."""
    pts = sorted((p.slack, p.unserved) for p in points
                 if np.isfinite(p.slack) and np.isfinite(p.unserved))
    if not pts:
        raise AllocateError("trade-off curve has no finite points")
    slack = np.array([p[0] for p in pts])
    unserved = np.minimum.accumulate(np.array([p[1] for p in pts]))
    return slack, unserved


def curve_below(ours: Sequence[TradeoffPoint], theirs: Sequence[TradeoffPoint],
                grid: int = 200, tolerance: float = 1e-9) -> CurveComparison:
    """Is our lower envelope at or below theirs on the slack range both curves cover?"""
    xs_a, ys_a = lower_envelope(ours)
    xs_b, ys_b = lower_envelope(theirs)
    lo, hi = max(xs_a[0], xs_b[0]), min(xs_a[-1], xs_b[-1])
    if lo > hi:
        return CurveComparison(False, (float(lo), float(hi)), float("nan"), 0)
    xs = np.linspace(lo, hi, grid)
    # Conservative for "ours": our envelope as a step function (only points we actually
    # reached), theirs linearly interpolated (as if every mix of their settings existed).
    ya = ys_a[np.searchsorted(xs_a, xs, side="right") - 1]
    yb = np.interp(xs, xs_b, ys_b)
    margin = float(np.max(ya - yb))
    return CurveComparison(margin <= tolerance, (float(lo), float(hi)), margin, grid)
