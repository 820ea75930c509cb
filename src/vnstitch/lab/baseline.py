"""Hand-configured VXLAN over WireGuard across the lab, and the measurements on top of it.

Theory of operation: :func:`hand_stitch` is what a stitch looks like without any
protocol: for a VN it gives the two edge routers (A and B) a WireGuard interface
between their loopbacks, a VXLAN device over it, a bridge with the VXLAN device and the
local hosts' ports, and a flood entry toward the other VTEP -- all through
:class:`~vnstitch.dataplane.linux.LinuxDataplane`, so this is also the reference the
daemon's stitches are compared against. :func:`ping` and :func:`iperf` run the real
tools inside host namespaces; :func:`capture` opens an ``AF_PACKET`` socket inside a
transit namespace and classifies what crosses the substrate, proving the payload is
WireGuard (UDP, message types 1-4) and that no inner ICMP, VXLAN or overlay address is
visible.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, ip_interface
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyroute2 import netns as pr_netns

from vnstitch.dataplane.base import reconcile
from vnstitch.dataplane.linux import LinuxDataplane
from vnstitch.dataplane.objects import (
    Bridge,
    BridgePort,
    DataplaneObject,
    DataplaneState,
    FdbEntry,
    RateLimit,
    VxlanPort,
    WireguardInterface,
    WireguardPeer,
)
from vnstitch.lab import netns
from vnstitch.lab.netns import LabError
from vnstitch.lab.substrate import Lab
from vnstitch.protocol.tunnels import VXLAN_PORT_BASE, VXLAN_PORTS

WG_PORT = 51820
_ETH_P_ALL = 0x0003
T = TypeVar("T")


def keypair() -> tuple[str, str]:
    priv = X25519PrivateKey.generate()
    pub = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return (base64.b64encode(priv.private_bytes_raw()).decode(),
            base64.b64encode(pub).decode())


def tunnel_ip(segment: str) -> str:
    return {"a": "10.255.0.1", "b": "10.255.0.2"}[segment]


def stitch_state(lab: Lab, segment: str, peer_segment: str,
                 keys: dict[str, tuple[str, str]], *, vnids: tuple[int, ...] = (100,),
                 rate_mbps: float | None = None, encrypted: bool = True) -> DataplaneState:
    """Desired state of ``segment``'s router for a hand stitch toward ``peer_segment``.

    ``encrypted=False`` gives plain VXLAN straight over the substrate (loopback to
    loopback), the benchmark's no-WireGuard baseline.
    """
    me, peer = lab.routers[segment], lab.routers[peer_segment]
    objs: list[DataplaneObject] = []
    if encrypted:
        wg = lab.wg_name(segment)
        objs.append(WireguardInterface(
            wg, keys[segment][0], WG_PORT, f"{tunnel_ip(segment)}/24",
            (WireguardPeer(keys[peer_segment][1], f"{peer.loopback}:{WG_PORT}",
                           (f"{tunnel_ip(peer_segment)}/32",), 0),)))
        local, remote, underlay = tunnel_ip(segment), tunnel_ip(peer_segment), wg
    else:
        # Unencrypted: straight over the preferred substrate link (veth "l-t" on A and B).
        local, remote, underlay = me.loopback, peer.loopback, "l-t"
    for vn in vnids:
        vx, br = f"vx{vn}", f"br{vn}"
        objs += [VxlanPort(vx, vn, local, underlay, mtu=1370 if encrypted else 1450),
                 Bridge(br), BridgePort(br, vx), FdbEntry(vx, remote)]
        objs += [BridgePort(br, h.router_port) for h in lab.hosts
                 if h.segment == segment and h.vnid == vn]
        if rate_mbps is not None:
            objs.append(RateLimit(vx, 10, rate_mbps, rate_mbps))
    return DataplaneState(objs)


def hand_stitch(lab: Lab, vnids: tuple[int, ...] = (100,), rate_mbps: float | None = None,
                encrypted: bool = True, owner: str = "baseline") -> None:
    """Stitch ``vnids`` between A and B by hand (idempotent: re-running changes nothing)."""
    keys = {"a": keypair(), "b": keypair()}
    for seg, other in (("a", "b"), ("b", "a")):
        with LinuxDataplane(lab.routers[seg].ns, owner=owner) as dp:
            reconcile(dp, stitch_state(lab, seg, other, keys, vnids=vnids, rate_mbps=rate_mbps,
                                           encrypted=encrypted))


def unstitch(lab: Lab, owner: str = "baseline") -> None:
    for seg in ("a", "b"):
        with LinuxDataplane(lab.routers[seg].ns, owner=owner) as dp:
            reconcile(dp, DataplaneState())


_PING_RE = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


def ping(lab: Lab, src: str, dst: str, count: int = 3, *, interval_s: float = 0.2,
         deadline_s: float = 10.0) -> tuple[int, int]:
    """(sent, received) pinging host ``dst`` from host ``src``."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval_s),
            "-w", str(max(1, round(deadline_s))), lab.host(dst).ip]
    done = netns.run_in(lab.host(src).ns, argv, timeout_s=deadline_s + 5, check=False)
    m = _PING_RE.search(done.stdout)
    if not m:
        raise LabError(f"ping {src}->{dst}: unreadable output {done.stdout!r} {done.stderr!r}")
    return int(m.group(1)), int(m.group(2))


def wait_reachable(lab: Lab, src: str, dst: str, timeout_s: float = 10.0) -> float:
    """Seconds until one ping from ``src`` reaches ``dst`` (first packet delivered)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if ping(lab, src, dst, count=1, deadline_s=1)[1] == 1:
            return time.monotonic() - start
    raise LabError(f"{dst} not reachable from {src} within {timeout_s}s")


def iperf(lab: Lab, client: str, server: str, seconds: float = 3.0,
          port: int = 5201) -> float:
    """TCP throughput client -> server in Mbit/s, as the iperf3 receiver measured it."""
    srv = netns.popen_in(lab.host(server).ns, ["iperf3", "-s", "-1", "-p", str(port)])
    try:
        time.sleep(0.2)  # let the server bind before the client connects
        done = netns.run_in(lab.host(client).ns,
                            ["iperf3", "-c", lab.host(server).ip, "-p", str(port), "-t",
                             str(seconds), "-J", "-O", "1"],
                            timeout_s=seconds + 20, check=False)
    finally:
        srv.kill()
        srv.communicate()
    try:
        data: dict[str, Any] = json.loads(done.stdout)
        return float(data["end"]["sum_received"]["bits_per_second"]) / 1e6
    except (ValueError, KeyError) as exc:
        err = done.stderr.strip() or done.stdout[-200:]
        raise LabError(f"iperf3 {client}->{server}: no result ({err})") from exc


@dataclass
class CaptureSummary:
    frames: int = 0
    wireguard: dict[str, int] = field(default_factory=dict)  # message type -> count
    inner_icmp: int = 0  # ICMP whose addresses are overlay (VN) addresses
    vxlan_in_clear: int = 0  # VXLAN ports on the substrate: VXLAN not inside WireGuard
    overlay_addresses_seen: int = 0

    @property
    def encrypted(self) -> bool:
        return (self.wireguard.get("data", 0) > 0 and self.inner_icmp == 0
                and self.vxlan_in_clear == 0 and self.overlay_addresses_seen == 0)

    def as_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "wireguard": self.wireguard,
                "inner_icmp": self.inner_icmp, "vxlan_in_clear": self.vxlan_in_clear,
                "overlay_addresses_seen": self.overlay_addresses_seen,
                "encrypted": self.encrypted}


_WG_TYPES = {1: "handshake_initiation", 2: "handshake_response", 3: "cookie", 4: "data"}


def _overlay_ipv4(frame: bytes, overlay_ips: set[bytes], out: CaptureSummary) -> bool:
    """Count an IPv4 packet with overlay (VN) addresses; True if the frame is IPv4."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return False
    if frame[26:30] in overlay_ips or frame[30:34] in overlay_ips:
        out.overlay_addresses_seen += 1
        if frame[23] == 1:
            out.inner_icmp += 1
    return True


def classify(frame: bytes, overlay_ips: set[bytes], out: CaptureSummary) -> None:
    """Account one Ethernet frame seen on the substrate (and a VXLAN frame's inner one)."""
    out.frames += 1
    if not _overlay_ipv4(frame, overlay_ips, out):
        return
    ihl = (frame[14] & 0x0F) * 4
    if frame[23] != 17 or len(frame) < 14 + ihl + 12:
        return
    sport, dport = struct.unpack("!HH", frame[14 + ihl:18 + ihl])
    payload = frame[14 + ihl + 8:]
    if any(p == 4789 or VXLAN_PORT_BASE <= p < VXLAN_PORT_BASE + VXLAN_PORTS
           for p in (sport, dport)):
        out.vxlan_in_clear += 1
        _overlay_ipv4(payload[8:], overlay_ips, out)  # the VN's own frame, readable
        return
    if payload[1:4] == b"\0\0\0" and payload[0] in _WG_TYPES:
        name = _WG_TYPES[payload[0]]
        out.wireguard[name] = out.wireguard.get(name, 0) + 1


def capture(ns: str, ifname: str, overlay_ips: list[str], during: Callable[[], T]
            ) -> tuple[T, CaptureSummary]:
    """Run ``during()`` while capturing every frame on ``ifname`` in namespace ``ns``."""
    sock = pr_netns.create_socket(ns, socket.AF_PACKET, socket.SOCK_RAW,
                                  socket.htons(_ETH_P_ALL))
    summary = CaptureSummary()
    inner = {IPv4Address(ip_interface(a).ip).packed for a in overlay_ips}
    stop = threading.Event()
    try:
        sock.bind((ifname, 0))
        sock.settimeout(0.1)

        def reader() -> None:
            while not stop.is_set():
                try:
                    classify(sock.recv(65535), inner, summary)
                except TimeoutError:
                    continue

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            result = during()
            time.sleep(0.2)  # the last frames are still in the socket's queue
        finally:
            stop.set()
            thread.join()
    finally:
        sock.close()
    return result, summary


def baseline(lab: Lab, seconds: float = 3.0, pings: int = 5) -> dict[str, Any]:
    """Hand stitch VN 100 A<->B, ping and iperf3 across it, capture on the A-T link."""
    t0 = time.monotonic()
    hand_stitch(lab)
    setup = time.monotonic() - t0
    first = wait_reachable(lab, "ha1", "hb1")
    t_link = lab.link("a", "t")
    (sent, received), cap = capture(lab.routers["t"].ns, t_link.b_dev,
                                    [h.address for h in lab.hosts],
                                    lambda: ping(lab, "ha1", "hb1", count=pings))
    mbps = iperf(lab, "ha1", "hb1", seconds)
    return {"run_id": lab.run_id, "setup_seconds": setup, "first_packet_seconds": first,
            "ping_sent": sent, "ping_received": received, "iperf_mbps": mbps,
            "encrypted_on_substrate": cap.encrypted, "capture": cap.as_dict()}
