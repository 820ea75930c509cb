"""The ``allocation:`` section of a scenario, validated field by field.

Theory of operation: :func:`parse_allocation` turns the raw YAML value into an
:class:`AllocationSpec` or raises :class:`~vnstitch.sim.errors.ScenarioError` naming the
dotted field (``allocation.provider.outages[1].end``). It needs the already parsed
``traffic:`` section (allocation manages some of its QoS classes) and checks every class
name against it. Unknown fields are errors, as in :mod:`vnstitch.sim.traffic_spec`.
What the simulator does with it is in :mod:`vnstitch.sim.allocation`::

    allocation:
      classes: [video]          # QoS classes whose flows get reservations (default:
                                # traffic.stitched_classes)
      forecaster: naive         # naive | seasonal_naive | ets (vnstitch.forecast models)
      season: 1                 # season in monitoring intervals (seasonal_naive, ets)
      warmup_intervals: 3       # measured intervals before the first decision (>= 2)
      refit_every: 12           # decisions between refits; state filtered forward between
      error_window: 60          # most recent one-step errors kept for the quantiles
      unit_mbps: 50             # reservations come in whole units of this
      hold_intervals: 2         # a reservation is held this many decisions before shrinking
      hysteresis: 0.05          # ... and shrinks only when the target is 5 % lower
      scale_in_window: 2        # ... and only to the highest target of the last W decisions
      reroute: true             # ask routing for another path when the provider refuses
      log_limit: 200            # decisions kept in the JSON summary (all are counted)
      costs:                    # newsvendor costs per class (default: by class name from
        video: {c_under: 20, c_over: 1}   # vnstitch.allocate.policy.DEFAULT_CLASSES)
      provider:                 # extra link capacity bought from a simulated provider
        turn_up_s: 20           # from an accepted request to usable capacity
        quota_mbps: 1500        # extra capacity per directed link, at most
        price_per_mbps_hour: 0.05
        outages: [{start: 200, end: 260}]  # requests fail inside these windows
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.policy import DEFAULT_CLASSES, ApplicationClass
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.fields import FieldReader

#: Forecasters the simulator may use: cheap to refit on a few dozen points.
FORECASTERS = ("naive", "seasonal_naive", "ets")
#: QoS class names that mean a default application class under another name.
CLASS_ALIASES = {"video": "video_conferencing", "voice": "video_conferencing",
                 "mail": "email"}


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    turn_up_s: float = 0.0
    quota_mbps: float = math.inf
    price_per_mbps_hour: float = 0.0
    outages: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class AllocationSpec:
    classes: tuple[str, ...]
    apps: tuple[tuple[str, ApplicationClass], ...]  # (QoS class, its newsvendor costs)
    forecaster: str = "naive"
    season: int = 1
    warmup_intervals: int = 3
    refit_every: int = 12
    error_window: int = 60
    unit_mbps: float = 50.0
    hold_intervals: int = 2
    hysteresis: float = 0.05
    scale_in_window: int = 2
    reroute: bool = True
    log_limit: int = 200
    provider: ProviderSpec = ProviderSpec()

    def app(self, qos_class: str) -> ApplicationClass:
        return dict(self.apps)[qos_class]


def _provider(source: str, data: object) -> ProviderSpec:
    r = FieldReader(source, "allocation.provider", data)
    raw = r.raw("outages")
    outages: list[tuple[float, float]] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise r.fail("outages", f"must be a list of {{start, end}}, got {raw!r}")
        for i, item in enumerate(raw):
            o = FieldReader(source, f"allocation.provider.outages[{i}]", item)
            start = o.number("start", math.nan, lo=0.0)
            end = o.number("end", math.nan, lo=0.0)
            if math.isnan(start):
                raise o.fail("start", "is required (virtual seconds)")
            if math.isnan(end) or end <= start:
                raise o.fail("end", f"must be a number > start ({start:g}), got {end!r}")
            o.finish()
            outages.append((start, end))
    spec = ProviderSpec(
        turn_up_s=r.number("turn_up_s", 0.0, hi=1e7, lo=0.0),
        quota_mbps=r.number("quota_mbps", math.inf, allow_inf=True, lo=0.0),
        price_per_mbps_hour=r.number("price_per_mbps_hour", 0.0, lo=0.0),
        outages=tuple(outages))
    r.finish()
    return spec


def _app(source: str, cls: str, data: object) -> ApplicationClass:
    if data is None:
        default = DEFAULT_CLASSES.get(CLASS_ALIASES.get(cls, cls))
        if default is None:
            raise ScenarioError(source, f"allocation.costs.{cls}",
                                f"class {cls!r} has no default costs (known: "
                                f"{sorted(DEFAULT_CLASSES)}); give {{c_under, c_over}}")
        return ApplicationClass(cls, default.c_under, default.c_over)
    r = FieldReader(source, f"allocation.costs.{cls}", data)
    c_under = r.number("c_under", math.nan, lo=0.0)
    if math.isnan(c_under):
        raise r.fail("c_under", "is required (cost of a unit of unserved demand)")
    c_over = r.number("c_over", 1.0, lo=0.0)
    r.finish()
    try:
        return ApplicationClass(cls, c_under, c_over)
    except AllocateError as exc:
        raise r.fail("", str(exc)) from None


def parse_allocation(source: str, data: object, classes: set[str],
                     stitched: tuple[str, ...]) -> AllocationSpec | None:
    """Validate ``allocation:`` against the traffic section's ``classes`` (or ``None``)."""
    if data is None:
        return None
    r = FieldReader(source, "allocation", data)
    raw = r.raw("classes")
    managed: tuple[str, ...]
    if raw is None:
        managed = stitched
    else:
        if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
            raise r.fail("classes", f"must be a non-empty list of class names, got {raw!r}")
        for i, x in enumerate(raw):
            if x not in classes:
                raise r.fail(f"classes[{i}]", f"unknown class {x!r}; have {sorted(classes)}")
        managed = tuple(dict.fromkeys(raw))
    costs = r.raw("costs")
    if costs is not None and not isinstance(costs, Mapping):
        raise r.fail("costs", f"must map class names to {{c_under, c_over}}, got {costs!r}")
    given: Mapping[str, object] = costs or {}
    for name in given:
        if name not in managed:
            raise r.fail(f"costs.{name}", f"{name!r} is not an allocated class {list(managed)}")
    apps = tuple((c, _app(source, c, given.get(c))) for c in managed)
    forecaster = r.raw("forecaster")
    if forecaster is None:
        forecaster = "naive"
    if forecaster not in FORECASTERS:
        raise r.fail("forecaster", f"must be one of {list(FORECASTERS)}, got {forecaster!r}")
    spec = AllocationSpec(
        classes=managed, apps=apps, forecaster=str(forecaster),
        season=r.integer("season", 1, lo=1, hi=100_000),
        warmup_intervals=r.integer("warmup_intervals", 3, lo=2, hi=100_000),
        refit_every=r.integer("refit_every", 12, lo=1, hi=100_000),
        error_window=r.integer("error_window", 60, lo=1, hi=1_000_000),
        unit_mbps=r.number("unit_mbps", 50.0, lo_open=True, lo=0.0),
        hold_intervals=r.integer("hold_intervals", 2, lo=0, hi=100_000),
        hysteresis=r.number("hysteresis", 0.05, hi=0.99, lo=0.0),
        scale_in_window=r.integer("scale_in_window", 2, lo=1, hi=100_000),
        reroute=r.flag("reroute", True),
        log_limit=r.integer("log_limit", 200, lo=0, hi=10_000_000),
        provider=_provider(source, r.raw("provider")),
    )
    r.finish()
    return spec
