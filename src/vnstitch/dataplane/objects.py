"""Dataplane desired state: the kernel objects a Route Manager wants, and the diff.

Theory of operation: the dataplane is described declaratively as a set of immutable
objects (WireGuard interface, VXLAN port, bridge, bridge port, FDB entry, route, rate
limit), each with a stable ``key``. :class:`DataplaneState` is a key -> object map. A
driver ``observe()``\\ s the state it owns, :func:`plan` diffs desired against observed into
an ordered list of :class:`Op` (creations parents-first, removals children-first), and the
driver applies them. :func:`plan` is pure, so applying a plan and planning again gives an
empty list -- that is the idempotence every driver is tested for.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

#: Where an object sits in creation order (lower first); removal runs in reverse.
_LAYER_WIREGUARD, _LAYER_DEVICE, _LAYER_PORT, _LAYER_LEAF, _LAYER_FILTER = range(5)


@dataclass(frozen=True, slots=True)
class WireguardPeer:
    public_key: str  # base64, 44 chars
    endpoint: str | None  # "ip:port" of the peer's underlay, or None for a passive peer
    allowed_ips: tuple[str, ...]
    keepalive_s: int = 0


@dataclass(frozen=True, slots=True)
class WireguardInterface:
    """An encrypted point-to-multipoint underlay for VXLAN (kernel or wireguard-go)."""

    name: str
    private_key: str = field(repr=False)  # base64
    listen_port: int
    address: str  # "10.255.0.1/24": the tunnel-side address VXLAN uses as VTEP
    peers: tuple[WireguardPeer, ...] = ()
    mtu: int = 1420

    @property
    def key(self) -> str:
        return f"wg:{self.name}"

    layer = _LAYER_WIREGUARD


@dataclass(frozen=True, slots=True)
class VxlanPort:
    """A VXLAN device carrying one VNI over ``underlay`` from ``local_ip``."""

    name: str
    vni: int
    local_ip: str
    underlay: str
    dstport: int = 4789
    mtu: int = 1370

    @property
    def key(self) -> str:
        return f"vxlan:{self.name}"

    layer = _LAYER_DEVICE


@dataclass(frozen=True, slots=True)
class Bridge:
    name: str

    @property
    def key(self) -> str:
        return f"bridge:{self.name}"

    layer = _LAYER_DEVICE


@dataclass(frozen=True, slots=True)
class BridgePort:
    """``port`` (a VXLAN device or a local host's veth) enslaved to ``bridge``."""

    bridge: str
    port: str

    @property
    def key(self) -> str:
        return f"port:{self.bridge}:{self.port}"

    layer = _LAYER_PORT


@dataclass(frozen=True, slots=True)
class FdbEntry:
    """Static flood entry: unknown/broadcast frames on ``device`` go to ``remote_vtep``."""

    device: str
    remote_vtep: str
    mac: str = "00:00:00:00:00:00"

    @property
    def key(self) -> str:
        return f"fdb:{self.device}:{self.mac}:{self.remote_vtep}"

    layer = _LAYER_LEAF


@dataclass(frozen=True, slots=True)
class Route:
    """A route toward a stitched prefix; ``metric`` carries the stitching priority."""

    destination: str
    device: str
    metric: int
    gateway: str | None = None
    table: int = 254

    @property
    def key(self) -> str:
        return f"route:{self.table}:{self.destination}:{self.metric}"

    layer = _LAYER_LEAF


@dataclass(frozen=True, slots=True)
class PathPin:
    """The outer packets of one tunnel end (UDP from ``sport``, its WireGuard listen port)
    leave toward ``destination`` (the far end's endpoint) through ``gateway`` on
    ``device``: the first hop of the stitch's negotiated path, not whatever the substrate
    prefers. A policy rule (``iif lo ipproto udp sport``: packets this host sends, never
    ones it forwards for other tunnels that happen to use the same port) into a table of
    its own holding one route; when the route goes (the link died) lookups fall through
    to the main table."""

    sport: int
    destination: str
    gateway: str
    device: str
    source: str = ""  # preferred source address (the RM's own, as its substrate routes)

    @property
    def table(self) -> int:
        return PIN_TABLE_BASE + self.sport

    @property
    def key(self) -> str:
        return f"pin:{self.sport}"

    # Before the WireGuard device whose packets it steers: wireguard-go sends its first
    # handshake initiation as soon as its peer is set.
    layer = _LAYER_WIREGUARD


#: Tunnels' VXLAN destination ports: TUNNEL_VXLAN_PORT_BASE + (a hash of the stitch's
#: token) % TUNNEL_VXLAN_PORTS. The base is a multiple of the count (a power of two), so
#: one u32 mask (``dport & ~(count - 1) == base``) matches every tunnel's VXLAN traffic.
TUNNEL_VXLAN_PORT_BASE = 48128
TUNNEL_VXLAN_PORTS = 1024

#: Pin tables are PIN_TABLE_BASE + source port; their rules sit at PIN_RULE_PRIORITY.
PIN_TABLE_BASE = 100000
PIN_RULE_PRIORITY = 9000

#: HTB has 8 priorities, 0 (served first) to 7.
HTB_MAX_PRIO = 7


@dataclass(frozen=True, slots=True)
class RateLimit:
    """An HTB class on ``device`` guaranteeing ``rate_mbps`` (and capping at ``ceil_mbps``).

    ``prio`` (HTB's 0..7, 0 first) orders who borrows the parent's spare capacity: classes
    with a lower value are offered it first, so an important class absorbs headroom and
    a bulk class absorbs the shortfall. On a device with several classes the one with the
    largest ``class_id`` is the default class for unclassified traffic.
    """

    device: str
    class_id: int  # minor id of the HTB class, 1..0xfffe
    rate_mbps: float
    ceil_mbps: float
    prio: int = 0

    @property
    def key(self) -> str:
        return f"rate:{self.device}:{self.class_id}"

    def problem(self) -> str | None:
        """Why the kernel would refuse this class, or None; drivers raise it."""
        if not 1 <= self.class_id < 0xFFFF:
            return f"class_id {self.class_id} outside 1..65534"
        if not 0 <= self.prio <= HTB_MAX_PRIO:
            return f"HTB prio {self.prio} outside 0..{HTB_MAX_PRIO}"
        return None

    layer = _LAYER_LEAF


@dataclass(frozen=True, slots=True)
class U32Filter:
    """A tc u32 filter on ``device`` sending matching packets to HTB class 1:``class_id``.

    ``matches`` are u32 selector clauses as tc spells them, e.g. ``("ip dport 22 0xffff",
    "ip protocol 6 0xff")``; all of them must hold (tc ANDs the clauses of one filter).
    Filters with a lower ``prio`` are tried first; ``handle`` (1..4095) names the filter.
    """

    device: str
    prio: int
    handle: int
    class_id: int
    matches: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"u32:{self.device}:{self.prio}:{self.handle}"

    layer = _LAYER_FILTER  # after the HTB classes it feeds; removed before them


DataplaneObject = (
    WireguardInterface | VxlanPort | Bridge | BridgePort | FdbEntry | Route | RateLimit
    | U32Filter | PathPin
)

#: Stable names of every object type, as stored by the daemon's state database.
OBJECT_KINDS: dict[str, type[DataplaneObject]] = {
    "wireguard": WireguardInterface, "vxlan": VxlanPort, "bridge": Bridge,
    "bridge_port": BridgePort, "fdb": FdbEntry, "route": Route, "rate": RateLimit,
    "u32": U32Filter, "pin": PathPin,
}
_KIND_OF = {cls: name for name, cls in OBJECT_KINDS.items()}


def object_to_json(obj: DataplaneObject, *, with_secrets: bool = True) -> tuple[str, str]:
    """``(kind, json)`` for a dataplane object; WireGuard private keys optional."""
    data = dataclasses.asdict(obj)
    if isinstance(obj, WireguardInterface) and not with_secrets:
        data["private_key"] = ""
    return _KIND_OF[type(obj)], json.dumps(data, sort_keys=True)


def object_from_json(kind: str, text: str) -> DataplaneObject:
    """Inverse of :func:`object_to_json`; raises ValueError/TypeError/KeyError on bad input."""
    cls = OBJECT_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown dataplane object kind {kind!r}")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{kind}: expected a JSON object")
    # JSON has no tuples: turn every list back into the tuple the frozen dataclass holds.
    for name, value in data.items():
        if isinstance(value, list):
            data[name] = tuple(value)
    if cls is WireguardInterface:
        data["peers"] = tuple(
            WireguardPeer(p["public_key"], p["endpoint"], tuple(p["allowed_ips"]),
                          p.get("keepalive_s", 0)) for p in data.get("peers", ()))
    obj: DataplaneObject = cls(**data)
    return obj


class OpKind(enum.StrEnum):
    CREATE = "create"
    REMOVE = "remove"
    REPLACE = "replace"


@dataclass(frozen=True, slots=True)
class Op:
    kind: OpKind
    obj: DataplaneObject
    old: DataplaneObject | None = None

    def __str__(self) -> str:
        return f"{self.kind.value} {self.obj.key}"


class DataplaneState:
    """An immutable-by-convention map of object key -> object."""

    __slots__ = ("_objects",)

    def __init__(self, objects: Iterable[DataplaneObject] = ()) -> None:
        self._objects: dict[str, DataplaneObject] = {}
        for obj in objects:
            self._objects[obj.key] = obj

    def __iter__(self) -> Iterator[DataplaneObject]:
        return iter(self._objects.values())

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def get(self, key: str) -> DataplaneObject | None:
        return self._objects.get(key)

    def keys(self) -> set[str]:
        return set(self._objects)

    def with_objects(self, add: Iterable[DataplaneObject] = (),
                     remove: Iterable[str] = ()) -> DataplaneState:
        out = DataplaneState(self._objects.values())
        for key in remove:
            out._objects.pop(key, None)
        for obj in add:
            out._objects[obj.key] = obj
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataplaneState) and self._objects == other._objects

    def __hash__(self) -> int:
        return hash(frozenset(self._objects.items()))

    def __repr__(self) -> str:
        return f"DataplaneState({sorted(self._objects)})"


def plan(desired: DataplaneState, observed: DataplaneState) -> list[Op]:
    """Ops that turn ``observed`` into ``desired``: removals deepest-first, then creations."""
    removes = [Op(OpKind.REMOVE, o) for o in observed if o.key not in desired]
    changes: list[Op] = []
    for obj in desired:
        have = observed.get(obj.key)
        if have is None:
            changes.append(Op(OpKind.CREATE, obj))
        elif have != obj:
            changes.append(Op(OpKind.REPLACE, obj, have))
    removes.sort(key=lambda op: (-op.obj.layer, op.obj.key))
    changes.sort(key=lambda op: (op.obj.layer, op.obj.key))
    return removes + changes
