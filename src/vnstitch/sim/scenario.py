"""Scenarios: YAML files describing a simulation, validated field by field.

Theory of operation: a scenario file is a YAML mapping with the sections below; every
section and field is optional and has a default, unknown fields are errors (a typo must
not silently fall back to a default). :func:`scenario_from_mapping` checks each value's
type and range and raises :class:`~vnstitch.sim.errors.ScenarioError` naming the file and
the dotted field path (``faults[2].segment``); YAML syntax errors name line and column.
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

import yaml

from vnstitch.sim.allocation_spec import parse_allocation
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.fields import FieldReader
from vnstitch.sim.network import Impairments
from vnstitch.sim.picks import BUSIEST_ADJACENCY
from vnstitch.sim.traffic_spec import TrafficSpec, parse_traffic
from vnstitch.sim.workload import FaultKind

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
    faults: tuple[FaultSpec, ...] = ()
    protocol: dict[str, float] = field(default_factory=dict)
    #: Data traffic, QoS and congestion reroute (``traffic:`` + ``qos:``, see
    #: :mod:`vnstitch.sim.traffic_spec`); ``None``: control plane only.
    traffic: TrafficSpec | None = None
    source: str = "<defaults>"
    base_dir: str | None = None


def _vns(source: str, data: object) -> VnSpec:
    r = FieldReader(source, "vns", data)
    spec = VnSpec(r.integer("count", 8, lo=1, hi=1_000_000),
                  r.integer("segments_per_vn", 2, lo=1, hi=10_000),
                  r.integer("non_members", 0, lo=0, hi=10_000))
    r.finish()
    return spec


def _requests(source: str, data: object) -> RequestSpec:
    r = FieldReader(source, "requests", data)
    arrival = r.text("arrival", "poisson")
    if arrival not in ("poisson", "file"):
        raise r.fail("arrival", f"must be 'poisson' or 'file', got {arrival!r}")
    bw = r.raw("bandwidth_mbps")
    if bw is None:
        band = (10.0, 100.0)
    elif isinstance(bw, int | float) and not isinstance(bw, bool) and 0 < bw < math.inf:
        band = (float(bw), float(bw))
    elif (isinstance(bw, list) and len(bw) == 2
          and all(isinstance(x, int | float) and not isinstance(x, bool) for x in bw)
          and 0 < bw[0] <= bw[1] and math.isfinite(bw[1])):
        band = (float(bw[0]), float(bw[1]))
    else:
        raise r.fail("bandwidth_mbps", f"must be a number > 0 or [low, high] with "
                     f"0 < low <= high, got {bw!r}")
    hold = r.raw("hold_s")
    if hold is not None and (isinstance(hold, bool) or not isinstance(hold, int | float)
                             or not 0 < hold < math.inf):
        raise r.fail("hold_s", f"must be a number > 0 or null, got {hold!r}")
    spec = RequestSpec(
        count=r.integer("count", 20, lo=0, hi=10_000_000),
        arrival=str(arrival),
        start_s=_opt(r, "start_s"),
        end_s=_opt(r, "end_s"),
        bandwidth_mbps=band,
        max_latency_ms=r.number("max_latency_ms", math.inf, lo=0.0, allow_inf=True),
        hop_limit=r.integer("hop_limit", 16, lo=1, hi=255),
        hold_s=None if hold is None else float(hold),
        file=r.text("file", None),
    )
    if spec.end_s is not None and spec.start_s is not None and spec.end_s < spec.start_s:
        raise r.fail("end_s", f"must be >= start_s ({spec.start_s:g}), got {spec.end_s:g}")
    if spec.arrival == "file" and spec.file is None:
        raise r.fail("file", "is required when arrival is 'file'")
    r.finish()
    return spec


def _opt(r: FieldReader, key: str) -> float | None:
    value = r.number(key, math.nan, lo=0.0)
    return None if math.isnan(value) else value


def request_window(sc: Scenario) -> tuple[float, float]:
    """The request arrival window, defaults filled in from the duration."""
    rq = sc.requests
    start = rq.start_s if rq.start_s is not None else min(5.0, sc.duration_s / 10)
    end = rq.end_s if rq.end_s is not None else max(start, sc.duration_s * 2 / 3)
    return start, end


def _network(source: str, data: object) -> Impairments:
    r = FieldReader(source, "network", data)
    imp = Impairments(
        loss=r.number("loss", 0.0, lo=0.0, hi=1.0),
        duplicate=r.number("duplicate", 0.0, lo=0.0, hi=1.0),
        reorder=r.number("reorder", 0.0, lo=0.0, hi=1.0),
        reorder_delay_ms=r.number("reorder_delay_ms", 5.0, lo=0.0, hi=60_000.0),
        jitter_ms=r.number("jitter_ms", 0.0, lo=0.0, hi=60_000.0),
    )
    r.finish()
    return imp


def _fault(source: str, index: int, data: object) -> FaultSpec:
    r = FieldReader(source, f"faults[{index}]", data)
    at = r.number("at", math.nan, lo=0.0)
    if math.isnan(at):
        raise r.fail("at", "is required (seconds of virtual time)")
    action = r.text("action", None)
    kinds = [k.value for k in FaultKind]
    if action not in kinds:
        raise r.fail("action", f"must be one of {kinds}, got {action!r}")
    kind = FaultKind(action)
    segment = link = None
    segments: tuple[str, ...] = ()
    name = r.text("name", "partition") or "partition"
    if kind in (FaultKind.CRASH, FaultKind.RESTART):
        segment = r.text("segment", None)
        if segment is None:
            raise r.fail("segment", f"is required for {kind.value}")
    elif kind in (FaultKind.CUT_LINK, FaultKind.REPAIR_LINK) \
            and r.raw("link") == BUSIEST_ADJACENCY:
        r.finish()
        return FaultSpec(at, kind, field=r.path, link_pick=BUSIEST_ADJACENCY)
    elif kind in (FaultKind.CUT_LINK, FaultKind.REPAIR_LINK):
        raw = r.raw("link")
        if not (isinstance(raw, list) and len(raw) == 2
                and all(isinstance(x, str | int) and not isinstance(x, bool) for x in raw)):
            raise r.fail("link", f"must be [nodeA, nodeB] or {BUSIEST_ADJACENCY!r} for "
                         f"{kind.value}, got {raw!r}")
        link = (str(raw[0]), str(raw[1]))
    elif kind is FaultKind.PARTITION:
        raw = r.raw("segments")
        if not (isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw)):
            raise r.fail("segments", f"must be a non-empty list of segment ids, got {raw!r}")
        segments = tuple(raw)
    r.finish()
    return FaultSpec(at, kind, segment, link, segments, name, r.path)


def scenario_from_mapping(data: object, source: str = "<scenario>",
                          base_dir: str | None = None) -> Scenario:
    """Validate a parsed YAML document into a :class:`Scenario`."""
    r = FieldReader(source, "", data)
    faults_raw = r.raw("faults")
    if faults_raw is not None and not isinstance(faults_raw, list):
        raise r.fail("faults", f"must be a list, got {type(faults_raw).__name__}")
    proto_raw = r.raw("protocol")
    proto = FieldReader(source, "protocol", proto_raw)
    protocol = {str(k): proto.number(str(k), 0.0, lo=0.0) for k in proto.data}
    proto.finish()
    scenario = Scenario(
        name=r.text("name", "default") or "default",
        topology=r.text("topology", "zoo:Abilene") or "zoo:Abilene",
        segments=r.integer("segments", 4, lo=1, hi=100_000),
        seed=r.integer("seed", 1, lo=0, hi=2**63 - 1),
        duration_s=r.number("duration_s", 60.0, lo=0.001, hi=1e7),
        vns=_vns(source, r.raw("vns")),
        requests=_requests(source, r.raw("requests")),
        network=_network(source, r.raw("network")),
        faults=tuple(_fault(source, k, f) for k, f in enumerate(faults_raw or [])),
        protocol=protocol,
        traffic=_traffic(source, r),
        source=source,
        base_dir=base_dir,
    )
    r.finish()
    return scenario


def _traffic(source: str, r: FieldReader) -> TrafficSpec | None:
    """``traffic:`` + ``qos:``, with the ``allocation:`` section that manages them."""
    traffic = parse_traffic(source, r.raw("traffic"), r.raw("qos"))
    raw = r.raw("allocation")
    if raw is None:
        return traffic
    if traffic is None:
        raise ScenarioError(source, "allocation", "needs a traffic (and qos) section: it "
                            "reserves bandwidth for the traffic's flows")
    classes = {c.name for c in traffic.policy.classes}
    spec = parse_allocation(source, raw, classes, traffic.stitched_classes)
    return dataclasses.replace(traffic, allocation=spec)


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
    return scenario_from_mapping(scenario_yaml(text, source), source, base_dir)


def scenario_yaml(text: str, source: str) -> object:
    """The parsed YAML document of a scenario; syntax errors name line and column."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(source, where, f"invalid YAML: {problem}") from None
    return data


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
