"""Scenarios: YAML files describing a simulation, validated against one schema.

Theory of operation: a scenario file is a YAML mapping with the sections below; every
section and field is optional and has a default, unknown fields are errors (a typo must
not silently fall back to a default). :func:`parse_scenario` reads the YAML with each
value's position and validates it against :class:`~vnstitch.sim.scenario_model.ScenarioFile`
(the pydantic model ``vnstitch schema scenario`` publishes); every problem is reported
at once as ``FILE:LINE:COL: faults[2].segment: problem``
(:class:`~vnstitch.sim.scenario_model.ScenarioProblemsError`, a
:class:`~vnstitch.sim.errors.ScenarioError`), then the valid file becomes a frozen
:class:`Scenario`.
Segment names and substrate links can only be checked once the topology is loaded and
partitioned, which :mod:`vnstitch.sim.runner` does, with the same field paths.

    name: faulty            # free text
    topology: zoo:Abilene   # zoo:NAME | sndlib:NAME | path (relative to the file)
    segments: 5
    seed: 1
    duration_s: 60
    vns: {count: 8, segments_per_vn: 2}   # non_members: K (declare it, not members)
    requests: {count: 30, arrival: poisson, start_s: 5, end_s: 40,
               bandwidth_mbps: [10, 100], max_latency_ms: null, hop_limit: 16,
               hold_s: null, file: null}          # arrival: file reads CSV ``file``
    network: {loss: 0.0, duplicate: 0.0, reorder: 0.0, reorder_delay_ms: 5, jitter_ms: 0}
    rm_costs: {message_ms: 2.2, tunnel_up_ms: 382, tunnel_down_ms: 336}  # optional: each
        # Route Manager's time per datagram and per tunnel end (vnstitch.sim.costs;
        # these are the measured defaults, ``rm_costs: {}`` takes them); absent: none
    faults:
      - {at: 30, action: crash, segment: busiest-transit}   # or a segment id
      - {at: 40, action: restart, segment: busiest-transit}
      - {at: 20, action: cut_link, link: [nodeA, nodeB]}
      - {at: 25, action: repair_link, link: [nodeA, nodeB]}
      - {at: 20, action: cut_link, link: busiest-adjacency}  # every link between the two
        # segments most stitches cross (not a bridge), picked when it fires; repair_link
        # with the same alias restores it (see vnstitch.sim.picks)
      - {at: 30, action: partition, segments: [seg01, seg02], name: p1}
      - {at: 45, action: heal, name: p1}
    protocol: {announce_interval_s: 1.0}   # passed to the core factory
    qos: {...}       # QoS classes and traffic flows with congestion reroute:
    traffic: {...}   # see vnstitch.sim.traffic_spec
    allocation: {...}  # forecast-driven reservations for the traffic: see
                       # vnstitch.sim.allocation_spec and vnstitch.sim.allocation
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path

from vnstitch.sim.costs import RmCosts
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.network import Impairments
from vnstitch.sim.picks import BUSIEST_ADJACENCY
from vnstitch.sim.scenario_model import (
    FaultEntry,
    NetworkSection,
    RequestsSection,
    ScenarioFile,
    ScenarioProblemsError,
    VnsSection,
)
from vnstitch.sim.scenario_sections import allocation_spec, section_relations, traffic_spec
from vnstitch.sim.traffic_spec import TrafficSpec
from vnstitch.sim.workload import FaultKind
from vnstitch.yamlfile import (
    YamlDocument,
    YamlSyntaxError,
    dotted,
    load_yaml,
    validate_problems,
)

BUILTIN = ("small", "medium", "faulty", "congestion", "abilene-tm", "allocation",
           "transit-crash", "nonmember", "story")


@dataclass(frozen=True, slots=True)
class VnSpec:
    count: int = 8
    segments_per_vn: int = 2
    #: Segments per VN that declare it without being members (:mod:`vnstitch.sim.membership`).
    non_members: int = 0


@dataclass(frozen=True, slots=True)
class RequestSpec:
    count: int = 20
    arrival: str = "poisson"
    #: Arrival window; ``None``: from min(5 s, 10 %) to two thirds of the run.
    start_s: float | None = None
    end_s: float | None = None
    bandwidth_mbps: tuple[float, float] = (10.0, 100.0)
    max_latency_ms: float = math.inf
    hop_limit: int = 16
    hold_s: float | None = None
    file: str | None = None


@dataclass(frozen=True, slots=True)
class FaultSpec:
    at: float
    action: FaultKind
    segment: str | None = None
    link: tuple[str, str] | None = None
    segments: tuple[str, ...] = ()
    name: str = "partition"
    field: str = ""  # where it came from, for errors found later
    #: ``link: busiest-adjacency`` (resolved when the fault fires)
    link_pick: str | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str = "default"
    topology: str = "zoo:Abilene"
    segments: int = 4
    seed: int = 1
    duration_s: float = 60.0
    vns: VnSpec = field(default_factory=VnSpec)
    requests: RequestSpec = field(default_factory=RequestSpec)
    network: Impairments = field(default_factory=Impairments)
    #: Route Managers' time costs (``rm_costs:``); None: cost-free
    rm_costs: RmCosts | None = None
    faults: tuple[FaultSpec, ...] = ()
    protocol: dict[str, float] = field(default_factory=dict)
    #: Data traffic, QoS and congestion reroute (``traffic:`` + ``qos:``, see
    #: :mod:`vnstitch.sim.traffic_spec`); ``None``: control plane only.
    traffic: TrafficSpec | None = None
    source: str = "<defaults>"
    base_dir: str | None = None


def request_window(sc: Scenario) -> tuple[float, float]:
    """The request arrival window, defaults filled in from the duration."""
    rq = sc.requests
    start = rq.start_s if rq.start_s is not None else min(5.0, sc.duration_s / 10)
    end = rq.end_s if rq.end_s is not None else max(start, sc.duration_s * 2 / 3)
    return start, end


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (``builtin:NAME`` names a shipped one)."""
    return parse_scenario(*read_scenario_text(path))


def read_scenario_text(path: str | Path) -> tuple[str, str, str | None]:
    """The YAML text of a scenario, its source name and the folder its relative paths
    are read from (``None`` for a built-in one)."""
    spec = str(path)
    if spec.startswith("builtin:"):
        name = spec.removeprefix("builtin:")
        if name not in BUILTIN:
            raise ScenarioError(spec, "", f"no built-in scenario {name!r}; have {BUILTIN}")
        text = (importlib.resources.files("vnstitch.sim") / "scenarios" / f"{name}.yaml") \
            .read_text(encoding="utf-8")
        return text, spec, None
    p = Path(spec)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(spec, "", f"cannot read: {exc.strerror or exc}") from None
    return text, spec, str(p.resolve().parent)


def parse_scenario(text: str, source: str, base_dir: str | None) -> Scenario:
    """Validate scenario ``text``; every problem named ``FILE:LINE:COL: field: problem``."""
    try:
        doc = load_yaml(text, source, what="scenario")
    except YamlSyntaxError as exc:
        raise ScenarioProblemsError(source, "", str(exc), [str(exc)]) from None
    return _from_document(doc, base_dir)


def scenario_yaml(text: str, source: str) -> object:
    """The parsed YAML document of a scenario (plain data); syntax errors name line and
    column."""
    try:
        return load_yaml(text, source, what="scenario").data
    except YamlSyntaxError as exc:
        raise ScenarioProblemsError(source, "", str(exc), [str(exc)]) from None


def scenario_from_mapping(data: object, source: str = "<scenario>",
                          base_dir: str | None = None) -> Scenario:
    """Validate an already parsed document (no positions: problems name the field)."""
    return _from_document(YamlDocument(source, data), base_dir)


def _from_document(doc: YamlDocument, base_dir: str | None) -> Scenario:
    if doc.data is None:
        doc.data = {}
    model, problems = validate_problems(ScenarioFile, doc, section_relations)
    if model is None:
        lines = list(dict.fromkeys(doc.line(p) for p in problems))
        first = problems[0]
        raise ScenarioProblemsError(doc.source, dotted(first.loc), first.problem, lines)
    return _scenario(model, doc.source, base_dir)


def _scenario(m: ScenarioFile, source: str, base_dir: str | None) -> Scenario:
    v, rq, net = m.vns or VnsSection(), m.requests or RequestsSection(), \
        m.network or NetworkSection()
    bw = rq.bandwidth_mbps
    band = (10.0, 100.0) if bw is None else (bw[0], bw[1]) if isinstance(bw, list) \
        else (bw, bw)
    requests = RequestSpec(
        count=rq.count, arrival=rq.arrival, start_s=rq.start_s, end_s=rq.end_s,
        bandwidth_mbps=band,
        max_latency_ms=math.inf if rq.max_latency_ms is None else rq.max_latency_ms,
        hop_limit=rq.hop_limit, hold_s=rq.hold_s, file=rq.file)
    faults = tuple(_fault(f, f"faults[{i}]") for i, f in enumerate(m.faults or ()))
    return Scenario(
        name=m.name or "default", topology=m.topology or "zoo:Abilene",
        segments=m.segments, seed=m.seed, duration_s=m.duration_s,
        vns=VnSpec(v.count, v.segments_per_vn, v.non_members), requests=requests,
        network=Impairments(loss=net.loss, duplicate=net.duplicate, reorder=net.reorder,
                            reorder_delay_ms=net.reorder_delay_ms, jitter_ms=net.jitter_ms),
        rm_costs=None if m.rm_costs is None else RmCosts(
            m.rm_costs.message_ms, m.rm_costs.tunnel_up_ms, m.rm_costs.tunnel_down_ms),
        faults=faults, protocol={} if m.protocol is None else
        m.protocol.model_dump(exclude_none=True),
        traffic=_traffic(m), source=source, base_dir=base_dir)


def _fault(f: FaultEntry, path: str) -> FaultSpec:
    kind = FaultKind(f.action)
    if kind in (FaultKind.CUT_LINK, FaultKind.REPAIR_LINK):
        if not isinstance(f.link, list):  # the model allows only the alias otherwise
            return FaultSpec(f.at, kind, field=path, link_pick=BUSIEST_ADJACENCY)
        return FaultSpec(f.at, kind, link=(f.link[0], f.link[1]), field=path)
    if kind in (FaultKind.CRASH, FaultKind.RESTART):
        return FaultSpec(f.at, kind, segment=f.segment, field=path)
    return FaultSpec(f.at, kind, segments=tuple(f.segments or ()), name=f.name, field=path)


def _traffic(m: ScenarioFile) -> TrafficSpec | None:
    """``traffic:`` + ``qos:``, with the ``allocation:`` section that manages them
    (:func:`~vnstitch.sim.scenario_sections.section_relations` has checked that they
    come together)."""
    if m.traffic is None or m.qos is None:
        return None
    traffic = traffic_spec(m.qos, m.traffic)
    if m.allocation is None:
        return traffic
    return dataclasses.replace(traffic, allocation=allocation_spec(
        m.allocation, traffic.stitched_classes))


def check_scenario(sc: Scenario) -> None:
    """Re-check the ranges of fields a caller may have overridden (CLI flags)."""
    checks: list[tuple[str, bool, object]] = [
        ("segments", sc.segments >= 1, sc.segments),
        ("seed", sc.seed >= 0, sc.seed),
        ("duration_s", 0 < sc.duration_s < math.inf, sc.duration_s),
        ("vns.count", sc.vns.count >= 1, sc.vns.count),
        ("requests.count", sc.requests.count >= 0, sc.requests.count),
        ("network.loss", 0.0 <= sc.network.loss <= 1.0, sc.network.loss),
    ]
    for name, ok, value in checks:
        if not ok:
            raise ScenarioError(sc.source, name, f"out of range: {value!r}")
