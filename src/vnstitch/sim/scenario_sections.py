"""The schema of a scenario's ``traffic:``, ``qos:`` and ``allocation:`` sections.

Theory of operation: pydantic models for the three sections (the formats are described in
:mod:`vnstitch.sim.traffic_spec` and :mod:`vnstitch.sim.allocation_spec`); ``qos:`` is
the QoS policy of :mod:`vnstitch.routing.qos_model` (the same model the daemon's config
reads) with ``borrow``. Each entry checks itself (a flow's ``dst`` differs from its
``src``, schedule steps go forward in time, a matrix's mix sums to 1, an outage ends
after it starts). What relates the sections to each other -- a class named in a flow,
a reroute, a mix or an allocation must be one of the policy's; sections that need each
other; flow names unique -- is :func:`section_relations`, run over the raw data entry by
entry, so its problems are reported together with the schema's.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.policy import DEFAULT_CLASSES, ApplicationClass
from vnstitch.routing.monitor import MonitorConfig
from vnstitch.routing.qos_model import (
    QosBorrowSection,
    class_names,
    policy_relations,
    to_policy,
    valid_entries,
)
from vnstitch.sim.allocation_spec import AllocationSpec, ProviderSpec
from vnstitch.sim.traffic_spec import FlowSpec, MatrixSpec, RerouteSpec, TrafficSpec
from vnstitch.yamlfile import FileModel, Problem, field_problem

#: QoS class names that mean a default application class under another name.
CLASS_ALIASES = {"video": "video_conferencing", "voice": "video_conferencing",
                 "mail": "email"}

Text = Annotated[str, Field(min_length=1)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Ratio = Annotated[float, Field(gt=0, le=10)]


def _name(value: object) -> object:
    """A name; YAML reads a numeric name (``src: 7``) as an integer, which is accepted."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Name = Annotated[str, BeforeValidator(_name, json_schema_input_type=str | int),
                 Field(min_length=1)]


def _rate(value: object) -> object:
    """Mbit/s (a number >= 0) or ``"N%"`` (percent of the flow path's narrowest link)."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            pct = float(value[:-1])
        except ValueError:
            raise ValueError(f"must be a number >= 0 or \"N%\", got {value!r}") from None
        if not 0.0 <= pct <= 1000.0:
            raise ValueError(f"percent must be between 0 and 1000, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number >= 0 or \"N%\", got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"must be finite, got {value!r}")
    if value < 0:
        raise ValueError(f"must be >= 0, got {value!r}")
    return float(value)


Rate = Annotated[float | str, BeforeValidator(
    _rate, json_schema_input_type=Annotated[float, Field(ge=0)] | Annotated[
        str, Field(pattern=r"^[0-9.]+%$")])]


def is_percent(rate: float | str | None) -> bool:
    return isinstance(rate, str)


def rate_value(rate: float | str) -> float:
    """Mbit/s, or the percent of a ``"N%"`` rate."""
    return float(rate[:-1]) if isinstance(rate, str) else rate


# -- qos: and traffic: -------------------------------------------------------------------


class ScenarioQos(QosBorrowSection):
    """QoS classes of the simulated links (:mod:`vnstitch.routing.qos`) and ``borrow``."""


class ScheduleStep(FileModel):
    """From ``at`` (virtual seconds) on, the flow offers ``mbps``."""

    at: NonNegative
    mbps: Rate


class FlowEntry(FileModel):
    """A flow of one QoS class between two substrate nodes (of VN ``vn``)."""

    name: Name
    qos_class: Name = Field(alias="class")
    src: Name
    dst: Name
    vn: Annotated[int, Field(ge=1, le=2 ** 24 - 1)] | None = Field(
        default=None, description="the VN whose stitch it rides; none: background")
    mbps: Rate
    reserve_mbps: Rate | None = Field(default=None, description="added to the VN's "
                                      "stitch reservation (default: the first rate)")
    schedule: list[ScheduleStep] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FlowEntry:
        if self.src == self.dst:
            raise field_problem("dst", f"must differ from src ({self.src!r})")
        steps = self.schedule or []
        for j in range(1, len(steps)):
            if steps[j].at <= steps[j - 1].at:
                raise field_problem(f"schedule[{j}].at", f"must be after the previous "
                                    f"step ({steps[j - 1].at:g} s), got {steps[j].at:g}")
        rates = [self.mbps, self.reserve_mbps, *(s.mbps for s in steps)]
        if len({is_percent(r) for r in rates if r is not None}) > 1:
            raise field_problem("mbps", "write every rate of a flow the same way: all in "
                                "Mbit/s or all as \"N%\" of the path's narrowest link")
        return self


class MonitorSection(FileModel):
    """Congestion detection on link utilisation, with hysteresis."""

    high: Ratio = 0.8
    low: Ratio = 0.6
    raise_samples: Annotated[int, Field(ge=1, le=1000)] = 2
    clear_samples: Annotated[int, Field(ge=1, le=1000)] = 3

    @model_validator(mode="after")
    def _ordered(self) -> MonitorSection:
        if self.low >= self.high:
            raise field_problem("low", f"must be below high ({self.high:g}), got "
                                f"{self.low:g}")
        return self


class RerouteSection(FileModel):
    """How congested flows move to other paths."""

    k: Annotated[int, Field(ge=1, le=64)] = 4
    target: Ratio = 0.75
    hold_down_s: NonNegative = 60.0
    install_s: NonNegative = 0.2
    returns: bool = True
    return_below: Ratio = 0.45
    classes: list[Text] | None = Field(default=None, description="null: any class moves")


def _fraction(x: float) -> float:
    if not 0 < x <= 1:
        raise ValueError(f"must be a fraction in (0, 1], got {x:g}")
    return x


class MatrixSection(FileModel):
    """Background flows from a traffic-matrix CSV (``time,SRC->DST,...`` in Mbit/s)."""

    file: Text = Field(description="data:REL (under $VNSTITCH_DATA), relative to the "
                       "scenario, or absolute")
    mix: Annotated[dict[str, Annotated[float, AfterValidator(_fraction)]],
                   Field(min_length=1, description="class name -> fraction of each pair")]
    scale: Positive = 1.0
    start_row: Annotated[int, Field(ge=0, le=10 ** 9)] = 0
    step_s: Positive = 5.0
    min_mbps: NonNegative = 0.0

    @model_validator(mode="after")
    def _sums_to_one(self) -> MatrixSection:
        total = sum(self.mix.values())
        if abs(total - 1.0) > 1e-6:
            raise field_problem("mix", f"fractions must sum to 1, got {total:g}")
        return self


class TrafficSection(FileModel):
    """Data traffic on the simulated links: flows of VNs, a background matrix, the
    congestion monitor and reroute."""

    interval_s: Annotated[float, Field(gt=0, le=1e6)] = 5.0
    stitch_at_s: NonNegative | None = Field(
        default=None, description="ask for each VN's stitch at this time (virtual "
        "seconds); default: on demand, once traffic is offered and a route is known")
    stitched_classes: list[Text] | None = Field(
        default=None, description="default: the classes of the policy's first priority")
    monitor: MonitorSection | None = None
    reroute: RerouteSection | None = None
    flows: list[FlowEntry] | None = None
    matrix: MatrixSection | None = None

    @model_validator(mode="after")
    def _has_traffic(self) -> TrafficSection:
        if not self.flows and self.matrix is None:
            raise field_problem("flows", "must be a non-empty list of flows (or give a "
                                "matrix)")
        return self


# -- allocation: -------------------------------------------------------------------------


class OutageEntry(FileModel):
    start: NonNegative
    end: NonNegative

    @model_validator(mode="after")
    def _ordered(self) -> OutageEntry:
        if self.end <= self.start:
            raise field_problem("end", f"must be > start ({self.start:g}), got "
                                f"{self.end:g}")
        return self


def _not_nan(x: float) -> float:
    if math.isnan(x):
        raise ValueError("must be a number, got nan")
    return x


class ProviderSection(FileModel):
    """Extra link capacity bought from a simulated provider."""

    turn_up_s: Annotated[float, Field(ge=0, le=1e7)] = 0.0
    quota_mbps: Annotated[float, Field(ge=0, allow_inf_nan=True),
                          AfterValidator(_not_nan)] = Field(
        default=math.inf, description="per directed link; .inf: no limit")
    price_per_mbps_hour: NonNegative = 0.0
    outages: list[OutageEntry] = Field(default_factory=list)


class CostEntry(FileModel):
    """Newsvendor costs of a class: a unit of unserved demand, a unit of idle capacity."""

    c_under: NonNegative
    c_over: NonNegative = 1.0

    @model_validator(mode="after")
    def _valid(self) -> CostEntry:
        try:
            ApplicationClass("class", self.c_under, self.c_over)
        except AllocateError as exc:
            raise ValueError(str(exc)) from None
        return self


class AllocationSection(FileModel):
    """Forecast-driven reservations for the traffic's flows (:mod:`vnstitch.sim.allocation`)."""

    classes: Annotated[list[Text], Field(min_length=1)] | None = Field(
        default=None, description="default: traffic.stitched_classes")
    forecaster: Literal["naive", "seasonal_naive", "ets"] = "naive"
    season: Annotated[int, Field(ge=1, le=100_000)] = 1
    warmup_intervals: Annotated[int, Field(ge=2, le=100_000)] = 3
    refit_every: Annotated[int, Field(ge=1, le=100_000)] = 12
    error_window: Annotated[int, Field(ge=1, le=1_000_000)] = 60
    unit_mbps: Positive = 50.0
    hold_intervals: Annotated[int, Field(ge=0, le=100_000)] = 2
    hysteresis: Annotated[float, Field(ge=0, le=0.99)] = 0.05
    scale_in_window: Annotated[int, Field(ge=1, le=100_000)] = 2
    reroute: bool = True
    log_limit: Annotated[int, Field(ge=0, le=10_000_000)] = 200
    costs: dict[str, CostEntry] | None = Field(
        default=None, description="per class (default: by class name from "
        "vnstitch.allocate.policy.DEFAULT_CLASSES)")
    provider: ProviderSection | None = None


def default_costs(qos_class: str) -> ApplicationClass | None:
    """The default costs of a class by its name (or an alias), else ``None``."""
    return DEFAULT_CLASSES.get(CLASS_ALIASES.get(qos_class, qos_class))


def stitched_default(qos: ScenarioQos) -> tuple[str, ...]:
    """The classes stitched by default: those of the policy's first priority."""
    top = min(c.priority for c in qos.classes)
    return tuple(sorted(c.name for c in qos.classes if c.priority == top))


# -- relations between the sections ------------------------------------------------------


def _one(model: type[Any], raw: object) -> Any:
    found = valid_entries(model, [raw])
    return found[0][1] if found else None


def section_relations(data: object) -> list[Problem]:
    """What relates ``qos``, ``traffic`` and ``allocation`` (every valid part of them)."""
    top = data if isinstance(data, dict) else {}
    qos, traffic, alloc = top.get("qos"), top.get("traffic"), top.get("allocation")
    out: list[Problem] = []
    if traffic is not None and qos is None:
        out.append(Problem(("qos",), "is required when there is a traffic section (the "
                           "classes flows belong to)"))
    if qos is not None and traffic is None:
        out.append(Problem(("traffic",), "is required when there is a qos section"))
    if alloc is not None and traffic is None:
        out.append(Problem(("allocation",), "needs a traffic (and qos) section: it "
                           "reserves bandwidth for the traffic's flows"))
    out += policy_relations(qos, ("qos",))
    t = traffic if isinstance(traffic, dict) else {}
    seen: dict[str, int] = {}
    for i, f in valid_entries(FlowEntry, t.get("flows")):
        if f.name in seen:
            out.append(Problem(("traffic", "flows", i, "name"), f"duplicate flow name "
                               f"{f.name!r} (also flows[{seen[f.name]}])"))
        seen.setdefault(f.name, i)
    classes = class_names(qos)
    if classes is None:
        return out  # references are checked against a complete list of classes only
    have = f"the qos section has {', '.join(sorted(classes))}"

    def unknown(loc: tuple[str | int, ...], name: str) -> None:
        if name not in classes:
            out.append(Problem(loc, f"unknown class {name!r}; {have}"))

    for i, f in valid_entries(FlowEntry, t.get("flows")):
        unknown(("traffic", "flows", i, "class"), f.qos_class)
    reroute = _one(RerouteSection, t.get("reroute") or {})
    for j, name in enumerate(reroute.classes or () if reroute else ()):
        unknown(("traffic", "reroute", "classes", j), name)
    traffic_m = _one(TrafficSection, traffic) if traffic is not None else None
    for j, name in enumerate(t.get("stitched_classes") or ()
                             if isinstance(t.get("stitched_classes"), list) else ()):
        if isinstance(name, str):
            unknown(("traffic", "stitched_classes", j), name)
    matrix = _one(MatrixSection, t.get("matrix")) if t.get("matrix") is not None else None
    for name in matrix.mix if matrix else ():
        unknown(("traffic", "matrix", "mix", name), name)
    a = _one(AllocationSection, alloc) if alloc is not None else None
    if a is None:
        return out
    for j, name in enumerate(a.classes or ()):
        unknown(("allocation", "classes", j), name)
    q = _one(ScenarioQos, qos)
    managed: list[str] = list(a.classes) if a.classes else (
        list(traffic_m.stitched_classes) if traffic_m and traffic_m.stitched_classes
        else list(stitched_default(q)) if q else [])
    for name in a.costs or {}:
        if name not in managed:
            out.append(Problem(("allocation", "costs", name), f"{name!r} is not an "
                               f"allocated class ({', '.join(managed)})"))
    for name in managed:
        if name in classes and name not in (a.costs or {}) and default_costs(name) is None:
            out.append(Problem(("allocation", "costs", name), f"class {name!r} has no default "
                               f"costs (known: {', '.join(sorted(DEFAULT_CLASSES))}); give "
                               f"{{c_under, c_over}}"))
    return out


# -- the valid sections as the simulator's specs -----------------------------------------


def _flow(f: FlowEntry, path: str) -> FlowSpec:
    steps = tuple((s.at, rate_value(s.mbps)) for s in f.schedule or ())
    return FlowSpec(f.name, f.qos_class, f.src, f.dst, rate_value(f.mbps), steps, path,
                    f.vn, None if f.reserve_mbps is None else rate_value(f.reserve_mbps),
                    percent=is_percent(f.mbps))


def traffic_spec(qos: ScenarioQos, t: TrafficSection) -> TrafficSpec:
    """The valid ``qos:`` and ``traffic:`` sections (relations checked) as a spec."""
    mon, rr, mx = t.monitor or MonitorSection(), t.reroute or RerouteSection(), t.matrix
    matrix = None if mx is None else MatrixSpec(
        mx.file, tuple(mx.mix.items()), mx.scale, mx.start_row, mx.step_s, mx.min_mbps)
    return TrafficSpec(
        to_policy(qos), qos.borrow, t.interval_s,
        MonitorConfig(high=mon.high, low=mon.low, raise_samples=mon.raise_samples,
                      clear_samples=mon.clear_samples),
        RerouteSpec(rr.k, rr.target, rr.hold_down_s, rr.install_s, rr.returns,
                    rr.return_below, None if rr.classes is None else tuple(rr.classes)),
        tuple(_flow(f, f"traffic.flows[{i}]") for i, f in enumerate(t.flows or ())),
        tuple(t.stitched_classes) if t.stitched_classes is not None
        else stitched_default(qos), matrix, stitch_at_s=t.stitch_at_s)


def allocation_spec(a: AllocationSection, stitched: tuple[str, ...]) -> AllocationSpec:
    """The valid ``allocation:`` section (relations checked) as a spec."""
    managed = tuple(dict.fromkeys(a.classes)) if a.classes else stitched
    costs = a.costs or {}
    apps = []
    for c in managed:
        given = costs.get(c)
        if given is not None:
            apps.append((c, ApplicationClass(c, given.c_under, given.c_over)))
        else:
            d = default_costs(c)
            assert d is not None  # section_relations refused it otherwise
            apps.append((c, ApplicationClass(c, d.c_under, d.c_over)))
    p = a.provider or ProviderSection()
    provider = ProviderSpec(p.turn_up_s, p.quota_mbps, p.price_per_mbps_hour,
                            tuple((o.start, o.end) for o in p.outages))
    return AllocationSpec(
        classes=managed, apps=tuple(apps), forecaster=a.forecaster, season=a.season,
        warmup_intervals=a.warmup_intervals, refit_every=a.refit_every,
        error_window=a.error_window, unit_mbps=a.unit_mbps,
        hold_intervals=a.hold_intervals, hysteresis=a.hysteresis,
        scale_in_window=a.scale_in_window, reroute=a.reroute, log_limit=a.log_limit,
        provider=provider)
