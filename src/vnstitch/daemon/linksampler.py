"""The substrate links toward this Route Manager's neighbours: counters and link events.

Theory of operation. :func:`sample_links` (blocking: call it from a worker thread) opens
one rtnetlink socket in the daemon's namespace, asks the kernel which device and gateway
reach each neighbour's control address (``route get``: the substrate link toward it), and
reads each such device's IFLA_STATS64 byte and drop counters (stamped with the time of
the read) and the drops of its HTB classes (the qdisc's drops never reach the device's
counters). The result,
:class:`LinkReading` per neighbour, feeds the controller's hysteresis monitor
(:mod:`vnstitch.daemon.congestion`); a neighbour with no route, or whose route now leaves
through another device, is reported as such -- the map is re-read every sample, so a cut
link drops out of it by itself.

:class:`LinkEvents` sees link changes at once: a raw ``NETLINK_ROUTE`` socket joined to
the ``RTMGRP_LINK`` group, read by the asyncio loop (``add_reader``, no thread). Each
RTM_NEWLINK / RTM_DELLINK names an interface index; a deleted link, or one without
``IFF_LOWER_UP``, is reported down through the callback. Only the fixed netlink and
ifinfomsg headers are parsed (the index and flags): the callback maps indexes to devices
with the last sample. It listens in the namespace the daemon runs in.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from vnstitch.dataplane import tc
from vnstitch.dataplane.base import DataplaneError

RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFF_LOWER_UP = 0x10000
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change


@dataclass(frozen=True, slots=True)
class LinkReading:
    """One neighbour's substrate link at one instant (``error`` set: unreadable)."""

    neighbour: str
    device: str = ""
    index: int = 0
    gateway: str = ""
    tx_bytes: int = 0
    rx_bytes: int = 0
    tx_dropped: int = 0
    error: str = ""
    source: str = ""  # the address the kernel sends from toward the neighbour
    #: When the counters were read (the caller's clock).
    at: float | None = None
    #: Packets dropped by the device's HTB classes (its qdisc), cumulative.
    queue_drops: int = 0


def sample_links(hosts: Mapping[str, str], netns: str | None = None,
                 clock: Callable[[], float] | None = None) -> dict[str, LinkReading]:
    """Per neighbour id (``hosts``: id -> its control address): the link toward it,
    stamped with ``clock()`` taken right after its counters were read."""
    out: dict[str, LinkReading] = {}
    try:
        ipr = IPRoute(netns=netns) if netns else IPRoute()
    except (OSError, NetlinkError) as exc:
        return {n: LinkReading(n, error=f"netlink: {exc}") for n in hosts}
    try:
        stats: dict[int, tuple[str, Any]] = {}
        for m in ipr.get_links():
            s = m.get_attr("IFLA_STATS64") or m.get_attr("IFLA_STATS")
            stats[int(m["index"])] = (str(m.get_attr("IFLA_IFNAME")), s)
        at = clock() if clock is not None else None
        drops: dict[int, int] = {}
        for n, host in hosts.items():
            try:
                route = ipr.route("get", dst=host)[0]
            except (OSError, NetlinkError) as exc:
                out[n] = LinkReading(n, error=f"no route to {host}: {exc}")
                continue
            idx = int(route.get_attr("RTA_OIF") or 0)
            name, s = stats.get(idx, ("", None))
            if s is None or name == "lo":
                out[n] = LinkReading(n, error=f"route to {host} has no link device")
                continue
            if idx not in drops:
                try:
                    drops[idx] = sum(c.drops for c in tc.class_stats(ipr, idx, name))
                except (OSError, NetlinkError, DataplaneError):
                    drops[idx] = 0  # no HTB tree, or unreadable: no queue evidence
            out[n] = LinkReading(n, name, idx, str(route.get_attr("RTA_GATEWAY") or host),
                                 int(s["tx_bytes"]), int(s["rx_bytes"]),
                                 int(s["tx_dropped"]),
                                 source=str(route.get_attr("RTA_PREFSRC") or ""),
                                 at=at, queue_drops=drops[idx])
    finally:
        ipr.close()
    return out


def bridged(devices: list[str], netns: str | None = None) -> bool:
    """Is every one of ``devices`` enslaved to a bridge in the kernel now?"""
    try:
        with IPRoute(netns=netns) if netns else IPRoute() as ipr:
            for name in devices:
                found = ipr.link_lookup(ifname=name)
                if not found or not ipr.get_links(found[0])[0].get_attr("IFLA_MASTER"):
                    return False
    except (OSError, NetlinkError):
        return False
    return True


class LinkEvents:
    """Link up/down from the kernel as they happen (see the module docstring)."""

    def __init__(self, on_change: Callable[[int, bool], None]) -> None:
        self._on_change = on_change
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock.setblocking(False)
        sock.bind((0, RTMGRP_LINK))
        self._sock, self._loop = sock, loop
        loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock = None

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ENOBUFS after a burst: the next sample resyncs the map
                return
            for index, up in parse_link_events(data):
                with contextlib.suppress(Exception):
                    self._on_change(index, up)


def link_messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(kind, interface index, flags, attributes' start, message end) for each
    RTM_NEWLINK / RTM_DELLINK in a netlink datagram (a truncated message ends the walk)."""
    off = 0
    while off + _NLMSG.size <= len(data):
        length, kind, _, _, _ = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size:
            break
        body = off + _NLMSG.size
        if kind in (RTM_NEWLINK, RTM_DELLINK) and body + _IFINFO.size <= len(data):
            _, _, index, flags, _ = _IFINFO.unpack_from(data, body)
            yield kind, index, flags, body + _IFINFO.size, min(off + length, len(data))
        off += (length + 3) & ~3


def parse_link_events(data: bytes) -> list[tuple[int, bool]]:
    """(interface index, up) for each RTM_NEWLINK / RTM_DELLINK in a netlink datagram."""
    return [(index, kind == RTM_NEWLINK and bool(flags & IFF_LOWER_UP))
            for kind, index, flags, _, _ in link_messages(data)]
