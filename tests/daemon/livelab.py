"""A namespace lab with one live Route Manager daemon per segment, for root tests."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyroute2 import netns as pr_netns

from vnstitch.dataplane.wireguard_go import UAPI_DIR, socket_is_live
from vnstitch.lab import substrate
from vnstitch.lab.routemgrs import LAB_TIMERS, LabRouteManagers, fast_arp
from vnstitch.lab.substrate import Lab


def live_wireguard_sockets() -> set[str]:
    if not UAPI_DIR.is_dir():
        return set()
    return {p.stem for p in UAPI_DIR.glob("*.sock") if socket_is_live(p.stem)}


def wireguard_go_pids(ifnames: set[str]) -> list[int]:
    """wireguard-go processes serving any of ``ifnames``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"wireguard-go") and \
                any(a.decode(errors="replace") in ifnames for a in argv[1:]):
            out.append(int(entry.name))
    return out


@contextlib.contextmanager
def live_lab(workdir: Path, timers: dict[str, float] | None = None,
             allocation: dict[str, Any] | None = None,
             qos: dict[str, Any] | None = None,
             qos_links: dict[frozenset[str], float] | None = None, *,
             pra: dict[str, Any] | None = None,
             ) -> Iterator[tuple[Lab, LabRouteManagers]]:
    """Build a lab (unique run id), start its four daemons; remove everything after."""
    lab = substrate.build()
    rms: LabRouteManagers | None = None
    try:
        fast_arp(lab)
        rms = LabRouteManagers(lab, workdir, timers={**LAB_TIMERS, **(timers or {})},
                               allocation=allocation, qos=qos, qos_links=qos_links or {},
                               pra=pra)
        rms.start_all()
        yield lab, rms
    finally:
        try:
            if rms is not None:
                for seg in rms.rms:
                    with contextlib.suppress(Exception):
                        rms.stop(seg)
        finally:
            substrate.teardown(lab.run_id)


def send_from(ns: str, source: str, dest: tuple[str, int], payloads: list[bytes], *,
              spoof_port: int | None = None) -> int:
    """Send UDP datagrams from address ``source`` inside namespace ``ns``; with
    ``spoof_port``, from that source port through a raw socket (a port a daemon there
    holds: as its own datagrams would come; the kernel does not fragment those, so one
    larger than the MTU is refused). How many the kernel took."""
    sent = 0
    if spoof_port is None:
        sock = pr_netns.create_socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((source, 0))
    else:
        sock = pr_netns.create_socket(ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        for p in payloads:
            with contextlib.suppress(OSError):  # e.g. EMSGSIZE for the oversize one
                if spoof_port is None:
                    sock.sendto(p, dest)
                else:
                    sock.sendto(_ipv4_udp((source, spoof_port), dest, p), (dest[0], 0))
                sent += 1
            time.sleep(0.001)
    finally:
        sock.close()
    return sent


def _ipv4_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """IPv4 + UDP headers for IPPROTO_RAW (the kernel fills the id and IP checksum; a
    zero UDP checksum means none)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64,
                       socket.IPPROTO_UDP, 0, socket.inet_aton(src[0]),
                       socket.inet_aton(dst[0])) + udp


def sniff_udp_payload(ns: str, ifname: str, src: str, dport: int, timeout_s: float = 5.0
                      ) -> bytes:
    """The payload of the first UDP datagram ``src`` -> ``*:dport`` seen on ``ifname``."""
    sock = pr_netns.create_socket(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    src_raw = socket.inet_aton(src)
    deadline = time.monotonic() + timeout_s
    try:
        sock.bind((ifname, 0))
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                frame = sock.recv(65535)
            except TimeoutError:
                continue
            if frame[12:14] != b"\x08\x00" or frame[23] != 17 or frame[26:30] != src_raw:
                continue
            ihl = (frame[14] & 0x0F) * 4
            if int.from_bytes(frame[16 + ihl:18 + ihl], "big") == dport:
                return bytes(frame[14 + ihl + 8:])
    finally:
        sock.close()
    raise AssertionError(f"no UDP datagram from {src} to port {dport} on {ifname}")


def is_root() -> bool:
    return os.geteuid() == 0
