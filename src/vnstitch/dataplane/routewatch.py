"""Which way the kernel sends a tunnel's outer packets, and when routing changes.

Theory of operation. Two raw ``NETLINK_ROUTE`` sockets, both created inside the network
namespace they watch (a short-lived thread ``setns(2)``-es into it, makes the socket
and ends; a socket keeps the namespace it was made in), so a daemon in one namespace can
watch another (the root tests do) and a daemon inside its router namespace watches its
own (``netns=None``).

* :class:`RouteQuery` sends ``RTM_GETROUTE`` with the selectors the tunnel's packets
  carry -- destination, ``ipproto udp``, source and destination port -- so policy rules
  that pin a tunnel by its UDP source port answer as they would for the real packets
  (pyroute2 0.9 cannot send RTA_IP_PROTO / RTA_SPORT / RTA_DPORT, hence the hand-packed
  message: ``ip route get DST ipproto udp sport S dport D`` without a subprocess). The
  answer is a :class:`~vnstitch.routing.follow.SubstrateRoute` (interface index and
  name, gateway, table) or ``None`` (no route). Blocking: call it from a worker thread.
* :class:`RouteEvents` joins the link, IPv4 address, route and rule groups and the
  nexthop group, and calls back (on the asyncio loop, ``add_reader``, no thread) once
  per readable burst: the caller then asks again. Route flushes caused by a link going
  away are not announced by the kernel, but the link's own RTM_DELLINK is.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from vnstitch.dataplane.base import DataplaneError
from vnstitch.routing.follow import SubstrateRoute

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope,
#                                       type, flags
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTA = struct.Struct("=HH")  # len, type
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
RTM_F_LOOKUP_TABLE = 0x1000  # answer with the table the route was found in
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RTA_IP_PROTO, RTA_SPORT, RTA_DPORT = 27, 28, 29
IFLA_IFNAME = 3
#: Groups watched: link, IPv4 address, IPv4 route, IPv4 rule changes.
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_IPV4_RULE = 0x1, 0x10, 0x40, 0x80
RTNLGRP_NEXTHOP = 32  # above 31: joined with setsockopt, not in the bind mask
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
_CLONE_NEWNET = 0x40000000


def netlink_socket(netns: str | None, groups: int = 0) -> socket.socket:
    """A NETLINK_ROUTE socket living in ``netns`` (``None``: ours), bound to ``groups``."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.bind((0, groups))
        except OSError:
            sock.close()
            raise
        return sock

    if netns is None:
        try:
            return make()
        except OSError as exc:
            raise DataplaneError(f"netlink socket: {exc}") from exc
    box: dict[str, Any] = {}

    def inside() -> None:
        try:
            fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            box["sock"] = make()
        except OSError as exc:
            box["error"] = exc

    # A thread of its own: setns changes the calling thread only, and this one ends.
    worker = threading.Thread(target=inside, name=f"netns-{netns}")
    worker.start()
    worker.join()
    if "error" in box:
        raise DataplaneError(f"netlink socket in netns {netns}: {box['error']}")
    sock: socket.socket = box["sock"]
    return sock


def _attr(kind: int, payload: bytes) -> bytes:
    raw = _RTA.pack(_RTA.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    """A netlink message's attributes in [start, end), by type (the first of each)."""
    out: dict[int, bytes] = {}
    off = start
    while off + _RTA.size <= end:
        length, kind = _RTA.unpack_from(data, off)
        if length < _RTA.size:
            break
        out.setdefault(kind & 0x3FFF, data[off + _RTA.size:off + length])
        off += (length + 3) & ~3
    return out


class RouteQuery:
    """``ip route get`` for UDP flows, in one namespace (see the module docstring)."""

    def __init__(self, netns: str | None = None, timeout_s: float = 1.0) -> None:
        self._sock = netlink_socket(netns)
        self._sock.settimeout(timeout_s)
        self._seq = itertools.count(1)
        self._names: dict[int, str] = {}

    def close(self) -> None:
        self._sock.close()

    def udp(self, dst: str, sport: int, dport: int) -> SubstrateRoute | None:
        """The route the kernel picks for UDP ``sport`` -> ``dst``:``dport`` now."""
        try:
            dst_raw = socket.inet_aton(dst)
        except OSError as exc:
            raise DataplaneError(f"route get {dst}: not an IPv4 address") from exc
        body = (_RTMSG.pack(socket.AF_INET, 32, 0, 0, 0, 0, 0, 0, RTM_F_LOOKUP_TABLE)
                + _attr(RTA_DST, dst_raw) + _attr(RTA_IP_PROTO, bytes([socket.IPPROTO_UDP]))
                + _attr(RTA_SPORT, struct.pack("!H", sport))
                + _attr(RTA_DPORT, struct.pack("!H", dport)))
        reply = self._ask(RTM_GETROUTE, body)
        if reply is None:
            return None
        data, start, end = reply
        attrs = attributes(data, start + _RTMSG.size, end)
        _, _, _, _, table, _, _, _, _ = _RTMSG.unpack_from(data, start)
        oif = struct.unpack("=I", attrs[RTA_OIF])[0] if RTA_OIF in attrs else 0
        gateway = socket.inet_ntoa(attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else ""
        if RTA_TABLE in attrs:
            table = struct.unpack("=I", attrs[RTA_TABLE])[0]
        return SubstrateRoute(oif, self._name(oif), gateway, table)

    def _name(self, index: int) -> str:
        if index in self._names:
            return self._names[index]
        reply = self._ask(RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0))
        name = ""
        if reply is not None:
            data, start, end = reply
            raw = attributes(data, start + _IFINFO.size, end).get(IFLA_IFNAME, b"")
            name = raw.rstrip(b"\0").decode(errors="replace")
        if name:  # an index is never reused while we run; a missing one may appear
            self._names[index] = name
        return name or f"if{index}"

    def _ask(self, kind: int, body: bytes) -> tuple[bytes, int, int] | None:
        """Send one request; the reply's (datagram, body start, body end), or None when
        the kernel answered with an error (no route, no such link)."""
        seq = next(self._seq)
        self._sock.send(_NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST, seq, 0)
                        + body)
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError as exc:
                raise DataplaneError(f"netlink request {kind}: {exc}") from exc
            off = 0
            while off + _NLMSG.size <= len(data):
                length, mtype, _, mseq, _ = _NLMSG.unpack_from(data, off)
                if length < _NLMSG.size:
                    break
                if mseq == seq:
                    if mtype == NLMSG_ERROR:
                        return None
                    return data, off + _NLMSG.size, off + length
                off += (length + 3) & ~3


class RouteEvents:
    """Calls ``on_change()`` on the loop whenever routing in ``netns`` may have changed."""

    GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV4_RULE

    def __init__(self, on_change: Callable[[], None], netns: str | None = None) -> None:
        self._on_change = on_change
        self._netns = netns
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        sock = netlink_socket(self._netns, self.GROUPS)
        # Kernels without nexthop objects refuse the group: their routes still announce.
        with contextlib.suppress(OSError):
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_NEXTHOP)
        sock.setblocking(False)
        self._sock, self._loop = sock, loop
        loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._sock = None

    def _readable(self) -> None:
        assert self._sock is not None
        while True:  # drain the burst, then one callback
            try:
                self._sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ENOBUFS after a burst: the caller asks afresh anyway
                break
        self._on_change()
