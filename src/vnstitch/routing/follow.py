"""Tunnels follow the substrate's routes: when to reset a WireGuard peer's endpoint.

Theory of operation. ``wireguard-go`` sends to a peer from a "sticky" source: the local
address *and interface index* on which the peer's last packet arrived. When the
substrate's route to the peer moves (a link under it is cut and the IGP reconverges, a
policy rule pins another first hop, the link comes back and the IGP moves back), the
tunnel keeps sending through the old interface: into a deleted device (``no such
device``) or, with the old device still up, into a path that no longer leads to the
peer. It recovers only when a handshake from the far end happens to update the source
(about 15 s: keepalive timeout plus rekey timeout). Writing the peer's endpoint again
over UAPI replaces the endpoint object, so its next packet is routed afresh by the
kernel.

:class:`EndpointFollower` decides, purely, from the route the kernel gives each tunnel
end now (the driver asks with the tunnel's own UDP selectors, so policy rules count) and
what it gave last time: an end seen for the first time is only remembered; an end whose
route moved to another interface (a re-created link is another interface: a new index)
or another gateway is reset; an end without a route is remembered as such and reset when
a route appears again (nothing can be sent meanwhile); ends no longer present are
forgotten. It never reads the kernel or a clock: the caller passes the observations and
``now`` and applies the returned :class:`ResetEndpoint` actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TunnelEnd:
    """One WireGuard peer of a local tunnel device and where its packets go."""

    device: str  # the local WireGuard interface
    peer: str  # the peer's public key (base64)
    endpoint: str  # "host:port": the configured endpoint, else the learned one
    listen_port: int  # the local UDP port: outer packets leave from it

    @property
    def host(self) -> str:
        return self.endpoint.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class SubstrateRoute:
    """The kernel's answer for one end's outer packets: the interface (by index and
    name), the next hop (``""``: on link) and the routing table that held the route."""

    oif: int
    device: str
    gateway: str = ""
    table: int = 254

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        table = "" if self.table == 254 else f" (table {self.table})"
        return f"{self.device}#{self.oif}{via}{table}"


@dataclass(frozen=True, slots=True)
class ResetEndpoint:
    """Write ``endpoint`` for ``peer`` on ``device`` again (drops its sticky source)."""

    device: str
    peer: str
    endpoint: str
    reason: str
    now: float


class EndpointFollower:
    """Remembers each end's last route; :meth:`observe` returns the resets due."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, str], SubstrateRoute | None] = {}
        self.resets = 0

    def observe(self, routes: Mapping[TunnelEnd, SubstrateRoute | None],
                now: float) -> list[ResetEndpoint]:
        out: list[ResetEndpoint] = []
        seen: dict[tuple[str, str, str], SubstrateRoute | None] = {}
        for end, route in routes.items():
            key = (end.device, end.peer, end.endpoint)
            seen[key] = route
            if key not in self._last:
                continue  # a new end: its socket has no old source to drop
            before = self._last[key]
            if route is None or _same_path(before, route):
                continue
            was = "no route" if before is None else before.describe()
            out.append(ResetEndpoint(
                end.device, end.peer, end.endpoint,
                f"route to {end.endpoint} moved: {was} -> {route.describe()}", now))
        self._last = seen
        self.resets += len(out)
        return out


def _same_path(a: SubstrateRoute | None, b: SubstrateRoute) -> bool:
    return a is not None and (a.oif, a.gateway) == (b.oif, b.gateway)
