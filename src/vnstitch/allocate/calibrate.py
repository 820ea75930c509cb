"""Choosing the predictive policy's calibration and churn rules on training data only.

Theory of operation
-------------------
The predictive distribution and the discrete newsvendor live in
:mod:`~vnstitch.allocate.online` (online Mondrian conformal errors of the
``lead``-step-ahead point forecast, optional local scale, adaptive conformal level
correction). What remains is to pick, per trace and cost ratio, *how* to condition the
errors (:data:`~vnstitch.allocate.online.SETTINGS`) and the churn rules
(:class:`~vnstitch.allocate.policy.ScalingRules` candidates: minimum hold time, a
scale-in hysteresis band like the HPA's 10% tolerance, and a scale-in window like its
stabilisation).

*Selection on the training window only.* The calibration window (the end of the
training window; the forecaster was fitted before it, so its errors are out of sample)
is split in two halves: the first half seeds the error sets, the second half is
replayed online exactly as the test window will be and scores every candidate. The
winner has the lowest cost at the operator's cost ratio among candidates whose changes
per hour do not exceed the HPA rule's on the same half-window (churn is a cost the ratio
does not price: the issue asks for hysteresis and hold times, and the HPA is the churn
we must not exceed). The test window is then replayed with the winner, its error sets
seeded by the whole calibration window.

*Forecaster per series.* Given several forecasters' point forecasts
(:func:`select_forecasts`), each series follows the one whose allocations, under the
preferred forecaster's calibration and churn rules, cost it least on the scoring half;
the calibration and churn rules are then chosen again for the combined forecasts, which
are kept only if they beat the preferred forecaster alone on the scoring half.

*Reactive guard.* The predictive policy claims to beat the reactive (HPA) rule, so it
must not be worse than it where we can check without looking at the test window: when
the reactive rule's units on the scoring half are given, the chosen predictive policy is
kept only if on that half it costs no more than the reactive rule at the operator's
ratio **and**, at ratios of 10 or more (unserved demand is the expensive side), leaves no
more demand unserved than ``max(1%, reactive's)``; otherwise
the choice says ``reactive`` and the caller replays the HPA rule instead. With short
histories (a few hundred scored steps, many candidates) this is what keeps a noisy
choice from collapsing; with long ones it rarely triggers.

Nothing from the test window is used to choose anything; during the test replay only
demand already observed at each decision is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.metrics import tally
from vnstitch.allocate.online import SETTINGS, Setting, online_targets
from vnstitch.allocate.policy import FloatArray, IntArray, ScalingController, ScalingRules


def churn_candidates(base: ScalingRules) -> tuple[ScalingRules, ...]:
    """Scaling rules tried on the training window: (hold steps, hysteresis, window)."""
    settings = ((0, 0.0, 1), (1, 0.0, 1), (0, 0.0, 2), (1, 0.02, 2), (2, 0.05, 1),
                (2, 0.05, 2), (3, 0.05, 3), (0, 0.1, 1), (0, 0.1, 2), (1, 0.1, 2),
                (0, 0.1, 3), (0, 0.2, 2), (0, 0.2, 3))
    return tuple(replace(base, hold_steps=h, scale_in_hysteresis=hy, scale_in_window=w)
                 for h, hy, w in settings)


def controlled(targets: IntArray, rules: ScalingRules) -> IntArray:
    """Targets through the churn controller (held, hysteresis-filtered units)."""
    if targets.shape[0] == 0:
        return targets
    con = ScalingController(rules, targets.shape[1], initial_units=targets[0])
    return np.stack([con.step(targets[i])[0] for i in range(targets.shape[0])])


def controlled_many(targets: IntArray, candidates: Sequence[ScalingRules]) -> list[IntArray]:
    """:func:`controlled` for several rules at once (one pass; same results).

    The rules may differ only in hold time, hysteresis and scale-in window (the churn
    candidates); unit bounds and ``allow_scale_in`` come from the first.
    """
    n_steps, n_series = targets.shape
    if n_steps == 0 or not candidates:
        return [targets.copy() for _ in candidates]
    base = candidates[0]
    k = len(candidates)
    hold = np.repeat([r.hold_steps for r in candidates], n_series)
    band = np.repeat([r.scale_in_hysteresis for r in candidates], n_series)
    window = np.repeat([r.scale_in_window for r in candidates], n_series)
    w_max = int(window.max())
    tgt = np.clip(targets, base.min_units, base.max_units if base.max_units is not None
                  else np.iinfo(np.int64).max)
    cur = np.tile(tgt[0], k)
    held = hold.copy()
    recent = np.full((w_max, k * n_series), np.iinfo(np.int64).min, dtype=np.int64)
    out = np.empty((n_steps, k * n_series), dtype=np.int64)
    age = np.arange(w_max)[:, None]  # row i of ``recent`` is the target i decisions ago
    for i in range(n_steps):
        t = np.tile(tgt[i], k)
        recent = np.roll(recent, 1, axis=0)
        recent[0] = t
        floor = np.where(age < window[None, :], recent, np.iinfo(np.int64).min).max(axis=0)
        new = np.where(t > cur, t, cur)
        if base.allow_scale_in:
            can_in = (t < cur) & (held >= hold) & (t < cur * (1.0 - band))
            new = np.where(can_in, np.minimum(cur, np.maximum(t, floor)), new)
        held = np.where(new != cur, 0, held + 1)
        cur = new
        out[i] = cur
    return [out[:, j * n_series:(j + 1) * n_series] for j in range(k)]


@dataclass(frozen=True, slots=True)
class CalibratedChoice:
    setting: Setting
    rules: ScalingRules
    train_cost: float
    train_changes_per_hour: float
    churn_budget: float
    # Per series, the index of the candidate point forecast it uses (see
    # :func:`select_forecasts`); empty = the first (only) candidate for every series.
    sources: tuple[int, ...] = ()
    train_unserved: float = float("nan")  # unserved fraction on the scoring half
    # True: predictive did not beat the reactive rule on training (the reactive guard):
    # replay the reactive rule instead.
    reactive: bool = False

    def center(self, centers: Sequence[FloatArray]) -> FloatArray:
        """The point forecasts this choice uses: per series, column of its source."""
        if not centers:
            raise AllocateError("no candidate forecasts given")
        if not self.sources:
            return centers[0]
        if len(self.sources) != centers[0].shape[1] or max(self.sources) >= len(centers):
            raise AllocateError(f"choice for {len(self.sources)} series does not match "
                                f"{len(centers)} candidate forecasts shaped {centers[0].shape}")
        stack = np.stack(centers)  # (K, T, N)
        out: FloatArray = stack[np.asarray(self.sources), :, np.arange(stack.shape[2])].T
        return out


def select(center: FloatArray, actual: FloatArray, lead: int, *, c_under: float,
           c_over: float, base: ScalingRules, churn_budget: float, step_seconds: float,
           settings: Sequence[Setting] = SETTINGS, refresh: int = 288) -> CalibratedChoice:
    """Pick the error conditioning and churn rules on a calibration window (training only).

    ``center``/``actual`` (C, N): forecasts and demand on the calibration window. First
    half seeds the error sets, second half is replayed online and scores;
    ``churn_budget`` is the HPA's changes per hour on that second half.
    """
    c = center.shape[0]
    half = c // 2
    if half < max(lead, 2) or c - half < 2:
        raise AllocateError(f"calibration window of {c} steps is too short")
    q = c_under / (c_under + c_over)
    ratio = c_under / c_over if c_over > 0 else float("inf")
    best: CalibratedChoice | None = None
    fallback: CalibratedChoice | None = None
    for setting in settings:
        targets = online_targets(center, actual, calib=half, lead=lead, q=q, unit=base.unit,
                                 setting=setting, min_units=base.min_units,
                                 max_units=base.max_units, refresh=refresh)
        candidates = churn_candidates(base)
        for rules, units in zip(candidates, controlled_many(targets, candidates), strict=True):
            t = tally(actual[half:], units.astype(np.float64) * base.unit, step_seconds)
            cost = t.cost(ratio) if np.isfinite(ratio) else t.unserved_fraction
            cand = CalibratedChoice(setting, rules, cost, t.changes_per_hour, churn_budget,
                                    train_unserved=t.unserved_fraction)
            if (fallback is None
                    or cand.train_changes_per_hour < fallback.train_changes_per_hour
                    or (cand.train_changes_per_hour == fallback.train_changes_per_hour
                        and cand.train_cost < fallback.train_cost)):
                fallback = cand
            if cand.train_changes_per_hour <= churn_budget + 1e-9 and (
                    best is None or cand.train_cost < best.train_cost):
                best = cand
    chosen = best if best is not None else fallback
    assert chosen is not None  # settings and candidates are non-empty
    return chosen


def series_costs(center: FloatArray, actual: FloatArray, lead: int, choice: CalibratedChoice, *,
                 c_under: float, c_over: float, refresh: int = 288) -> FloatArray:
    """Per series, cost ``c_under * unserved + c_over * idle`` of ``choice`` on the
    scoring half of the calibration window (the half :func:`select` scored it on)."""
    half = center.shape[0] // 2
    q = c_under / (c_under + c_over)
    r = choice.rules
    targets = online_targets(center, actual, calib=half, lead=lead, q=q, unit=r.unit,
                             setting=choice.setting, min_units=r.min_units,
                             max_units=r.max_units, refresh=refresh)
    gap = actual[half:] - controlled(targets, r).astype(np.float64) * r.unit
    out: FloatArray = (c_under * np.maximum(gap, 0.0).sum(axis=0)
                       + c_over * np.maximum(-gap, 0.0).sum(axis=0))
    return out


def select_forecasts(centers: Sequence[FloatArray], actual: FloatArray, lead: int, *,
                     c_under: float, c_over: float, base: ScalingRules, churn_budget: float,
                     step_seconds: float, settings: Sequence[Setting] = SETTINGS,
                     refresh: int = 288, reactive: IntArray | None = None) -> CalibratedChoice:
    """:func:`select`, also choosing per series which candidate point forecast to use.

    ``centers``: the calibration-window forecasts of several forecasters, the preferred
    one first. The preferred one is calibrated with :func:`select`; under that calibration
    every series takes the forecaster whose allocations cost it least on the scoring half
    (ties go to the earlier candidate), and the error conditioning and churn rules are
    chosen again for the combined forecasts. The combination is kept only if it is
    cheaper on the scoring half than the preferred forecaster alone (within the churn
    budget first). Training window only, like :func:`select`. ``reactive``: the reactive
    rule's units on the scoring half (``C - C // 2`` steps), for the reactive guard (see
    the module docstring).
    """
    if not centers:
        raise AllocateError("no candidate forecasts given")
    chosen = _select_forecasts(centers, actual, lead, c_under=c_under, c_over=c_over,
                               base=base, churn_budget=churn_budget,
                               step_seconds=step_seconds, settings=settings, refresh=refresh)
    if reactive is None:
        return chosen
    half = actual.shape[0] // 2
    if reactive.shape != actual[half:].shape:
        raise AllocateError(f"reactive units shaped {reactive.shape} do not match the "
                            f"scoring half {actual[half:].shape}")
    t = tally(actual[half:], reactive.astype(np.float64) * base.unit, step_seconds)
    ratio = c_under / c_over if c_over > 0 else float("inf")
    cost = t.cost(ratio) if np.isfinite(ratio) else t.unserved_fraction
    # the unserved cap only where unserved demand is the expensive side (ratio >= 10);
    # at r = 1 the operator has said a unit unserved costs no more than one idle
    capped = ratio >= UNSERVED_CAP_RATIO
    unserved_cap = max(UNSERVED_FLOOR, t.unserved_fraction) if capped else float("inf")
    beats = (chosen.train_cost <= cost + 1e-12
             and not chosen.train_unserved > unserved_cap + 1e-12)
    return chosen if beats else replace(chosen, reactive=True)


#: The reactive guard allows this much unserved demand even when the reactive rule
#: leaves less (a cost ratio that prices unserved demand may trade some for slack).
UNSERVED_FLOOR = 0.01
#: ... and only at cost ratios c_under / c_over of at least this.
UNSERVED_CAP_RATIO = 10.0


def _select_forecasts(centers: Sequence[FloatArray], actual: FloatArray, lead: int, *,
                      c_under: float, c_over: float, base: ScalingRules,
                      churn_budget: float, step_seconds: float,
                      settings: Sequence[Setting], refresh: int) -> CalibratedChoice:

    def calibrate(center: FloatArray) -> CalibratedChoice:
        return select(center, actual, lead, c_under=c_under, c_over=c_over, base=base,
                      churn_budget=churn_budget, step_seconds=step_seconds,
                      settings=settings, refresh=refresh)

    first = calibrate(centers[0])
    if len(centers) == 1:
        return first
    # Every forecaster is scored under the preferred one's calibration and churn rules:
    # re-optimising those per forecaster and series would let the noise of a short
    # scoring window pick the winner among many re-tuned candidates.
    costs = np.stack([series_costs(c, actual, lead, first, c_under=c_under, c_over=c_over,
                                   refresh=refresh) for c in centers])
    # argmin takes the first of equal costs: the preferred forecaster wins ties.
    sources = tuple(int(k) for k in np.argmin(costs, axis=0))
    if not any(sources):
        return first
    combined = replace(calibrate(replace(first, sources=sources).center(centers)),
                       sources=sources)
    # Each series' pick is cheaper alone, but the combination is calibrated and held to
    # the churn budget as a whole: keep it only if that is cheaper on training too.
    return combined if _rank(combined) < _rank(first) else first


def _rank(choice: CalibratedChoice) -> tuple[bool, float]:
    """Order of preference: within the churn budget first, then by training cost."""
    over = choice.train_changes_per_hour > choice.churn_budget + 1e-9
    return over, choice.train_cost


def calibrated_units(center: FloatArray | Sequence[FloatArray], actual_known: FloatArray, *,
                     calib_steps: int,
                     lead: int, q: float, choice: CalibratedChoice,
                     refresh: int = 288) -> IntArray:
    """Units for the steps after the calibration window, at level ``q``.

    ``center`` (C + S, N): lead-step forecasts over calibration + test steps (or the
    candidates given to :func:`select_forecasts`, combined by ``choice.sources``);
    ``actual_known`` the demand on the same steps, of which the unit for step ``j`` uses
    only ``actual_known[: j - lead + 1]`` (see :func:`~vnstitch.allocate.online.online_targets`).
    """
    r = choice.rules
    if not isinstance(center, np.ndarray):
        center = choice.center(center)
    targets = online_targets(center, actual_known, calib=calib_steps, lead=lead, q=q,
                             unit=r.unit, setting=choice.setting, min_units=r.min_units,
                             max_units=r.max_units, refresh=refresh)
    return controlled(targets, r)
