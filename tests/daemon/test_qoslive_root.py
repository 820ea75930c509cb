"""QoS classes and stitching-priority bands read back from the kernel (root, namespaces).

Each test builds its own namespaces (``fresh_netns``, removed on failure) and applies the
daemon's ``qos:`` overlay (:class:`vnstitch.daemon.qoslive.QosLive`) through the Linux
driver, as the daemon's reconcile does; it looks only at its own devices.

* classes and filters: the policy's HTB classes and u32 filters on a substrate interface
  the driver did not create (a ``shaped`` device) read back equal to what was asked, and
  a second reconcile has nothing to do;
* video under a saturating e-mail flow (forwarded through a router namespace whose egress
  is shaped to 20 Mbit/s): with the policy's classes the video class drops nothing and the
  e-mail class absorbs every drop (kernel class counters); the control with one class
  drops video packets too;
* priority bands: the stitched route to a prefix gets a metric below the substrate's
  OSPF route (metric 20) to the same prefix and the kernel picks the stitch's bridge;
  the control, the same route in the ordinary band, loses to the substrate.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from tests.rootutil import fresh_netns, require_root
from vnstitch.daemon.errors import ConfigError
from vnstitch.daemon.qosconfig import QosConfig, parse_qos
from vnstitch.daemon.qoslive import QosLive
from vnstitch.dataplane import (
    Bridge,
    BridgePort,
    DataplaneState,
    Route,
    VxlanPort,
    reconcile,
)
from vnstitch.dataplane.linux import LinuxDataplane
from vnstitch.dataplane.qos import route_metrics
from vnstitch.routing.table import SUBSTRATE_METRIC, RouteEntry, kernel_metric

pytestmark = [pytest.mark.root, pytest.mark.timeout(90)]

LINK_MBPS = 20
TWO_CLASSES: dict[str, Any] = {
    "link_mbps": 100,
    "classes": [{"name": "video", "priority": 0, "guaranteed_mbps": 60, "max_mbps": 100},
                {"name": "email", "priority": 3, "guaranteed_mbps": 5, "max_mbps": 100}],
    "applications": [{"name": "tv", "class": "video", "dscp": [34]}],
    "interfaces": [{"device": "qrb", "capacity_mbps": LINK_MBPS}],
}
ONE_CLASS: dict[str, Any] = {
    "link_mbps": 100,
    "classes": [{"name": "all", "priority": 0, "guaranteed_mbps": 100, "max_mbps": 100}],
    "interfaces": [{"device": "qrb", "capacity_mbps": LINK_MBPS}],
}


def _fail(path: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {problem}")


def _config(data: dict[str, Any]) -> QosConfig:
    cfg = parse_qos(data, _fail)
    assert cfg is not None
    return cfg


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=20)


@contextmanager
def _three_hops() -> Iterator[tuple[str, str, str]]:
    """h -- r -- b: hosts h and b, router r forwarding between them; r's egress to b
    (``qrb``) is made here, as a lab makes its substrate links."""
    with ExitStack() as stack:
        h, r, b = (stack.enter_context(fresh_netns(t)) for t in ("qh", "qr", "qb"))
        _ip(h, "link", "add", "qhr", "type", "veth", "peer", "name", "qrh", "netns", r)
        _ip(r, "link", "add", "qrb", "type", "veth", "peer", "name", "qbr", "netns", b)
        for ns, dev, addr in ((h, "qhr", "10.71.1.2/24"), (r, "qrh", "10.71.1.1/24"),
                              (r, "qrb", "10.71.2.1/24"), (b, "qbr", "10.71.2.2/24")):
            _ip(ns, "addr", "add", addr, "dev", dev)
            _ip(ns, "link", "set", dev, "up")
        _ip(h, "route", "add", "default", "via", "10.71.1.1")
        _ip(b, "route", "add", "default", "via", "10.71.2.1")
        subprocess.run(["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True, timeout=10)
        yield h, r, b


def _apply(router: str, cfg: QosConfig) -> tuple[DataplaneState, LinuxDataplane]:
    want = QosLive(cfg).overlay(DataplaneState())
    dp = LinuxDataplane(router, owner="qostest", shaped=cfg.devices)
    reconcile(dp, want)
    return want, dp


def test_classes_and_filters_on_a_shaped_interface_read_back() -> None:
    require_root()
    with _three_hops() as (_, r, _b):
        want, dp = _apply(r, _config(TWO_CLASSES))
        assert len(want) == 3  # two classes, one DSCP filter
        assert dp.observe() == want
        assert reconcile(dp, want) == []
        stats = dp.class_stats("qrb")
        assert [s.class_id for s in stats] == [10, 20]
        # the device itself is not the driver's: removing the QoS leaves it there
        reconcile(dp, DataplaneState())
        assert dp.observe() == DataplaneState() and dp.class_stats("qrb") == []


#: A paced UDP sender and a counting receiver. iperf3 is not used for the video flow:
#: its TCP control connection crosses the saturated queue too, and its end-of-test
#: exchange then times out on a loaded host.
UDP_SEND = """
import socket, sys, time
dst, port, mbps, tos, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), \\
    int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
gap = 1000 * 8 / (mbps * 1e6)
n = int(seconds / gap)
start = time.monotonic()
for i in range(n):
    delay = start + i * gap - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    s.sendto(i.to_bytes(4, "big") + bytes(996), (dst, port))
print(n)
"""
UDP_COUNT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
seen = set()
s.settimeout(30.0)
seen.add(int.from_bytes(s.recv(2048)[:4], "big"))
s.settimeout(2.0)
try:
    while True:
        seen.add(int.from_bytes(s.recv(2048)[:4], "big"))
except TimeoutError:
    pass
print(len(seen))
"""


def _in_ns(ns: str, code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _email_flood(h: str, seconds: int) -> subprocess.Popen[str]:
    """A best-effort UDP flow from h to b as fast as iperf3 can send (no pacing): the
    shaped queue stays full. A paced flow (iperf3 sends a burst per millisecond tick)
    lets the queue drain between bursts, and a video packet that lands between them is
    never dropped -- the one-class control then passes on a quiet host."""
    return subprocess.Popen(["ip", "netns", "exec", h, "iperf3", "-c", "10.71.2.2", "-p",
                             "5202", "-u", "-b", "0", "-l", "1000", "-t", str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)


def _video(h: str, b: str) -> tuple[int, int]:
    """(lost, sent) packets of a 4 Mbit/s DSCP-34 flow from h to b for 3 s."""
    receiver = _in_ns(b, UDP_COUNT, "5201")
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        sender = _in_ns(h, UDP_SEND, "10.71.2.2", "5201", "4", str(34 << 2), "3")
        out, err = sender.communicate(timeout=60)
        assert sender.returncode == 0, err
        sent = int(out)
        out, err = receiver.communicate(timeout=60)
        assert receiver.returncode == 0, err
        received = int(out)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.communicate()
    return sent - received, sent


def _wait_saturated(dp: LinuxDataplane, deadline_s: float = 20.0) -> None:
    """Until the shaped egress has dropped packets: the e-mail flow fills the link (a
    loaded host may start iperf3 late, so this waits on the kernel, not on a sleep)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if sum(s.drops for s in dp.class_stats("qrb")) > 100:
            return
        time.sleep(0.05)
    pytest.fail("the e-mail flow never saturated qrb")


def _video_and_email(data: dict[str, Any]) -> tuple[dict[int, tuple[int, int]], int, int]:
    """Per class id (packets, drops) on r's egress, and the video flow's (lost, sent),
    after a 4 Mbit/s DSCP-34 video flow runs for 3 s while an unpaced e-mail flow,
    started first, already saturates the 20 Mbit/s link."""
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 not installed")
    with _three_hops() as (h, r, b):
        _, dp = _apply(r, _config(data))
        server = subprocess.Popen(["ip", "netns", "exec", b, "iperf3", "-s", "-1", "-p",
                                   "5202"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        email: subprocess.Popen[str] | None = None
        try:
            time.sleep(0.5)  # the server's listen (a test helper, not the code under test)
            email = _email_flood(h, 60)
            _wait_saturated(dp)
            lost, sent = _video(h, b)
            assert email.poll() is None  # the e-mail flow outlived the video flow
        finally:
            procs: list[subprocess.Popen[Any]] = [server, *([email] if email else [])]
            for p in procs:
                p.kill()
                p.communicate()
        stats = {s.class_id: (s.packets, s.drops) for s in dp.class_stats("qrb")}
    return stats, lost, sent


def test_video_class_is_protected_from_a_saturating_email_flow() -> None:
    require_root()
    stats, lost, sent = _video_and_email(TWO_CLASSES)
    (video_pkts, video_drops), (_, email_drops) = stats[10], stats[20]
    print(f"classes {stats}; video lost {lost} of {sent}")
    assert video_pkts >= 0.9 * sent  # the video flow went through the video class
    assert video_drops == 0
    assert email_drops > 1000  # e-mail absorbs the shortfall
    assert lost <= 0.001 * sent


def test_control_one_class_cuts_video() -> None:
    require_root()
    stats, lost, sent = _video_and_email(ONE_CLASS)
    print(f"classes {stats}; video lost {lost} of {sent}")
    assert list(stats) == [10] and stats[10][1] > 1000
    assert lost > 0.001 * sent  # video shares the one queue's drops: fails the claim's bound


PREFIX = "10.2.0.0/24"


def _bands(route_metric: int | None) -> tuple[int | None, int | None, str | None]:
    """(stitched metric, substrate metric, chosen device) for PREFIX in a namespace with
    an OSPF route (metric 20) through ``sub0`` and the stitch's route through bridge
    ``vn100`` -- at the VN's band from the qos overlay, or at ``route_metric``."""
    with fresh_netns("qp") as ns:
        _ip(ns, "link", "add", "sub0", "type", "veth", "peer", "name", "sub1")
        _ip(ns, "addr", "add", "10.72.0.1/24", "dev", "sub0")
        _ip(ns, "link", "set", "sub1", "up")
        _ip(ns, "link", "set", "sub0", "up")
        _ip(ns, "route", "add", PREFIX, "via", "10.72.0.2", "dev", "sub0", "proto", "ospf",
            "metric", str(SUBSTRATE_METRIC))
        core = DataplaneState([Bridge("vn100"), VxlanPort("vx1", 100, "10.72.0.1", "sub0"),
                               BridgePort("vn100", "vx1"),
                               Route(PREFIX, "vn100", 5 if route_metric is None
                                     else route_metric)])
        cfg = _config({**TWO_CLASSES, "interfaces": [],
                       "stitching_priority": {"vnids": {100: 12}}})
        want = QosLive(cfg).overlay(core) if route_metric is None else core
        dp = LinuxDataplane(ns, owner="qostest")
        reconcile(dp, want)
        assert dp.observe() == want
        got = route_metrics(ns, PREFIX)
        return got.stitched_metric, got.substrate_metric, got.chosen_device


def test_stitched_route_wins_over_the_substrate_route_to_the_same_prefix() -> None:
    require_root()
    stitched, substrate, chosen = _bands(None)
    assert (stitched, substrate) == (3, SUBSTRATE_METRIC)  # priority 12 -> metric 15-12
    assert chosen == "vn100"


def test_control_ordinary_band_loses_to_the_substrate() -> None:
    require_root()
    ordinary = kernel_metric(RouteEntry(PREFIX, "", "vn100", metric=5))
    assert ordinary > SUBSTRATE_METRIC
    stitched, substrate, chosen = _bands(ordinary)
    assert (stitched, substrate) == (ordinary, SUBSTRATE_METRIC)
    assert chosen == "sub0"
