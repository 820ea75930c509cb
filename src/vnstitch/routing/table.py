"""Substrate routing table with a stitching priority.

Theory of operation: a :class:`RoutingTable` holds :class:`RouteEntry` values keyed by
(destination, owner, next hop). :meth:`RoutingTable.best` picks, per destination, the
entry with the highest ``stitching_priority`` (routes carrying stitched connections win
over ordinary ones), then the lowest metric, then the lowest cost, then the shortest
path, then owner and next hop by name -- a total order, so the choice is deterministic.
:func:`to_dataplane_route` maps an entry to a :class:`vnstitch.dataplane.objects.Route`
whose kernel metric encodes the priority (lower metric wins in Linux, so priority p
maps into the band ``(MAX_PRIORITY - p) * METRIC_BAND``), for the daemon to install.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vnstitch.dataplane.objects import Route
from vnstitch.routing.errors import RoutingError

MAX_PRIORITY = 15
METRIC_BAND = 1000
ORDINARY = 0


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
    """Linux route metric: stitched priorities get lower (better) bands."""
    return (MAX_PRIORITY - entry.stitching_priority) * METRIC_BAND + entry.metric


def to_dataplane_route(entry: RouteEntry, table: int = 254) -> Route:
    return Route(destination=entry.destination, device=entry.device,
                 metric=kernel_metric(entry), gateway=entry.gateway, table=table)
