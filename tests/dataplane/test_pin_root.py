"""A path pin steers the packets its host sends, never the ones it forwards (root).

Four namespaces of our own: a sender S, a transit router T, the far end B and the pin's
gateway C (S - T - B, T - C). T pins UDP from port PORT to C (a congestion path pin of
one of T's own tunnels, made by :class:`~vnstitch.dataplane.linux.LinuxDataplane`). S's
tunnel traffic, crossing T from the same port number, must still reach B by T's main
table, while T's own packets from that port go to C. The assertions read the kernel's
packet counters on T's two links and T's policy rules; IPv6 is off in every namespace
so that the counters hold only what the test sends (and ARP).

The control installs the rule as it was made before (no ``iif lo``): S's packets then
leave T towards C -- the Geant2012 lab's flapping voice stitch, whose tunnel from seg01
crossed seg00 while seg00 pinned its own tunnel on the same port. The reconcile replaces
such a rule with the local-only one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pytest
from pyroute2 import IPRoute

from tests.rootutil import fresh_netns, require_root
from vnstitch.dataplane import DataplaneState, reconcile
from vnstitch.dataplane.linux import LinuxDataplane
from vnstitch.dataplane.objects import PIN_RULE_PRIORITY, PIN_TABLE_BASE, PathPin
from vnstitch.dataplane.routewatch import RouteQuery
from vnstitch.lab import netns as labns

pytestmark = pytest.mark.root

PORT = 51820
B_ADDR = "10.79.2.2"
COUNT = 40
PIN = PathPin(PORT, "0.0.0.0/0", "10.79.3.2", "tc")


@dataclass
class Net:
    s: str
    t: str
    dp_t: LinuxDataplane


def _veth(ns1: str, dev1: str, ns2: str, dev2: str, net: str) -> None:
    with IPRoute(netns=ns1) as ipr:
        ipr.link("add", ifname=dev1, kind="veth", peer={"ifname": dev2, "net_ns_fd": ns2})
        idx = ipr.link_lookup(ifname=dev1)[0]
        ipr.addr("add", index=idx, address=f"{net}.1", prefixlen=30)
        ipr.link("set", index=idx, state="up")
    with IPRoute(netns=ns2) as ipr:
        idx = ipr.link_lookup(ifname=dev2)[0]
        ipr.addr("add", index=idx, address=f"{net}.2", prefixlen=30)
        ipr.link("set", index=idx, state="up")


@contextmanager
def _net() -> Iterator[Net]:
    require_root()
    with ExitStack() as stack:
        s, t, b, c = (stack.enter_context(fresh_netns(x)) for x in ("ps", "pt", "pb", "pc"))
        for ns in (s, t, b, c):
            labns.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
            labns.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
        labns.sysctl(t, "net.ipv4.ip_forward", "1")
        _veth(s, "st", t, "ts", "10.79.1")
        _veth(t, "tb", b, "bt", "10.79.2")
        _veth(t, "tc", c, "ct", "10.79.3")
        with IPRoute(netns=s) as ipr:
            ipr.route("add", dst="10.79.2.0/30", gateway="10.79.1.2")
        dp_t = stack.enter_context(LinuxDataplane(t, owner="pt"))
        yield Net(s, t, dp_t)


def _tx(ns: str, dev: str) -> int:
    with IPRoute(netns=ns) as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=dev)[0])[0]
        return int(link.get_attr("IFLA_STATS64")["tx_packets"])


def _send_from(ns: str) -> None:
    """COUNT datagrams to B from UDP port PORT, sent inside ``ns``."""
    code = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.bind(('0.0.0.0', {PORT}))\n"
            f"for _ in range({COUNT}): s.sendto(b'x' * 64, ('{B_ADDR}', 9))\n")
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], check=True,
                   timeout=30)


def _leaves_t(net: Net, sender: str) -> str:
    """Which of T's links carried ``sender``'s COUNT datagrams: "tb", "tc" or ""."""
    before = {d: _tx(net.t, d) for d in ("tb", "tc")}
    _send_from(sender)
    grew = {d: _tx(net.t, d) - before[d] for d in before}
    # Each link may also carry an ARP request or two; the datagrams are COUNT.
    went = [d for d, n in grew.items() if n >= COUNT]
    assert len(went) <= 1, grew
    assert all(n < COUNT // 2 for d, n in grew.items() if d not in went), grew
    return went[0] if went else ""


def _pin_rules(ns: str) -> list[str]:
    """The iif of each pin rule in ``ns`` ("" when it has none)."""
    with IPRoute(netns=ns) as ipr:
        return [str(r.get_attr("FRA_IIFNAME") or "") for r in ipr.get_rules(
            family=socket.AF_INET) if r.get_attr("FRA_PRIORITY") == PIN_RULE_PRIORITY]


def test_pin_steers_own_packets_and_forwards_others_by_the_main_table() -> None:
    with _net() as net:
        assert _leaves_t(net, net.s) == "tb"  # before any pin
        reconcile(net.dp_t, DataplaneState([PIN]))
        assert _pin_rules(net.t) == ["lo"]
        assert _leaves_t(net, net.t) == "tc"  # T's own tunnel port: pinned
        assert _leaves_t(net, net.s) == "tb"  # S's, forwarded by T: not
        # The endpoint follower's route query (an output lookup) still sees the pin.
        query = RouteQuery(net.t)
        try:
            route = query.udp(B_ADDR, PORT, 9)
        finally:
            query.close()
        assert route is not None
        assert (route.device, route.table) == ("tc", PIN_TABLE_BASE + PORT)


def test_control_a_rule_without_iif_captures_forwarded_packets_until_reconciled() -> None:
    with _net() as net:
        with IPRoute(netns=net.t) as ipr:  # the pin as it was made before: no iif
            ipr.route("add", dst="0.0.0.0/0", gateway=PIN.gateway,
                      oif=ipr.link_lookup(ifname="tc")[0], table=PIN.table)
            ipr.rule("add", family=socket.AF_INET, table=PIN.table,
                     priority=PIN_RULE_PRIORITY, FRA_IP_PROTO=socket.IPPROTO_UDP,
                     FRA_SPORT_RANGE=f"{PORT}:{PORT}")
        assert _pin_rules(net.t) == [""]
        assert _leaves_t(net, net.s) == "tc"  # the defect: S's tunnel taken off its path
        reconcile(net.dp_t, DataplaneState([PIN]))
        assert _pin_rules(net.t) == ["lo"]
        assert _leaves_t(net, net.s) == "tb"
        assert _leaves_t(net, net.t) == "tc"
