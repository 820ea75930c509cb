"""A scenario made concrete for the lab (pure): hosts, stitch requests, iperf3 runs, faults.

Theory of operation. :func:`plan_live` takes the same resolved inputs the simulator
starts from -- the partitioned substrate, the seeded :func:`vnstitch.sim.runner.workload`
(``vns:`` and ``requests:``) and the traffic layer's flows and VN groups (picks and
percent rates already resolved, :mod:`vnstitch.sim.picks`) -- and the lab's one scale
factor, and returns a :class:`LivePlan`:

* one host namespace per (VN, segment) the VN lives on, addressed
  ``172.(16 + vnid // 256).(vnid % 256).(n + 1)/24`` (``n``: the segment's index);
* one stitch request per ``requests:`` entry and per traffic VN (at ``stitch_at_s``;
  without it at the start, where a daemon's intent retries until discovery finds the
  VN, as the simulator's on-demand ask does; from the VN's origin, with its bandwidth x
  scale), each judged
  feasible or not by the simulator's oracle on the unloaded substrate (live requests
  cannot see the simulated reservations of earlier ones);
* per flow, its rate schedule cut into constant pieces (rate x scale, zero-rate pieces
  dropped), each to be an ``iperf3 -u`` run from the flow's source host to its
  destination host with the DSCP of the flow's class (:func:`class_dscp`); a background
  flow (no VN) runs between the segment routers of its ends, loopback to loopback,
  routed by the IGP (one inside a segment crosses no lab link and is left out, noted);
* the daemons' protocol timers, the ones the simulator's cores run with
  (:func:`daemon_timers`), and their ``qos:`` section (:func:`daemon_qos`): the
  scenario's classes applied live on every tunnel end and on every lab link (HTB at the
  link's rate, as the simulator models each link), packets classed by DSCP, stitched
  traffic by its VN; and their ``congestion:`` section, the simulated controllers'
  rules (:func:`daemon_congestion`: sample interval, monitor, hold-down, returns);
* the faults, checked against what a segment-level lab can do: a substrate link named
  by its nodes must join two segments (the lab cuts the one veth standing for every
  link between them); a link inside a segment has no veth of its own and is refused.

Everything is in seconds from the run's start, like the simulator's virtual time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vnstitch.lab.netns import LabError
from vnstitch.lab.substrate import NS_PREFIX, Host
from vnstitch.model import Substrate
from vnstitch.model.virtual import VirtualNetwork
from vnstitch.protocol.api import StitchConstraints
from vnstitch.protocol.config import Timers
from vnstitch.routing.qos import QosPolicy
from vnstitch.sim.parity import Surge, stitch_key, surges
from vnstitch.sim.scenario import FaultSpec
from vnstitch.sim.traffic_model import SimFlow
from vnstitch.sim.traffic_spec import TrafficSpec
from vnstitch.sim.workload import FaultKind, StitchRequest

#: The largest VNID a lab host can be addressed for (172.16.0.0/12 has 16 x 256 /24s).
MAX_LAB_VNID = 16 * 256 - 1
#: More iperf3 flows than this would measure this machine, not the network.
MAX_LIVE_FLOWS = 24
#: DSCP code points handed out to classes in priority order: EF, AF41, AF31, AF21,
#: AF11, CS1, then best effort.
_DSCP_ORDER = (46, 34, 26, 18, 10, 8)


def class_dscp(policy: QosPolicy, name: str) -> int:
    """The DSCP a flow of class ``name`` is marked with: one code point per class, the
    most urgent classes first (by priority, then their order in the policy)."""
    ranked = sorted(range(len(policy.classes)), key=lambda k: (policy.classes[k].priority, k))
    names = [policy.classes[k].name for k in ranked]
    k = names.index(name)
    return _DSCP_ORDER[k] if k < len(_DSCP_ORDER) else 0


def daemon_qos(policy: QosPolicy, borrow: str, vn_class: Mapping[int, str]) -> dict[str, Any]:
    """The daemons' ``qos:`` section for a scenario's policy: its classes, one DSCP
    match per class (:func:`class_dscp`) and each traffic VN's class (so stitched,
    encrypted traffic is classed by its VN on the substrate links)."""
    return {"link_mbps": policy.link_mbps, "borrow": borrow,
            "classes": [{"name": c.name, "priority": c.priority,
                         "guaranteed_mbps": c.guaranteed_mbps, "max_mbps": c.max_mbps}
                        for c in policy.classes],
            "applications": [{"name": f"dscp-{c.name}", "class": c.name,
                              "dscp": [class_dscp(policy, c.name)]} for c in policy.classes]
            + [{"name": f"vn{v}", "class": c, "vnid": v} for v, c in sorted(vn_class.items())]}


@dataclass(frozen=True, slots=True)
class LiveRequest:
    at: float
    origin: str  # segment id
    vnid: int
    bandwidth_mbps: float  # scaled to the lab
    hold_s: float | None
    key: str  # the parity summary's stitch key
    feasible: bool  # as the simulator's oracle judges it on the unloaded substrate


@dataclass(frozen=True, slots=True)
class Piece:
    start: float
    end: float
    mbps: float  # scaled to the lab

    @property
    def offered_mbit(self) -> float:
        return self.mbps * (self.end - self.start)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one end of a flow runs: a VN host, or a segment router (background)."""

    name: str
    ns: str
    ip: str


@dataclass(frozen=True, slots=True)
class LiveFlow:
    name: str
    qos_class: str
    dscp: int
    src: Endpoint
    dst: Endpoint
    pieces: tuple[Piece, ...]
    port: int
    vnid: int | None  # None: substrate background traffic between segment routers


@dataclass(frozen=True)
class LivePlan:
    hosts: list[Host]
    requests: list[LiveRequest]
    flows: list[LiveFlow]
    faults: list[FaultSpec]
    surges: list[Surge]
    timers: dict[str, float]
    qos: dict[str, Any] | None  # the daemons' qos: section (None: no traffic section)
    scale: float
    duration_s: float
    notes: list[str] = field(default_factory=list)
    #: the daemons' ``congestion:`` section (None: the daemon's defaults)
    congestion: dict[str, Any] | None = None


def daemon_timers(t: Timers) -> dict[str, float]:
    """The daemons' ``timers:`` for the protocol timers the simulator's cores use, so
    both runtimes run the same protocol clock (persistence every second: a kill -9
    loses at most that much)."""
    return {"announce_interval_s": t.announce_interval_s,
            "hold_time_s": t.announce_interval_s * t.hold_intervals,
            "probe_interval_s": t.probe_interval_s, "probe_misses": t.probe_misses_down,
            "query_timeout_s": t.query_timeout_s, "reservation_hold_s": t.hold_timeout_s,
            "persist_interval_s": 1.0}


def daemon_congestion(spec: TrafficSpec, duration_s: float) -> dict[str, Any]:
    """The daemons' ``congestion:`` for the simulated controllers' rules, so both
    runtimes move stitches by the same rules: samples every ``interval_s``, the
    scenario's monitor thresholds and hold-down, every report acted on (the simulated
    owner hands its pick straight to the origin), and no return within the run when the
    scenario has ``returns: false``."""
    m, rr = spec.monitor, spec.reroute
    return {"interval_s": spec.interval_s, "high": m.high, "low": m.low,
            "raise_samples": m.raise_samples, "clear_samples": m.clear_samples,
            "holddown_s": rr.hold_down_s, "min_reports": 1, "report_window_s": 1.0,
            "return_after_s": 0.0 if rr.returns else duration_s}


def vn_host(run_id: str, vnid: int, seg_index: int, segment: str) -> Host:
    if not 1 <= vnid <= MAX_LAB_VNID:
        raise LabError(f"VN {vnid}: the lab addresses VNIDs 1..{MAX_LAB_VNID} only")
    name = f"v{vnid}s{seg_index}"
    return Host(name, f"{NS_PREFIX}{run_id}-{name}", segment, vnid,
                f"172.{16 + vnid // 256}.{vnid % 256}.{seg_index + 1}/24", name)


def pieces(start_mbps: float, schedule: Sequence[tuple[float, float]], duration_s: float,
           scale: float) -> tuple[Piece, ...]:
    """A rate schedule as constant pieces of non-zero rate, scaled."""
    steps = [(0.0, start_mbps), *schedule]
    out = []
    for k, (at, mbps) in enumerate(steps):
        end = steps[k + 1][0] if k + 1 < len(steps) else duration_s
        end = min(end, duration_s)
        if mbps > 0 and end > at:
            out.append(Piece(at, end, mbps * scale))
    return tuple(out)


def _check_fault(f: FaultSpec, sub: Substrate) -> None:
    if f.action in (FaultKind.CUT_LINK, FaultKind.REPAIR_LINK) and f.link is not None:
        a, b = (str(sub.segment_of(n)) for n in f.link)
        if a == b:
            raise LabError(f"{f.field}.link: {f.link[0]}-{f.link[1]} lies inside segment {a};"
                           " the lab has one veth per pair of adjacent segments, so only "
                           "links between segments can be cut live")


def plan_live(sub: Substrate, run_id: str, *, placements: Sequence[VirtualNetwork],
              requests: Sequence[StitchRequest], flows: Sequence[SimFlow],
              groups: Sequence[tuple[int, int, int, float]], policy: QosPolicy | None,
              faults: Sequence[FaultSpec], stitch_at_s: float, scale: float,
              duration_s: float, timers: Timers, borrow: str = "priority",
              traffic: TrafficSpec | None = None,
              routers: Mapping[str, tuple[str, str]],
              feasible: Callable[[str, int, StitchConstraints], bool]) -> LivePlan:
    """The lab's plan (module docstring). ``groups``: (vnid, origin segment index,
    target segment index, bandwidth Mbit/s) per traffic VN; ``routers``: each segment
    router's namespace and loopback; ``feasible``: whether a request (origin, VN,
    constraints, unscaled) has a path that meets it."""
    segs = [str(s) for s in sub.segments()]
    index = {s: i for i, s in enumerate(segs)}
    seg_of = {str(n): str(x) for n, x in sub.graph.nodes(data="segment")}
    where: set[tuple[int, str]] = {(int(p.vnid), str(p.segment)) for p in placements}
    for vnid, a, b, _ in groups:
        where |= {(vnid, segs[a]), (vnid, segs[b])}
    hosts = [vn_host(run_id, vnid, index[s], s) for vnid, s in sorted(where)]
    by_place = {(h.vnid, h.segment): h for h in hosts}
    live_requests = [LiveRequest(r.at, str(r.origin), int(r.vnid),
                                 max(1.0, r.constraints.bandwidth_mbps * scale), r.hold_s,
                                 stitch_key(str(r.origin), int(r.vnid)),
                                 feasible(str(r.origin), int(r.vnid), r.constraints))
                     for r in requests]
    live_requests += [LiveRequest(stitch_at_s, segs[a], vnid, max(1.0, bw * scale), None,
                                  stitch_key(segs[a], vnid),
                                  feasible(segs[a], vnid, StitchConstraints(bw)))
                      for vnid, a, _, bw in groups]
    live_flows: list[LiveFlow] = []
    all_surges: list[Surge] = []
    notes = [f"rates and bandwidths x {scale:.6g} (the lab's scale factor)",
             "a stitch is up or down as its origin's control socket reports it, polled "
             "every 0.2 s; setup time is the daemon's own (request to established)"]
    if len(flows) > MAX_LIVE_FLOWS:
        raise LabError(f"{len(flows)} flows: the lab runs at most {MAX_LIVE_FLOWS} iperf3 "
                       "flows (a traffic matrix is for the simulator)")
    for k, f in enumerate(flows):
        assert policy is not None
        vn = f.spec.vn
        if vn is None:  # background: router to router, routed by the IGP
            sa, sb = seg_of[f.src], seg_of[f.dst]
            if sa == sb:
                notes.append(f"background flow {f.name!r} stays inside segment {sa}: the "
                             "lab has no links inside a segment, so it is not run live")
                continue
            src = Endpoint(f"router {sa}", *routers[sa])
            dst = Endpoint(f"router {sb}", *routers[sb])
        else:
            hs, hd = by_place[(vn, seg_of[f.src])], by_place[(vn, seg_of[f.dst])]
            src, dst = Endpoint(hs.name, hs.ns, hs.ip), Endpoint(hd.name, hd.ns, hd.ip)
        live_flows.append(LiveFlow(
            f.name, f.qos_class, class_dscp(policy, f.qos_class), src, dst,
            pieces(f.spec.mbps, f.spec.schedule, duration_s, scale), 5201 + k, vn))
        all_surges += surges(f.name, f.spec.mbps, f.spec.schedule)
    for fault in faults:
        _check_fault(fault, sub)
        if fault.at > duration_s or not math.isfinite(fault.at):
            raise LabError(f"{fault.field}.at: {fault.at:g}s is after the end "
                           f"({duration_s:g}s)")
    vn_class: dict[int, str] = {}
    for fl in flows:
        if fl.spec.vn is not None:
            vn_class.setdefault(fl.spec.vn, fl.qos_class)
    qos = None if policy is None else daemon_qos(policy, borrow, vn_class)
    return LivePlan(hosts, sorted(live_requests, key=lambda r: r.at), live_flows,
                    sorted(faults, key=lambda f: f.at), all_surges, daemon_timers(timers),
                    qos, scale, duration_s, notes,
                    None if traffic is None else daemon_congestion(traffic, duration_s))
