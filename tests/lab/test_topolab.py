"""Topology labs: the plan (pure), and a real 3-segment lab with FRR OSPF (root).

The root tests build their own uniquely named lab and remove it even when they fail;
they look only at their own namespaces and FRR folders."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from tests.rootutil import require_root
from vnstitch.lab import frr, netns, substrate, topolab
from vnstitch.lab.netns import LabError
from vnstitch.lab.routemgrs import LAB_TIMERS
from vnstitch.lab.substrate import Host
from vnstitch.model import load_topology, partitioned

# A square with one diagonal: cut into 3 segments, every pair of segments is adjacent,
# so losing one inter-segment link leaves a two-hop way round.
GRAPHML = """<?xml version="1.0" encoding="utf-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key attr.name="LinkSpeedRaw" attr.type="double" for="edge" id="d1"/>
  <graph edgedefault="undirected">
    <node id="n0"/><node id="n1"/><node id="n2"/><node id="n3"/>
    <edge source="n0" target="n1"><data key="d1">1000000000</data></edge>
    <edge source="n1" target="n2"><data key="d1">1000000000</data></edge>
    <edge source="n2" target="n3"><data key="d1">500000000</data></edge>
    <edge source="n3" target="n0"><data key="d1">1000000000</data></edge>
    <edge source="n0" target="n2"><data key="d1">1000000000</data></edge>
  </graph>
</graphml>
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.graphml"
    path.write_text(GRAPHML, encoding="utf-8")
    return path


def test_plan_scales_names_and_addresses_abilene() -> None:
    topo = topolab.plan(partitioned(load_topology("zoo:Abilene"), 5), "t0001",
                        max_link_mbps=150)
    lab = topo.lab
    assert len(lab.routers) == 5 and len(lab.hosts) == 5
    assert max(t.rate_mbps for t in topo.links) == pytest.approx(150)
    assert all(t.rate_mbps >= 1 for t in topo.links)
    assert all(t.rate_mbps == pytest.approx(max(1.0, t.capacity_mbps * topo.scale))
               for t in topo.links)
    names = [lk.a_dev for lk in lab.links] + [lk.b_dev for lk in lab.links]
    assert all(len(n) <= 15 for n in names)
    for seg in topo.segments:  # device names unique inside each router
        devs = [lk.a_dev if lk.a == seg else lk.b_dev for lk in lab.links
                if seg in (lk.a, lk.b)]
        assert len(devs) == len(set(devs))
    addrs = [lk.a_addr for lk in lab.links] + [lk.b_addr for lk in lab.links]
    assert len(set(addrs)) == len(addrs)
    for lk in lab.links:
        assert ipaddress.ip_interface(lk.a_addr).network == \
            ipaddress.ip_interface(lk.b_addr).network
    assert any("netem" in n for n in topo.notes)


def test_full_plan_has_a_router_per_node_and_rms_on_gateways() -> None:
    sub = partitioned(load_topology("zoo:Abilene"), 4)
    topo = topolab.plan(sub, "t0002", full=True)
    assert len(topo.routers) == sub.graph.number_of_nodes()
    assert len(topo.wires) == sub.graph.number_of_edges() == len(topo.links)
    assert len(topo.lab.routers) == 4 and len(topo.rm_links) == len(topo.lab.links)
    for seg, r in topo.lab.routers.items():  # the RM's router is one of its nodes
        gateway = next(n for n, nr in topo.routers.items() if nr.ns == r.ns)
        assert str(sub.segment_of(gateway)) == seg
    assert all(h.segment in topo.lab.routers for h in topo.lab.hosts)
    with pytest.raises(LabError, match="at most 40"):
        topolab.plan(partitioned(load_topology("sndlib:germany50"), 4), full=True)


def test_plan_refuses_bad_input() -> None:
    sub = partitioned(load_topology("zoo:Abilene"), 1)
    with pytest.raises(LabError, match="at least 2 segments"):
        topolab.plan(sub)
    with pytest.raises(LabError, match="positive"):
        topolab.plan(partitioned(load_topology("zoo:Abilene"), 3), max_link_mbps=0)


def test_ospf_config_lists_every_interface_with_its_cost() -> None:
    text = frr.ospf_config("r1", "10.0.0.1", [frr.OspfInterface("l1", 7),
                                             frr.OspfInterface("l2", 30)], Path("/x.log"))
    assert "interface l1\n ip ospf area 0" in text and " ip ospf cost 7" in text
    assert " ip ospf cost 30" in text and "ospf router-id 10.0.0.1" in text
    assert "interface lo\n ip ospf area 0\n ip ospf passive" in text
    assert " set src 10.0.0.1" in text and "ip protocol ospf route-map" in text


def _built(tiny: Path, full: bool) -> Iterator[topolab.TopoLab]:
    require_root()
    if not frr.available():
        pytest.skip("FRR is not installed")
    topo = topolab.plan(partitioned(load_topology(str(tiny)), 3), max_link_mbps=50,
                        full=full)
    topolab.build(topo)
    try:
        yield topo
    finally:
        topolab.destroy(topo.lab.run_id)
        left = substrate.leftovers(topo.lab.run_id)
        assert not any(left.values()), left
        assert frr.leftover_pathspaces(f"{substrate.NS_PREFIX}{topo.lab.run_id}-") == []


def _route_dev(ns: str, dst: str) -> str | None:
    with IPRoute(netns=ns) as ipr:
        for r in ipr.get_routes(family=2, table=254):
            if r.get_attr("RTA_DST") == dst and r["proto"] == 188:
                oif = r.get_attr("RTA_OIF")
                return str(ipr.get_links(oif)[0].get_attr("IFLA_IFNAME"))
    return None


def _route_src(ns: str, dst: str) -> str | None:
    with IPRoute(netns=ns) as ipr:
        for r in ipr.get_routes(family=2, table=254):
            if r.get_attr("RTA_DST") == dst and r["proto"] == 188:
                return str(r.get_attr("RTA_PREFSRC"))
    return None


def _wait_route(ns: str, dst: str, ok: Callable[[str | None], bool],
                timeout_s: float = 20.0) -> str | None:
    deadline = time.monotonic() + timeout_s
    dev = _route_dev(ns, dst)
    while not ok(dev) and time.monotonic() < deadline:
        time.sleep(0.2)
        dev = _route_dev(ns, dst)
    return dev


@pytest.fixture
def built(tiny: Path) -> Iterator[topolab.TopoLab]:
    yield from _built(tiny, full=False)


@pytest.fixture(params=[False, True], ids=["segments", "full"])
def built_either(tiny: Path, request: pytest.FixtureRequest) -> Iterator[topolab.TopoLab]:
    yield from _built(tiny, full=request.param)


@pytest.mark.root
def test_three_segment_lab_converges_and_the_igp_reroutes_a_cut(
        built_either: topolab.TopoLab) -> None:
    topo = built_either
    assert topolab.wait_converged(topo, 60) < 60
    adj = topolab.adjacencies(topo)
    assert all(n["state"] == "Full" for ns in adj.values() for n in ns)
    assert sum(len(v) for v in adj.values()) == 2 * len(topo.wires)
    # The veths carry the scaled rate as a tbf qdisc, read back from the kernel.
    lk, tl = topo.wires[0], topo.links[0]
    with IPRoute(netns=topo.routers[lk.a].ns) as ipr:
        idx = ipr.link_lookup(ifname=lk.a_dev)[0]
        tbf = [q for q in ipr.get_qdiscs(index=idx) if q.get_attr("TCA_KIND") == "tbf"]
        rate = tbf[0].get_attr("TCA_OPTIONS").get_attr("TCA_TBF_PARMS")["rate"]
    assert rate * 8 / 1e6 == pytest.approx(tl.rate_mbps, rel=0.02)
    # Cut a link a-b: OSPF moves a's route to b's loopback to another link.
    ra, rb = topo.routers[lk.a], topo.routers[lk.b]
    # Adjacencies go Full a moment before SPF settles on the direct (cheapest) link.
    assert _wait_route(ra.ns, rb.loopback, lambda dev: dev == lk.a_dev) == lk.a_dev
    assert _route_src(ra.ns, rb.loopback) == ra.loopback  # zebra's route-map set src
    topolab.cut_wire(topo, lk.a, lk.b)
    dev = _wait_route(ra.ns, rb.loopback, lambda dev: dev not in (None, lk.a_dev))
    assert dev not in (None, lk.a_dev)
    # Both routers reconverge (the return path too): loopback to loopback works again.
    assert _pings(ra.ns, rb.loopback, 15, source=ra.loopback)


@pytest.mark.root
def test_a_stitch_carries_traffic_and_comes_back_after_a_cut(
        built: topolab.TopoLab) -> None:
    """Route Managers in the topology lab negotiate a stitch over the OSPF-routed
    substrate; hosts in VN 100 reach each other through it; after the substrate link under
    it is cut, VN 100 is reachable through the stitch again. Every segment hosts VN 100,
    so the renegotiated stitch may end at another segment: the host pinged is the one at
    the far end of the stitch's current path."""
    topo = built
    topolab.wait_converged(topo, 60)
    rms = topolab.start_route_managers(topo)
    try:
        first = topo.lab.links[0].a
        src = next(h for h in topo.lab.hosts if h.segment == first)
        reply = rms.stitch(first, 100, 5.0)
        assert reply["established"], reply
        sid = reply["stitch_id"]
        path = [rms.segment_of(r) for r in reply["detail"]["path"]]
        assert _pings(src.ns, _far_host(topo, path).ip, 15), "no traffic through the stitch"
        wire = next(w for w in topo.wires
                    if {topo.routers[w.a].segment, topo.routers[w.b].segment}
                    == {path[0], path[1]})
        topolab.cut_wire(topo, wire.a, wire.b)
        deadline = time.monotonic() + 45
        back = False
        while not back and time.monotonic() < deadline:
            row = rms.stitch_row(first, sid)
            if row is not None and row["status"] == "up":
                now_path = [rms.segment_of(r) for r in row["path"]]
                back = _pings(src.ns, _far_host(topo, now_path).ip, 3)
            else:
                time.sleep(0.2)
        assert back, f"VN 100 not reachable after the cut: {rms.show(first, 'stitches')}"
    finally:
        rms.stop_all()


#: With the endpoint follower the tunnel is on the IGP's new path a route event after
#: the cut; wireguard-go alone keeps its sticky source for ~15 s (or longer).
FOLLOW_S = 6.0


@pytest.mark.root
@pytest.mark.parametrize("follow", [True, False], ids=["follower", "control"])
def test_the_same_stitch_keeps_carrying_traffic_after_the_igp_reconverges(
        built: topolab.TopoLab, follow: bool) -> None:
    """No renegotiation: the congestion loop is off and the probes are slow (a dark
    tunnel is torn down only after 20 s), so the stitch negotiated before the cut is the
    one that must carry VN 100 after OSPF moved the substrate route under it. With the
    daemon's endpoint follower, pings through it resume within FOLLOW_S and the stitch
    (id, path, WireGuard device) is the same; the control (follow_routes off) stays dark
    that long -- wireguard-go keeps sending from the interface it last heard from."""
    topo = built
    topolab.wait_converged(topo, 60)
    timers = {**LAB_TIMERS, "probe_interval_s": 2.0, "probe_misses": 10}
    rms = topolab.start_route_managers(topo, timers=timers, congestion={"enabled": False},
                                       follow_routes=follow)
    try:
        first = topo.lab.links[0].a
        src = next(h for h in topo.lab.hosts if h.segment == first)
        reply = rms.stitch(first, 100, 5.0)
        assert reply["established"], reply
        sid = reply["stitch_id"]
        path = [rms.segment_of(r) for r in reply["detail"]["path"]]
        far = _far_host(topo, path).ip
        assert _pings(src.ns, far, 15), "no traffic through the stitch"
        wg_before = _wg_devices(topo.routers[first].ns)
        # Both ends' first handshakes cross; the loser's retry (5 s on) drops the sticky
        # source by itself: cut after that, so the control shows wireguard-go's steady
        # state and not the end of its start-up.
        time.sleep(6.0)
        assert _pings(src.ns, far, 5)
        wire = next(w for w in topo.wires
                    if {topo.routers[w.a].segment, topo.routers[w.b].segment}
                    == {path[0], path[1]})
        topolab.cut_wire(topo, wire.a, wire.b)
        resumed = _pings(src.ns, far, FOLLOW_S)
        row = rms.stitch_row(first, sid)
        assert row is not None and row["status"] == "up", rms.show(first, "stitches")
        assert [rms.segment_of(r) for r in row["path"]] == path
        assert _wg_devices(topo.routers[first].ns) == wg_before
        assert resumed is follow, ("follower: no traffic within FOLLOW_S" if follow else
                                   "control: traffic resumed without the follower")
    finally:
        rms.stop_all()


def _wg_devices(ns: str) -> list[str]:
    with IPRoute(netns=ns) as ipr:
        return sorted(str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()
                      if str(link.get_attr("IFLA_IFNAME")).startswith("wg"))


def _far_host(topo: topolab.TopoLab, path: list[str]) -> Host:
    return next(h for h in topo.lab.hosts if h.segment == path[-1])


def _pings(ns: str, ip: str, timeout_s: float, source: str | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    src = ["-I", source] if source else []
    while time.monotonic() < deadline:
        if netns.run_in(ns, ["ping", "-c", "1", "-W", "1", *src, ip], timeout_s=5,
                         check=False).returncode == 0:
            return True
    return False
