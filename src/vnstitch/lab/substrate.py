"""A real multi-segment substrate in network namespaces: build it, describe it, tear it down.

Theory of operation: one namespace per segment router (where that segment's Route
Manager runs): ``a`` and ``b`` are edge segments, ``t`` and ``u`` are two transit
segments, so there are two disjoint paths A-T-B (preferred, metric 10) and A-U-B
(metric 20). Routers are joined by veth pairs carrying /30 substrate addresses; each
router has a loopback address (``10.0.0.N/32``) that is its tunnel endpoint, with static
routes to every other loopback, sourced from its own loopback (``prefsrc``) so a tunnel
survives a link cut: deleting the A-T veth makes the kernel drop the metric-10 routes
and traffic moves to A-U-B. Hosts are namespaces with one veth into their segment
router (host side ``eth0``, router side ``h-<host>``, MTU 1370 so VXLAN over WireGuard
fits in 1500); the router side is a *host port*, for the dataplane driver to enslave.

Everything is named from a run id (namespaces ``vsl<id>-<role>``, WireGuard interfaces
:meth:`Lab.wg_name`), so several labs -- and tests -- coexist. :func:`teardown` removes
every namespace of a run id with its processes (see :mod:`vnstitch.lab.netns`); a JSON
manifest in :data:`MANIFEST_DIR` lets ``lab status``/``down`` and other processes (the
daemon) find a lab by id.
"""

from __future__ import annotations

import json
import shutil
import socket
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from vnstitch.dataplane.wireguard_go import UAPI_DIR, socket_is_live
from vnstitch.lab import frr, netns
from vnstitch.lab.netns import LabError

NS_PREFIX = "vsl"
MANIFEST_DIR = Path("/run/vnstitch-lab")
HOST_MTU = 1370


@dataclass(frozen=True, slots=True)
class Router:
    segment: str
    ns: str
    loopback: str  # tunnel endpoint, e.g. "10.0.0.1"


@dataclass(frozen=True, slots=True)
class Link:
    a: str  # segment names
    b: str
    a_dev: str  # veth name inside a's router namespace
    b_dev: str
    a_addr: str  # "10.1.1.1/30"
    b_addr: str


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    ns: str
    segment: str
    vnid: int
    address: str  # overlay address inside the VN, "192.168.100.1/24"
    router_port: str  # the host's veth end inside the segment router's namespace

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass(frozen=True, slots=True)
class Lab:
    run_id: str
    routers: dict[str, Router]
    links: list[Link]
    hosts: list[Host]
    routes: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)

    def wg_name(self, segment: str, n: int = 0) -> str:
        """A host-unique WireGuard interface name for ``segment`` (<= 15 chars)."""
        return f"vw{self.run_id}{segment}{n}"

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"lab {self.run_id}: no host {name!r}")

    def link(self, a: str, b: str) -> Link:
        for lk in self.links:
            if {lk.a, lk.b} == {a, b}:
                return lk
        raise LabError(f"lab {self.run_id}: no link {a}-{b}")

    def namespaces(self) -> list[str]:
        return [r.ns for r in self.routers.values()] + [h.ns for h in self.hosts]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Lab:
        return Lab(run_id=data["run_id"],
                   routers={k: Router(**v) for k, v in data["routers"].items()},
                   links=[Link(**v) for v in data["links"]],
                   hosts=[Host(**v) for v in data["hosts"]],
                   routes={k: [(str(d), str(g), int(m)) for d, g, m in v]
                           for k, v in data.get("routes", {}).items()})


SEGMENTS = ("a", "t", "u", "b")
#: (a, b, metric-of-paths-through-it): A-T-B is preferred over A-U-B.
_LINKS = (("a", "t", 10), ("t", "b", 10), ("a", "u", 20), ("u", "b", 20))
_HOSTS = (("ha1", "a", 100, "192.168.100.1/24"), ("hb1", "b", 100, "192.168.100.2/24"),
          ("ha2", "a", 200, "192.168.200.1/24"), ("hb2", "b", 200, "192.168.200.2/24"))


def describe(run_id: str) -> Lab:
    """The lab's names and addresses (pure: nothing is touched)."""
    routers = {s: Router(s, f"{NS_PREFIX}{run_id}-r{s}", f"10.0.0.{i + 1}")
               for i, s in enumerate(SEGMENTS)}
    links = [Link(a, b, f"l-{b}", f"l-{a}", f"10.1.{k + 1}.1/30", f"10.1.{k + 1}.2/30")
             for k, (a, b, _) in enumerate(_LINKS)]
    hosts = [Host(n, f"{NS_PREFIX}{run_id}-{n}", seg, vn, addr, f"h-{n}")
             for n, seg, vn, addr in _HOSTS]
    # Static routes: router -> [(destination loopback/32, next hop, metric)].
    routes: dict[str, list[tuple[str, str, int]]] = {s: [] for s in SEGMENTS}
    for lk, (_, _, metric) in zip(links, _LINKS, strict=True):
        a_ip, b_ip = lk.a_addr.split("/")[0], lk.b_addr.split("/")[0]
        for here, there, nh in ((lk.a, lk.b, b_ip), (lk.b, lk.a, a_ip)):
            routes[here].append((f"{routers[there].loopback}/32", nh, 1))
            # Edge routers reach the far edge through either transit.
            if here in ("a", "b") and there in ("t", "u"):
                far = "b" if here == "a" else "a"
                routes[here].append((f"{routers[far].loopback}/32", nh, metric))
    return Lab(run_id, routers, links, hosts, routes)


def _manifest(run_id: str) -> Path:
    return MANIFEST_DIR / f"{run_id}.json"


def new_run_id() -> str:
    return uuid.uuid4().hex[:5]


def build(run_id: str | None = None) -> Lab:
    """Create the whole substrate; on any failure, remove what was made and re-raise."""
    lab = describe(run_id or new_run_id())
    if any(netns.exists(ns) for ns in lab.namespaces()):
        raise LabError(f"lab {lab.run_id} already exists")
    try:
        _build(lab)
    except BaseException:
        teardown(lab.run_id)
        raise
    MANIFEST_DIR.mkdir(parents=True, exist_ok=True)
    _manifest(lab.run_id).write_text(json.dumps(lab.to_json(), indent=1))
    return lab


def link_up(ipr: Any, name: str, cidr: str | None = None, mtu: int | None = None) -> int:
    """Set ``name`` up (with an address and MTU if given); returns its index."""
    idx: int = ipr.link_lookup(ifname=name)[0]
    if mtu:
        ipr.link("set", index=idx, mtu=mtu)
    if cidr:
        ip, plen = cidr.split("/")
        ipr.addr("add", index=idx, address=ip, prefixlen=int(plen))
    ipr.link("set", index=idx, state="up")
    return idx


def prepare_router(r: Router) -> None:
    """Forwarding on, reverse-path filter off, the loopback address up."""
    for key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter",
                "net.ipv4.conf.default.rp_filter"):
        netns.sysctl(r.ns, key, "1" if key.endswith("forward") else "0")
    with IPRoute(netns=r.ns) as ipr:
        link_up(ipr, "lo", f"{r.loopback}/32")


def attach_hosts(lab: Lab) -> None:
    """Each host's veth into its segment router (the router side is a host port)."""
    for h in lab.hosts:
        r = lab.routers[h.segment]
        with IPRoute(netns=h.ns) as ipr:
            ipr.link("add", ifname="eth0", kind="veth",
                     peer={"ifname": h.router_port, "net_ns_fd": r.ns})
            link_up(ipr, "lo")
            link_up(ipr, "eth0", h.address, HOST_MTU)
        with IPRoute(netns=r.ns) as ipr:
            link_up(ipr, h.router_port, None, HOST_MTU)


def _build(lab: Lab) -> None:
    for ns in lab.namespaces():
        netns.create(ns)
    for r in lab.routers.values():
        prepare_router(r)
    for lk in lab.links:
        ra, rb = lab.routers[lk.a], lab.routers[lk.b]
        with IPRoute(netns=ra.ns) as ipr:
            ipr.link("add", ifname=lk.a_dev, kind="veth",
                     peer={"ifname": lk.b_dev, "net_ns_fd": rb.ns})
            link_up(ipr, lk.a_dev, lk.a_addr)
        with IPRoute(netns=rb.ns) as ipr:
            link_up(ipr, lk.b_dev, lk.b_addr)
    attach_hosts(lab)
    for seg, routes in lab.routes.items():
        r = lab.routers[seg]
        with IPRoute(netns=r.ns) as ipr:
            for dst, via, metric in routes:
                ipr.route("add", dst=dst, gateway=via, priority=metric, prefsrc=r.loopback)


def load(run_id: str) -> Lab:
    path = _manifest(run_id)
    try:
        return Lab.from_json(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise LabError(f"lab {run_id}: no manifest {path} (is it up?)") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"lab {run_id}: bad manifest {path}: {exc}") from exc


def run_ids() -> list[str]:
    """Run ids of every lab on this host: manifests plus orphan namespaces."""
    ids = {p.stem for p in MANIFEST_DIR.glob("*.json")} if MANIFEST_DIR.is_dir() else set()
    ids |= {n[len(NS_PREFIX):].split("-")[0] for n in netns.listing(NS_PREFIX) if "-" in n}
    return sorted(ids)


def leftovers(run_id: str) -> dict[str, list[str]]:
    """What of run ``run_id`` still exists on this host (empty lists: nothing)."""
    nss = netns.listing(f"{NS_PREFIX}{run_id}-")
    socks = sorted(p.stem for p in UAPI_DIR.glob(f"vw{run_id}*.sock")) if UAPI_DIR.is_dir() \
        else []
    return {"namespaces": nss, "wireguard": [s for s in socks if socket_is_live(s)],
            "processes": [str(p) for ns in nss for p in netns.pids_in(ns)]}


def teardown(run_id: str) -> list[str]:
    """Remove every namespace, link and process of ``run_id``; returns removed namespaces."""
    removed = []
    for ns in netns.listing(f"{NS_PREFIX}{run_id}-"):
        netns.destroy(ns)
        removed.append(ns)
    # FRR (topology labs) ran inside those namespaces and ended with them; what it
    # leaves is its pathspace folder, and the lab's own folder of configs and logs.
    frr.cleanup(frr.leftover_pathspaces(f"{NS_PREFIX}{run_id}-"))
    shutil.rmtree(MANIFEST_DIR / run_id, ignore_errors=True)
    _manifest(run_id).unlink(missing_ok=True)
    left: dict[str, list[str]] = dict(leftovers(run_id))
    left["frr"] = frr.leftover_pathspaces(f"{NS_PREFIX}{run_id}-")
    if any(left.values()):
        raise LabError(f"lab {run_id}: left behind {left}")
    return removed


def cut_link(lab: Lab, a: str, b: str) -> None:
    """Delete the a-b veth pair (both ends go): a real link failure for the reroute demo."""
    lk = lab.link(a, b)
    dev, ns = (lk.a_dev, lab.routers[lk.a].ns)
    with IPRoute(netns=ns) as ipr:
        found = ipr.link_lookup(ifname=dev)
        if not found:
            raise LabError(f"lab {lab.run_id}: link {a}-{b} already cut")
        ipr.link("del", index=found[0])


def status(run_id: str) -> dict[str, Any]:
    """Namespaces, WireGuard daemons and per-router addresses/routes of one lab."""
    out: dict[str, Any] = {"run_id": run_id, **leftovers(run_id), "routers": {}}
    for ns in out["namespaces"]:
        with IPRoute(netns=ns) as ipr:
            links = [m.get_attr("IFLA_IFNAME") for m in ipr.get_links()]
            routes = [f"{r.get_attr('RTA_DST')}/{r['dst_len']} metric "
                      f"{r.get_attr('RTA_PRIORITY') or 0}"
                      for r in ipr.get_routes(family=socket.AF_INET, table=254)
                      if r.get_attr("RTA_DST") and r["dst_len"] == 32]
        out["routers"][ns] = {"links": links, "routes_to_loopbacks": routes}
    return out
