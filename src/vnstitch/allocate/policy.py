"""The allocation policy: from a quantile forecast to an amount to reserve, without churn.

Theory of operation
-------------------
*Which quantile.* Reserving ``a`` against an uncertain demand ``D`` costs ``c_under`` per
unit of demand left unserved and ``c_over`` per unit reserved but idle. The expected cost
is minimised where ``P(D <= a) = c_under / (c_under + c_over)`` (the newsvendor critical
ratio), so each application class reserves at its own quantile: a video call that must
not stall (high ``c_under``) at a high one, e-mail (cheap to delay) near the median.
Because allocation comes in whole units (Mbit/s steps, VMs, GB volumes), the discrete
newsvendor optimum is the smallest whole number of units whose capacity reaches that
quantile: ``ceil(F^-1(q) / unit)``.

*Reading the quantile.* Forecasters return a finite set of quantile levels; we ask for a
dense set (:data:`DENSE_LEVELS`) and interpolate linearly in ``q`` between neighbours,
after sorting the values so crossing quantiles cannot produce a non-monotone CDF. Outside
the requested range we clamp to the nearest level (documented, never extrapolated).

*Lead time.* A resource that needs ``L`` steps to become usable is decided from the
``L``-step-ahead forecast. The caller picks the forecast horizon; this module only turns
a quantile into units.

*Churn.* :class:`ScalingController` keeps the amount stable: scaling *out* happens at
once (under-provisioning is the expensive side); scaling *in* happens only when (1) the
current amount has been held for ``hold_steps`` decisions, (2) the new target is below
the current amount by more than the hysteresis band, and (3) it goes down only to the
highest target seen in the last ``scale_in_window`` decisions (the same idea as the
Kubernetes HPA scale-down stabilisation window). The controller is vectorised over
series (numpy arrays) and takes the decision index as an argument, never a clock.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vnstitch.allocate.errors import AllocateError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Quantile levels the allocator asks forecasters for: dense near the high end, where the
#: newsvendor quantiles of expensive classes live (c_under/c_over = 50 -> q = 0.980).
DENSE_LEVELS: tuple[float, ...] = (
    0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95,
    0.96, 0.97, 0.98, 0.99, 0.995,
)


def newsvendor_quantile(c_under: float, c_over: float) -> float:
    """The cost-minimising service level ``c_under / (c_under + c_over)``."""
    if not (math.isfinite(c_under) and math.isfinite(c_over)) or c_under < 0 or c_over < 0:
        raise AllocateError(f"costs must be finite and >= 0, got c_under={c_under}, "
                            f"c_over={c_over}")
    if c_under + c_over == 0:
        raise AllocateError("c_under and c_over cannot both be 0")
    return c_under / (c_under + c_over)


@dataclass(frozen=True, slots=True)
class ApplicationClass:
    """An application class and what it costs to get its allocation wrong.

    ``resources_per_unit``: compute (in VM-capacity units) or storage each unit of demand
    needs, e.g. CPU percent per Mbit/s for a video bridge.
    """

    name: str
    c_under: float
    c_over: float = 1.0
    resources_per_unit: float = 1.0

    def __post_init__(self) -> None:
        newsvendor_quantile(self.c_under, self.c_over)  # validates
        if not (math.isfinite(self.resources_per_unit) and self.resources_per_unit > 0):
            raise AllocateError(f"class {self.name!r}: resources_per_unit must be > 0")

    @property
    def quantile(self) -> float:
        return newsvendor_quantile(self.c_under, self.c_over)


#: Default classes; the costs are per unit-step of unserved demand relative to idle capacity.
DEFAULT_CLASSES: dict[str, ApplicationClass] = {
    c.name: c for c in (
        ApplicationClass("video_conferencing", c_under=20.0),
        ApplicationClass("database", c_under=10.0),
        ApplicationClass("web", c_under=5.0),
        ApplicationClass("bulk", c_under=2.0),
        ApplicationClass("email", c_under=1.0),
    )
}


def interpolate_quantile(levels: Sequence[float], values: FloatArray, q: float) -> FloatArray:
    """The ``q``-quantile from forecast quantiles ``values`` (K, ...) at ``levels`` (K,).

    Linear in ``q`` between neighbouring levels; clamped outside ``[levels[0],
    levels[-1]]``. Values are sorted along the level axis first (quantile crossing).
    """
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim != 1 or lv.size == 0 or values.shape[0] != lv.size:
        raise AllocateError(f"need one value row per quantile level: {lv.size} levels, "
                            f"values shaped {values.shape}")
    if np.any(np.diff(lv) <= 0):
        raise AllocateError(f"quantile levels must increase strictly: {list(levels)}")
    if not 0.0 < q < 1.0:
        raise AllocateError(f"quantile must be in (0, 1), got {q}")
    vals = np.sort(np.asarray(values, dtype=np.float64), axis=0)
    if q <= lv[0]:
        first: FloatArray = vals[0].copy()
        return first
    if q >= lv[-1]:
        last: FloatArray = vals[-1].copy()
        return last
    hi = int(np.searchsorted(lv, q, side="left"))
    lo = hi - 1
    w = (q - lv[lo]) / (lv[hi] - lv[lo])
    out: FloatArray = (1.0 - w) * vals[lo] + w * vals[hi]
    return out


def units_for(amount: FloatArray, unit: float, min_units: int = 0) -> IntArray:
    """Whole units whose capacity covers ``amount`` (negative/NaN amounts count as 0)."""
    if not unit > 0:
        raise AllocateError(f"allocation unit must be > 0, got {unit}")
    amt = np.nan_to_num(np.asarray(amount, dtype=np.float64), nan=0.0, posinf=0.0)
    # Subtract a hair so an amount of exactly k units does not round up to k+1.
    units = np.ceil(np.maximum(amt, 0.0) / unit - 1e-9).astype(np.int64)
    return np.maximum(units, min_units)


class Action(enum.IntEnum):
    """What the controller did for one series at one decision (logged as the reason)."""

    UNCHANGED = 0
    SCALE_OUT = 1
    SCALE_IN = 2
    HOLD_MIN_TIME = 3  # wanted to scale in; the minimum hold time has not passed
    HOLD_HYSTERESIS = 4  # wanted to scale in; the drop is inside the hysteresis band
    HOLD_STABILISATION = 5  # wanted to scale in; a recent target was as high as now


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """How an amount may change between decisions.

    ``unit``: allocation granularity in demand units (Mbit/s, CPU percent per VM, GB).
    ``hold_steps``: decisions an amount must stay before it may shrink.
    ``scale_in_hysteresis``: shrink only when the target is below ``current*(1-h)``.
    ``scale_in_window``: shrink only to the highest target of the last W decisions.
    ``allow_scale_in``: False for resources that never shrink (e.g. filled storage).
    """

    unit: float
    min_units: int = 0
    max_units: int | None = None
    hold_steps: int = 2
    scale_in_hysteresis: float = 0.05
    scale_in_window: int = 2
    allow_scale_in: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.unit) and self.unit > 0):
            raise AllocateError(f"unit must be > 0, got {self.unit}")
        if self.min_units < 0 or (self.max_units is not None and self.max_units < self.min_units):
            raise AllocateError(f"bad unit bounds [{self.min_units}, {self.max_units}]")
        if self.hold_steps < 0 or self.scale_in_window < 1:
            raise AllocateError("hold_steps must be >= 0 and scale_in_window >= 1")
        if not 0.0 <= self.scale_in_hysteresis < 1.0:
            raise AllocateError("scale_in_hysteresis must be in [0, 1)")


class ScalingController:
    """Turns per-decision target units into held, hysteresis-filtered units for N series."""

    def __init__(self, rules: ScalingRules, n_series: int,
                 initial_units: IntArray | None = None) -> None:
        self.rules = rules
        self.units: IntArray = (np.zeros(n_series, dtype=np.int64) if initial_units is None
                                else np.asarray(initial_units, dtype=np.int64).copy())
        if self.units.shape != (n_series,):
            raise AllocateError(f"initial units shaped {self.units.shape}, want ({n_series},)")
        # Decisions since the last change; "long ago" at start so nothing is held.
        self.held: IntArray = np.full(n_series, rules.hold_steps, dtype=np.int64)
        self._recent: deque[IntArray] = deque(maxlen=rules.scale_in_window)

    def step(self, target_units: IntArray) -> tuple[IntArray, NDArray[np.int8]]:
        """Apply one decision; returns (units now, :class:`Action` per series)."""
        r = self.rules
        target = np.asarray(target_units, dtype=np.int64)
        target = np.maximum(target, r.min_units)
        if r.max_units is not None:
            target = np.minimum(target, r.max_units)
        self._recent.append(target)
        floor = np.max(np.stack(self._recent), axis=0)  # cautious scale-in level
        cur = self.units
        actions = np.full(cur.shape, Action.UNCHANGED, dtype=np.int8)
        new = cur.copy()
        out = target > cur
        new[out] = target[out]
        actions[out] = Action.SCALE_OUT
        want_in = target < cur
        if r.allow_scale_in:
            held_ok = self.held >= r.hold_steps
            outside_band = target < cur * (1.0 - r.scale_in_hysteresis)
            can_in = want_in & held_ok & outside_band
            new_in = np.minimum(cur, np.maximum(target, floor))
            shrink = can_in & (new_in < cur)
            new[shrink] = new_in[shrink]
            actions[shrink] = Action.SCALE_IN
            actions[want_in & ~held_ok] = Action.HOLD_MIN_TIME
            actions[want_in & held_ok & ~outside_band] = Action.HOLD_HYSTERESIS
            actions[can_in & ~shrink] = Action.HOLD_STABILISATION
        changed = new != cur
        self.held = np.where(changed, 0, self.held + 1)
        self.units = new
        return new.copy(), actions
