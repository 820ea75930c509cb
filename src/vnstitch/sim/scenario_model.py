"""The scenario file's schema: pydantic models, every problem named ``FILE:LINE:COL``.

Theory of operation: :class:`ScenarioFile` and its section models describe a scenario
file (``vnstitch schema scenario`` prints them as JSON Schema).
:func:`vnstitch.sim.scenario.parse_scenario` validates the data read from YAML with
positions (:mod:`vnstitch.yamlfile`) against them: every
problem of type, range or spelling in every section at once, unknown fields and
non-finite numbers refused. The ``traffic``, ``qos`` and ``allocation`` sections are
:mod:`vnstitch.sim.scenario_sections` (the ``qos`` policy is the model the daemon's
config shares, :mod:`vnstitch.routing.qos_model`); what relates them (classes named in
flows must exist in the policy) is checked by
:func:`~vnstitch.sim.scenario_sections.section_relations` together with the schema. A
failure is
:class:`ScenarioProblemsError` (a :class:`~vnstitch.sim.errors.ScenarioError` whose
``field`` is the first problem's, so callers that blame a field keep working).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, create_model, model_validator

from vnstitch.protocol.config import Timers
from vnstitch.sim.costs import MESSAGE_MS, TUNNEL_DOWN_MS, TUNNEL_UP_MS
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.picks import BUSIEST_ADJACENCY
from vnstitch.sim.scenario_sections import AllocationSection, ScenarioQos, TrafficSection
from vnstitch.sim.workload import FaultKind
from vnstitch.yamlfile import FileModel, field_problem


def _not_nan(x: float) -> float:
    if math.isnan(x):
        raise ValueError("must be a number, got nan")
    return x


def _finite_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _band(value: object) -> object:
    """A rate > 0, or [low, high] with 0 < low <= high."""
    if value is None or (_finite_number(value) and float(value) > 0):  # type: ignore[arg-type]
        return None if value is None else float(value)  # type: ignore[arg-type]
    if isinstance(value, list) and len(value) == 2 and all(_finite_number(x) for x in value) \
            and 0 < value[0] <= value[1]:
        return [float(x) for x in value]
    raise ValueError(f"must be a number > 0 or [low, high] with 0 < low <= high, got "
                     f"{value!r}")


def _link(value: object) -> object:
    """``[nodeA, nodeB]`` (node ids as text or integers) or ``busiest-adjacency``."""
    if value is None or value == BUSIEST_ADJACENCY:
        return value
    if isinstance(value, list) and len(value) == 2 and all(
            isinstance(x, str | int) and not isinstance(x, bool) and str(x) for x in value):
        return [str(x) for x in value]
    raise ValueError(f"must be [nodeA, nodeB] or {BUSIEST_ADJACENCY!r}, got {value!r}")


Text = Annotated[str, Field(min_length=1)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]


class VnsSection(FileModel):
    """How many VNs, on how many segments each."""

    count: Annotated[int, Field(ge=1, le=1_000_000)] = 8
    segments_per_vn: Annotated[int, Field(ge=1, le=10_000)] = 2
    non_members: Annotated[int, Field(ge=0, le=10_000, description="segments per VN that "
                                      "declare it without being members")] = 0


class RequestsSection(FileModel):
    """Stitch requests: when they arrive, what they ask for."""

    count: Annotated[int, Field(ge=0, le=10_000_000)] = 20
    arrival: Literal["poisson", "file"] = "poisson"
    start_s: NonNegative | None = Field(default=None, description="default: min(5 s, 10 %)")
    end_s: NonNegative | None = Field(default=None, description="default: 2/3 of the run")
    bandwidth_mbps: Annotated[float | list[float] | None, BeforeValidator(
        _band, json_schema_input_type=float | list[float] | None)] = Field(
        default=None, description="a rate, or [low, high] drawn uniformly")
    max_latency_ms: Annotated[float, Field(ge=0, allow_inf_nan=True),
                              AfterValidator(_not_nan)] | None = None
    hop_limit: Annotated[int, Field(ge=1, le=255)] = 16
    hold_s: Positive | None = None
    file: Text | None = Field(default=None, description="CSV of requests (arrival: file)")

    @model_validator(mode="after")
    def _related(self) -> RequestsSection:
        if self.start_s is not None and self.end_s is not None and self.end_s < self.start_s:
            raise field_problem("end_s", f"must be >= start_s ({self.start_s:g}), got "
                                f"{self.end_s:g}")
        if self.arrival == "file" and self.file is None:
            raise field_problem("file", "is required when arrival is 'file'")
        return self


class NetworkSection(FileModel):
    """Impairments of every simulated link."""

    loss: Fraction = 0.0
    duplicate: Fraction = 0.0
    reorder: Fraction = 0.0
    reorder_delay_ms: Annotated[float, Field(ge=0, le=60_000)] = 5.0
    jitter_ms: Annotated[float, Field(ge=0, le=60_000)] = 0.0


class RmCostsSection(FileModel):
    """What each Route Manager's work costs (vnstitch.sim.costs; defaults measured)."""

    message_ms: Annotated[float, Field(ge=0, le=60_000)] = MESSAGE_MS
    tunnel_up_ms: Annotated[float, Field(ge=0, le=600_000)] = TUNNEL_UP_MS
    tunnel_down_ms: Annotated[float, Field(ge=0, le=600_000)] = TUNNEL_DOWN_MS


class FaultEntry(FileModel):
    """One fault at a virtual time: crash/restart a segment, cut/repair a link, partition
    segments / heal a partition."""

    at: NonNegative
    action: Literal["crash", "restart", "cut_link", "repair_link", "partition", "heal"]
    segment: Text | None = Field(default=None, description="crash/restart: a segment id "
                                 "or busiest-transit")
    link: Annotated[str | list[str] | None, BeforeValidator(
        _link, json_schema_input_type=Literal["busiest-adjacency"] | list[str | int] | None)
    ] = Field(default=None, description="cut/repair: [nodeA, nodeB] or busiest-adjacency")
    segments: list[Text] | None = Field(default=None, description="partition: the group")
    name: Text = "partition"

    @model_validator(mode="after")
    def _needed(self) -> FaultEntry:
        kind = FaultKind(self.action)
        if kind in (FaultKind.CRASH, FaultKind.RESTART) and self.segment is None:
            raise field_problem("segment", f"is required for {kind.value}")
        if kind in (FaultKind.CUT_LINK, FaultKind.REPAIR_LINK) and self.link is None:
            raise field_problem("link", f"must be [nodeA, nodeB] or {BUSIEST_ADJACENCY!r} "
                                f"for {kind.value}, got None")
        if kind is FaultKind.PARTITION and not self.segments:
            raise field_problem("segments", "must be a non-empty list of segment ids, got "
                                f"{self.segments!r}")
        return self


def _protocol_section() -> type[FileModel]:
    """The ``protocol:`` section: any of the core's :class:`~vnstitch.protocol.config.Timers`
    by name, each with its type -- counts whole and >= 1, times and ratios > 0 (a grace
    of 0 RTTs is allowed) -- generated from the dataclass, so a new timer is in the schema
    as soon as the core has it."""
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(Timers):
        if isinstance(f.default, int):
            kind: Any = Annotated[int, Field(ge=1)]
        else:
            kind = Annotated[float, Field(ge=0) if f.name == "offer_grace_rtt" else
                             Field(gt=0)]
        fields[f.name] = (kind | None, Field(default=None, description=f"default {f.default}"))
    model: type[FileModel] = create_model(
        "ProtocolSection", __base__=FileModel,
        __doc__="The protocol core's timers (vnstitch.protocol.config.Timers).", **fields)
    return model


if TYPE_CHECKING:  # a model made at import; to the type checker, a file model
    ProtocolSection = FileModel
else:
    ProtocolSection = _protocol_section()


class ScenarioFile(FileModel):
    """A simulation scenario (also run live by ``vnstitch lab run``)."""

    name: Text | None = None
    topology: Text | None = Field(default=None, description="zoo:NAME | sndlib:NAME | path")
    segments: Annotated[int, Field(ge=1, le=100_000)] = 4
    seed: Annotated[int, Field(ge=0, le=2 ** 63 - 1)] = 1
    duration_s: Annotated[float, Field(ge=0.001, le=1e7)] = 60.0
    vns: VnsSection | None = None
    requests: RequestsSection | None = None
    network: NetworkSection | None = None
    rm_costs: RmCostsSection | None = Field(
        default=None, description="time a Route Manager takes per message and per tunnel "
        "end (vnstitch.sim.costs); absent: no cost")
    faults: list[FaultEntry] | None = None
    protocol: ProtocolSection | None = Field(
        default=None, description="timers passed to the protocol core")
    traffic: TrafficSection | None = Field(
        default=None, description="flows, matrix, monitor, reroute: see "
        "vnstitch.sim.traffic_spec")
    qos: ScenarioQos | None = Field(
        default=None, description="QoS classes (vnstitch.routing.qos) and borrow")
    allocation: AllocationSection | None = Field(
        default=None, description="forecast-driven reservations: see "
        "vnstitch.sim.allocation_spec")


class ScenarioProblemsError(ScenarioError):
    """Every problem found in one scenario (``problems``: one line each); ``field`` and
    ``problem`` are the first one's."""

    def __init__(self, source: str, field: str, problem: str, lines: list[str]) -> None:
        super().__init__(source, field, problem)
        self.problems = lines
        self.args = ("\n".join(lines),)




__all__ = ["FaultEntry", "NetworkSection", "RequestsSection", "RmCostsSection",
           "ScenarioFile", "ScenarioProblemsError", "VnsSection"]
