"""A VN's QoS match covers its tunnels' VXLAN ports (root, namespaces).

Tunnels send VXLAN to a per-token port (``TUNNEL_VXLAN_PORT_BASE`` + 0..1023, a range
aligned to its size), not 4789. The ``qos:`` policy's VN match is two u32 filters --
UDP to 4789, or to that range by one mask -- plus the VNI. Here they are applied through
the Linux driver on a substrate interface of a fresh namespace, read back from the
kernel, and then classify real packets: VXLAN of VN 100 to a tunnel port and to 4789
land in the VN's class; the control, the same datagrams to a port just outside the
range, falls into the default class.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from tests.rootutil import fresh_netns, require_root
from vnstitch.daemon.errors import ConfigError
from vnstitch.daemon.qosconfig import parse_qos
from vnstitch.daemon.qoslive import QosLive
from vnstitch.dataplane import DataplaneState, U32Filter, reconcile
from vnstitch.dataplane.linux import LinuxDataplane
from vnstitch.dataplane.objects import TUNNEL_VXLAN_PORT_BASE, TUNNEL_VXLAN_PORTS
from vnstitch.routing.qos import TUNNEL_DPORT_MATCH

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

POLICY: dict[str, Any] = {
    "link_mbps": 100,
    "classes": [{"name": "video", "priority": 0, "guaranteed_mbps": 60, "max_mbps": 100},
                {"name": "email", "priority": 3, "guaranteed_mbps": 5, "max_mbps": 100}],
    "applications": [{"name": "vn100", "class": "video", "vnid": 100}],
    "interfaces": [{"device": "qxr", "capacity_mbps": 100}],
}
SEND = """
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
vxlan = bytes([8, 0, 0, 0]) + (100 << 8).to_bytes(4, "big")  # flags, VNI 100
for _ in range(n):
    s.sendto(vxlan + bytes(64), ("10.72.0.2", port))
"""


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=20)


@contextmanager
def _link() -> Iterator[str]:
    """Namespace r with ``qxr``, a veth to namespace b; yields r."""
    with ExitStack() as stack:
        r, b = (stack.enter_context(fresh_netns(t)) for t in ("qxr", "qxb"))
        _ip(r, "link", "add", "qxr", "type", "veth", "peer", "name", "qxb", "netns", b)
        for ns, dev, addr in ((r, "qxr", "10.72.0.1/24"), (b, "qxb", "10.72.0.2/24")):
            _ip(ns, "addr", "add", addr, "dev", dev)
            _ip(ns, "link", "set", dev, "up")
        yield r


def _packets(dp: LinuxDataplane) -> dict[int, int]:
    return {s.class_id: s.packets for s in dp.class_stats("qxr")}


def _send_until(r: str, dp: LinuxDataplane, port: int, class_id: int, n: int = 20
                ) -> dict[int, int]:
    """Send ``n`` datagrams to ``port``; wait (deadline) until ``class_id`` counted them;
    the per-class change."""
    before = _packets(dp)
    subprocess.run(["ip", "netns", "exec", r, sys.executable, "-c", SEND, str(port), str(n)],
                   check=True, timeout=20)
    deadline = time.monotonic() + 10
    while True:
        after = _packets(dp)
        delta = {c: after[c] - before.get(c, 0) for c in after}
        if delta.get(class_id, 0) >= n or time.monotonic() > deadline:
            return delta
        time.sleep(0.05)


def test_the_vn_match_covers_the_tunnel_ports_and_reads_back() -> None:
    require_root()
    cfg = parse_qos(POLICY, lambda path, problem: ConfigError(f"{path}: {problem}"))
    assert cfg is not None
    assert TUNNEL_VXLAN_PORT_BASE % TUNNEL_VXLAN_PORTS == 0  # one mask covers the range
    with _link() as r:
        want = QosLive(cfg).overlay(DataplaneState())
        dp = LinuxDataplane(r, owner="qosvx", shaped=cfg.devices)
        try:
            reconcile(dp, want)
            assert dp.observe() == want and reconcile(dp, want) == []
            vn = [o for o in dp.observe() if isinstance(o, U32Filter)]
            assert len(vn) == 2 and {o.class_id for o in vn} == {10}
            # the kernel's keys of the range filter: dport (bytes 22-23) 0xbc00/0xfc00
            ranged = [o for o in want if isinstance(o, U32Filter)
                      and TUNNEL_DPORT_MATCH in o.matches]
            assert len(ranged) == 1
            last = TUNNEL_VXLAN_PORT_BASE + TUNNEL_VXLAN_PORTS - 1
            for port in (TUNNEL_VXLAN_PORT_BASE, last, 4789):
                got = _send_until(r, dp, port, 10)
                assert got.get(10, 0) >= 20 and got.get(20, 0) < 5, (port, got)
            # control: just outside the range, the same VXLAN of VN 100 is not matched
            for port in (TUNNEL_VXLAN_PORT_BASE - 1, last + 1):
                got = _send_until(r, dp, port, 20)
                assert got.get(20, 0) >= 20 and got.get(10, 0) < 5, (port, got)
        finally:
            reconcile(dp, DataplaneState())
