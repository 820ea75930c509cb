"""The ONE dataplane contract: the same scenarios on the ``memory`` and ``linux`` drivers.

The linux variant runs against the real kernel in a fresh namespace per test (removed
even on failure, with any wireguard-go it started) and is marked ``root``.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import pytest
from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns

from tests.rootutil import fresh_netns, require_root, run_id, wg_keypair
from vnstitch.dataplane import (
    Bridge,
    BridgePort,
    CountingDriver,
    DataplaneDriver,
    DataplaneError,
    DataplaneState,
    FdbEntry,
    MemoryDataplane,
    Op,
    OpKind,
    RateLimit,
    Route,
    U32Filter,
    VxlanPort,
    WireguardInterface,
    WireguardPeer,
    reconcile,
)
from vnstitch.dataplane.base import DataplaneApplyError
from vnstitch.dataplane.linux import LinuxDataplane
from vnstitch.dataplane.qos import ClassCountingDriver

HOST_PORT = "hp0"


@dataclass
class Env:
    driver: DataplaneDriver
    wg_name: str  # host-unique (wireguard-go's control socket is host-global)
    #: make HOST_PORT transmit at least this many bytes (real packets on linux)
    transmit: Callable[[int], None] = field(default=lambda n: None)


def _memory_env() -> Env:
    dp = MemoryDataplane(external_ports=[HOST_PORT])

    def transmit(n: int) -> None:
        c = dp.counters(HOST_PORT)
        dp.set_counters(HOST_PORT, c.rx_bytes, c.tx_bytes + n)

    return Env(dp, "wgmem0", transmit)


def _send_udp(ns: str, n: int) -> None:
    """``n`` bytes of UDP payload out of HOST_PORT toward a static (fake) neighbour."""
    with IPRoute(netns=ns) as ipr:
        idx = ipr.link_lookup(ifname=HOST_PORT)[0]
        if not ipr.get_addr(index=idx, family=socket.AF_INET):
            ipr.link("set", index=ipr.link_lookup(ifname=f"{HOST_PORT}p")[0], state="up")
            ipr.link("set", index=idx, state="up")
            ipr.addr("add", index=idx, address="10.77.0.1", prefixlen=24)
            ipr.neigh("add", dst="10.77.0.2", lladdr="02:00:00:00:77:02", ifindex=idx,
                      state=0x80)  # NUD_PERMANENT: no ARP needed to send
    sock = pr_netns.create_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(-(-n // 1000)):
            sock.sendto(b"x" * 1000, ("10.77.0.2", 9))
    finally:
        sock.close()


def _linux_env() -> Iterator[Env]:
    require_root()
    with fresh_netns("c") as ns:
        with IPRoute(netns=ns) as ipr:  # a host port the driver did not create
            ipr.link("add", ifname=HOST_PORT, kind="veth", peer=f"{HOST_PORT}p")
        # the host port's root qdisc is the driver's to shape (as a Route Manager's owned
        # substrate interfaces are); the device itself never is
        dp = LinuxDataplane(ns, owner="contract", shaped=[HOST_PORT])
        try:
            yield Env(dp, f"vwc{run_id()}", lambda n: _send_udp(ns, n))
        finally:
            dp.close()


@pytest.fixture(params=["memory", pytest.param("linux", marks=pytest.mark.root)])
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    if request.param == "memory":
        yield _memory_env()
    else:
        yield from _linux_env()


PRIV, _PUB = wg_keypair()
_, PEER1 = wg_keypair()
_, PEER2 = wg_keypair()


def stitch(wg: str, rate: float = 50.0, metric: int = 100, peers: int = 1) -> DataplaneState:
    """A full stitch as a Route Manager wants it: VN 100 over a WireGuard underlay."""
    peer_list = [WireguardPeer(PEER1, "192.0.2.2:51820", ("10.255.0.2/32",), 0)]
    fdbs = [FdbEntry("vs100", "10.255.0.2")]
    if peers > 1:
        peer_list.append(WireguardPeer(PEER2, None, ("10.255.0.3/32",), 25))
        fdbs.append(FdbEntry("vs100", "10.255.0.3"))
    return DataplaneState([
        WireguardInterface(wg, PRIV, 51820, "10.255.0.1/24", tuple(peer_list)),
        VxlanPort("vs100", 100, "10.255.0.1", wg),
        Bridge("vsbr100"),
        BridgePort("vsbr100", "vs100"),
        BridgePort("vsbr100", HOST_PORT),
        *fdbs,
        Route("192.168.200.0/24", "vsbr100", metric),
        RateLimit("vs100", 10, rate, rate),
    ])


def test_full_stitch_is_built_and_observed_exactly(env: Env) -> None:
    want = stitch(env.wg_name)
    ops = reconcile(env.driver, want)
    assert len(ops) == len(want) and all(op.kind is OpKind.CREATE for op in ops)
    assert env.driver.observe() == want


def test_reconcile_twice_is_a_noop(env: Env) -> None:
    want = stitch(env.wg_name, peers=2)
    reconcile(env.driver, want)
    assert reconcile(env.driver, want) == []
    assert reconcile(env.driver, want) == []


def _unclamped(key: str) -> str:
    """The same X25519 private key with the bits WireGuard clears/sets flipped."""
    raw = bytearray(base64.b64decode(key))
    raw[0] |= 7
    raw[31] = (raw[31] | 128) & ~64 & 0xFF
    return base64.b64encode(bytes(raw)).decode()


def test_an_unclamped_private_key_is_applied_once(env: Env) -> None:
    # WireGuard reports the clamped form of the key it was given; a Route Manager's keys
    # are raw bytes from its RNG. The pair must still converge (a needless replace would
    # make wireguard-go re-bind its socket on every pass).
    want = stitch(env.wg_name)
    wg = next(o for o in want if isinstance(o, WireguardInterface))
    want = want.with_objects(add=[replace(wg, private_key=_unclamped(PRIV))])
    reconcile(env.driver, want)
    assert reconcile(env.driver, want) == []


def test_changes_are_replaced_in_place_and_converge(env: Env) -> None:
    reconcile(env.driver, stitch(env.wg_name))
    want = stitch(env.wg_name, rate=20.0, peers=2)
    vx = replace(next(o for o in want if isinstance(o, VxlanPort)), local_ip="10.255.0.9")
    want = want.with_objects(add=[vx])
    ops = reconcile(env.driver, want)
    kinds = {op.obj.key: op.kind for op in ops}
    assert kinds[f"wg:{env.wg_name}"] is OpKind.REPLACE
    assert kinds["rate:vs100:10"] is OpKind.REPLACE
    assert kinds["vxlan:vs100"] is OpKind.REPLACE
    assert kinds["fdb:vs100:00:00:00:00:00:00:10.255.0.3"] is OpKind.CREATE
    assert env.driver.observe() == want
    assert reconcile(env.driver, want) == []
    # A new metric is a new route (the key holds the metric): old one removed.
    moved = want.with_objects(add=[Route("192.168.200.0/24", "vsbr100", 300)],
                              remove=["route:254:192.168.200.0/24:100"])
    ops = reconcile(env.driver, moved)
    assert sorted(str(op) for op in ops) == ["create route:254:192.168.200.0/24:300",
                                             "remove route:254:192.168.200.0/24:100"]
    assert env.driver.observe() == moved


def test_remove_all_leaves_nothing_owned(env: Env) -> None:
    reconcile(env.driver, stitch(env.wg_name, peers=2))
    ops = reconcile(env.driver, DataplaneState())
    assert all(op.kind is OpKind.REMOVE for op in ops) and len(ops) == 9
    assert len(env.driver.observe()) == 0
    assert reconcile(env.driver, DataplaneState()) == []


def test_precondition_errors_name_the_op(env: Env) -> None:
    with pytest.raises(DataplaneError, match=r"create port:vsbr9:nope.*missing device"):
        reconcile(env.driver, DataplaneState([Bridge("vsbr9"), BridgePort("vsbr9", "nope")]))
    with pytest.raises(DataplaneError, match=r"create bridge:vsbr9.*already exists"):
        env.driver.apply([Op(OpKind.CREATE, Bridge("vsbr9"))])
    with pytest.raises(DataplaneError, match=r"remove bridge:vsbr7.*does not exist"):
        env.driver.apply([Op(OpKind.REMOVE, Bridge("vsbr7"))])
    with pytest.raises(DataplaneError, match=r"replace vxlan:vs5.*does not exist"):
        env.driver.apply([Op(OpKind.REPLACE, VxlanPort("vs5", 5, "10.0.0.1", "vsbr9"))])
    with pytest.raises(DataplaneError, match=r"create vxlan:vs5.*missing device"):
        env.driver.apply([Op(OpKind.CREATE, VxlanPort("vs5", 5, "10.0.0.1", "nowhere"))])
    assert env.driver.observe() == DataplaneState([Bridge("vsbr9")])


def test_multi_class_htb_with_u32_filters(env: Env) -> None:
    base = stitch(env.wg_name)
    classes = [RateLimit("vs100", 20, 30, 50, 0), RateLimit("vs100", 30, 5, 50, 2)]
    filters = [U32Filter("vs100", 1, 1, 20, ("ip protocol 6 0xff", "ip dport 5201 0xffff")),
               U32Filter("vs100", 2, 2, 30, ("ip tos 0xb8 0xfc",)),
               U32Filter("vs100", 2, 3, 30, ("u32 0x00006400 0xffffff00 at 32",))]
    want = base.with_objects(add=[*classes, *filters])
    reconcile(env.driver, want)
    assert env.driver.observe() == want
    assert reconcile(env.driver, want) == []
    # Change a class and drop a filter: converges in place.
    changed = want.with_objects(add=[RateLimit("vs100", 20, 40, 50, 1)],
                                remove=["u32:vs100:2:3"])
    ops = reconcile(env.driver, changed)
    assert {str(o) for o in ops} == {"replace rate:vs100:20", "remove u32:vs100:2:3"}
    assert env.driver.observe() == changed
    # Removing the default class (the largest id, 1:30) keeps the rest working.
    rest = changed.with_objects(remove=["rate:vs100:30", "u32:vs100:2:2"])
    reconcile(env.driver, rest)
    assert env.driver.observe() == rest
    # and so does removing the first class made (1:10).
    rest = rest.with_objects(remove=["rate:vs100:10"])
    reconcile(env.driver, rest)
    assert env.driver.observe() == rest
    assert reconcile(env.driver, rest) == []
    reconcile(env.driver, base)
    assert env.driver.observe() == base


def test_bad_rate_limit_is_refused_and_changes_nothing(env: Env) -> None:
    base = stitch(env.wg_name)
    reconcile(env.driver, base)
    for bad, why in ((RateLimit("vs100", 20, 1, 5, 8), "prio 8 outside 0..7"),
                     (RateLimit("vs100", 0, 1, 5), "class_id 0 outside")):
        with pytest.raises(DataplaneError, match=f"create {bad.key}.*{why}"):
            reconcile(env.driver, base.with_objects(add=[bad]))
        assert env.driver.observe() == base
    with pytest.raises(DataplaneError, match=r"replace rate:vs100:10.*prio 9"):
        reconcile(env.driver, base.with_objects(add=[RateLimit("vs100", 10, 1, 5, 9)]))
    assert env.driver.observe() == base


def test_filter_needs_a_rate_limit(env: Env) -> None:
    base = stitch(env.wg_name).with_objects(remove=["rate:vs100:10"])
    reconcile(env.driver, base)
    bad = base.with_objects(add=[U32Filter("vs100", 1, 1, 10, ("ip dport 22 0xffff",))])
    with pytest.raises(DataplaneError, match="u32:vs100:1:1"):
        reconcile(env.driver, bad)


def test_byte_counters_count_what_a_device_sends(env: Env) -> None:
    driver = env.driver
    assert isinstance(driver, CountingDriver)
    reconcile(driver, stitch(env.wg_name))
    before = driver.counters(HOST_PORT)
    assert before.device == HOST_PORT and before.rx_bytes >= 0 and before.tx_bytes >= 0
    env.transmit(20_000)
    after = driver.counters(HOST_PORT)
    assert after.tx_bytes - before.tx_bytes >= 20_000  # payload (plus headers on linux)
    assert after.rx_bytes >= before.rx_bytes
    # Devices the driver made count too (a tunnel's VXLAN port is what the daemon reads).
    assert driver.counters("vs100").tx_bytes >= 0
    with pytest.raises(DataplaneError, match=r"counters nope0.*missing device"):
        driver.counters("nope0")


def test_classes_on_a_host_port_and_their_counters(env: Env) -> None:
    """QoS on a device the driver did not make (a substrate interface the RM owns), and
    per-class counters read back: ids in order, never going backwards."""
    driver = env.driver
    assert isinstance(driver, ClassCountingDriver)
    base = stitch(env.wg_name)
    shaped: list[RateLimit | U32Filter] = [RateLimit(HOST_PORT, 10, 5, 10, 0),
                                           RateLimit(HOST_PORT, 20, 1, 10, 1),
                                           U32Filter(HOST_PORT, 1, 1, 10, ("ip tos 0x88 0xfc",))]
    want = base.with_objects(add=shaped)
    reconcile(driver, want)
    assert driver.observe() == want
    assert reconcile(driver, want) == []
    before = driver.class_stats(HOST_PORT)
    assert [(s.device, s.class_id) for s in before] == [(HOST_PORT, 10), (HOST_PORT, 20)]
    env.transmit(20_000)
    after = driver.class_stats(HOST_PORT)
    for b, a in zip(before, after, strict=True):
        assert a.bytes >= b.bytes >= 0 and a.packets >= b.packets and a.drops >= b.drops
    assert [s.class_id for s in driver.class_stats("vs100")] == [10]
    with pytest.raises(DataplaneError, match=r"nope0.*missing device"):
        driver.class_stats("nope0")
    reconcile(driver, base)  # the classes go, the host port stays
    assert driver.observe() == base and driver.class_stats(HOST_PORT) == []


def test_one_refused_object_does_not_keep_the_others_out(env: Env) -> None:
    """A second VXLAN device for a VNI is refused (the kernel says File exists); every
    other op of the same plan still applies, and the error lists only the refused one."""
    first = DataplaneState([Bridge("vsbr4"), Bridge("vsbr5"),
                            VxlanPort("vs5", 5, "10.0.0.1", "vsbr4")])
    reconcile(env.driver, first)
    more = first.with_objects(add=[VxlanPort("vs6", 5, "10.0.0.1", "vsbr4"),
                                   Bridge("vsbr6"), BridgePort("vsbr5", "vs5")])
    with pytest.raises(DataplaneApplyError) as failed:
        reconcile(env.driver, more)
    assert list(failed.value.failures) == ["vxlan:vs6"]
    assert {op.obj.key for op in failed.value.applied} == {"bridge:vsbr6", "port:vsbr5:vs5"}
    have = env.driver.observe()
    assert "bridge:vsbr6" in have and "port:vsbr5:vs5" in have and "vxlan:vs6" not in have
    # skip: leave the refused object out of a pass -- converged otherwise.
    assert reconcile(env.driver, more, skip={"vxlan:vs6"}) == []
    reconcile(env.driver, DataplaneState())
