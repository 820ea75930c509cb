"""The Predictive Resource Allocator, live: four data sources, any model, fits elsewhere.

Theory of operation
-------------------
:class:`PraController` is the pure core a runtime (the daemon, the lab story) feeds. It
serves *consumers* (:class:`PraConsumer`): a stitch end's bandwidth, a VN's compute (in
demand units such as cores) or a VN's storage (MiB used). Each interval the runtime
hands it what it measured and calls :meth:`PraController.step` with ``now`` (wall-clock
seconds: the application profiles' diurnal shape needs the hour of day); it gets back
decision records, one row per consumer for ``show allocations`` and the fit jobs to run.

The four sources:

1. **history** -- :meth:`~PraController.observe`: the consumer's own measurements;
2. **application profile** -- the consumer's class (:class:`~vnstitch.forecast.profiles.
   ApplicationProfile`: diurnal shape, weekend factor, burstiness) with a prior level
   (``prior_level``; a stitch's negotiated bandwidth). The *prior* forecast is level x
   shape at the forecast times, its quantiles normal with the profile's burstiness as
   the coefficient of variation. A consumer with no fitted model yet is forecast from
   the prior alone (cold start); afterwards the own model's weight grows as
   ``min(1, n / blend_steps)`` and mean and quantiles are blended with it;
3. **user behaviour** -- :meth:`~PraController.feed`: per VN, rows ``(t, users)``; the
   value in force at a time is the last row at or before it (rows after ``now`` are a
   plan and are used for the forecast's future rows). A VN with a feed gives its
   consumers a ``users`` column of exogenous regressors;
4. **stitching events** -- :meth:`~PraController.stitch_event`: a ``new`` or
   ``renegotiated`` stitch starts its bandwidth consumer again from the cold start
   (history and model dropped: the path and its demand are new); ``released`` ends it.
   A VN with events gives its consumers two regressors: live stitches of the VN, and
   path changes (renegotiations) so far.

Every registered model is a :class:`~vnstitch.forecast.base.PointForecaster` and takes
exogenous regressors (regression with model errors), so the columns go to whichever
model a consumer's config names. A fit is never run here: :meth:`~PraController.step`
returns a :class:`FitJob` for each consumer whose model is due (every ``refit_every``
steps, at once when its column set changed); the runtime runs :func:`run_fit` where it
likes (a worker process) and reports :meth:`~PraController.fit_done` or
:meth:`~PraController.fit_failed`. A fit still out after ``fit_timeout_s`` is a
``fit-slow`` decision; failed and slow fits keep the previous model (a result for a
consumer that restarted since is dropped). Between fits the model is filtered forward
(``rolling`` at the newest origin): cheap enough for the event loop.

Allocation: a resource ordered now is usable after the provider's lead time ``L``
(measured start-up for compute); the next decision's order is usable ``interval_s``
later still, so this decision must cover demand over horizons ``1..ceil(L/interval)+1``.
The forecast handed to the :class:`~vnstitch.allocate.allocator.Allocator` is, per
level, the highest value over that window (the max over horizons of each quantile: a
lower bound of the quantile of the window's maximum, never below any single horizon).
Planning only the last horizon of the window -- what the providers benchmark did --
lets an earlier step's demand in the window go uncovered. The level is then raised by
what the window's highest value really exceeded the forecast's highest by (online
split-conformal, finite-sample rank ``ceil((n+1) q)``; one-step errors until there are
such errors), so a model whose calibration window was too calm to show a jump does not
keep under-covering. ``PraPolicy.calibrated_levels`` tightens the levels (the history's
own spread before the first fit, the fit's training-tail window errors in the conformal
set): less slack, fewer ramps covered in time. ``PraPolicy.guard_errors`` (N > 0) is the
guarded form: the default levels until N live window errors, then the fit's errors in
the conformal set (with ``guard_floor``, floored at the profile prior's level when the
newest value is above the lead window's before it: a ramp). Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from scipy.stats import norm

from vnstitch.allocate.allocator import Allocator, QuantileForecast
from vnstitch.allocate.allocator import Consumer as AllocConsumer
from vnstitch.allocate.policy import DENSE_LEVELS, ApplicationClass, ScalingRules
from vnstitch.allocate.providers.base import Provider, ResourceKey, ResourceKind
from vnstitch.control.errors import ControlError
from vnstitch.control.model import DecisionRecord
from vnstitch.forecast.base import (
    MODEL_NAMES,
    FloatArray,
    Forecaster,
    PointForecaster,
    make_forecaster,
)
from vnstitch.forecast.profiles import ApplicationProfile, load_profiles


@dataclass(frozen=True, slots=True)
class FittedModel:
    """What :func:`run_fit` returns (runtimes name it through this module: they drive
    the controller and never import the forecasters themselves): the fitted model and
    its errors on the lead window's highest value over the training tail (realised
    highest of the next ``horizon`` values minus the forecast's highest), the
    conformal calibration set the consumer starts from."""

    model: Forecaster
    window_errors: tuple[float, ...] = ()


def model_names() -> tuple[str, ...]:
    """Every forecaster a consumer may name."""
    return MODEL_NAMES


def application_profiles() -> dict[str, ApplicationProfile]:
    """The shipped application profiles, by name."""
    return load_profiles()


class Source(StrEnum):
    HISTORY = "history"
    PROFILE = "profile"
    USERS = "users"
    STITCH_EVENTS = "stitch_events"


class StitchEventKind(StrEnum):
    NEW = "new"
    RENEGOTIATED = "renegotiated"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class PraConsumer:
    """One thing to allocate for. ``location``: the provider's key location (a link for
    bandwidth, the VN's name for compute/storage); ``model`` and ``options``: the
    forecaster (any :data:`~vnstitch.forecast.base.MODEL_NAMES`) and its keyword
    options; ``prior_level``: the cold start's level in demand units."""

    id: str
    kind: ResourceKind
    vnid: int
    location: str
    app: ApplicationClass
    profile: ApplicationProfile
    rules: ScalingRules
    model: str = "ets"
    options: Mapping[str, Any] = field(default_factory=dict)
    prior_level: float = 0.0
    #: Storage: the demand is cumulative (usage never drops), so forecasts never fall
    #: below the last measured value.
    cumulative: bool = False


@dataclass(frozen=True, slots=True)
class PraPolicy:
    interval_s: float
    season: int = 12
    refit_every: int = 10
    min_fit: int = 6
    blend_steps: int = 30
    fit_timeout_s: float = 30.0
    error_window: int = 120
    history: int = 2000
    levels: tuple[float, ...] = tuple(DENSE_LEVELS)
    #: Tighter levels: before the first fit, the spread of the consumer's own history
    #: (not the profile's burstiness) once it has ``min_fit`` samples; after a fit, the
    #: conformal set topped up with the fit's training-tail window errors. Less slack,
    #: but the levels then cover a ramp less often (docs/pra_live.md has the figures).
    calibrated_levels: bool = False
    #: N > 0: the guarded tightening (module docstring); 0: off.
    guard_errors: int = 0
    #: With ``guard_errors``: floor the levels at the prior's on a rise.
    guard_floor: bool = True

    def __post_init__(self) -> None:
        if not (self.interval_s > 0 and self.fit_timeout_s > 0) or min(
                self.season, self.refit_every, self.min_fit, self.blend_steps,
                self.error_window, self.history) < 1:
            raise ControlError("pra policy: interval_s and fit_timeout_s must be > 0, the "
                               "counts >= 1")


@dataclass(frozen=True, slots=True)
class FitJob:
    """Everything a fit needs, picklable: run it with :func:`run_fit` anywhere."""

    consumer: str
    generation: int
    model: str
    season: int
    options: tuple[tuple[str, Any], ...]
    history: tuple[float, ...]
    exog: tuple[tuple[float, ...], ...] | None
    columns: tuple[str, ...]
    #: The lead window's length in steps when the job was made (see :func:`run_fit`).
    horizon: int = 1
    #: How many training-tail origins to score for the window errors.
    calibration: int = 120


def run_fit(job: FitJob) -> FittedModel:
    """Fit ``job``'s model (module-level so a process pool can run it).

    The rolling forecasts that calibrate it are made here too (where the fit runs, off
    the controller's process): the model's own calibration errors for the job's
    horizon, and the window errors of :class:`FittedModel` over the last
    ``job.calibration`` origins whose whole window is known."""
    hist = np.asarray(job.history, dtype=np.float64)[:, None]
    exog = None if job.exog is None else np.asarray(job.exog, dtype=np.float64)
    model = make_forecaster(job.model, job.season, **dict(job.options)).fit(hist, exog)
    if not isinstance(model, PointForecaster):
        return FittedModel(model)
    h, t_len = job.horizon, hist.shape[0]
    model.calibration_errors(h)
    origins = np.arange(max(1, t_len - h - job.calibration + 1), t_len - h + 1)
    if origins.size == 0:
        return FittedModel(model)
    mean, _ = model.rolling(hist, origins, h, exog=exog)
    realised = hist[origins[:, None] + np.arange(h)[None, :], 0].max(axis=1)
    errs = realised - mean[:, :, 0].max(axis=1)
    return FittedModel(model, tuple(float(e) for e in errs if math.isfinite(e)))


@dataclass(slots=True)
class _State:
    spec: PraConsumer
    times: deque[float]
    values: deque[float]
    errors: deque[float]
    model: Forecaster | None = None
    columns: tuple[str, ...] = ()
    since_fit: int = 0
    generation: int = 0
    pending_since: float | None = None
    slow_reported: bool = False
    pred: float | None = None
    seen: int = 0  # measurements ever observed (absolute index of the next one)
    #: (made at ``seen``, window length, forecast centre's highest value in the window)
    window_preds: deque[tuple[int, int, float]] = field(default_factory=deque)
    window_errors: deque[float] = field(default_factory=lambda: deque(maxlen=240))
    #: The fitted model's window errors on its training tail (see :class:`FittedModel`)
    calib_errors: tuple[float, ...] = ()
    cold_reason: str = "no history yet"
    fit_note: str = "no fit yet"
    row: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PraStep:
    records: list[DecisionRecord] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[FitJob] = field(default_factory=list)
    amounts: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class _VnEvents:
    times: list[float] = field(default_factory=list)
    live: list[int] = field(default_factory=list)  # live stitches after each event
    changes: list[int] = field(default_factory=list)  # path changes after each event
    stitches: set[str] = field(default_factory=set)


class PraController:
    """See the module docstring."""

    def __init__(self, policy: PraPolicy, provider: Provider) -> None:
        self.policy = policy
        self.provider = provider
        self._state: dict[str, _State] = {}
        self._allocs: dict[str, Allocator] = {}
        self._feeds: dict[int, tuple[list[float], list[float]]] = {}
        self._events: dict[int, _VnEvents] = {}

    # -- consumers and the four sources -------------------------------------------------
    def add(self, spec: PraConsumer) -> None:
        """Start serving ``spec`` (again from the cold start if it was known)."""
        p = self.policy
        self._state[spec.id] = _State(spec, deque(maxlen=p.history), deque(maxlen=p.history),
                                      deque(maxlen=p.error_window))
        self._allocs.pop(spec.id, None)

    def remove(self, consumer: str) -> None:
        self._state.pop(consumer, None)
        self._allocs.pop(consumer, None)

    def consumers(self) -> list[str]:
        return list(self._state)

    def observe(self, consumer: str, now: float, value: float) -> None:
        """Source 1: one measurement (scores the last one-step forecast first)."""
        s = self._get(consumer)
        if not math.isfinite(value):
            raise ControlError(f"{consumer}: measurement {value!r} is not finite")
        if s.times and now <= s.times[-1]:
            return  # not newer than the last: a duplicate read
        if s.pred is not None:
            s.errors.append(value - s.pred)
        s.times.append(now)
        s.values.append(float(value))
        s.seen += 1
        while s.window_preds and s.window_preds[0][0] + s.window_preds[0][1] <= s.seen:
            made, width, pred = s.window_preds.popleft()
            back = s.seen - made  # values observed since the forecast, oldest first
            if back <= len(s.values):
                window = list(s.values)[len(s.values) - back:][:width]
                s.window_errors.append(max(window) - pred)

    def feed(self, vnid: int, rows: Sequence[tuple[float, float]]) -> int:
        """Source 3: user activity rows ``(t, users)`` for ``vnid``; returns rows kept."""
        bad = [r for r in rows if not (math.isfinite(r[0]) and math.isfinite(r[1])
                                      and r[1] >= 0)]
        if bad:
            raise ControlError(f"feed for VN {vnid}: row {bad[0]!r} is not a finite time "
                               "and a number of users >= 0")
        ts, vs = self._feeds.setdefault(vnid, ([], []))
        merged = dict(zip(ts, vs, strict=True))
        merged.update((float(t), float(v)) for t, v in rows)
        order = sorted(merged)
        ts[:], vs[:] = order, [merged[t] for t in order]
        return len(rows)

    def fed_vnids(self) -> list[int]:
        """The VNs with a user-behaviour feed."""
        return sorted(self._feeds)

    def stitch_event(self, now: float, vnid: int, stitch: str, kind: StitchEventKind,
                     consumer: str | None = None) -> DecisionRecord | None:
        """Source 4: a stitch of ``vnid`` came, moved or went; its bandwidth
        ``consumer`` (if served) starts from the cold start on new/renegotiated."""
        ev = self._events.setdefault(vnid, _VnEvents())
        changes = ev.changes[-1] if ev.changes else 0
        if kind is StitchEventKind.NEW:
            ev.stitches.add(stitch)
        elif kind is StitchEventKind.RELEASED:
            ev.stitches.discard(stitch)
        else:
            changes += 1
        ev.times.append(now)
        ev.live.append(len(ev.stitches))
        ev.changes.append(changes)
        if consumer is None or consumer not in self._state or \
                kind is StitchEventKind.RELEASED:
            return None
        spec = self._state[consumer].spec
        self.add(spec)
        self._state[consumer].cold_reason = f"stitch {stitch} {kind.value}: cold start"
        return DecisionRecord(now, consumer, "cold-start",
                              f"stitch {stitch} {kind.value}: history and model dropped, "
                              "forecast from the application profile", consumer=consumer)

    # -- fits (run by the caller) ---------------------------------------------------------
    def fit_done(self, job: FitJob, fitted: FittedModel, now: float,
                 seconds: float) -> DecisionRecord | None:
        consumer = job.consumer
        s = self._state.get(consumer)
        if s is None or s.generation != job.generation:
            return None  # restarted since: the fit is for a history that is gone
        s.model, s.columns, s.pending_since, s.slow_reported = (fitted.model, job.columns,
                                                                None, False)
        p = self.policy
        s.calib_errors = fitted.window_errors if p.calibrated_levels or p.guard_errors else ()
        s.since_fit = 0
        s.fit_note = f"{s.spec.model} fitted on {len(s.values)} samples in {seconds:.3g} s"
        return DecisionRecord(now, consumer, "fit", s.fit_note, consumer=consumer)

    def fit_failed(self, job: FitJob, reason: str, now: float) -> DecisionRecord | None:
        consumer = job.consumer
        s = self._state.get(consumer)
        if s is None or s.generation != job.generation:
            return None
        s.pending_since, s.slow_reported = None, False
        s.since_fit = 0  # try again after a full cadence, not at once
        s.fit_note = f"fit failed ({reason}); previous forecast kept"
        return DecisionRecord(now, consumer, "fit-failed", s.fit_note, consumer=consumer)

    # -- the step ------------------------------------------------------------------------
    def step(self, now: float) -> PraStep:
        out = PraStep()
        for cid, s in self._state.items():
            self._fit_due(now, s, out)
            try:
                fc, centre, window_centre, sources, weight = self._forecast(now, s)
            except Exception as exc:  # a model bug costs a decision, never the loop
                out.records.append(DecisionRecord(
                    now, cid, "keep", f"forecast failed: {type(exc).__name__}: {exc}; "
                    "keeping the last allocation", consumer=cid))
                continue
            s.pred = centre
            s.window_preds.append((s.seen, fc.shape[1], window_centre))
            self._allocate(now, s, fc, sources=sources, weight=weight, out=out)
        return out

    def _fit_due(self, now: float, s: _State, out: PraStep) -> None:
        s.since_fit += 1
        cols = self._columns(s.spec.vnid)
        if s.pending_since is not None:
            if not s.slow_reported and now - s.pending_since > self.policy.fit_timeout_s:
                s.slow_reported = True
                s.fit_note = (f"fit running for {now - s.pending_since:.3g} s > "
                              f"{self.policy.fit_timeout_s:g} s; previous forecast kept")
                out.records.append(DecisionRecord(now, s.spec.id, "fit-slow", s.fit_note,
                                                  consumer=s.spec.id))
            return
        if len(s.values) < self.policy.min_fit:
            return
        if s.model is not None and s.since_fit < self.policy.refit_every and \
                cols == s.columns:
            return
        s.generation += 1
        s.pending_since = now
        x = self._exog(s.spec.vnid, cols, list(s.times))
        out.jobs.append(FitJob(s.spec.id, s.generation, s.spec.model, self.policy.season,
                               tuple(sorted(s.spec.options.items())), tuple(s.values),
                               None if x is None else tuple(map(tuple, x.tolist())), cols,
                               self._lead_steps(s.spec), self.policy.error_window))

    def _forecast(self, now: float, s: _State,
                  ) -> tuple[FloatArray, float, float, list[str], float]:
        """Quantiles (K, H) over the lead window, the one-step centre, the centre's
        highest value in the window, sources, own weight."""
        spec, p = s.spec, self.policy
        horizon = self._lead_steps(spec)
        future = [now + h * p.interval_s for h in range(1, horizon + 1)]
        levels = np.asarray(p.levels)
        sources: list[str] = []
        prior_level = spec.prior_level
        n = len(s.values)
        if n:
            sources.append(Source.HISTORY)
            shape_now = float(spec.profile.shape(_dt(list(s.times)[-min(n, 12):])).mean())
            prior_level = float(np.mean(list(s.values)[-12:])) / shape_now \
                if shape_now > 0 else float(np.mean(list(s.values)[-12:]))
        prior_mean = prior_level * spec.profile.shape(_dt(future))
        z = norm.ppf(np.clip(levels, 1e-6, 1 - 1e-6))
        prior = np.maximum(prior_mean[None, :] * (1 + z[:, None] * spec.profile.burstiness),
                           0.0)
        if p.calibrated_levels and n >= p.min_fit:  # enough history to say how far it
            # moves: its spread, not the profile's burstiness (a fit may be slow to return)
            prior = np.maximum(prior_mean[None, :] + self._history_offsets(s, horizon)[:, None],
                               0.0)
        weight = 0.0
        values = prior
        path = prior_mean
        if s.model is not None and isinstance(s.model, PointForecaster) and n:
            weight = min(1.0, n / p.blend_steps)
            hist = np.asarray(s.values, dtype=np.float64)[:, None]
            x = self._exog(spec.vnid, s.columns, list(s.times) + future)
            mean, qd = s.model.rolling(hist, [n], horizon, quantiles=p.levels, exog=x)
            own = np.stack([qd[q][0, :, 0] for q in p.levels])  # (K, H)
            own = self._conformal(s, mean[0, :, 0], own)
            values = weight * own + (1 - weight) * prior
            path = weight * mean[0, :, 0] + (1 - weight) * prior_mean
            if s.columns:
                sources += [Source.USERS] if "users" in s.columns else []
                sources += [Source.STITCH_EVENTS] if "stitches" in s.columns else []
        if weight < 1.0:
            sources.append(Source.PROFILE)
        if p.guard_floor and p.guard_errors and self._guarded(s) and n > horizon + 1 and \
                s.values[-1] > max(list(s.values)[-horizon - 2:-1]):
            values = np.maximum(values, prior)  # a rise: no tighter than the prior
        if spec.cumulative and n:
            values = np.maximum(values, s.values[-1])
        if not np.isfinite(values).all():
            raise ControlError(f"{spec.model} forecast is not finite")
        return values, float(path[0]), float(path.max()), [str(x) for x in sources], weight

    def _conformal(self, s: _State, mean: FloatArray, own: FloatArray) -> FloatArray:
        # What the consumer's highest value in a lead window really exceeded the centre's
        # by (the risk the order covers): the live errors, with calibrated_levels topped
        # up to the window's size with the fitted model's errors on its training tail.
        # Live errors alone: while few, at rank ceil((n+1)q) > n the level is the largest
        # error seen -- above the q-quantile, which is what covers the rare ramps.
        room = (s.window_errors.maxlen or 0) - len(s.window_errors)
        calib = s.calib_errors if not self.policy.guard_errors or self._guarded(s) else ()
        pool = [*calib[len(calib) - min(room, len(calib)):], *s.window_errors]
        errs = np.sort(np.asarray(pool if len(pool) >= 2 else s.errors, dtype=np.float64))
        if errs.size < 2:
            return own
        ranks = np.ceil((errs.size + 1) * np.asarray(self.policy.levels)).astype(int)
        offs = errs[np.clip(ranks - 1, 0, errs.size - 1)]
        out: FloatArray = np.maximum(own, np.maximum(mean[None, :] + offs[:, None], 0.0))
        return out

    def _guarded(self, s: _State) -> bool:
        return len(s.window_errors) >= self.policy.guard_errors

    def _history_offsets(self, s: _State, width: int) -> FloatArray:
        """Per level: how far the highest of the next ``width`` values rose above the
        value before them, over the newest ``error_window`` windows of the history (the
        naive forecast's window errors, conformal rank)."""
        v = np.asarray(list(s.values)[-(self.policy.error_window + width):], dtype=np.float64)
        starts = np.arange(v.size - width)
        if starts.size < 2:
            return np.zeros(len(self.policy.levels))
        ahead = v[starts[:, None] + 1 + np.arange(width)[None, :]].max(axis=1)
        errs = np.sort(ahead - v[starts])
        ranks = np.ceil((errs.size + 1) * np.asarray(self.policy.levels)).astype(int)
        out: FloatArray = errs[np.clip(ranks - 1, 0, errs.size - 1)]
        return out

    def _lead_steps(self, spec: PraConsumer) -> int:
        lead_s = max(self.provider.lead_time(spec.kind), 0.0)
        return math.ceil(lead_s / self.policy.interval_s - 1e-9) + 1

    def _allocate(self, now: float, s: _State, values: FloatArray, *, sources: list[str],
                  weight: float, out: PraStep) -> None:
        spec = s.spec
        window = values.max(axis=1)[:, None]  # (K, 1): each level's highest in the window
        fc = QuantileForecast(tuple(self.policy.levels), window)
        alloc = self._allocs.get(spec.id)
        if alloc is None:  # new or restarted consumer: a fresh allocator (no old hold)
            bw = spec.kind is ResourceKind.BANDWIDTH
            made = AllocConsumer(spec.id, spec.kind, spec.app, spec.rules, 1,
                                 path=(spec.location,) if bw else (),
                                 segment=None if bw else spec.location)
            alloc = Allocator([made], self.provider)
            self._allocs[spec.id] = alloc
        rkey = ResourceKey(spec.kind, spec.location)
        try:
            report = alloc.step(now, {spec.id: fc}, {rkey: self.provider.available(rkey, now)})
        except Exception as exc:
            out.records.append(DecisionRecord(now, spec.id, "keep",
                                              f"{type(exc).__name__}: {exc}; keeping the last "
                                              "allocation", consumer=spec.id))
            return
        finally:
            alloc.log.clear()
        dec = next(d for d in report.decisions if d.subject == spec.id)
        orders = [d for d in report.decisions if d.subject != spec.id]
        action = orders[-1].action if orders else dec.action
        amount = report.amounts.get(spec.id, dec.amount)
        out.amounts[spec.id] = amount
        reason = dec.reason + "".join(f"; {d.action}: {d.reason}" for d in orders)
        out.records.append(DecisionRecord(now, spec.id, action, reason,
                                          measured_mbps=s.values[-1] if s.values else None,
                                          forecast_mbps=dec.forecast, quantile=dec.quantile,
                                          amount_mbps=amount, consumer=spec.id))
        s.row = {"consumer": spec.id, "kind": spec.kind.value, "vnid": spec.vnid,
                 "location": spec.location, "model": spec.model, "sources": sources,
                 "own_weight": round(weight, 3), "samples": len(s.values),
                 "lead_steps": int(values.shape[1]),
                 "forecast": round(dec.forecast, 6), "quantile": dec.quantile,
                 "amount": amount, "action": action, "reason": reason,
                 "fit": s.fit_note, "cold_start": None if weight >= 1 else s.cold_reason
                 if not s.values or s.cold_reason != "no history yet"
                 else "no fitted model yet",
                 "now": now}
        out.rows.append(s.row)

    def rows(self) -> list[dict[str, Any]]:
        """The latest row per consumer (``show allocations``)."""
        return [dict(s.row) if s.row else {"consumer": cid, "kind": s.spec.kind.value,
                                             "vnid": s.spec.vnid, "model": s.spec.model,
                                             "sources": [], "action": "none yet"}
                for cid, s in self._state.items()]

    # -- regressors ------------------------------------------------------------------------
    def _columns(self, vnid: int) -> tuple[str, ...]:
        cols: tuple[str, ...] = ()
        if vnid in self._feeds:
            cols += ("users",)
        if vnid in self._events:
            cols += ("stitches", "path_changes")
        return cols

    def _exog(self, vnid: int, cols: tuple[str, ...],
              times: Sequence[float]) -> FloatArray | None:
        if not cols:
            return None
        out = []
        for name in cols:
            if name == "users":
                ts, vs = self._feeds[vnid]
                out.append([_held(ts, vs, t) for t in times])
            else:
                ev = self._events[vnid]
                vals = ev.live if name == "stitches" else ev.changes
                out.append([_held(ev.times, [float(v) for v in vals], t) for t in times])
        return np.asarray(out, dtype=np.float64).T

    def _get(self, consumer: str) -> _State:
        s = self._state.get(consumer)
        if s is None:
            raise ControlError(f"unknown consumer {consumer!r}")
        return s


def _held(ts: Sequence[float], vs: Sequence[float], t: float) -> float:
    """The value in force at ``t``: the last row at or before it (the first before any)."""
    i = bisect.bisect_right(ts, t) - 1
    return float(vs[max(i, 0)]) if vs else 0.0


def _dt(times: Sequence[float]) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    return np.asarray([np.datetime64(int(t), "s") for t in times], dtype="datetime64[s]")
