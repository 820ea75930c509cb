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

import json
import shutil
import subprocess
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


def _udp(h: str, port: int, mbps: float, tos: int | None, seconds: int
         ) -> subprocess.Popen[str]:
    argv = ["ip", "netns", "exec", h, "iperf3", "-c", "10.71.2.2", "-p", str(port), "-u",
            "-b", f"{mbps}M", "-l", "1000", "-t", str(seconds), "-J"]
    if tos is not None:
        argv += ["-S", str(tos)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lost(proc: subprocess.Popen[str]) -> tuple[int, int]:
    """(lost, sent) packets of an iperf3 UDP client, as its server counted them."""
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    s = json.loads(out)["end"]["sum"]
    return int(s["lost_packets"]), int(s["packets"])


def _video_and_email(data: dict[str, Any]) -> tuple[dict[int, tuple[int, int]], int, int]:
    """Per class id (packets, drops) on r's egress, and the video flow's (lost, sent),
    after a 4 Mbit/s DSCP-34 video flow and a 40 Mbit/s e-mail flow share the 20 Mbit/s
    link for 3 s."""
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 not installed")
    with _three_hops() as (h, r, b):
        _, dp = _apply(r, _config(data))
        servers = [subprocess.Popen(["ip", "netns", "exec", b, "iperf3", "-s", "-1", "-p",
                                     str(p)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for p in (5201, 5202)]
        try:
            time.sleep(0.5)  # the servers' listen (a test helper, not the code under test)
            video = _udp(h, 5201, 4, 34 << 2, 3)
            email = _udp(h, 5202, 40, None, 3)
            video_lost = _lost(video)
            _lost(email)
        finally:
            for s in servers:
                s.kill()
                s.wait()
        stats = {s.class_id: (s.packets, s.drops) for s in dp.class_stats("qrb")}
    return stats, *video_lost


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
