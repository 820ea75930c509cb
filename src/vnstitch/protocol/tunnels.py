"""Tunnel lifecycle: WireGuard keys, health, and the dataplane objects of one tunnel end.

Theory of operation. The two ends of a stitch (origin and target RM) each own a
:class:`Tunnel`. Its state machine runs REQUESTED (reservation held, own key made) ->
KEYS_EXCHANGED (the other end's WireGuard key, endpoint and VXLAN VNI arrived over the
signed channel, end-to-end signed) -> UP (a health probe made the round trip) <->
DEGRADED (a probe was missed or loss is high) -> DOWN (N probes in a row missed, or the
stitch was released). The origin probes the target end to end; the target answers.

The dataplane of one tunnel end is: a WireGuard interface (private key, listen port,
/31 tunnel address, one peer), a VXLAN port with VNI = VNID over it, the VN's bridge and
the VXLAN port enslaved to it, a flood FDB entry to the remote VTEP, a route per remote
prefix with the stitching priority as metric, and an HTB rate limit of the reserved
bandwidth on the VXLAN port. Interface names carry a short hash of the reservation token
and of the end (origin or target), so they are at most 15 characters and unique on a
host even when both ends run there (user-space WireGuard's control socket
``/var/run/wireguard/<ifname>.sock`` is shared by every network namespace). The rate
limit sits on the per-tunnel VXLAN port, not the WireGuard interface: it then shapes the
VN's frames (what the reservation promises) rather than WireGuard's encapsulation.
Key pairs are X25519 from the injected RNG.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vnstitch.dataplane.objects import (
    TUNNEL_VXLAN_PORT_BASE,
    TUNNEL_VXLAN_PORTS,
    Bridge,
    BridgePort,
    DataplaneObject,
    FdbEntry,
    RateLimit,
    Route,
    VxlanPort,
    WireguardInterface,
    WireguardPeer,
)
from vnstitch.model.errors import ModelError
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.model.virtual import Component
from vnstitch.protocol.fsm import Machine


class TunnelState(enum.Enum):
    REQUESTED = "requested"
    KEYS_EXCHANGED = "keys_exchanged"
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"


TUNNEL_TRANSITIONS: dict[TunnelState, frozenset[TunnelState]] = {
    TunnelState.REQUESTED: frozenset({TunnelState.KEYS_EXCHANGED, TunnelState.DOWN}),
    TunnelState.KEYS_EXCHANGED: frozenset({TunnelState.UP, TunnelState.DOWN}),
    TunnelState.UP: frozenset({TunnelState.DEGRADED, TunnelState.DOWN}),
    TunnelState.DEGRADED: frozenset({TunnelState.UP, TunnelState.DOWN}),
    TunnelState.DOWN: frozenset(),
}

#: Number of recent probes the loss estimate looks at.
LOSS_WINDOW = 16
#: Tunnel addresses are /31 pairs drawn from the shared address space of RFC 6598.
_TUNNEL_NET_BASE = (100 << 24) | (64 << 16)
_TUNNEL_PAIRS = 1 << 21


def wg_keypair(rng: random.Random) -> tuple[bytes, bytes]:
    """(private, public) raw 32-byte X25519 keys from ``rng`` (deterministic per seed)."""
    private = X25519PrivateKey.from_private_bytes(rng.randbytes(32))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private.private_bytes_raw(), public


#: Tunnels' VXLAN ports: VXLAN_PORT_BASE + a hash of the token modulo VXLAN_PORTS
#: (an aligned range: see :data:`~vnstitch.dataplane.objects.TUNNEL_VXLAN_PORT_BASE`).
VXLAN_PORT_BASE = TUNNEL_VXLAN_PORT_BASE
VXLAN_PORTS = TUNNEL_VXLAN_PORTS


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def tunnel_addresses(rng: random.Random) -> tuple[str, str]:
    """A random /31 pair in 100.64.0.0/10: (origin address, target address)."""
    base = _TUNNEL_NET_BASE + 2 * rng.randrange(_TUNNEL_PAIRS)
    return _ip(base), _ip(base + 1)


def _ip(n: int) -> str:
    return ".".join(str((n >> s) & 255) for s in (24, 16, 8, 0))


def short_name(token: str) -> str:
    return hashlib.blake2b(token.encode(), digest_size=5).hexdigest()


@dataclass
class Tunnel:
    """One end of a stitch's VXLAN-over-WireGuard tunnel."""

    token: str
    stitch_id: str
    vnid: VNID
    peer: RouteManagerId  # the RM at the other end
    origin: bool  # True at the origin end (the prober)
    path: tuple[RouteManagerId, ...]
    private_key: bytes
    public_key: bytes
    endpoint: str
    own_addr: str
    peer_addr: str
    bandwidth_mbps: float
    listen_port: int
    class_id: int
    remote_components: tuple[str, ...] = ()
    peer_public: bytes = b""
    peer_endpoint: str = ""
    #: Where the other end takes probes ("host:port", "" if it gave none).
    peer_probe_address: str = ""
    machine: Machine[TunnelState] = field(default_factory=lambda: Machine(
        "tunnel", TUNNEL_TRANSITIONS, TunnelState.REQUESTED))
    rtt_ms: float | None = None
    misses: int = 0
    outstanding: int | None = None  # nonce of the probe awaiting a reply
    history: list[bool] = field(default_factory=list)  # recent probes: answered?
    last_probe_seen: float = 0.0  # target: when the origin's last PROBE arrived
    last_reply_at: float = 0.0  # origin: when the target's last PROBE_REPLY arrived
    setup_until: float = 0.0  # origin: misses count from then on if never answered

    @property
    def state(self) -> TunnelState:
        return self.machine.state

    @property
    def tunnel_id(self) -> str:
        return self.token

    @property
    def loss(self) -> float:
        return 0.0 if not self.history else 1 - sum(self.history) / len(self.history)

    def record_probe(self, answered: bool) -> None:
        self.history.append(answered)
        del self.history[:-LOSS_WINDOW]

    # -- dataplane -----------------------------------------------------------------------
    @property
    def _end_tag(self) -> str:
        # Both ends of one tunnel may live on one host (the namespace lab): the names
        # must differ per end, not only per token.
        return short_name(f"{self.token}/{'origin' if self.origin else 'target'}")

    @property
    def wg_name(self) -> str:
        return f"wg{self._end_tag}"

    @property
    def vxlan_name(self) -> str:
        return f"vx{self._end_tag}"

    @property
    def vxlan_port(self) -> int:
        """The VXLAN UDP port of this tunnel, the same at both ends (derived from the
        token): the kernel allows one VXLAN device per (VNI, port), and during a
        make-before-break renegotiation, or with several stitches of one VN, a Route
        Manager terminates two tunnels of the same VNI."""
        digest = hashlib.blake2b(self.token.encode(), digest_size=4).digest()
        return VXLAN_PORT_BASE + int.from_bytes(digest, "big") % VXLAN_PORTS

    @property
    def bridge_name(self) -> str:
        return bridge_name(self.vnid)

    def dataplane_objects(self, route_metric: int) -> tuple[DataplaneObject, ...]:
        peer = WireguardPeer(b64(self.peer_public), self.peer_endpoint or None,
                             (f"{self.peer_addr}/32",), keepalive_s=25)
        objs: list[DataplaneObject] = [
            WireguardInterface(self.wg_name, b64(self.private_key), self.listen_port,
                               f"{self.own_addr}/31", (peer,)),
            VxlanPort(self.vxlan_name, int(self.vnid), self.own_addr, self.wg_name,
                      self.vxlan_port),
            Bridge(self.bridge_name),
            BridgePort(self.bridge_name, self.vxlan_name),
            FdbEntry(self.vxlan_name, self.peer_addr),
            RateLimit(self.vxlan_name, self.class_id, self.bandwidth_mbps, self.bandwidth_mbps),
        ]
        for text in self.remote_components:
            try:
                comp = Component.parse(text)
            except ModelError:
                continue  # a peer's odd component must not break our dataplane
            dest = comp.value if "/" in comp.value else f"{comp.value}/32"
            objs.append(Route(dest, self.bridge_name, route_metric))
        return tuple(objs)

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "stitch_id": self.stitch_id, "vnid": int(self.vnid),
                "peer": self.peer, "origin": self.origin, "path": list(self.path),
                "private_key": b64(self.private_key), "public_key": b64(self.public_key),
                "endpoint": self.endpoint, "own_addr": self.own_addr,
                "peer_addr": self.peer_addr, "bandwidth_mbps": self.bandwidth_mbps,
                "listen_port": self.listen_port, "class_id": self.class_id,
                "remote_components": list(self.remote_components),
                "peer_public": b64(self.peer_public), "peer_endpoint": self.peer_endpoint,
                "peer_probe_address": self.peer_probe_address, "state": self.state.value}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tunnel:
        t = cls(d["token"], d["stitch_id"], VNID(int(d["vnid"])), RouteManagerId(d["peer"]),
                bool(d["origin"]), tuple(RouteManagerId(p) for p in d["path"]),
                base64.b64decode(d["private_key"]), base64.b64decode(d["public_key"]),
                d["endpoint"], d["own_addr"], d["peer_addr"], float(d["bandwidth_mbps"]),
                int(d["listen_port"]), int(d["class_id"]), tuple(d["remote_components"]),
                base64.b64decode(d["peer_public"]), d["peer_endpoint"],
                str(d.get("peer_probe_address", "")))
        t.machine.state = TunnelState(d["state"])
        return t


def bridge_name(vnid: VNID) -> str:
    return f"vn{int(vnid)}"


#: HOLD_REFUSED reason: this RM already holds a tunnel end for the VNID of another origin.
VNID_IN_USE = "vnid_in_use"


def end_of_another_origin(tunnels: Iterable[Tunnel], vnid: VNID,
                          origin: RouteManagerId) -> Tunnel | None:
    """A live tunnel end here for ``vnid`` whose stitch ``origin`` did not start, if any.

    A namespace holds one VXLAN device per VNI and port (the kernel refuses a second with
    EEXIST), so a second origin's stitch for the same VNID can never reach the kernel
    here: it is refused with :data:`VNID_IN_USE` instead of being reported up. The same
    origin's own successors (renegotiation, a retried attempt) are not refused."""
    for t in tunnels:
        if t.vnid == vnid and t.path[0] != origin and t.state is not TunnelState.DOWN:
            return t
    return None
