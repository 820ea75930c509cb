"""The substrate: physical nodes and links, grouped into segments.

Theory of operation: a :class:`Substrate` wraps an undirected ``networkx.Graph`` whose
nodes are strings and whose edges carry three attributes, always present and always
validated on insertion:

* ``capacity_mbps`` -- capacity *per direction* (links are full duplex), Mbit/s;
* ``latency_ms`` -- one-way propagation latency, milliseconds;
* ``cost`` -- an administrative cost (dimensionless, >= 0).

Nodes carry ``segment`` (a :data:`~vnstitch.model.ids.SegmentId` or ``None`` until the
substrate is partitioned), and optionally ``label``, ``lat``, ``lon``. Algorithms elsewhere
(routing, simulator) are plain functions over ``Substrate.graph``, as in networkx.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import networkx as nx

from vnstitch.model.errors import ModelError
from vnstitch.model.ids import SegmentId

EARTH_RADIUS_KM = 6371.0088
#: Propagation delay in fibre: light travels about 200 km per millisecond.
LATENCY_MS_PER_KM = 0.005


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in kilometres between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Link:
    """One undirected substrate link (capacity applies to each direction)."""

    a: str
    b: str
    capacity_mbps: float
    latency_ms: float
    cost: float


@dataclass(frozen=True, slots=True)
class SegmentAdjacency:
    """Two neighbouring segments and the substrate links that join them."""

    a: SegmentId
    b: SegmentId
    links: tuple[Link, ...]

    @property
    def capacity_mbps(self) -> float:
        return sum(link.capacity_mbps for link in self.links)

    @property
    def latency_ms(self) -> float:
        return min(link.latency_ms for link in self.links)


@dataclass
class Substrate:
    """An undirected substrate graph; see the module docstring for the attributes."""

    name: str
    graph: nx.Graph = field(default_factory=nx.Graph)
    #: Things the loader repaired or assumed (defaults used, nodes dropped, ...).
    notes: list[str] = field(default_factory=list)

    def add_node(
        self,
        node: str,
        *,
        label: str | None = None,
        lat: float | None = None,
        lon: float | None = None,
        segment: SegmentId | None = None,
    ) -> None:
        if not isinstance(node, str) or not node:
            raise ModelError(f"node id must be a non-empty string, got {node!r}")
        self.graph.add_node(node, label=label or node, lat=lat, lon=lon, segment=segment)

    def add_link(
        self, a: str, b: str, *, capacity_mbps: float, latency_ms: float, cost: float = 1.0
    ) -> None:
        for end in (a, b):
            if end not in self.graph:
                raise ModelError(f"link {a}-{b}: unknown node {end!r}")
        if a == b:
            raise ModelError(f"link {a}-{b}: self-loop")
        for attr, value in (("capacity_mbps", capacity_mbps), ("latency_ms", latency_ms)):
            if not math.isfinite(value) or value <= 0:
                raise ModelError(f"link {a}-{b}: {attr} must be finite and > 0, got {value}")
        if not math.isfinite(cost) or cost < 0:
            raise ModelError(f"link {a}-{b}: cost must be finite and >= 0, got {cost}")
        self.graph.add_edge(
            a, b, capacity_mbps=float(capacity_mbps), latency_ms=float(latency_ms),
            cost=float(cost),
        )

    # -- queries -----------------------------------------------------------------------
    def nodes(self) -> list[str]:
        return list(self.graph.nodes)

    def links(self) -> Iterator[Link]:
        for a, b, d in self.graph.edges(data=True):
            yield Link(a, b, d["capacity_mbps"], d["latency_ms"], d["cost"])

    def link(self, a: str, b: str) -> Link:
        try:
            d = self.graph.edges[a, b]
        except KeyError:
            raise ModelError(f"no link {a}-{b}") from None
        return Link(a, b, d["capacity_mbps"], d["latency_ms"], d["cost"])

    def segment_of(self, node: str) -> SegmentId:
        seg: SegmentId | None = self.graph.nodes[node].get("segment")
        if seg is None:
            raise ModelError(f"node {node!r} is in no segment (partition the substrate first)")
        return seg

    def segments(self) -> list[SegmentId]:
        found = {d.get("segment") for _, d in self.graph.nodes(data=True)}
        return sorted(s for s in found if s is not None)

    def nodes_in(self, segment: SegmentId) -> list[str]:
        return [n for n, d in self.graph.nodes(data=True) if d.get("segment") == segment]

    def assign_segments(self, mapping: Mapping[str, SegmentId]) -> None:
        """Put every node in the segment ``mapping`` names; every node must be named."""
        missing = [n for n in self.graph.nodes if n not in mapping]
        if missing:
            raise ModelError(f"segment assignment misses nodes {missing[:5]}")
        for node, seg in mapping.items():
            if node not in self.graph:
                raise ModelError(f"segment assignment names unknown node {node!r}")
            self.graph.nodes[node]["segment"] = seg

    def segment_adjacencies(self) -> list[SegmentAdjacency]:
        """Neighbouring segment pairs, each with the links that cross between them."""
        crossing: dict[tuple[SegmentId, SegmentId], list[Link]] = {}
        for link in self.links():
            sa, sb = self.segment_of(link.a), self.segment_of(link.b)
            if sa == sb:
                continue
            key = (sa, sb) if sa < sb else (sb, sa)
            crossing.setdefault(key, []).append(link)
        return [SegmentAdjacency(a, b, tuple(ls)) for (a, b), ls in sorted(crossing.items())]

    def segment_graph(self) -> nx.Graph:
        """Graph of segments; edges carry ``capacity_mbps`` (summed), ``latency_ms`` (min)."""
        g = nx.Graph()
        g.add_nodes_from(self.segments())
        for adj in self.segment_adjacencies():
            g.add_edge(adj.a, adj.b, capacity_mbps=adj.capacity_mbps, latency_ms=adj.latency_ms,
                       links=adj.links)
        return g

    def largest_component(self) -> Substrate:
        """A copy holding only the largest connected component (noted when nodes drop)."""
        if self.graph.number_of_nodes() == 0:
            return self
        comp = max(nx.connected_components(self.graph), key=lambda c: (len(c), sorted(c)[0]))
        if len(comp) == self.graph.number_of_nodes():
            return self
        dropped = sorted(set(self.graph.nodes) - comp)
        sub = Substrate(self.name, self.graph.subgraph(comp).copy(), list(self.notes))
        sub.notes.append(
            f"kept the largest connected component: dropped {len(dropped)} node(s) {dropped[:5]}"
        )
        return sub


def substrate_from_links(
    name: str, nodes: Iterable[str], links: Iterable[tuple[str, str, float, float, float]]
) -> Substrate:
    """Build a substrate from ``(a, b, capacity_mbps, latency_ms, cost)`` tuples."""
    sub = Substrate(name)
    for n in nodes:
        sub.add_node(n)
    for a, b, cap, lat, cost in links:
        sub.add_link(a, b, capacity_mbps=cap, latency_ms=lat, cost=cost)
    return sub
