"""Online calibration of the predictive distribution: Mondrian conformal errors and ACI.

Theory of operation
-------------------
``predictive`` reserves from the distribution of the demand ``D_j`` at step ``j``
given what is known when the order for ``j`` is placed (``lead`` steps earlier). The
forecaster supplies the ``lead``-step-ahead point forecast ``m_j``; the spread comes
from its own **out-of-sample errors observed so far**, ``e_i = y_i - m_i`` for
``i <= j - lead`` (split/online conformal prediction):

``D_j ~ max(0, m_j + s_j * Z)``, ``Z`` drawn from the normalised errors ``e_i / s_i``.

*Mondrian bins.* Errors are not exchangeable across regimes: an on/off series errs
differently when the last value seen was "on" than when it was "off", and a large
forecast errs more than a small one. The errors are therefore grouped per series by
a one-dimensional k-means cluster (fitted on the calibration window) of a *key* known
at decision time -- the point forecast ``m_j`` or the last demand seen ``y_{j-lead}`` --
or by the whole units ``y_{j-lead}`` needed (1, 2, ..., capped: for a bursty VM
series "the last reading needed 4 VMs" is the regime, whatever the forecast says) --
and ``Z`` is drawn from the bin of step ``j`` (Mondrian conformal prediction; a bin with fewer than
:data:`MIN_PER_BIN` errors falls back to all of the series' errors).

*Absolute.* A setting may drop the forecast (``m_j = 0``): the distribution is then the
demand itself as seen in the bin, an empirical conditional distribution that suits
on/off series whose point forecasts smear the two states.

*Local scale.* ``s_j`` is 1, or an exponentially weighted mean of the absolute errors
already observed (memory ``beta``): it widens the distribution after a burst.

*Online updates.* The error sets grow as the replay goes on (refreshed every
``refresh`` steps, only with errors already observed), and **adaptive conformal
inference** (Gibbs & Candes, 2021) corrects the level per series from the misses it
observes: after each realised step ``i`` the level moves by
``gamma * (1{y_i > target_i} - (1 - q))``, so a distribution that has become too
narrow (too many misses) is widened at once and vice versa. Only outcomes of steps
``<= j - lead`` are used for step ``j``.

*Warm-up.* An error set of a handful of errors says nothing about the tails, and an
empty one nothing at all, so until :data:`MIN_ERRORS` errors have been observed the
target is the **reactive-safe** rule instead: the units that hold the last demand seen
at the HPA's target utilisation (:data:`WARMUP_UTILISATION`), or the point forecast's
when nothing has been seen yet. How many steps calibrate is the caller's choice (derived
from the training length, see :meth:`~vnstitch.allocate.evaluate.EvalConfig.calib_steps`).

*Discrete newsvendor.* The cost of reserving ``a`` is ``E[c_under (D - a)+ +
c_over (a - D)+]``, minimised at the level ``q = c_under / (c_under + c_over)``; in whole
units the optimum is one of the two unit counts bracketing that quantile, and the
cheaper one (expected cost over the distribution, at the ACI-corrected ratio) is
taken. The distribution is represented by :data:`GRID` of its quantiles, so everything
is vectorised over series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.policy import FloatArray, IntArray

#: Quantile levels (i + 0.5) / GRID represent each error distribution.
GRID = 400
#: A Mondrian bin needs at least this many errors; otherwise the series' errors are used.
MIN_PER_BIN = 30
#: Fewer observed errors than this: the reactive-safe warm-up rule sets the target.
MIN_ERRORS = 30
#: The warm-up rule's target utilisation (the HPA default target).
WARMUP_UTILISATION = 0.8
#: The ACI-corrected level stays inside this range.
LEVEL_RANGE = (0.02, 0.998)
_LEVELS = (np.arange(GRID) + 0.5) / GRID


@dataclass(frozen=True, slots=True)
class Setting:
    """How the error distribution is conditioned and adapted (chosen on training)."""

    # "center": bin by the point forecast; "last": by the last demand seen (k-means);
    # "units": by the whole units the last demand seen needed (1, 2, ..., ``bins`` or more)
    key: str = "center"
    bins: int = 1
    beta: float | None = None  # local scale memory; None = no local scale
    gamma: float = 0.0  # ACI step; 0 = no online level correction
    # True: the distribution is the demand seen in the bin itself, not forecast + error
    absolute: bool = False

    def __post_init__(self) -> None:
        if self.key not in ("center", "last", "units"):
            raise AllocateError(f"unknown Mondrian key {self.key!r} (center, last or units)")
        if self.bins < 1:
            raise AllocateError(f"bins must be >= 1, got {self.bins}")
        if self.beta is not None and not 0.0 < self.beta < 1.0:
            raise AllocateError(f"scale memory must be in (0, 1), got {self.beta}")
        if not 0.0 <= self.gamma < 1.0:
            raise AllocateError(f"ACI step must be in [0, 1), got {self.gamma}")

    def describe(self) -> str:
        parts = [f"bins={self.bins}" + (f" by {self.key}" if self.bins > 1 else "")]
        if self.absolute:
            parts.append("on the demand itself (no forecast)")
        parts.append("no local scale" if self.beta is None else f"scale beta={self.beta:g}")
        parts.append("no ACI" if self.gamma == 0 else f"ACI gamma={self.gamma:g}")
        return ", ".join(parts)


#: The ACI step every setting tried on training uses.
ACI_GAMMA = 0.01

#: Settings tried on the training window. All correct their level online (ACI): a
#: setting chosen on a short or unlike training window is only as good as its ability
#: to adapt to the test window, and without the correction a distribution that was
#: right on training stays wrong for the whole test (on held-out Abilene days the
#: choice without it left 1.1-1.7% unserved against 0.9-1.4% with it, at lower cost).
SETTINGS: tuple[Setting, ...] = tuple(
    Setting(key, bins, beta, ACI_GAMMA)
    for key, bins in (("center", 1), ("center", 3), ("last", 3))
    for beta in (None, 0.9)) + tuple(
        Setting("units", 4, None, ACI_GAMMA, absolute) for absolute in (False, True))


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


def scale_floor(values: FloatArray) -> FloatArray:
    """A small positive scale per series so normalised errors stay finite."""
    out: FloatArray = np.maximum(1e-3 * np.mean(np.abs(values), axis=0), 1e-9)
    return out


def _keys(center: FloatArray, actual: FloatArray, lead: int, key: str) -> FloatArray:
    if key == "center":
        return center
    out = np.empty_like(center)
    out[:lead] = center[:lead]  # nothing seen yet: fall back to the forecast
    out[lead:] = actual[: center.shape[0] - lead]
    return out


def _unit_bins(actual: FloatArray, lead: int, unit: float, bins: int) -> IntArray:
    """Bin of each step: units the demand ``lead`` steps earlier needed, capped at ``bins``."""
    out = np.zeros(actual.shape, dtype=np.int64)
    need = np.ceil(actual[: actual.shape[0] - lead] / unit - 1e-9).astype(np.int64)
    out[lead:] = np.clip(need - 1, 0, bins - 1)
    return out


def _bins(keys: FloatArray, calib: int, bins: int, iterations: int = 20) -> IntArray:
    """Per-series bin index: 1-D k-means of the key on the calibration steps.

    Cluster boundaries rather than quantiles, so an on/off series gets an "off" and an
    "on" bin instead of tertiles that mix the two states.
    """
    if bins == 1:
        return np.zeros(keys.shape, dtype=np.int64)
    train = keys[:calib]
    centres = np.quantile(train, (np.arange(bins) + 0.5) / bins, axis=0)  # (bins, N)
    for _ in range(iterations):
        nearest = np.argmin(np.abs(train[None, :, :] - centres[:, None, :]), axis=0)
        for b in range(bins):
            inside = nearest == b
            counts = inside.sum(axis=0)
            sums = np.where(inside, train, 0.0).sum(axis=0)
            centres[b] = np.where(counts > 0, sums / np.maximum(counts, 1), centres[b])
    centres = np.sort(centres, axis=0)
    edges = 0.5 * (centres[1:] + centres[:-1])  # (bins - 1, N)
    out: IntArray = (keys[:, None, :] > edges[None, :, :]).sum(axis=1).astype(np.int64)
    return out


def _quantiles(z: FloatArray, inside: NDArray[np.bool_]) -> tuple[FloatArray, IntArray]:
    """(N, GRID) quantiles (numpy's linear rule) of each column's ``inside`` rows; counts."""
    counts = inside.sum(axis=0)
    ordered = np.sort(np.where(inside, z, np.inf), axis=0)
    pos = _LEVELS[:, None] * np.maximum(counts - 1, 0)[None, :]  # (GRID, N)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(counts - 1, 0)[None, :])
    w = pos - lo
    # Empty columns read +inf padding; make them 0 (their count tells callers to skip).
    a = np.take_along_axis(ordered, lo, axis=0)
    a = np.where(np.isfinite(a), a, 0.0)
    b = np.take_along_axis(ordered, hi, axis=0)
    b = np.where(np.isfinite(b), b, a)
    out: FloatArray = ((1.0 - w) * a + w * b).T
    return out, counts


def _grid(z: FloatArray, bin_of: IntArray, bins: int) -> FloatArray:
    """(bins, N, GRID): quantiles of the known normalised errors per bin and series."""
    everything, _ = _quantiles(z, np.ones(z.shape, dtype=bool))
    out = np.empty((bins, z.shape[1], GRID))
    for b in range(bins):
        out[b] = everything
        if bins > 1:
            per_bin, counts = _quantiles(z, bin_of == b)
            ok = counts >= MIN_PER_BIN
            out[b, ok] = per_bin[ok]
    return out


def _at_level(samples: FloatArray, level: FloatArray) -> FloatArray:
    """Per row, the ``level`` quantile of the GRID-quantile representation ``samples``."""
    pos = np.clip(level * GRID - 0.5, 0.0, GRID - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, GRID - 1)
    w = pos - lo
    rows = np.arange(samples.shape[0])
    out: FloatArray = (1.0 - w) * samples[rows, lo] + w * samples[rows, hi]
    return out


def expected_cost(samples: FloatArray, amount: FloatArray, ratio: FloatArray) -> FloatArray:
    """E[ratio (D - a)+ + (a - D)+] per row, D given by its GRID quantiles ``samples``."""
    gap = samples - amount[:, None]
    out: FloatArray = (ratio * np.maximum(gap, 0.0).mean(axis=1)
                       + np.maximum(-gap, 0.0).mean(axis=1))
    return out


def online_targets(center: FloatArray, actual: FloatArray, *, calib: int, lead: int, q: float,
                   unit: float, setting: Setting, min_units: int = 0,
                   max_units: int | None = None, refresh: int = 288) -> IntArray:
    """Target units for steps ``calib .. T-1`` (see the module docstring).

    ``center``/``actual`` (T, N): the ``lead``-step forecasts and the demand from the
    first calibration step on. The target for step ``j`` uses ``actual[: j - lead + 1]``
    only; steps before ``calib`` only calibrate.
    """
    if center.shape != actual.shape or center.ndim != 2:
        raise AllocateError(f"forecasts {center.shape} and demand {actual.shape} must be "
                            "equal 2-D shapes")
    n_steps, n_series = center.shape
    if not lead <= calib <= n_steps or calib < 2:
        raise AllocateError(f"calibration window of {calib} steps (lead {lead}) does not "
                            f"fit {n_steps} steps")
    if not 0.0 < q < 1.0 or not unit > 0:
        raise AllocateError(f"need 0 < q < 1 and unit > 0, got q={q}, unit={unit}")
    if setting.absolute:
        center = np.zeros_like(center)
    errors = actual - center
    scale = local_scale(errors, lead, setting.beta, scale_floor(actual[:calib]))
    z = np.nan_to_num(errors / scale, nan=0.0, posinf=0.0, neginf=0.0)
    if setting.key == "units":
        bin_of = _unit_bins(actual, lead, unit, setting.bins)
    else:
        bin_of = _bins(_keys(center, actual, lead, setting.key), calib, setting.bins)
    out = np.zeros((n_steps - calib, n_series), dtype=np.int64)
    shift = np.zeros(n_series)
    rows = np.arange(n_series)
    grid: FloatArray | None = None
    for j in range(calib, n_steps):
        known = j - lead + 1  # errors of steps < known have been observed
        if known < MIN_ERRORS:  # too few errors to calibrate: the reactive-safe rule
            seen = actual[j - lead] if j >= lead else center[j]
            need = np.ceil(np.maximum(seen, 0.0) / (WARMUP_UTILISATION * unit) - 1e-9)
            units = np.maximum(need.astype(np.int64), min_units)
            out[j - calib] = units if max_units is None else np.minimum(units, max_units)
            continue
        if grid is None or (j - calib) % max(refresh, 1) == 0:
            grid = _grid(z[:known], bin_of[:known], setting.bins)
        done = j - lead  # the latest realised step: correct the level by its outcome
        if setting.gamma > 0 and done >= calib:
            miss = actual[done] > out[done - calib] * unit + 1e-9
            shift += setting.gamma * (miss.astype(np.float64) - (1.0 - q))
        level = np.clip(q + shift, *LEVEL_RANGE)
        samples = np.maximum(center[j][:, None] + scale[j][:, None] * grid[bin_of[j], rows],
                             0.0)
        out[j - calib] = newsvendor_units(samples, level, unit, min_units, max_units)
    return out


def newsvendor_units(samples: FloatArray, level: FloatArray, unit: float, min_units: int = 0,
                     max_units: int | None = None) -> IntArray:
    """Discrete newsvendor per row: whole units minimising the expected cost at ``level``.

    ``samples`` (N, GRID): each row's demand distribution as its GRID quantiles (sorted);
    ``level`` (N,): the service level ``c_under / (c_under + c_over)``.
    """
    ratio = level / (1.0 - level)
    a_star = _at_level(samples, level)
    lo_units = np.floor(a_star / unit + 1e-9)
    cost_lo = expected_cost(samples, lo_units * unit, ratio)
    cost_hi = expected_cost(samples, (lo_units + 1.0) * unit, ratio)
    units = np.where(cost_hi < cost_lo, lo_units + 1.0, lo_units).astype(np.int64)
    units = np.maximum(units, min_units)
    if max_units is not None:
        units = np.minimum(units, max_units)
    return units


def grid_from_quantiles(levels: Sequence[float], values: FloatArray) -> FloatArray:
    """(N, GRID) distribution from forecast quantiles ``values`` (K, N) at ``levels``.

    Linear in the level between neighbouring quantiles (sorted first, against crossing),
    clamped outside the levels given -- the same reading as
    :func:`~vnstitch.allocate.policy.interpolate_quantile`.
    """
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim != 1 or lv.size == 0 or values.shape[0] != lv.size or np.any(np.diff(lv) <= 0):
        raise AllocateError(f"need strictly increasing levels and one row per level: "
                            f"{list(levels)}, values shaped {values.shape}")
    vals = np.sort(np.asarray(values, dtype=np.float64), axis=0)
    out: FloatArray = np.stack([np.interp(_LEVELS, lv, vals[:, n])
                                for n in range(vals.shape[1])])
    return out
