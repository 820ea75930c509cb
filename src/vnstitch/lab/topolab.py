"""A lab built from a real topology: one router namespace per segment, FRR OSPF between.

Theory of operation. :func:`plan` (pure) turns a partitioned
:class:`~vnstitch.model.Substrate` into a :class:`TopoLab`: one router per segment
(namespace ``vsl<id>-r<n>``, loopback ``10.0.<n/250>.<n%250+1>/32``: the Route Manager's
and the tunnels' endpoint), one veth pair per pair of adjacent segments (a /30 from
10.1.0.0/16) standing for all the substrate links between them, and one host per
segment in VN 100 (``192.168.100.<n+1>/24``, MTU 1370 so VXLAN over WireGuard fits).

* **Rates.** A veth's rate is the summed capacity of the substrate links it stands for,
  times one scale factor for the whole lab (the largest aggregate maps to
  ``max_link_mbps``, which this machine can carry), at least 1 Mbit/s; applied as a
  tbf root qdisc on both ends. The factor is reported.
* **Delay.** This kernel has no netem, so propagation delay is not emulated: the
  topology's latency only sets the OSPF cost (``max(1, round(10 x ms))``); the plan
  says so in its notes and :func:`measure_rtts` reports the RTTs really seen.
* **--full.** For topologies of up to 40 nodes, one router per *node* instead: every
  substrate link is its own veth at its own scaled rate, and each segment's Route
  Manager and host sit on its gateway node (the one with the most links leaving the
  segment). The Route Managers' peerings are then logical (segment adjacencies), and
  the IGP carries their traffic over the real node-level paths.
* **IGP.** Routes between loopbacks are not static: :mod:`vnstitch.lab.frr` runs OSPF in
  every router, so a cut link is routed around by the IGP.

:func:`build` creates everything (removing what it made on any failure) and writes the
manifest that ``lab status|down`` and the daemons read (the same :class:`~vnstitch.lab.
substrate.Lab` document as the fixed lab, plus a ``topology`` section).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vnstitch.daemon import control
from vnstitch.daemon.errors import ControlError
from vnstitch.lab import frr, netns
from vnstitch.lab.netns import LabError
from vnstitch.lab.routemgrs import LabRouteManagers
from vnstitch.lab.substrate import (
    MANIFEST_DIR,
    NS_PREFIX,
    Host,
    Lab,
    Link,
    Router,
    attach_hosts,
    link_up,
    new_run_id,
    prepare_router,
    teardown,
)
from vnstitch.model import Substrate

DEFAULT_MAX_LINK_MBPS = 200.0
LAB_VNID = 100
#: --full builds one namespace per node: beyond this many, 2 cores cannot run it.
MAX_FULL_NODES = 40


@dataclass(frozen=True, slots=True)
class TopoLink:
    """What one lab veth stands for in the real topology."""

    a: str  # router names: segment ids, or node names with --full
    b: str
    substrate_links: int
    capacity_mbps: float  # summed real capacity
    rate_mbps: float  # scaled, applied with tbf
    latency_ms: float  # lowest real latency among its links
    ospf_cost: int


@dataclass(frozen=True)
class TopoLab:
    """``lab`` is what the Route Managers see (one router per segment: the segment's
    router, or with ``full`` its gateway node; ``lab.links`` join adjacent segments);
    ``routers`` and ``wires`` are every namespace router and veth actually built."""

    lab: Lab
    topology: str
    segments: list[str]
    routers: dict[str, Router]
    wires: list[Link]
    links: list[TopoLink]  # one per wire
    rm_links: list[TopoLink]  # one per segment adjacency (Route Manager peers)
    scale: float
    max_link_mbps: float
    full: bool = False
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**self.lab.to_json(), "topology": {
            "name": self.topology, "segments": self.segments, "scale": self.scale,
            "max_link_mbps": self.max_link_mbps, "full": self.full,
            "routers": {k: asdict(r) for k, r in self.routers.items()},
            "wires": [asdict(w) for w in self.wires],
            "links": [asdict(lk) for lk in self.links],
            "rm_links": [asdict(lk) for lk in self.rm_links], "notes": self.notes}}

    def frr_folder(self, router: str) -> Path:
        return MANIFEST_DIR / self.lab.run_id / "frr" / router


def _loopback(n: int) -> str:
    return f"10.0.{n // 250}.{n % 250 + 1}"


def _wire_address(k: int) -> tuple[str, str]:
    net = ipaddress.ip_network(f"10.1.{(4 * k) // 256}.{(4 * k) % 256}/30")
    return f"{net[1]}/30", f"{net[2]}/30"


def _cost(latency_ms: float) -> int:
    return max(1, round(10 * latency_ms))


def plan(sub: Substrate, run_id: str | None = None, *,
         max_link_mbps: float = DEFAULT_MAX_LINK_MBPS, full: bool = False) -> TopoLab:
    """The lab for a partitioned substrate (pure; see the module docstring). With
    ``full``, one router per node (at most :data:`MAX_FULL_NODES`), every substrate link
    a veth, and each segment's Route Manager and host on its gateway node (the node with
    the most links to other segments)."""
    if not max_link_mbps > 0 or not math.isfinite(max_link_mbps):
        raise LabError(f"max_link_mbps must be a positive number, got {max_link_mbps!r}")
    run_id = run_id or new_run_id()
    segments = [str(s) for s in sub.segments()]
    if len(segments) < 2:
        raise LabError(f"{sub.name}: a lab needs at least 2 segments, got {len(segments)}")
    if len(segments) > 250:
        raise LabError(f"{sub.name}: at most 250 segments in a lab, got {len(segments)}")
    seg_index = {s: i for i, s in enumerate(segments)}
    adjacencies = sorted(sub.segment_adjacencies(), key=lambda a: (str(a.a), str(a.b)))
    if full:
        nodes = sorted(sub.nodes())
        if len(nodes) > MAX_FULL_NODES:
            raise LabError(f"{sub.name}: --full builds one namespace per node, at most "
                           f"{MAX_FULL_NODES}; it has {len(nodes)}")
        edges = sorted((min(lk.a, lk.b), max(lk.a, lk.b), lk) for lk in sub.links())
        top = max(lk.capacity_mbps for _, _, lk in edges)
    else:
        top = max(adj.capacity_mbps for adj in adjacencies)
    scale = max_link_mbps / top

    def topo_link(a: str, b: str, n: int, cap: float, latency: float) -> TopoLink:
        return TopoLink(a, b, n, cap, round(max(1.0, cap * scale), 3), latency,
                        _cost(latency))

    rm_links = [topo_link(str(adj.a), str(adj.b), len(adj.links), adj.capacity_mbps,
                          min(lk.latency_ms for lk in adj.links)) for adj in adjacencies]
    wires: list[Link] = []
    links: list[TopoLink] = []
    if full:
        node_index = {n: i for i, n in enumerate(nodes)}
        routers = {n: Router(str(sub.segment_of(n)), f"{NS_PREFIX}{run_id}-n{i}",
                             _loopback(i)) for n, i in node_index.items()}
        for k, (a, b, lk) in enumerate(edges):
            a_addr, b_addr = _wire_address(k)
            wires.append(Link(a, b, f"l{node_index[b]}", f"l{node_index[a]}", a_addr, b_addr))
            links.append(topo_link(a, b, 1, lk.capacity_mbps, lk.latency_ms))
        outside = {n: sum(1 for m in sub.graph[n] if sub.segment_of(m) != sub.segment_of(n))
                   for n in nodes}
        gateway = {s: min(sub.nodes_in(s), key=lambda n: (-outside[n], node_index[n]))
                   for s in sub.segments()}
        seg_routers = {str(s): Router(str(s), routers[g].ns, routers[g].loopback)
                       for s, g in gateway.items()}
        # The Route Managers' links are logical (a segment adjacency has no single veth).
        rm_wires = [Link(t.a, t.b, "", "", "", "") for t in rm_links]
    else:
        routers = {s: Router(s, f"{NS_PREFIX}{run_id}-r{seg_index[s]}",
                             _loopback(seg_index[s])) for s in segments}
        for k, t in enumerate(rm_links):
            a_addr, b_addr = _wire_address(k)
            wires.append(Link(t.a, t.b, f"l{seg_index[t.b]}", f"l{seg_index[t.a]}",
                              a_addr, b_addr))
        links = list(rm_links)
        seg_routers, rm_wires = dict(routers), list(wires)
    hosts = [Host(f"h{seg_index[s]}", f"{NS_PREFIX}{run_id}-h{seg_index[s]}", s, LAB_VNID,
                  f"192.168.{LAB_VNID}.{seg_index[s] + 1}/24", f"h-{seg_index[s]}")
             for s in segments]
    what = "link" if full else "segment-pair capacity"
    notes = [f"one scale factor {scale:.6g}: {top:g} Mbit/s (the largest {what}) becomes "
             f"{max_link_mbps:g} Mbit/s",
             "propagation delay is not emulated (this kernel has no netem); the "
             "topology's latency sets the OSPF cost only"]
    clipped = sum(1 for t in links if t.capacity_mbps * scale < 1.0)
    if clipped:
        notes.append(f"{clipped} link(s) scaled below 1 Mbit/s were raised to 1 Mbit/s")
    lab = Lab(run_id, seg_routers, rm_wires, hosts, {})
    return TopoLab(lab, sub.name, segments, routers, wires, links, rm_links, scale,
                   max_link_mbps, full, notes)


def _shape(ipr: Any, idx: int, rate_mbps: float) -> None:
    rate_bytes = rate_mbps * 1e6 / 8
    ipr.tc("add", "tbf", index=idx, rate=f"{rate_mbps * 1000:.0f}kbit",
           burst=int(max(16_000, rate_bytes / 100)), latency="50ms")


def build(topo: TopoLab, *, igp: bool = True,
          on_step: Callable[[str], None] | None = None) -> TopoLab:
    """Create namespaces, veths (rate-limited), hosts and FRR; undo all on failure."""
    lab = topo.lab
    if any(netns.exists(r.ns) for r in topo.routers.values()) or \
            any(netns.exists(h.ns) for h in lab.hosts):
        raise LabError(f"lab {lab.run_id} already exists")
    try:
        _build(topo, igp, on_step or (lambda _s: None))
    except BaseException:
        destroy(lab.run_id)
        raise
    MANIFEST_DIR.mkdir(parents=True, exist_ok=True)
    (MANIFEST_DIR / f"{lab.run_id}.json").write_text(json.dumps(topo.to_json(), indent=1))
    return topo


def _add_wire(topo: TopoLab, lk: Link, tl: TopoLink, shape: bool = True) -> None:
    """One veth pair between two routers, addressed, up, rate-limited at both ends
    (unless ``shape`` is off: then whoever owns the root qdisc limits it)."""
    ra, rb = topo.routers[lk.a], topo.routers[lk.b]
    with IPRoute(netns=ra.ns) as ipr:
        ipr.link("add", ifname=lk.a_dev, kind="veth",
                 peer={"ifname": lk.b_dev, "net_ns_fd": rb.ns})
        idx = link_up(ipr, lk.a_dev, lk.a_addr)
        if shape:
            _shape(ipr, idx, tl.rate_mbps)
    with IPRoute(netns=rb.ns) as ipr:
        idx = link_up(ipr, lk.b_dev, lk.b_addr)
        if shape:
            _shape(ipr, idx, tl.rate_mbps)


def set_shaping(topo: TopoLab, on: bool) -> None:
    """Put the lab's tbf on every wire end (``on``), or remove it so that a Route
    Manager with a ``qos:`` section can own the root qdisc (its HTB root is the link's
    rate)."""
    for lk, tl in zip(topo.wires, topo.links, strict=True):
        for router, dev in ((lk.a, lk.a_dev), (lk.b, lk.b_dev)):
            with IPRoute(netns=topo.routers[router].ns) as ipr:
                found = ipr.link_lookup(ifname=dev)
                if not found:
                    continue  # cut
                with contextlib.suppress(NetlinkError):  # none there: fine
                    ipr.tc("del", index=found[0], parent=0xFFFFFFFF)  # the root qdisc
                if on:
                    _shape(ipr, found[0], tl.rate_mbps)


def _build(topo: TopoLab, igp: bool, step: Callable[[str], None]) -> None:
    lab = topo.lab
    step(f"{len(topo.routers) + len(lab.hosts)} namespaces")
    for ns in [r.ns for r in topo.routers.values()] + [h.ns for h in lab.hosts]:
        netns.create(ns)
    for r in topo.routers.values():
        prepare_router(r)
    step(f"{len(topo.wires)} links")
    for lk, tl in zip(topo.wires, topo.links, strict=True):
        _add_wire(topo, lk, tl)
    step(f"{len(lab.hosts)} hosts")
    attach_hosts(lab)
    if igp:
        step("FRR (zebra + ospfd) in every router")
        for name, r in topo.routers.items():
            itfs = [frr.OspfInterface(lk.a_dev if lk.a == name else lk.b_dev, tl.ospf_cost)
                    for lk, tl in zip(topo.wires, topo.links, strict=True)
                    if name in (lk.a, lk.b)]
            folder = topo.frr_folder(name)
            frr.start(r.ns, folder, frr.ospf_config(r.ns, r.loopback, itfs,
                                                    folder / "frr.log"))


def expected_adjacencies(topo: TopoLab) -> dict[str, int]:
    count = dict.fromkeys(topo.routers, 0)
    for lk in topo.wires:
        count[lk.a] += 1
        count[lk.b] += 1
    return count


def adjacencies(topo: TopoLab) -> dict[str, list[dict[str, str]]]:
    return {name: frr.neighbors(topo.frr_folder(name)) for name in topo.routers}


def wait_converged(topo: TopoLab, timeout_s: float = 60.0) -> float:
    """Seconds until every router has every neighbour Full and a route to every other
    loopback installed by OSPF."""
    t0 = time.monotonic()
    want = expected_adjacencies(topo)
    loopbacks = {r.loopback for r in topo.routers.values()}
    while True:
        try:
            adj = adjacencies(topo)
            full = all(sum(n["state"] == "Full" for n in adj[s]) == want[s] for s in want)
        except LabError:
            full = False
        if full and all(loopbacks - {r.loopback} <= ospf_routes(r.ns)
                        for r in topo.routers.values()):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise LabError(f"lab {topo.lab.run_id}: OSPF did not converge in {timeout_s:g}s")
        time.sleep(0.25)


def ospf_routes(ns: str) -> set[str]:
    """Host routes (/32) this router's kernel has from OSPF (protocol 188)."""
    with IPRoute(netns=ns) as ipr:
        return {r.get_attr("RTA_DST") for r in ipr.get_routes(family=2, table=254)
                if r["proto"] == 188 and r["dst_len"] == 32 and r.get_attr("RTA_DST")}


def measure_rtts(topo: TopoLab, count: int = 3) -> dict[str, float | None]:
    """Median ping RTT (ms) between the loopbacks of every pair of adjacent routers."""
    out: dict[str, float | None] = {}
    for lk in topo.wires:
        ra, rb = topo.routers[lk.a], topo.routers[lk.b]
        proc = netns.run_in(ra.ns, ["ping", "-n", "-q", "-c", str(count), "-i", "0.2",
                                    "-W", "1", "-I", ra.loopback, rb.loopback], timeout_s=15,
                            check=False)
        rtt = None
        for line in proc.stdout.splitlines():
            if "min/avg/max" in line:
                rtt = float(line.split("=")[1].split("/")[1])
        out[f"{lk.a}-{lk.b}"] = rtt
    return out


def load(run_id: str) -> TopoLab:
    path = MANIFEST_DIR / f"{run_id}.json"
    try:
        data = json.loads(path.read_text())
        t = data["topology"]
        return TopoLab(Lab.from_json(data), t["name"], list(t["segments"]),
                       {k: Router(**v) for k, v in t["routers"].items()},
                       [Link(**w) for w in t["wires"]],
                       [TopoLink(**lk) for lk in t["links"]],
                       [TopoLink(**lk) for lk in t["rm_links"]], float(t["scale"]),
                       float(t["max_link_mbps"]), bool(t["full"]), list(t["notes"]))
    except FileNotFoundError:
        raise LabError(f"lab {run_id}: no manifest {path} (is it up?)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"lab {run_id}: not a topology lab, or a bad manifest: {exc}") \
            from None


def cut_wire(topo: TopoLab, a: str, b: str) -> None:
    """Delete the veth between routers ``a`` and ``b`` (both ends go): a link failure."""
    for lk in topo.wires:
        if {lk.a, lk.b} == {a, b}:
            with IPRoute(netns=topo.routers[lk.a].ns) as ipr:
                found = ipr.link_lookup(ifname=lk.a_dev)
                if not found:
                    raise LabError(f"lab {topo.lab.run_id}: link {a}-{b} already cut")
                ipr.link("del", index=found[0])
            return
    raise LabError(f"lab {topo.lab.run_id}: no link {a}-{b}")


def restore_wire(topo: TopoLab, a: str, b: str, *, shape: bool = True) -> None:
    """Put back the veth between routers ``a`` and ``b`` that :func:`cut_wire` removed
    (same names, addresses and rate, tbf unless ``shape`` is off); OSPF picks it up
    again by interface name."""
    for lk, tl in zip(topo.wires, topo.links, strict=True):
        if {lk.a, lk.b} == {a, b}:
            with IPRoute(netns=topo.routers[lk.a].ns) as ipr:
                if ipr.link_lookup(ifname=lk.a_dev):
                    raise LabError(f"lab {topo.lab.run_id}: link {a}-{b} is not cut")
            _add_wire(topo, lk, tl, shape)
            return
    raise LabError(f"lab {topo.lab.run_id}: no link {a}-{b}")


def is_topology_lab(run_id: str) -> bool:
    try:
        return "topology" in json.loads((MANIFEST_DIR / f"{run_id}.json").read_text())
    except (OSError, ValueError):
        return False


def destroy(run_id: str) -> list[str]:
    """Tear the lab down (namespaces end FRR with them), then FRR's leftovers."""
    return teardown(run_id)


def route_managers_dir(run_id: str) -> Path:
    return MANIFEST_DIR / run_id / "rm"


def start_route_managers(topo: TopoLab, timeout_s: float = 60.0, *,
                         timers: dict[str, float] | None = None,
                         congestion: dict[str, Any] | None = None,
                         follow_routes: bool = True) -> LabRouteManagers:
    """One live Route Manager per segment router (linux dataplane), peers and link costs
    and capacities from the topology (the scaled rates: what the lab's links carry);
    ``timers``, ``congestion``, ``follow_routes``: those daemon settings (default: the
    lab's timers, the daemon's own defaults)."""
    costs = {frozenset((t.a, t.b)): float(t.ospf_cost) for t in topo.rm_links}
    caps = {frozenset((t.a, t.b)): t.rate_mbps for t in topo.rm_links}
    extra: dict[str, Any] = {} if timers is None else {"timers": dict(timers)}
    rms = LabRouteManagers(topo.lab, route_managers_dir(topo.lab.run_id),
                           link_costs=costs, link_capacities=caps, congestion=congestion,
                           follow_routes=follow_routes, **extra)
    rms.start_all(timeout_s=timeout_s)
    return rms


def route_manager_status(run_id: str) -> dict[str, Any]:
    """Each segment's Route Manager as its control socket answers (or why it does not)."""
    out: dict[str, Any] = {}
    folder = route_managers_dir(run_id)
    for sock in sorted(folder.glob("*.sock")) if folder.is_dir() else []:
        try:
            st = control.request(sock, {"cmd": "show", "what": "status"}, timeout_s=2.0)
            out[sock.stem] = {"running": True, "rm_id": st.get("rm_id"),
                              "segment": st.get("segment"), "uptime_s": st.get("uptime_s")}
        except (ControlError, OSError) as exc:
            out[sock.stem] = {"running": False, "error": str(exc)}
    return out
