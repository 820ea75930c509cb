"""Allocation policies replayed over a trace: the baselines, the oracle and ``predictive``.

Theory of operation
-------------------
Every policy here maps a demand trace ``values`` (T, N) and a test window starting at
step ``start`` to whole units per test step, shape (T - start, N). The timing is the same
for all of them: the amount in force at step ``s`` was decided at decision index
``o = s - lead + 1`` from data ``values[:o]`` only (``lead`` steps of boot or
provisioning time; with ``lead = 1`` the decision made after seeing step ``s-1`` serves
step ``s``). Only the oracle breaks that rule, on purpose: it is the limit.

* ``static-peak``: the training-window peak, fixed.
* ``static-p95``: the training-window 95th percentile plus 20%, fixed.
* ``reactive``: the Kubernetes Horizontal Pod Autoscaler rule, replayed faithfully:
  ``desired = ceil(current * utilisation / target)`` where ``current`` is the ordered
  (spec) count and utilisation = last observed demand / (current x unit) -- units still
  booting count as capacity with zero usage, as the HPA treats unready pods on scale-up;
  no change while ``|utilisation/target - 1| <= tolerance`` (0.1); scale-down uses the
  highest recommendation of the last ``stabilisation_seconds`` (300 s); at least
  ``min_replicas`` (1). It runs from the start of the trace so it is warm at ``start``.
  The HPA re-evaluates every ``sync_seconds`` (15 s) while the trace only changes every
  step, so a recommendation made from one observation is repeated until the next one
  arrives (last made ``step - sync`` after it) and, as in the HPA, counts while it is
  strictly newer than ``now - window``. At 5-minute steps the previous observation's
  recommendation is therefore still in the window for 285 of the next 300 seconds, and
  the replay holds ``max`` of the current and the previous recommendation on scale-down
  (without the sync period the 5-minute window would hold nothing at 5-minute steps).
* ``predictive`` is not here: see :mod:`~vnstitch.allocate.online` (calibrated
  distribution, discrete newsvendor) and :mod:`~vnstitch.allocate.calibrate` (choices
  on training data, churn control).
* ``oracle``: exactly the units the actual demand needs, no churn control.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.policy import (
    FloatArray,
    IntArray,
    units_for,
)

POLICIES: tuple[str, ...] = ("static-peak", "static-p95", "reactive", "predictive", "oracle")


def _check_window(values: FloatArray, start: int, lead: int) -> None:
    if values.ndim != 2:
        raise AllocateError(f"trace must be 2-D (time x series), got shape {values.shape}")
    if lead < 1:
        raise AllocateError(f"lead time must be >= 1 step, got {lead}")
    if not lead <= start < values.shape[0]:
        raise AllocateError(f"test window start {start} must be in [{lead}, {values.shape[0]})")


def static_units(values: FloatArray, start: int, unit: float, *, statistic: str,
                 headroom: float = 1.0) -> IntArray:
    """Fixed units from the training window ``values[:start]``: ``peak`` or ``p95``."""
    train = values[:start]
    if statistic == "peak":
        level = np.max(train, axis=0)
    elif statistic == "p95":
        level = np.percentile(train, 95.0, axis=0)
    else:
        raise AllocateError(f"unknown static statistic {statistic!r}")
    units = units_for(level * headroom, unit)
    return np.broadcast_to(units, (values.shape[0] - start, values.shape[1])).copy()


def reactive_units(values: FloatArray, start: int, lead: int, unit: float, *,
                   target_utilisation: float = 0.8, tolerance: float = 0.1,
                   stabilisation_seconds: float = 300.0, step_seconds: float = 300.0,
                   sync_seconds: float = 15.0, min_replicas: int = 1) -> IntArray:
    """The Kubernetes HPA rule replayed over ``values``; units in force per test step."""
    _check_window(values, start, lead)
    if not target_utilisation > 0:
        raise AllocateError(f"target utilisation must be > 0, got {target_utilisation}")
    if not sync_seconds > 0:
        raise AllocateError(f"HPA sync period must be > 0, got {sync_seconds}")
    n_steps, n_series = values.shape
    spec = np.full(n_series, max(min_replicas, 1), dtype=np.int64)
    recent: deque[tuple[float, IntArray]] = deque()
    out = np.empty((n_steps - start, n_series), dtype=np.int64)
    # Decision o sees values[:o] and sets the units in force at step o + lead - 1.
    for o in range(1, n_steps - lead + 1):
        now = o * step_seconds
        observed = values[o - 1]
        utilisation = observed / (spec * unit)
        ratio = utilisation / target_utilisation
        desired = np.ceil(spec * ratio - 1e-9).astype(np.int64)
        desired = np.where(np.abs(ratio - 1.0) <= tolerance, spec, desired)
        desired = np.maximum(desired, min_replicas)
        # The HPA repeats this recommendation at every sync until the next observation.
        recent.append((now + max(step_seconds - sync_seconds, 0.0), desired))
        while recent and recent[0][0] <= now - stabilisation_seconds:
            recent.popleft()
        window_max = np.max(np.stack([r for _, r in recent]), axis=0)
        # Scale up at once; scale down only to the highest recent recommendation.
        spec = np.where(desired > spec, desired, np.minimum(spec, window_max))
        step = o + lead - 1
        if step >= start:
            out[step - start] = spec
    return out


def oracle_units(values: FloatArray, start: int, unit: float) -> IntArray:
    """The units the actual demand needs at each test step (knows the future)."""
    return units_for(values[start:], unit)
