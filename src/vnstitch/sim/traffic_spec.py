"""The ``traffic:`` and ``qos:`` sections of a scenario, validated field by field.

Theory of operation: :func:`parse_traffic` turns the two raw YAML values into a
:class:`TrafficSpec` or raises :class:`~vnstitch.sim.errors.ScenarioError` naming the
dotted field (``traffic.flows[2].schedule[0].at``, ``qos.classes[1].max_mbps``). The
``qos:`` section is a QoS policy in the format of :mod:`vnstitch.routing.qos` (validated
by its own parser, errors re-labelled under ``qos.``) plus ``borrow``, how HTB lends
spare capacity (see :mod:`vnstitch.routing.htb`). Node names in flows are checked later,
against the loaded topology, by :func:`vnstitch.sim.traffic.resolve`.

A flow names its virtual network (``vn``, a VNID) and the substrate nodes its hosts sit
at (a flow without ``vn`` is substrate background traffic on shortest paths, like the
matrix's rows; every builtin scenario names a VN for each of its flows); the run places
that VN on the two segments of ``src`` and ``dst`` and the VN's
origin (the segment of its first flow's ``src``) requests the stitch itself -- on
demand, once the VN's traffic is offered and the origin's discovery knows a route to the
VNID (:mod:`vnstitch.control.demand`), or at ``stitch_at_s`` when given -- with the sum
of its flows' ``reserve_mbps`` as bandwidth (default: each
flow's first non-zero rate; traffic above it is HTB's to share) (a scenario never
names a path, and a flow never rides anything but its stitch). All flows of one VN must
join the same two segments, which must differ. Unknown fields are
errors, so a typo never falls back to a default silently::

    qos:
      link_mbps: 10000          # the policy's rates are for a link this big; scaled per link
      borrow: priority          # priority | quantum
      classes:
        - {name: video, priority: 0, guaranteed_mbps: 3000, max_mbps: 10000}
        - {name: email, priority: 4, guaranteed_mbps: 500, max_mbps: 10000}
    traffic:
      interval_s: 5             # monitoring interval: one utilisation sample per link
      stitched_classes: [video] # default: the classes of the policy's first priority
      monitor: {high: 0.8, low: 0.6, raise_samples: 2, clear_samples: 3}
      reroute: {k: 4, target: 0.75, hold_down_s: 60, install_s: 0.2, returns: true,
                return_below: 0.45, classes: null}    # null: any class may move
      stitch_at_s: 2           # optional: ask at this time (default: on demand)
      flows:                    # traffic of virtual networks: each rides its VN's stitch
        - {name: tv, vn: 7, class: video, reserve_mbps: 2500, src: New York,
           dst: Los Angeles, mbps: 2500}
        - {name: backup, vn: 8, class: bulk, src: New York, dst: Houston, mbps: 1000,
           schedule: [{at: 30, mbps: 5000}, {at: 90, mbps: 1000}]}
        - {name: story, vn: 9, class: video, src: "@ring-a", dst: "@ring-b",
           mbps: "20%"}   # picks and percent rates: see vnstitch.sim.picks
      matrix:                   # optional background from a traffic-matrix CSV
        file: data:abilene/abilene_tm_5min.csv.gz
        mix: {database: 0.3, bulk: 0.4, email: 0.3}   # class fractions of each OD pair
        scale: 4                # multiply every value
        start_row: 0            # first row used
        step_s: 5               # virtual seconds per row
        min_mbps: 0             # skip OD pairs whose scaled peak is below
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from vnstitch.routing.errors import PolicyError
from vnstitch.routing.htb import BORROW_MODES, BorrowMode
from vnstitch.routing.monitor import MonitorConfig
from vnstitch.routing.qos import QosPolicy, parse_policy
from vnstitch.sim.allocation_spec import AllocationSpec
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.fields import FieldReader


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """A flow of one QoS class between two substrate nodes; ``schedule`` holds
    ``(from time s, offered Mbit/s)`` steps after the initial ``mbps``."""

    name: str
    qos_class: str
    src: str
    dst: str
    mbps: float
    schedule: tuple[tuple[float, float], ...] = ()
    field: str = ""  # where it came from, for errors found once the topology is known
    #: The virtual network this flow belongs to: it rides that VN's stitch between the
    #: segments of ``src`` and ``dst``. ``None``: substrate background (matrix) traffic.
    vn: int | None = None
    #: What this flow adds to its VN's stitch reservation (``None``: its first rate).
    reserve_mbps: float | None = None
    #: Rates are percent of the path's narrowest link until resolved against the
    #: topology (:func:`vnstitch.sim.picks.resolve_picks`).
    percent: bool = False

    def peak(self) -> float:
        return max([self.mbps, *(m for _, m in self.schedule)])

    def offered_at(self, t: float) -> float:
        k = bisect.bisect_right(self.schedule, (t, math.inf))
        return self.schedule[k - 1][1] if k else self.mbps


@dataclass(frozen=True, slots=True)
class MatrixSpec:
    """Background flows from a wide traffic-matrix CSV (``time,SRC->DST,...`` in Mbit/s,
    e.g. Abilene's): one flow per OD pair and class of ``mix``, one row per ``step_s``."""

    file: str
    mix: tuple[tuple[str, float], ...]
    scale: float = 1.0
    start_row: int = 0
    step_s: float = 5.0
    min_mbps: float = 0.0


@dataclass(frozen=True, slots=True)
class RerouteSpec:
    k: int = 4
    target: float = 0.75
    hold_down_s: float = 60.0
    install_s: float = 0.2
    returns: bool = True
    return_below: float = 0.45
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class TrafficSpec:
    policy: QosPolicy
    borrow: BorrowMode = "priority"
    interval_s: float = 5.0
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    reroute: RerouteSpec = field(default_factory=RerouteSpec)
    flows: tuple[FlowSpec, ...] = ()
    stitched_classes: tuple[str, ...] = ()
    matrix: MatrixSpec | None = None
    #: the top-level ``allocation:`` section (see :mod:`vnstitch.sim.allocation_spec`)
    allocation: AllocationSpec | None = None
    #: An explicit time (virtual seconds) each VN's origin asks for its stitch; None: on
    #: demand (traffic offered and a route known; :mod:`vnstitch.control.demand`).
    stitch_at_s: float | None = None


def _policy(source: str, data: object) -> tuple[QosPolicy, BorrowMode]:
    if not isinstance(data, Mapping):
        raise ScenarioError(source, "qos", f"must be a mapping, got {type(data).__name__}")
    body = {k: v for k, v in data.items() if k != "borrow"}
    borrow = data.get("borrow", "priority")
    if borrow not in BORROW_MODES:
        raise ScenarioError(source, "qos.borrow",
                            f"must be one of {list(BORROW_MODES)}, got {borrow!r}")
    try:
        policy = parse_policy(body, source)
    except PolicyError as exc:
        where = "qos" if exc.field == "(top)" else f"qos.{exc.field}"
        raise ScenarioError(source, where, exc.problem) from None
    return policy, borrow


def _monitor(source: str, data: object) -> MonitorConfig:
    r = FieldReader(source, "traffic.monitor", data)
    high = r.number("high", 0.8, lo=0.0, hi=10.0, lo_open=True)
    low = r.number("low", 0.6, lo=0.0, hi=10.0, lo_open=True)
    if low >= high:
        raise r.fail("low", f"must be below high ({high:g}), got {low:g}")
    cfg = MonitorConfig(high=high, low=low,
                        raise_samples=r.integer("raise_samples", 2, lo=1, hi=1000),
                        clear_samples=r.integer("clear_samples", 3, lo=1, hi=1000))
    r.finish()
    return cfg


def _reroute(source: str, data: object, classes: set[str]) -> RerouteSpec:
    r = FieldReader(source, "traffic.reroute", data)
    returns = r.raw("returns")
    if returns is not None and not isinstance(returns, bool):
        raise r.fail("returns", f"must be true or false, got {returns!r}")
    spec = RerouteSpec(
        k=r.integer("k", 4, lo=1, hi=64),
        target=r.number("target", 0.75, lo=0.0, hi=10.0, lo_open=True),
        hold_down_s=r.number("hold_down_s", 60.0, lo=0.0),
        install_s=r.number("install_s", 0.2, lo=0.0),
        returns=True if returns is None else returns,
        return_below=r.number("return_below", 0.45, lo=0.0, hi=10.0, lo_open=True),
        classes=r.names("classes", classes),
    )
    r.finish()
    return spec


def _flow(source: str, index: int, data: object, classes: set[str]) -> FlowSpec:
    r = FieldReader(source, f"traffic.flows[{index}]", data)
    name = r.name("name")
    cls = r.name("class")
    if cls not in classes:
        raise r.fail("class", f"unknown class {cls!r}; the qos section has {sorted(classes)}")
    src, dst = r.name("src"), r.name("dst")
    if src == dst:
        raise r.fail("dst", f"must differ from src ({src!r})")
    # No VN: substrate background traffic (as matrix rows are), on shortest paths.
    vn = r.integer("vn", 0, lo=1, hi=2**24 - 1) if r.raw("vn") is not None else None
    units: set[bool] = set()
    mbps = _rate(r, "mbps", units)
    assert mbps is not None
    reserve = _rate(r, "reserve_mbps", units, required=False)
    raw = r.raw("schedule")
    steps: list[tuple[float, float]] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise r.fail("schedule", f"must be a list of {{at, mbps}}, got {raw!r}")
        for j, step in enumerate(raw):
            s = FieldReader(source, f"{r.path}.schedule[{j}]", step)
            at = s.number("at", None, lo=0.0)
            if steps and at <= steps[-1][0]:
                raise s.fail("at", f"must be after the previous step ({steps[-1][0]:g} s), "
                              f"got {at:g}")
            rate = _rate(s, "mbps", units)
            assert rate is not None
            steps.append((at, rate))
            s.finish()
    if len(units) > 1:
        raise r.fail("mbps", "write every rate of a flow the same way: all in Mbit/s or all "
                     "as \"N%\" of the path's narrowest link")
    r.finish()
    return FlowSpec(name, cls, src, dst, mbps, tuple(steps), r.path, vn, reserve,
                    percent=units == {True})


def _rate(r: FieldReader, key: str, units: set[bool], *, required: bool = True
          ) -> float | None:
    """A rate in Mbit/s, or ``"N%"`` (percent of the narrowest link on the flow's path,
    resolved with the topology); records which of the two it was in ``units``."""
    raw = r.raw(key)
    if raw is None and not required:
        return None
    if isinstance(raw, str) and raw.endswith("%"):
        try:
            pct = float(raw[:-1])
        except ValueError:
            raise r.fail(key, f"must be a number >= 0 or \"N%\", got {raw!r}") from None
        if not 0.0 <= pct <= 1000.0:
            raise r.fail(key, f"percent must be between 0 and 1000, got {raw!r}")
        units.add(True)
        return pct
    units.add(False)
    return r.number(key, None, lo=0.0)


def _matrix(source: str, data: object, classes: set[str]) -> MatrixSpec | None:
    if data is None:
        return None
    r = FieldReader(source, "traffic.matrix", data)
    file = r.raw("file")
    if not isinstance(file, str) or not file:
        raise r.fail("file", "must be a path: data:REL (under the shared data folder, "
                     f"$VNSTITCH_DATA), relative to the scenario, or absolute; got {file!r}")
    raw = r.raw("mix")
    if not isinstance(raw, Mapping) or not raw:
        raise r.fail("mix", f"must map class names to fractions, got {raw!r}")
    mix = []
    for name, frac in raw.items():
        if name not in classes:
            raise r.fail(f"mix.{name}", f"unknown class {name!r}; have {sorted(classes)}")
        if isinstance(frac, bool) or not isinstance(frac, int | float) or not 0 < frac <= 1:
            raise r.fail(f"mix.{name}", f"must be a fraction in (0, 1], got {frac!r}")
        mix.append((str(name), float(frac)))
    total = sum(f for _, f in mix)
    if abs(total - 1.0) > 1e-6:
        raise r.fail("mix", f"fractions must sum to 1, got {total:g}")
    spec = MatrixSpec(file, tuple(mix), r.number("scale", 1.0, lo=0.0, lo_open=True),
                      r.integer("start_row", 0, lo=0, hi=10**9),
                      r.number("step_s", 5.0, lo=0.0, lo_open=True),
                      r.number("min_mbps", 0.0, lo=0.0))
    r.finish()
    return spec


def parse_traffic(source: str, traffic: object, qos: object) -> TrafficSpec | None:
    """Validate the ``traffic:`` and ``qos:`` sections (both absent: ``None``)."""
    if traffic is None and qos is None:
        return None
    if qos is None:
        raise ScenarioError(source, "qos", "is required when there is a traffic section "
                            "(the classes flows belong to)")
    if traffic is None:
        raise ScenarioError(source, "traffic", "is required when there is a qos section")
    policy, borrow = _policy(source, qos)
    classes = {c.name for c in policy.classes}
    r = FieldReader(source, "traffic", traffic)
    interval = r.number("interval_s", 5.0, lo=0.0, hi=1e6, lo_open=True)
    stitch_at = None if r.raw("stitch_at_s") is None else r.number("stitch_at_s", 0.0,
                                                                    lo=0.0)
    monitor = _monitor(source, r.raw("monitor"))
    reroute = _reroute(source, r.raw("reroute"), classes)
    matrix = _matrix(source, r.raw("matrix"), classes)
    raw_flows = r.raw("flows")
    if raw_flows is None and matrix is not None:
        raw_flows = []
    if not isinstance(raw_flows, list) or not (raw_flows or matrix):
        raise r.fail("flows", f"must be a non-empty list of flows (or give a matrix), "
                     f"got {raw_flows!r}")
    flows = [_flow(source, i, f, classes) for i, f in enumerate(raw_flows)]
    seen: dict[str, int] = {}
    for i, f in enumerate(flows):
        if f.name in seen:
            raise ScenarioError(source, f"traffic.flows[{i}].name",
                                f"duplicate flow name {f.name!r} (also flows[{seen[f.name]}])")
        seen[f.name] = i
    top = min(c.priority for c in policy.classes)
    stitched = r.names("stitched_classes", classes)
    if stitched is None:
        stitched = tuple(c.name for c in policy.classes if c.priority == top)
    r.finish()
    return TrafficSpec(policy, borrow, interval, monitor, reroute, tuple(flows), stitched,
                       matrix, stitch_at_s=stitch_at)
