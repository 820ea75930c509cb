"""Substrate routing table with a stitching priority.

Theory of operation: a :class:`RoutingTable` holds :class:`RouteEntry` values keyed by
(destination, owner, next hop). :meth:`RoutingTable.best` picks, per destination, the
entry with the highest ``stitching_priority`` (routes carrying stitched connections win
over ordinary ones), then the lowest metric, then the lowest cost, then the shortest
path, then owner and next hop by name -- a total order, so the choice is deterministic.
:func:`to_dataplane_route` maps an entry to a :class:`vnstitch.dataplane.objects.Route`
whose kernel metric encodes the priority. Lower metric wins in Linux, and the
substrate's own routes sit at :data:`SUBSTRATE_METRIC` (FRR installs OSPF routes at 20),
so a stitched priority ``p`` (1..15) maps to metric ``MAX_PRIORITY - p`` -- every
stitched route beats the substrate's route to the same prefix -- and ordinary routes
(priority 0) to ``SUBSTRATE_METRIC + metric``, behind it.

:class:`StitchPriorities` is the one stitching-priority table: a priority per VN and
per QoS class, a default for the rest. The protocol core's tunnel routes take their
metric from it (:func:`stitch_route_metric`, the default of
``vnstitch.protocol.config.CoreConfig.route_metric``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vnstitch.dataplane.objects import Route
from vnstitch.routing.errors import RoutingError

MAX_PRIORITY = 15
METRIC_BAND = 1000
ORDINARY = 0
#: Kernel metric of the substrate's IGP routes (FRR's OSPF): stitched routes go below it.
SUBSTRATE_METRIC = 20
#: Priority of a stitched route when neither its VN nor its class names one.
STITCHED = 10


@dataclass(frozen=True, slots=True)
class RouteEntry:
    destination: str  # a prefix such as "10.1.0.0/16", or a substrate node
    next_hop: str
    device: str
    metric: int = 0  # IGP-like metric inside a priority band, 0..METRIC_BAND-1
    cost: float = 0.0
    stitching_priority: int = ORDINARY  # 0 ordinary; >0 carries stitched traffic
    qos_class: str = "default"
    owner: str = "static"  # e.g. "stitch:<id>", "te", "static"
    path: tuple[str, ...] = ()
    gateway: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.stitching_priority <= MAX_PRIORITY:
            raise RoutingError(f"route to {self.destination}: stitching_priority must be "
                               f"0..{MAX_PRIORITY}, got {self.stitching_priority}")
        if not 0 <= self.metric < METRIC_BAND:
            raise RoutingError(f"route to {self.destination}: metric must be 0.."
                               f"{METRIC_BAND - 1}, got {self.metric}")

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.destination, self.owner, self.next_hop)

    def rank(self) -> tuple[int, int, float, int, str, str]:
        return (-self.stitching_priority, self.metric, self.cost, len(self.path), self.owner,
                self.next_hop)


class RoutingTable:
    def __init__(self, entries: Iterable[RouteEntry] = ()) -> None:
        self._entries: dict[tuple[str, str, str], RouteEntry] = {}
        for e in entries:
            self.add(e)

    def add(self, entry: RouteEntry) -> None:
        """Add or replace the entry with the same (destination, owner, next hop)."""
        self._entries[entry.key] = entry

    def remove(self, destination: str, owner: str, next_hop: str) -> RouteEntry:
        try:
            return self._entries.pop((destination, owner, next_hop))
        except KeyError:
            raise RoutingError(f"no route to {destination} via {next_hop} owned by {owner}"
                               ) from None

    def remove_owner(self, owner: str) -> list[RouteEntry]:
        gone = [e for e in self._entries.values() if e.owner == owner]
        for e in gone:
            del self._entries[e.key]
        return gone

    def candidates(self, destination: str) -> list[RouteEntry]:
        return sorted((e for e in self._entries.values() if e.destination == destination),
                      key=RouteEntry.rank)

    def best(self, destination: str) -> RouteEntry | None:
        c = self.candidates(destination)
        return c[0] if c else None

    def selected(self) -> list[RouteEntry]:
        """The winning entry for every destination, sorted by destination."""
        dests = sorted({e.destination for e in self._entries.values()})
        return [c for d in dests if (c := self.best(d)) is not None]

    def __len__(self) -> int:
        return len(self._entries)


def kernel_metric(entry: RouteEntry) -> int:
    """Linux route metric: a stitched priority beats the substrate, ordinary routes not."""
    if entry.stitching_priority > ORDINARY:
        return stitch_route_metric(entry.stitching_priority)
    return SUBSTRATE_METRIC + entry.metric


def stitch_route_metric(priority: int = STITCHED) -> int:
    """The kernel metric of a stitched route of ``priority`` (1..MAX_PRIORITY)."""
    if not ORDINARY < priority <= MAX_PRIORITY:
        raise RoutingError(f"stitching priority must be 1..{MAX_PRIORITY}, got {priority}")
    return MAX_PRIORITY - priority


@dataclass(frozen=True, slots=True)
class StitchPriorities:
    """The stitching-priority table: per VN, then per QoS class, else ``default``."""

    default: int = STITCHED
    by_vnid: Mapping[int, int] = field(default_factory=dict)
    by_class: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in (self.default, *self.by_vnid.values(), *self.by_class.values()):
            stitch_route_metric(p)  # raises on a priority outside the stitched band

    def priority(self, vnid: int, qos_class: str | None = None) -> int:
        if vnid in self.by_vnid:
            return self.by_vnid[vnid]
        if qos_class is not None and qos_class in self.by_class:
            return self.by_class[qos_class]
        return self.default

    def metric(self, vnid: int, qos_class: str | None = None) -> int:
        return stitch_route_metric(self.priority(vnid, qos_class))


def to_dataplane_route(entry: RouteEntry, table: int = 254) -> Route:
    return Route(destination=entry.destination, device=entry.device,
                 metric=kernel_metric(entry), gateway=entry.gateway, table=table)
