"""Replaying a demand trace through every policy side by side (``allocate evaluate``).

Theory of operation
-------------------
*Split.* The last ``test_steps`` steps of the trace (default three seasons: the last 3
days of 5-minute data) are the test window; everything before is training. Static
policies read only the training window. The forecaster is fitted once on the training
window and then filters forward, so the forecast that sets the amount for test step
``s`` uses only ``values[: s - lead + 1]`` (see :mod:`vnstitch.allocate.forecasts`);
``reactive`` sees the same data (it runs from the first step); ``oracle`` alone sees the
demand it serves.

*Scoring.* Each policy's units times ``unit`` are scored against the demand with
:func:`vnstitch.allocate.metrics.tally`. ``predictive`` is parameterised by the cost
ratio: its headline metrics use ``q = c_under / (c_under + c_over)`` from the
configuration, and its ``total_cost`` at ratio ``r`` comes from the run with
``q = r / (r + 1)``, its calibration and churn rules chosen for that ratio on the
training window (:mod:`~vnstitch.allocate.calibrate`) -- the operator knows its costs
and the policy uses them; the other policies have no cost input and are scored as they
are. ``predictive``'s churn may not exceed the HPA's on the same training data.

*Provider.* With ``cfg.provider`` every policy's units (and ``predictive``'s per-ratio
runs) are replayed through the ``sim`` cloud (:mod:`~vnstitch.allocate.provision`):
boot delays, quotas, outages and prices are enforced by the provider, the tallies score
the capacity it made usable, and each policy gets a bill. The trade-off sweep stays on
the orders (a policy's knob, not the cloud, is what it compares).

*Trade-off curves.* Each policy's knob is swept on a dense geometric grid --
``predictive``: its target level ``q`` (through the calibration and churn rules chosen
for the configured ratio); ``reactive``: its target utilisation; ``static``: a headroom
multiplier on the training p95 -- giving (slack, unserved) points;
:func:`~vnstitch.allocate.metrics.curve_below` compares the curves. All of this is pure:
arrays in, tallies out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vnstitch.allocate.baselines import (
    POLICIES,
    oracle_units,
    reactive_units,
    static_units,
)
from vnstitch.allocate.calibrate import CalibratedChoice, calibrated_units, select_forecasts
from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.forecasts import LeadForecasts
from vnstitch.allocate.metrics import COST_RATIOS, Tally, TradeoffPoint, tally
from vnstitch.allocate.policy import FloatArray, IntArray, ScalingRules, newsvendor_quantile
from vnstitch.allocate.providers.base import ResourceKind
from vnstitch.allocate.provision import ProviderTally, SimSettings, provision


def _geometric(lo: float, hi: float, factor: float) -> tuple[float, ...]:
    n = int(np.floor(np.log(hi / lo) / np.log(factor) + 1e-9))
    return tuple(round(lo * factor ** i, 6) for i in range(n + 1))


# Every policy's knob is swept on a dense geometric grid (the same density for all): the
# curve comparison treats predictive's curve as a step function through its points and
# the others' as straight lines between theirs, so sparse points would only decide it.
#: predictive: target level q = r / (1 + r) for cost ratios r from 0.1 to 500.
PREDICTIVE_SWEEP: tuple[float, ...] = tuple(round(r / (1.0 + r), 6)
                                            for r in _geometric(0.1, 500.0, 1.1))
#: reactive: the HPA's target utilisation.
REACTIVE_SWEEP: tuple[float, ...] = _geometric(0.25, 2.0, 1.05)
#: static: headroom multiplier on the training p95.
STATIC_SWEEP: tuple[float, ...] = _geometric(0.5, 4.0, 1.05)

#: Default allocation granularity per resource, in the trace's units.
DEFAULT_UNIT: dict[ResourceKind, float] = {
    ResourceKind.BANDWIDTH: 0.1,  # Mbit/s: HTB rates are set in 100 kbit/s steps
    ResourceKind.COMPUTE: 1.0,  # one VM per demand unit unless --unit says otherwise
    ResourceKind.STORAGE: 1.0,
}


@dataclass(frozen=True, slots=True)
class EvalConfig:
    resource: ResourceKind
    season: int
    lead: int
    unit: float
    c_under: float = 10.0
    c_over: float = 1.0
    policies: tuple[str, ...] = POLICIES
    test_steps: int | None = None  # default: 3 seasons
    target_utilisation: float = 0.8
    rules: ScalingRules | None = None  # default: derived from unit
    sweep: bool = True
    calib_seasons: int = 4  # end of training used to calibrate predictive (conformal)
    provider: SimSettings | None = None  # score usable capacity from the sim provider
    #: Cost ratios predictive is also run at (``TraceResult.ratio_tallies``); each costs
    #: one calibration choice, so callers that need fewer (the demo) say which.
    ratios: tuple[float, ...] = COST_RATIOS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.policies) - set(POLICIES))
        if unknown:
            raise AllocateError(f"unknown policy {unknown[0]!r}; known: {', '.join(POLICIES)}")
        if self.season < 1 or self.lead < 1:
            raise AllocateError(f"season and lead time must be >= 1, got season={self.season}"
                                f", lead={self.lead}")
        if not self.unit > 0:
            raise AllocateError(f"unit must be > 0, got {self.unit}")
        newsvendor_quantile(self.c_under, self.c_over)

    @property
    def quantile(self) -> float:
        return newsvendor_quantile(self.c_under, self.c_over)

    @property
    def scaling(self) -> ScalingRules:
        if self.rules is not None:
            return self.rules
        # Filled storage cannot be handed back; bandwidth and VMs can. A service keeps
        # at least one VM (the HPA's minReplicas=1), so compute never goes to zero.
        return ScalingRules(unit=self.unit,
                            min_units=1 if self.resource is ResourceKind.COMPUTE else 0,
                            allow_scale_in=self.resource is not ResourceKind.STORAGE)

    def calib_steps(self, start: int) -> int:
        """Calibration window length (end of training), leaving the forecaster >= 2 seasons."""
        return max(8, min(self.calib_seasons * self.season, start - 2 * self.season))

    def split(self, n_steps: int) -> int:
        """Index of the first test step for a trace of ``n_steps`` steps."""
        test = self.test_steps if self.test_steps is not None else 3 * self.season
        start = n_steps - test
        if test < 1 or start < max(self.lead + 1, 2):
            raise AllocateError(f"trace has {n_steps} steps: too short for {test} test steps "
                                f"plus training (lead {self.lead})")
        return start


@dataclass(slots=True)
class TraceResult:
    """Everything one trace contributes; results of several traces pool by adding."""

    tallies: dict[str, Tally] = field(default_factory=dict)
    ratio_tallies: dict[float, Tally] = field(default_factory=dict)  # predictive per ratio
    curves: dict[str, list[tuple[float, Tally]]] = field(default_factory=dict)
    # For plots: demand and allocation summed over series, per test step.
    demand_total: FloatArray | None = None
    alloc_total: dict[str, FloatArray] = field(default_factory=dict)
    choices: list[dict[str, object]] = field(default_factory=list)  # predictive, per ratio
    provider: dict[str, ProviderTally] = field(default_factory=dict)  # with cfg.provider

    def merge(self, other: TraceResult) -> TraceResult:
        out = TraceResult()
        for name in set(self.tallies) | set(other.tallies):
            out.tallies[name] = self.tallies.get(name, Tally()).add(
                other.tallies.get(name, Tally()))
        for r in set(self.ratio_tallies) | set(other.ratio_tallies):
            out.ratio_tallies[r] = self.ratio_tallies.get(r, Tally()).add(
                other.ratio_tallies.get(r, Tally()))
        for name in set(self.curves) | set(other.curves):
            a, b = self.curves.get(name, []), other.curves.get(name, [])
            if a and b:
                out.curves[name] = [(k, ta.add(tb)) for (k, ta), (_, tb) in zip(a, b,
                                                                                 strict=True)]
            else:
                out.curves[name] = list(a or b)
        # Plots show one trace (traces differ in length and time): the most variable.
        mine = _spread(self.demand_total)
        keep_self = self.demand_total is not None and mine >= _spread(other.demand_total)
        out.demand_total = self.demand_total if keep_self else other.demand_total
        out.alloc_total = self.alloc_total if keep_self else other.alloc_total
        out.choices = self.choices + other.choices
        for name in set(self.provider) | set(other.provider):
            out.provider[name] = self.provider.get(name, ProviderTally()).add(
                other.provider.get(name, ProviderTally()))
        return out

    def points(self, name: str) -> list[TradeoffPoint]:
        return [TradeoffPoint(k, t.slack, t.unserved_fraction) for k, t in self.curves[name]]

    def policy_costs(self, name: str) -> dict[float, float]:
        if name == "predictive" and self.ratio_tallies:
            # the ratios predictive was run at (EvalConfig.ratios; COST_RATIOS by default)
            return {r: self.ratio_tallies[r].cost(r) for r in sorted(self.ratio_tallies)}
        return {r: self.tallies[name].cost(r) for r in COST_RATIOS}

    def best_in_hindsight(self, name: str) -> dict[float, float]:
        """The lowest cost any swept setting of ``name`` reached, per ratio."""
        return {r: min(t.cost(r) for _, t in self.curves[name]) for r in COST_RATIOS}


def _spread(total: FloatArray | None) -> float:
    return float(np.std(total)) if total is not None and total.size else -1.0


def evaluate_values(values: FloatArray, step_seconds: float, cfg: EvalConfig,
                    paths: LeadForecasts | None,
                    on_step: Callable[[str], None] | None = None, *,
                    alternatives: Sequence[LeadForecasts] = ()) -> TraceResult:
    """Replay ``values`` (T, N) through the configured policies (see module docstring).

    ``alternatives``: forecasts of other models over the same steps; ``predictive`` then
    picks per series which forecaster to follow, on the training window
    (:func:`~vnstitch.allocate.calibrate.select_forecasts`).
    """
    if values.ndim != 2 or not np.isfinite(values).all():
        raise AllocateError("trace values must be a finite 2-D array (time x series)")
    if (values < 0).any():
        t, n = np.argwhere(values < 0)[0]
        raise AllocateError(f"negative demand at step {t}, series {n}")
    start = cfg.split(values.shape[0])
    demand = values[start:]
    unit = cfg.unit
    res = TraceResult(demand_total=demand.sum(axis=1))
    tick = on_step or (lambda _name: None)

    def alloc_of(name: str, units: IntArray, bill: bool = False) -> FloatArray:
        if cfg.provider is None:
            return units.astype(np.float64) * unit
        got = provision(units, start=start, lead=cfg.lead, step_seconds=step_seconds,
                        kind=cfg.resource, settings=cfg.provider)
        if bill:
            res.provider[name] = got.tally
        return got.usable * unit

    def score(name: str, units: IntArray) -> Tally:
        return tally(demand, alloc_of(name, units), step_seconds)

    def score_orders(name: str, units: IntArray) -> Tally:
        return tally(demand, units.astype(np.float64) * unit, step_seconds)

    def record(name: str, units: IntArray) -> None:
        alloc = alloc_of(name, units, bill=True)
        res.tallies[name] = tally(demand, alloc, step_seconds)
        res.alloc_total[name] = alloc.sum(axis=1)

    if "static-peak" in cfg.policies:
        record("static-peak", static_units(values, start, unit, statistic="peak"))
        tick("static-peak")
    if "static-p95" in cfg.policies:
        record("static-p95", static_units(values, start, unit, statistic="p95", headroom=1.2))
        tick("static-p95")
    if "reactive" in cfg.policies:
        record("reactive", reactive_units(values, start, cfg.lead, unit,
                                          target_utilisation=cfg.target_utilisation,
                                          step_seconds=step_seconds))
        tick("reactive")
    if "oracle" in cfg.policies:
        record("oracle", oracle_units(values, start, unit))
        tick("oracle")
    if "predictive" in cfg.policies:
        if paths is None:
            raise AllocateError("policy 'predictive' needs forecasts")
        for p in (paths, *alternatives):
            if (p.first_step + p.calib_steps != start
                    or p.center.shape != (values.shape[0] - p.first_step, demand.shape[1])):
                raise AllocateError(f"forecasts of {p.model} shaped {p.center.shape} from "
                                    f"step {p.first_step} do not match the test window from "
                                    f"{start}")
        cands = _Candidates(paths, tuple(alternatives))
        budget = _hpa_churn(values, start, cands.calib_steps, step_seconds, cfg)
        choices = {r: choose(values, cands, cfg, c_under=r, c_over=1.0,
                             step_seconds=step_seconds, churn_budget=budget, res=res)
                   for r in cfg.ratios}
        ratio = cfg.c_under / cfg.c_over if cfg.c_over > 0 else float("inf")
        main = choices.get(ratio) or choose(values, cands, cfg, c_under=cfg.c_under,
                                            c_over=cfg.c_over, step_seconds=step_seconds,
                                            churn_budget=budget, res=res)
        record("predictive", predictive(values, cands, cfg, main, cfg.quantile))
        for r, choice in choices.items():
            res.ratio_tallies[r] = score("predictive", predictive(
                values, cands, cfg, choice, newsvendor_quantile(r, 1.0)))
        if cfg.sweep:
            # The trade-off knob is the target level, through the same calibration and
            # churn rules as the headline policy (reactive's knob is its target).
            res.curves["predictive"] = [
                (q, score_orders("predictive", predictive(values, cands, cfg, main, q)))
                for q in PREDICTIVE_SWEEP]
        tick("predictive")
    if cfg.sweep:
        _sweep(values, start, step_seconds, cfg, res=res, score=score_orders)
        tick("trade-off sweep")
    return res


def _hpa_churn(values: FloatArray, start: int, calib_steps: int, step_seconds: float,
               cfg: EvalConfig) -> float:
    """Changes per hour of the HPA rule on the scoring half of the calibration window."""
    score_from = start - calib_steps + calib_steps // 2
    units = reactive_units(values[:start], score_from, cfg.lead, cfg.unit,
                           target_utilisation=cfg.target_utilisation,
                           step_seconds=step_seconds)
    return tally(values[score_from:start], units.astype(np.float64) * cfg.unit,
                 step_seconds).changes_per_hour


@dataclass(frozen=True, slots=True)
class _Candidates:
    """The preferred forecaster's lead-step forecasts and the alternatives' (same steps)."""

    main: LeadForecasts
    alternatives: tuple[LeadForecasts, ...] = ()

    @property
    def first_step(self) -> int:
        return self.main.first_step

    @property
    def calib_steps(self) -> int:
        return self.main.calib_steps

    @property
    def all(self) -> tuple[LeadForecasts, ...]:
        return (self.main, *self.alternatives)


def choose(values: FloatArray, paths: LeadForecasts | _Candidates, cfg: EvalConfig, *,
           c_under: float, c_over: float, step_seconds: float, churn_budget: float,
           res: TraceResult | None = None) -> CalibratedChoice:
    """The predictive policy's forecaster per series, calibration and churn rules at one
    cost ratio (training window only)."""
    cands = paths if isinstance(paths, _Candidates) else _Candidates(paths)
    first, calib = cands.first_step, cands.calib_steps
    start = first + calib
    choice = select_forecasts([p.center[:calib] for p in cands.all], values[first:start],
                              cfg.lead, c_under=c_under, c_over=c_over, base=cfg.scaling,
                              churn_budget=churn_budget, step_seconds=step_seconds,
                              refresh=cfg.season)
    if res is not None:
        names = [p.model for p in cands.all]
        used = [names[k] for k in choice.sources] if choice.sources else [names[0]]
        res.choices.append({"c_under": c_under, "c_over": c_over,
                            "forecasters": {m: used.count(m) for m in names if m in used},
                            "errors": choice.setting.describe(),
                            "hold_steps": choice.rules.hold_steps,
                            "hysteresis": choice.rules.scale_in_hysteresis,
                            "scale_in_window": choice.rules.scale_in_window,
                            "train_cost": choice.train_cost,
                            "train_changes_per_hour": choice.train_changes_per_hour,
                            "hpa_train_changes_per_hour": churn_budget})
    return choice


def predictive(values: FloatArray, paths: LeadForecasts | _Candidates, cfg: EvalConfig,
               choice: CalibratedChoice, q: float) -> IntArray:
    """Units of the calibrated predictive policy at level ``q`` over the test window."""
    cands = paths if isinstance(paths, _Candidates) else _Candidates(paths)
    first, calib = cands.first_step, cands.calib_steps
    return calibrated_units([p.center for p in cands.all], values[first:], calib_steps=calib,
                            lead=cfg.lead, q=q, choice=choice, refresh=cfg.season)


def _sweep(values: FloatArray, start: int, step_seconds: float, cfg: EvalConfig, *,
           res: TraceResult,
           score: Callable[[str, IntArray], Tally]) -> None:
    unit = cfg.unit
    if "reactive" in cfg.policies:
        res.curves["reactive"] = [
            (t, score("reactive", reactive_units(values, start, cfg.lead, unit,
                                                 target_utilisation=t,
                                                 step_seconds=step_seconds)))
            for t in REACTIVE_SWEEP]
    if "static-p95" in cfg.policies or "static-peak" in cfg.policies:
        res.curves["static"] = [
            (k, score("static", static_units(values, start, unit, statistic="p95",
                                             headroom=k)))
            for k in STATIC_SWEEP]


def sweep_names(policies: Sequence[str]) -> list[str]:
    names = [p for p in ("predictive", "reactive") if p in policies]
    if "static-p95" in policies or "static-peak" in policies:
        names.append("static")
    return names
