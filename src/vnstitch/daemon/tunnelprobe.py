"""Tunnel health probes through the tunnel itself: one UDP socket per local tunnel end.

Theory of operation. The core sends each end-to-end PROBE / PROBE_REPLY as a
``SendDatagram`` naming the far end's address inside the tunnel (``tunnel_address``,
one half of the tunnel's /31) and the far RM's control address (``address``, whose port
its daemon listens on). :class:`TunnelProbeSockets` sends it from this end's tunnel
address (the other half of the /31) to (far tunnel address, far control port): the
kernel routes it into the WireGuard interface, so it crosses WireGuard and the VXLAN
underlay the stitch uses, and a dead wireguard-go at either end shows up as missed
probes (probing the far RM over the underlay would not notice). To receive probes, it
keeps one socket per tunnel address in the desired dataplane state, bound with
``IP_FREEBIND`` to (address, listen port) as soon as the address is wanted -- the
interface may not exist yet -- and closed when it is no longer; datagrams go to the
daemon's normal handler (the core checks their signature and that the sender is the
tunnel's other end). A daemon listening on a wildcard address needs no extra socket:
its main socket receives on every address and the route picks the source. Disabled for
the in-memory driver (no tunnels): the daemon then sends probes to the far RM directly.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections import Counter
from collections.abc import Callable

from vnstitch.dataplane.objects import DataplaneState, WireguardInterface
from vnstitch.protocol.api import SendDatagram

log = logging.getLogger("vnstitch.daemon")

#: Linux IP_FREEBIND (not exported by every Python's socket module): bind an address
#: that is not (yet) configured on an interface.
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


def host_port(text: str) -> tuple[str, int] | None:
    """"host:port" or "[v6]:port" -> (host, port); None if empty or malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        return False


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._on_datagram(data, (str(addr[0]), int(addr[1])))


class TunnelProbeSockets:
    """Sends probes inside tunnels and listens for them on this RM's tunnel addresses."""

    def __init__(self, listen_host: str, listen_port: int,
                 on_datagram: Callable[[bytes, tuple[str, int]], None],
                 metrics: Counter[str], *, enabled: bool) -> None:
        self.listen_port = listen_port
        self.on_datagram = on_datagram
        self.metrics = metrics
        self.enabled = enabled
        self.wildcard = unspecified(listen_host)
        self.endpoints: dict[str, asyncio.DatagramTransport] = {}
        self._opening: set[str] = set()
        self._wanted: set[str] = set()
        self._main: asyncio.DatagramTransport | None = None
        self._closed = False

    def send(self, send: SendDatagram) -> bool:
        """Send ``send`` through its tunnel; False if that is not possible (yet)."""
        far = host_port(send.address)
        if not self.enabled or far is None:
            return False
        try:
            peer_inner = ipaddress.IPv4Address(send.tunnel_address)
        except ValueError:
            return False
        if self.wildcard:
            ep = self._main
        else:
            ep = self.endpoints.get(str(ipaddress.IPv4Address(int(peer_inner) ^ 1)))
        if ep is None:
            return False
        ep.sendto(send.payload, (str(peer_inner), far[1]))
        self.metrics["probes_sent_in_tunnel"] += 1
        self.metrics["datagrams_sent"] += 1
        self.metrics["bytes_sent"] += len(send.payload)
        return True

    def sync(self, loop: asyncio.AbstractEventLoop, desired: DataplaneState,
             main: asyncio.DatagramTransport | None) -> None:
        """Open / close sockets to match the tunnel addresses ``desired`` has."""
        self._main = main
        if not self.enabled or self.wildcard or self._closed:
            return
        self._wanted = {o.address.split("/")[0] for o in desired
                        if isinstance(o, WireguardInterface)}
        for addr in [a for a in self.endpoints if a not in self._wanted]:
            self.endpoints.pop(addr).close()
        for addr in sorted(self._wanted - self.endpoints.keys() - self._opening):
            self._opening.add(addr)
            loop.create_task(self._open(loop, addr))

    async def _open(self, loop: asyncio.AbstractEventLoop, addr: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            sock.bind((addr, self.listen_port))
            sock.setblocking(False)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Receiver(self.on_datagram), sock=sock)
        except OSError as exc:
            sock.close()
            log.warning("cannot listen for probes on tunnel address %s: %s", addr, exc)
            self.metrics["tunnel_socket_errors"] += 1
            return
        finally:
            self._opening.discard(addr)
        if self._closed or addr not in self._wanted:
            transport.close()  # stopped, or the tunnel went away meanwhile
            return
        self.endpoints[addr] = transport

    def close(self) -> None:
        self._closed = True
        self._main = None
        for ep in self.endpoints.values():
            ep.close()
        self.endpoints.clear()
