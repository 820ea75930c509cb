"""The online allocator: plan, check against the substrate, scale or reroute, log why.

Theory of operation
-------------------
Each :class:`Consumer` is something that needs capacity: a stitched connection
(bandwidth along its substrate path), a compute workload (VMs in a segment) or a
storage volume (GB in a segment). At every decision (``step(now, ...)``) the allocator

1. **plans** each consumer: the newsvendor level of its class
   (:class:`~vnstitch.allocate.policy.ApplicationClass`) on the forecast distribution at
   its lead time (a VM that boots in 2 steps is planned from the 2-step-ahead forecast),
   times ``resources_per_unit`` (e.g. CPU per Mbit/s), in whole units of its rules
   (the discrete newsvendor: the cheaper of the two unit counts around the quantile),
   through its own :class:`~vnstitch.allocate.policy.ScalingController` (hold time,
   hysteresis, cautious scale-in);
2. **aggregates** the plan per location: bandwidth per substrate link (every link of
   each stitch's path), VMs and GB per segment;
3. **checks** each location against the ``available`` capacity given as input. Where
   the plan fits, it asks the provider to reserve it. Where it does not, it asks the
   provider to scale the location up; if the provider refuses or fails, it asks the
   routing callback (:func:`vnstitch.allocate.reroute.routing_reroute` puts the routing
   layer's constrained shortest path behind it) for another path for the stitches
   crossing that link (largest first) that has room on every link, moves them, and
   finally reports what is still uncovered as a :class:`Shortfall` (the location then
   keeps what is available).

Every decision -- per consumer and per location -- is a :class:`Decision` carrying the
forecast value, quantile, available capacity, action and reason, appended to ``log``.
Provider requests are declarative, so repeating a step changes nothing. No clock: ``now``
is an argument.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.online import grid_from_quantiles, newsvendor_units
from vnstitch.allocate.policy import (
    Action,
    ApplicationClass,
    FloatArray,
    ScalingController,
    ScalingRules,
    interpolate_quantile,
)
from vnstitch.allocate.providers.base import Provider, ResourceKey, ResourceKind

#: routing callback: (stitch id, links to avoid, Mbit/s needed) -> new path or None.
RerouteFn = Callable[[str, frozenset[str], float], Sequence[str] | None]


@dataclass(frozen=True, slots=True)
class Consumer:
    """A stitch (``path`` of link ids) or a segment workload (``segment``)."""

    id: str
    kind: ResourceKind
    app: ApplicationClass
    rules: ScalingRules
    lead_steps: int = 1
    path: tuple[str, ...] = ()
    segment: str | None = None

    def __post_init__(self) -> None:
        if self.lead_steps < 1:
            raise AllocateError(f"consumer {self.id}: lead time must be >= 1 step")
        if self.kind is ResourceKind.BANDWIDTH and not self.path:
            raise AllocateError(f"consumer {self.id}: a bandwidth consumer needs a path")
        if self.kind is not ResourceKind.BANDWIDTH and not self.segment:
            raise AllocateError(f"consumer {self.id}: a {self.kind.value} consumer needs "
                                "a segment")


@dataclass(frozen=True, slots=True)
class QuantileForecast:
    """``values[k, h]``: level ``levels[k]`` of the demand ``h + 1`` steps ahead."""

    levels: tuple[float, ...]
    values: FloatArray


@dataclass(frozen=True, slots=True)
class Decision:
    now: float
    subject: str  # consumer id or resource key
    forecast: float  # demand at the chosen quantile (consumers) or planned total (keys)
    quantile: float | None
    available: float | None
    amount: float  # what is (to be) reserved
    action: str
    reason: str


@dataclass(frozen=True, slots=True)
class Shortfall:
    key: ResourceKey
    needed: float
    covered: float

    @property
    def missing(self) -> float:
        return self.needed - self.covered


@dataclass(slots=True)
class StepReport:
    amounts: dict[str, float] = field(default_factory=dict)  # per consumer
    per_location: dict[ResourceKey, float] = field(default_factory=dict)  # reserved
    reroutes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    shortfalls: list[Shortfall] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


class Allocator:
    """Plans and reserves capacity for a set of consumers (see the module docstring)."""

    def __init__(self, consumers: Sequence[Consumer], provider: Provider,
                 reroute: RerouteFn | None = None) -> None:
        ids = [c.id for c in consumers]
        if len(set(ids)) != len(ids):
            raise AllocateError("consumer ids must be unique")
        self.consumers = {c.id: c for c in consumers}
        self.paths = {c.id: c.path for c in consumers if c.kind is ResourceKind.BANDWIDTH}
        self.provider = provider
        self.reroute = reroute
        self._controllers = {c.id: ScalingController(c.rules, 1) for c in consumers}
        self.log: list[Decision] = []

    def step(self, now: float, forecasts: Mapping[str, QuantileForecast],
             available: Mapping[ResourceKey, float]) -> StepReport:
        report = StepReport()
        self._plan(now, forecasts, report)
        need = self._aggregate(report.amounts)
        self._check(now, need, available, report)
        self.log.extend(report.decisions)
        return report

    # -- 1. plan per consumer ----------------------------------------------------------
    def _plan(self, now: float, forecasts: Mapping[str, QuantileForecast],
              report: StepReport) -> None:
        for cid, c in self.consumers.items():
            fc = forecasts.get(cid)
            if fc is None:
                raise AllocateError(f"no forecast for consumer {cid}")
            if fc.values.ndim != 2 or fc.values.shape[1] < c.lead_steps:
                raise AllocateError(f"consumer {cid}: forecast covers "
                                    f"{fc.values.shape[-1]} steps, lead time is "
                                    f"{c.lead_steps}")
            q = c.app.quantile
            at_lead = fc.values[:, c.lead_steps - 1:c.lead_steps]  # (K, 1)
            demand_q = float(interpolate_quantile(fc.levels, at_lead, q)[0])
            # Whole units by the discrete newsvendor over the forecast distribution (the
            # cheaper of the two counts around the quantile), not the quantile rounded up.
            need = grid_from_quantiles(fc.levels, at_lead) * c.app.resources_per_unit
            target = newsvendor_units(np.maximum(need, 0.0), np.array([q]), c.rules.unit,
                                      c.rules.min_units, c.rules.max_units)
            units, actions = self._controllers[cid].step(target)
            amount = float(units[0]) * c.rules.unit
            report.amounts[cid] = amount
            action = Action(int(actions[0]))
            report.decisions.append(Decision(
                now, cid, demand_q, q, None, amount, action.name.lower(),
                f"{c.app.name}: q={q:.3f} of the {c.lead_steps}-step-ahead forecast = "
                f"{demand_q:.4g} x {c.app.resources_per_unit:g} -> {int(target[0])} unit(s) "
                f"of {c.rules.unit:g}; {action.name.lower()}"))

    # -- 2. aggregate per location ------------------------------------------------------
    def _aggregate(self, amounts: Mapping[str, float]) -> dict[ResourceKey, float]:
        need: dict[ResourceKey, float] = {}
        for cid, amount in amounts.items():
            c = self.consumers[cid]
            if c.kind is ResourceKind.BANDWIDTH:
                for link in self.paths[cid]:
                    key = ResourceKey(ResourceKind.BANDWIDTH, link)
                    need[key] = need.get(key, 0.0) + amount
            else:
                assert c.segment is not None  # checked in Consumer
                key = ResourceKey(c.kind, c.segment)
                need[key] = need.get(key, 0.0) + amount
        return need

    # -- 3. substrate check, scale, reroute, shortfall ---------------------------------
    def _check(self, now: float, need: dict[ResourceKey, float],
               available: Mapping[ResourceKey, float], report: StepReport) -> None:
        scaled: set[ResourceKey] = set()
        for key in sorted(need):
            have = available.get(key, 0.0)
            if need[key] <= have + 1e-9:
                continue
            res = self.provider.request(key, need[key], now)
            report.decisions.append(Decision(
                now, str(key), need[key], None, have, need[key],
                "scale-substrate" if res.ok else "scale-refused",
                f"plan {need[key]:.4g} > available {have:.4g}: provider {res.status.value}: "
                f"{res.reason}"))
            if res.ok:
                scaled.add(key)
            elif key.kind is ResourceKind.BANDWIDTH and self.reroute is not None:
                self._reroute_off(now, key, need, available, report)
        for key in sorted(need):
            have = available.get(key, 0.0)
            if key in scaled or need[key] <= have + 1e-9:
                target = need[key]
            else:
                # Scaling was refused or failed: keep what is already committed (capacity
                # bought earlier still serves), never drop below it to ``available``.
                target = min(need[key], max(have, self.provider.committed(key, now)))
            res = self.provider.request(key, target, now)
            report.per_location[key] = target if res.ok else self.provider.committed(key, now)
            report.decisions.append(Decision(
                now, str(key), need[key], None, have, target, f"reserve-{res.status.value}",
                res.reason))
            if target < need[key] - 1e-9:
                report.shortfalls.append(Shortfall(key, need[key], target))
                report.decisions.append(Decision(
                    now, str(key), need[key], None, have, target, "shortfall",
                    f"{need[key] - target:.4g} uncovered: provider could not scale"
                    + (" and no alternative path had room" if key.kind is
                       ResourceKind.BANDWIDTH else "")))

    def _reroute_off(self, now: float, key: ResourceKey, need: dict[ResourceKey, float],
                     available: Mapping[ResourceKey, float], report: StepReport) -> None:
        assert self.reroute is not None
        crossing = sorted((cid for cid, p in self.paths.items() if key.location in p),
                          key=lambda cid: -report.amounts.get(cid, 0.0))
        for cid in crossing:
            if need[key] <= available.get(key, 0.0) + 1e-9:
                return
            amount = report.amounts.get(cid, 0.0)
            old = self.paths[cid]
            new = self.reroute(cid, frozenset([key.location]), amount)
            if not new or key.location in new:
                continue
            added = [ResourceKey(ResourceKind.BANDWIDTH, link) for link in new
                     if link not in old]
            if any(need.get(k, 0.0) + amount > available.get(k, 0.0) + 1e-9 for k in added):
                report.decisions.append(Decision(
                    now, cid, amount, None, None, amount, "reroute-rejected",
                    f"path {'/'.join(new)} from routing lacks room for {amount:.4g}"))
                continue
            for link in old:
                k = ResourceKey(ResourceKind.BANDWIDTH, link)
                if link not in new:
                    need[k] = need.get(k, 0.0) - amount
            for k in added:
                need[k] = need.get(k, 0.0) + amount
            self.paths[cid] = tuple(new)
            report.reroutes[cid] = tuple(new)
            report.decisions.append(Decision(
                now, cid, amount, None, available.get(key, 0.0), amount, "reroute",
                f"link {key.location} cannot be scaled: moved {amount:.4g} from "
                f"{'/'.join(old)} to {'/'.join(new)}"))
