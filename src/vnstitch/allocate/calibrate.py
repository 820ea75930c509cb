"""Calibrated predictive allocation: conformal residual quantiles and a discrete newsvendor.

Theory of operation
-------------------
*Calibration.* A forecaster's own quantiles are often mis-calibrated (in-sample errors,
bursty flows). Instead, ``predictive`` takes the forecaster's ``lead``-step-ahead point
forecast ``m_t`` (made from data before the decision only) and the empirical
distribution of its out-of-sample errors on a calibration window at the end of the
training window (the model is fitted before that window, so the errors are honest):
``D_t = m_t + s_t * Z`` with ``Z`` drawn from the series' normalised calibration errors
``z_j = (y_j - m_j) / s_j`` (split-conformal, per series, per lead time). The local scale
``s_t`` is either 1 (plain residuals) or an exponentially weighted mean of the absolute
errors already observed when the decision is made (``beta`` its memory); it widens the
distribution after a burst and narrows it in calm periods.

*Discrete newsvendor.* With ``c_under`` per unit unserved and ``c_over`` per unit idle,
the expected cost of reserving ``a`` is
``E[c_under (D - a)+ + c_over (a - D)+]``, convex in ``a`` with its continuous minimum at
the ``q = c_under / (c_under + c_over)`` quantile. Allocations come in whole units (a VM
of 25% CPU, 100 kbit/s), so the optimum is one of the two unit counts bracketing that
quantile; both expected costs are computed exactly on the empirical distribution
(sorted samples and prefix sums) and the cheaper is taken. Rounding up blindly wastes up
to one unit in every step; for VMs that is most of the cost.

*Selection on the training window only.* The calibration window is split in two
halves: errors of the first half calibrate, the second half scores candidates -- the
scale memory ``beta`` (none, 0.8, 0.9, 0.97), whether to floor the target at the units
the last seen demand needs (a short-term reactive floor for on/off series), and the
churn rules
(:class:`~vnstitch.allocate.policy.ScalingRules` candidates). The winner has the lowest
cost at the operator's cost ratio among candidates whose changes per hour do not exceed
the HPA rule's on the same half-window (churn is a cost the ratio does not price: the
issue asks for hysteresis and hold times; the HPA is the churn we must not exceed).
The final policy is calibrated on the whole calibration window. Nothing from the test
window is used to choose anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.metrics import tally
from vnstitch.allocate.policy import FloatArray, IntArray, ScalingController, ScalingRules

#: Scale memories tried; ``None`` is "no local scale" (plain residuals).
BETAS: tuple[float | None, ...] = (None, 0.8, 0.9, 0.97)


def churn_candidates(base: ScalingRules) -> tuple[ScalingRules, ...]:
    """Scaling rules tried on the training window: none, light, and the default caution."""
    settings = ((0, 0.0, 1), (1, 0.0, 1), (0, 0.0, 2), (1, 0.02, 2), (2, 0.05, 1),
                (2, 0.05, 2), (3, 0.05, 3))
    return tuple(replace(base, hold_steps=h, scale_in_hysteresis=hy, scale_in_window=w)
                 for h, hy, w in settings)


def local_scale(errors: FloatArray, lead: int, beta: float | None, floor: FloatArray) -> FloatArray:
    """Scale for each step: EWMA of |errors| known ``lead`` steps before it (>= floor).

    ``errors[i]`` is the error at step i; the decision for step i is made at origin
    ``i - lead + 1`` and has seen errors up to step ``i - lead`` only.
    """
    n_steps, n_series = errors.shape
    if beta is None:
        return np.ones((n_steps, n_series))
    out = np.empty((n_steps, n_series))
    acc = np.array(floor, dtype=np.float64, copy=True)
    seen = False
    for i in range(n_steps):
        j = i - lead
        if j >= 0:
            e = np.abs(errors[j])
            acc = beta * acc + (1.0 - beta) * e if seen else np.maximum(e, floor)
            seen = True
        out[i] = acc
    return np.maximum(out, floor)


@dataclass(frozen=True, slots=True)
class Conformal:
    """Sorted normalised calibration errors per series, with prefix sums."""

    z: FloatArray  # (C, N) sorted along axis 0
    prefix: FloatArray  # (C + 1, N)

    @classmethod
    def from_errors(cls, normalised: FloatArray) -> Conformal:
        if normalised.ndim != 2 or normalised.shape[0] < 2:
            raise AllocateError(f"need >= 2 calibration errors per series, got shape "
                                f"{normalised.shape}")
        z = np.sort(np.nan_to_num(normalised, nan=0.0, posinf=0.0, neginf=0.0), axis=0)
        prefix = np.vstack([np.zeros((1, z.shape[1])), np.cumsum(z, axis=0)])
        return cls(z, prefix)

    def quantile(self, q: float) -> FloatArray:
        out: FloatArray = np.quantile(self.z, q, axis=0)
        return out

    def expected_cost(self, w: FloatArray, c_under: float, c_over: float) -> FloatArray:
        """E[c_under (Z - w)+ + c_over (w - Z)+] per element of ``w`` (steps, N)."""
        c = self.z.shape[0]
        out = np.empty_like(w)
        for n in range(w.shape[1]):
            j = np.searchsorted(self.z[:, n], w[:, n], side="right")
            below = j * w[:, n] - self.prefix[j, n]
            above = (self.prefix[c, n] - self.prefix[j, n]) - (c - j) * w[:, n]
            out[:, n] = (c_under * above + c_over * below) / c
        return out

    def units(self, center: FloatArray, scale: FloatArray, c_under: float, c_over: float,
              rules: ScalingRules) -> IntArray:
        """Discrete-newsvendor units per step and series (see module docstring)."""
        q = c_under / (c_under + c_over)
        a_star = np.maximum(center + scale * self.quantile(q)[None, :], 0.0)
        lo = np.floor(a_star / rules.unit + 1e-9)
        hi = lo + 1.0
        cost_lo = self.expected_cost((lo * rules.unit - center) / scale, c_under, c_over)
        cost_hi = self.expected_cost((hi * rules.unit - center) / scale, c_under, c_over)
        k = np.where(cost_hi < cost_lo, hi, lo).astype(np.int64)
        k = np.maximum(k, rules.min_units)
        if rules.max_units is not None:
            k = np.minimum(k, rules.max_units)
        return k


def last_seen_floor(actual: FloatArray, lead: int, rules: ScalingRules) -> IntArray:
    """Units covering the last demand seen at each decision (``actual[i - lead]``).

    A short-term reactive floor: on on/off series a burst that has started is better
    evidence than a smoothed forecast. Steps with nothing seen yet get 0.
    """
    out = np.zeros(actual.shape, dtype=np.int64)
    seen = np.maximum(np.nan_to_num(actual[: actual.shape[0] - lead]), 0.0)
    out[lead:] = np.ceil(seen / rules.unit - 1e-9).astype(np.int64)
    return out


def controlled(targets: IntArray, rules: ScalingRules) -> IntArray:
    """Targets through the churn controller (held, hysteresis-filtered units)."""
    if targets.shape[0] == 0:
        return targets
    con = ScalingController(rules, targets.shape[1], initial_units=targets[0])
    return np.stack([con.step(targets[i])[0] for i in range(targets.shape[0])])


@dataclass(frozen=True, slots=True)
class CalibratedChoice:
    beta: float | None
    floor_last_seen: bool
    rules: ScalingRules
    train_cost: float
    train_changes_per_hour: float
    churn_budget: float


def _floor(values: FloatArray) -> FloatArray:
    out: FloatArray = np.maximum(1e-3 * np.mean(np.abs(values), axis=0), 1e-9)
    return out


def select(center: FloatArray, actual: FloatArray, lead: int, *, c_under: float,
           c_over: float, base: ScalingRules, churn_budget: float, step_seconds: float,
           betas: Sequence[float | None] = BETAS) -> CalibratedChoice:
    """Pick scale memory and churn rules on a calibration window (training data only).

    ``center``/``actual`` (C, N): forecasts and demand on the calibration window. First
    half calibrates, second half scores; ``churn_budget`` is the HPA's changes per hour
    on that second half.
    """
    c = center.shape[0]
    half = c // 2
    if half < 2:
        raise AllocateError(f"calibration window of {c} steps is too short")
    errors = actual - center
    floor = _floor(actual)
    ratio = c_under / c_over if c_over > 0 else float("inf")
    best: CalibratedChoice | None = None
    fallback: CalibratedChoice | None = None
    for beta in betas:
        scale = local_scale(errors, lead, beta, floor)
        conf = Conformal.from_errors(errors[:half] / scale[:half])
        plain = conf.units(center[half:], scale[half:], c_under, c_over, base)
        floored = np.maximum(plain, last_seen_floor(actual, lead, base)[half:])
        for use_floor, targets in ((False, plain), (True, floored)):
            for rules in churn_candidates(base):
                units = controlled(targets, rules)
                t = tally(actual[half:], units.astype(np.float64) * base.unit, step_seconds)
                cost = t.cost(ratio) if np.isfinite(ratio) else t.unserved_fraction
                cand = CalibratedChoice(beta, use_floor, rules, cost, t.changes_per_hour,
                                        churn_budget)
                if (fallback is None
                        or cand.train_changes_per_hour < fallback.train_changes_per_hour):
                    fallback = cand
                if cand.train_changes_per_hour <= churn_budget and (
                        best is None or cand.train_cost < best.train_cost):
                    best = cand
    chosen = best if best is not None else fallback
    assert chosen is not None  # betas and candidates are non-empty
    return chosen


def calibrated_units(center: FloatArray, actual_known: FloatArray, *, calib_steps: int,
                     lead: int, c_under: float, c_over: float,
                     choice: CalibratedChoice) -> IntArray:
    """Units for the steps after the calibration window.

    ``center`` (C + S, N): lead-step forecasts over calibration + test steps;
    ``actual_known`` the demand on the same steps (the test part is only used through
    :func:`local_scale`, i.e. errors observed ``lead`` steps before each decision).
    """
    errors = actual_known - center
    scale = local_scale(errors, lead, choice.beta, _floor(actual_known[:calib_steps]))
    conf = Conformal.from_errors(errors[:calib_steps] / scale[:calib_steps])
    targets = conf.units(center[calib_steps:], scale[calib_steps:], c_under, c_over,
                         choice.rules)
    if choice.floor_last_seen:
        targets = np.maximum(targets,
                             last_seen_floor(actual_known, lead, choice.rules)[calib_steps:])
    return controlled(targets, choice.rules)
