"""The Route Manager's UDP endpoint: a large receive buffer, a kernel source filter, and
reads in batches -- so a flood of forged datagrams costs little and drops nothing genuine.

Theory of operation. A flood at the RM's UDP port is lost or kept in the kernel, before
any user-space check runs: datagrams wait in the socket's receive buffer, and when that
is full the kernel drops whatever arrives next, genuine HELLOs and lease refreshes
included. Three things keep the buffer for the datagrams that matter:

1. **A classic-BPF socket filter** (``SO_ATTACH_FILTER``, :func:`source_filter`): the
   kernel runs it on every datagram before queueing it and drops those whose source is
   not one this RM talks to -- a configured neighbour at its exact (address, port), any
   port of a tunnel's far inner address (probes inside tunnels), the far ends' control
   addresses (probes sent before a tunnel's socket is ready). A flood from anywhere else
   never takes buffer space or a wakeup. Dropped datagrams count in the socket's drop
   counter (``SO_MEMINFO``), read by :meth:`UdpEndpoint.socket_drops`. The filter is
   rebuilt when the neighbours or the tunnels change (the kernel swaps it atomically).
   IPv4 only: an IPv6 socket (or peer) runs without it.
2. **A large receive buffer**: ``SO_RCVBUFFORCE`` as root (past ``rmem_max``), else
   ``SO_RCVBUF`` (capped by the kernel), so a burst waits instead of being dropped.
3. **Batched reads**: one wakeup reads up to :data:`READ_BATCH` datagrams
   (``recvfrom`` until the socket is empty), instead of asyncio's one datagram per
   event-loop iteration, which halves the cost of each datagram of a flood.

A flood that spoofs a neighbour's own address and port passes the filter: it is
screened in user space (:mod:`vnstitch.protocol.admission`), and what it still drops in
the kernel cannot end a stitch whose tunnel carries the far end's probes
(:mod:`vnstitch.protocol.heldpaths`, liveness from the data plane).

:class:`UdpEndpoint` is an :class:`asyncio.DatagramTransport`, so the rest of the
daemon sends through it as through asyncio's own. Sends that find the send buffer full
wait in a bounded queue (oldest dropped and counted).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import ipaddress
import logging
import os
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("vnstitch.daemon")

#: Datagrams read per wakeup at most (then other sockets and timers get their turn).
READ_BATCH = 64
#: Receive buffer asked for (bytes; the kernel doubles it for its bookkeeping).
RCVBUF_BYTES = 8 << 20
#: Datagrams waiting for a full send buffer at most.
SEND_QUEUE = 4096

# Linux socket options not every Python exports.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SO_GET_FILTER = SO_ATTACH_FILTER  # getsockopt: the attached filter's length
SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)
SO_MEMINFO = 55
_SK_MEMINFO_DROPS = 8  # index in SO_MEMINFO's u32 array

# Classic BPF: instruction codes and the offset that addresses the network header.
_LD_W_ABS, _LD_H_ABS, _JEQ_K, _RET_K = 0x20, 0x28, 0x15, 0x06
_SKF_NET_OFF = -0x100000
_ACCEPT, _DROP = 0xFFFFFFFF, 0
#: The kernel's limit on a classic BPF program (BPF_MAXINSNS).
MAX_INSNS = 4096


def _ins(code: int, jt: int, jf: int, k: int) -> tuple[int, int, int, int]:
    return code, jt, jf, k & 0xFFFFFFFF


def source_filter(exact: Iterable[tuple[str, int]], any_port: Iterable[str]
                  ) -> list[tuple[int, int, int, int]]:
    """A classic-BPF program for an IPv4 UDP socket that accepts a datagram only from one
    of the ``exact`` (address, port) sources or from any port of an ``any_port`` address.

    For a UDP socket the filter sees the UDP header at offset 0 (source port: 16 bits at
    0); the IP header is reached through ``SKF_NET_OFF`` (source address at 12). Each
    candidate is tested in line (no jump longer than 3), so the program has no jump-range
    limit; sources are sorted so the program is a function of the sets alone.
    """
    src_ip = _ins(_LD_W_ABS, 0, 0, _SKF_NET_OFF + 12)
    prog = [src_ip]
    for host in sorted({_ipv4(h) for h in any_port}):
        prog += [_ins(_JEQ_K, 0, 1, host), _ins(_RET_K, 0, 0, _ACCEPT)]
    for host, port in sorted({(_ipv4(h), p) for h, p in exact}):
        prog += [_ins(_JEQ_K, 0, 3, host),       # other address: skip to the reload
                 _ins(_LD_H_ABS, 0, 0, 0),       # UDP source port
                 _ins(_JEQ_K, 0, 1, port),
                 _ins(_RET_K, 0, 0, _ACCEPT),
                 src_ip]                         # A = source address again
    prog.append(_ins(_RET_K, 0, 0, _DROP))
    if len(prog) > MAX_INSNS:
        raise ValueError(f"source filter of {len(prog)} instructions (limit {MAX_INSNS})")
    return prog


def _ipv4(host: str) -> int:
    return int(ipaddress.IPv4Address(host))


def ipv4_only(hosts: Iterable[str]) -> bool:
    try:
        return all(ipaddress.ip_address(h).version == 4 for h in hosts)
    except ValueError:  # a host name: the filter cannot name it
        return False


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    """Attach ``prog`` to ``sock`` (replacing any filter; the kernel swaps atomically)."""
    code = b"".join(struct.pack("=HBBI", *i) for i in prog)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def filter_length(sock: socket.socket) -> int:
    """Instructions in the filter attached to ``sock`` (0: none), read from the kernel."""
    # With a zero length the kernel copies nothing and returns the instruction count as
    # the length (Python's getsockopt cannot pass a zero-length buffer: libc directly).
    optlen = ctypes.c_uint32(0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.getsockopt(sock.fileno(), socket.SOL_SOCKET, SO_GET_FILTER, None,
                       ctypes.byref(optlen)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(optlen.value)


def socket_drops(sock: socket.socket) -> int:
    """Datagrams the kernel dropped for ``sock``: refused by its filter or its full
    receive buffer (``SO_MEMINFO``'s drop counter)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 9 * 4)
    return int(struct.unpack("=9I", raw[:36])[_SK_MEMINFO_DROPS])


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a ``size``-byte receive buffer (forced past ``rmem_max`` when allowed);
    the size the kernel granted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:  # not root (no CAP_NET_ADMIN): capped at rmem_max
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


class UdpEndpoint(asyncio.DatagramTransport):
    """The daemon's UDP socket on the event loop (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 on_datagram: Callable[[bytes, tuple[str, int]], None],
                 metrics: Counter[str]) -> None:
        super().__init__()
        self._loop, self._sock, self._on_datagram = loop, sock, on_datagram
        self.metrics = metrics
        self._queue: collections.deque[tuple[bytes, tuple[str, int]]] = collections.deque()
        self._writing = False
        self._closing = False
        self._filter: tuple[frozenset[tuple[str, int]], frozenset[str]] | None = None
        self.closed: asyncio.Future[None] = loop.create_future()
        loop.add_reader(sock.fileno(), self._read_ready)

    @classmethod
    def open(cls, loop: asyncio.AbstractEventLoop, host: str, port: int,
             on_datagram: Callable[[bytes, tuple[str, int]], None], metrics: Counter[str],
             *, rcvbuf: int = RCVBUF_BYTES, filtered: bool = True) -> UdpEndpoint:
        """A bound endpoint; ``filtered``: it accepts nothing until
        :meth:`allow_sources` names the sources (no window in which a flood gets in)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if filtered and family == socket.AF_INET:
                attach_filter(sock, source_filter((), ()))
            granted = set_receive_buffer(sock, rcvbuf)
            sock.bind((host, port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        metrics["udp_receive_buffer_bytes"] = granted
        return cls(loop, sock, on_datagram, metrics)

    # -- the source filter --------------------------------------------------------------

    def allow_sources(self, exact: Iterable[tuple[str, int]], any_port: Iterable[str]
                      ) -> bool:
        """Accept datagrams only from these sources (see :func:`source_filter`); False if
        the filter cannot express them (IPv6): then every source is accepted."""
        wanted = (frozenset(exact), frozenset(any_port))
        if wanted == self._filter:
            return True
        self._filter = wanted
        hosts = [h for h, _ in wanted[0]] + list(wanted[1])
        if self._sock.family != socket.AF_INET or not ipv4_only(hosts):
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            self.metrics["udp_source_filter_insns"] = 0
            return False
        prog = source_filter(*wanted)
        attach_filter(self._sock, prog)
        self.metrics["udp_source_filter_insns"] = len(prog)
        self.metrics["udp_source_filter_updates"] += 1
        return True

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def socket_drops(self) -> int:
        return socket_drops(self._sock)

    # -- receiving ----------------------------------------------------------------------

    def _read_ready(self) -> None:
        recvfrom, deliver = self._sock.recvfrom, self._on_datagram
        for _ in range(READ_BATCH):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP port unreachable from a stopped peer: not fatal
                self.metrics["udp_errors"] += 1
                continue
            deliver(data, (str(addr[0]), int(addr[1])))
            if self._closing:
                return

    # -- sending ------------------------------------------------------------------------

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing:
            return
        payload = bytes(data)
        if not self._queue:
            try:
                self._sock.sendto(payload, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                self._send_error(exc)
                return
        if len(self._queue) >= SEND_QUEUE:
            self._queue.popleft()
            self.metrics["udp_send_queue_dropped"] += 1
        self._queue.append((payload, addr))
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._sock.fileno(), self._write_ready)

    def _write_ready(self) -> None:
        while self._queue:
            payload, addr = self._queue[0]
            try:
                self._sock.sendto(payload, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._send_error(exc)
            self._queue.popleft()
        self._loop.remove_writer(self._sock.fileno())
        self._writing = False

    def _send_error(self, exc: OSError) -> None:
        # An unreachable neighbour, a refused port: the protocol retransmits.
        self.metrics["udp_errors"] += 1
        if exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                             errno.EPERM, errno.ENOBUFS):
            log.debug("udp send: %s", os.strerror(exc.errno or 0))

    # -- asyncio.DatagramTransport ------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return self._sock.getsockname()
        if name == "socket":
            return self._sock
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._sock.fileno())
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
        self._sock.close()
        if not self.closed.done():
            self.closed.set_result(None)

    def abort(self) -> None:
        self.close()
