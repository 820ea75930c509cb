"""Tunnels follow the substrate's routes (daemon/endpointfollow.py), on real kernel state.

Three namespaces of our own: routers A and B joined directly (``ab``) and through C
(``ac``, ``cb``), loopbacks 10.77.0.1 (A) and 10.77.0.2 (B) as the tunnel endpoints,
static routes with the loopback as source (as the lab's OSPF installs them). A real
wireguard-go tunnel A <-> B carries pings; then the substrate route under it moves,
and the assertions read the kernel: the packet counters of the new link, wireguard-go's
transfer counters and ``wg show endpoints``. Each scenario runs with the runner and,
as a control, without it (wireguard-go alone stays on the old way).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from pyroute2 import IPRoute

from tests.rootutil import fresh_netns, require_root, run_id, wg_keypair
from vnstitch.daemon.endpointfollow import EndpointRunner
from vnstitch.dataplane import DataplaneState, WireguardInterface, WireguardPeer, reconcile
from vnstitch.dataplane.linux import LinuxDataplane
from vnstitch.dataplane.objects import PathPin
from vnstitch.lab import netns as labns

pytestmark = pytest.mark.root

LO_A, LO_B = "10.77.0.1", "10.77.0.2"
PORT_A, PORT_B = 51771, 51772
#: wireguard-go on its own needs ~15 s (keepalive + rekey timeouts) to recover, if at
#: all; with the runner the move is a route event away. Well under the first.
FOLLOW_S = 6.0
#: Both ends initiate a handshake when the tunnel comes up; the loser's retransmission
#: (5 s later) drops the sticky source by itself. The move waits until that is over, so
#: the control measures wireguard-go's steady state.
SETTLE_S = 5.5


@dataclass
class Net:
    a: str
    b: str
    c: str
    wg_a: str
    wg_b: str
    state_a: DataplaneState
    state_b: DataplaneState
    dp_a: LinuxDataplane
    created: float


def _veth(ns1: str, dev1: str, ns2: str, dev2: str, net: str) -> None:
    with IPRoute(netns=ns1) as ipr:
        ipr.link("add", ifname=dev1, kind="veth", peer={"ifname": dev2, "net_ns_fd": ns2})
        ipr.addr("add", index=ipr.link_lookup(ifname=dev1)[0], address=f"{net}.1",
                 prefixlen=30)
        ipr.link("set", index=ipr.link_lookup(ifname=dev1)[0], state="up")
    with IPRoute(netns=ns2) as ipr:
        ipr.addr("add", index=ipr.link_lookup(ifname=dev2)[0], address=f"{net}.2",
                 prefixlen=30)
        ipr.link("set", index=ipr.link_lookup(ifname=dev2)[0], state="up")


def _route(ns: str, cmd: str, dst: str, gw: str, src: str | None = None) -> None:
    with IPRoute(netns=ns) as ipr:
        kw = {"prefsrc": src} if src else {}
        ipr.route(cmd, dst=f"{dst}/32", gateway=gw, **kw)


@contextlib.contextmanager
def _net() -> Iterator[Net]:
    require_root()
    with ExitStack() as stack:
        a, b, c = (stack.enter_context(fresh_netns(t)) for t in ("fa", "fb", "fc"))
        for ns in (a, b, c):
            labns.sysctl(ns, "net.ipv4.ip_forward", "1")
            with IPRoute(netns=ns) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        for ns, lo in ((a, LO_A), (b, LO_B)):
            with IPRoute(netns=ns) as ipr:
                ipr.addr("add", index=ipr.link_lookup(ifname="lo")[0], address=lo,
                         prefixlen=32)
        _veth(a, "ab", b, "ba", "10.78.1")
        _veth(a, "ac", c, "ca", "10.78.2")
        _veth(c, "cb", b, "bc", "10.78.3")
        _route(a, "add", LO_B, "10.78.1.2", LO_A)
        _route(b, "add", LO_A, "10.78.1.1", LO_B)
        _route(c, "add", LO_A, "10.78.2.1")
        _route(c, "add", LO_B, "10.78.3.2")
        rid = run_id()
        priv_a, pub_a = wg_keypair()
        priv_b, pub_b = wg_keypair()
        wg_a, wg_b = f"vwfa{rid}", f"vwfb{rid}"
        state_a = DataplaneState([WireguardInterface(
            wg_a, priv_a, PORT_A, "172.30.0.0/31",
            (WireguardPeer(pub_b, f"{LO_B}:{PORT_B}", ("172.30.0.1/32",), 25),))])
        state_b = DataplaneState([WireguardInterface(
            wg_b, priv_b, PORT_B, "172.30.0.1/31",
            (WireguardPeer(pub_a, f"{LO_A}:{PORT_A}", ("172.30.0.0/32",), 25),))])
        dp_a = stack.enter_context(LinuxDataplane(a, owner="fa"))
        dp_b = stack.enter_context(LinuxDataplane(b, owner="fb"))
        reconcile(dp_a, state_a)
        reconcile(dp_b, state_b)
        yield Net(a, b, c, wg_a, wg_b, state_a, state_b, dp_a, time.monotonic())
        # fresh_netns removes the namespaces; their wireguard-go exit with their TUNs.


def _tx_packets(ns: str, dev: str) -> int:
    with IPRoute(netns=ns) as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=dev)[0])[0]
        return int(link.get_attr("IFLA_STATS64")["tx_packets"])


def _wg(ifname: str, what: str) -> str:
    return subprocess.run(["wg", "show", ifname, what], capture_output=True, text=True,
                          check=True, timeout=5).stdout.strip()


def _rx_bytes(ifname: str) -> int:
    return int(_wg(ifname, "transfer").split("\t")[1])


def _wait(ok: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ok():
            return True
        time.sleep(0.05)
    return ok()


def _constant(state: DataplaneState) -> Callable[[], DataplaneState]:
    return lambda: state


def _pinger(net: Net) -> subprocess.Popen[str]:
    return labns.popen_in(net.a, ["ping", "-n", "-i", "0.05", "-W", "1", "172.30.0.1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _move_and_watch(net: Net, move: Callable[[Net], None], follow: bool
                          ) -> tuple[bool, Counter[str]]:
    """Start pinging through the tunnel (on ``ab``), ``move`` the substrate route to the
    detour through C, and report whether B hears the tunnel again with A's packets
    leaving by ``ac`` within FOLLOW_S."""
    metrics: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    runners = []
    if follow:
        for ns, state in ((net.a, net.state_a), (net.b, net.state_b)):
            # A long periodic check: within FOLLOW_S only the kernel's routing
            # announcements can make the runner act.
            r = EndpointRunner(_constant(state), time.monotonic, metrics, ns, 60.0)
            r.start(loop)
            runners.append(r)
    ping = _pinger(net)
    try:
        assert await asyncio.to_thread(_wait, lambda: _rx_bytes(net.wg_b) > 1000, 10.0), \
            "the tunnel never carried the pings"
        await asyncio.sleep(max(0.0, net.created + SETTLE_S - time.monotonic()))
        for r in runners:  # the first look: every route on ab, nothing to reset
            assert await r.check() == []
        await asyncio.to_thread(move, net)  # pyroute2 blocks: not on the loop's thread
        t_moved = time.monotonic()
        ac0 = await asyncio.to_thread(_tx_packets, net.a, "ac")

        def flowing() -> bool:
            rx = _rx_bytes(net.wg_b)
            time.sleep(0.3)
            return _rx_bytes(net.wg_b) > rx and _tx_packets(net.a, "ac") > ac0 + 3

        followed = await asyncio.to_thread(_wait, flowing, FOLLOW_S)
        metrics["seconds"] = round(time.monotonic() - t_moved)
        return followed, metrics
    finally:
        ping.kill()
        ping.wait()
        for r in runners:
            await r.stop()


def _cut(net: Net) -> None:
    """The link A-B fails and the IGP's answer arrives at both ends: via C."""
    with IPRoute(netns=net.a) as ipr:
        ipr.link("del", index=ipr.link_lookup(ifname="ab")[0])
    _route(net.a, "replace", LO_B, "10.78.2.2", LO_A)
    _route(net.b, "replace", LO_A, "10.78.3.1", LO_B)


def _pin(net: Net) -> None:
    """The congestion runner's path pin: A's tunnel packets (UDP from its listen port)
    go by C; A-B stays up and stays the main table's route."""
    reconcile(net.dp_a, net.state_a.with_objects(
        add=[PathPin(PORT_A, "0.0.0.0/0", "10.78.2.2", "ac", LO_A)]))


@pytest.mark.parametrize("move", [_cut, _pin], ids=["cut", "pin"])
@pytest.mark.parametrize("follow", [
    # With the runner the tunnel follows within FOLLOW_S: a latency claim (alone, see
    # tests/rootutil.py); without it, it does not follow at all.
    pytest.param(True, marks=pytest.mark.alone), False], ids=["runner", "control"])
def test_the_tunnel_follows_the_route(move: Callable[[Net], None], follow: bool) -> None:
    with _net() as net:
        followed, metrics = asyncio.run(_move_and_watch(net, move, follow))
        assert followed == follow, (
            f"{'with' if follow else 'without'} the runner, after the move: "
            f"{dict(metrics)}, A's endpoint {_wg(net.wg_a, 'endpoints')}")
        # The runner wrote the endpoint again (A's route moved; B's too when cut), and
        # the endpoint A's wireguard-go uses is B's loopback, not a link address.
        assert (metrics["endpoint_resets"] >= 1) == follow
        assert _wg(net.wg_a, "endpoints").endswith(f"{LO_B}:{PORT_B}")
