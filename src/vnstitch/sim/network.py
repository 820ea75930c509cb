"""The simulated control network: latency between Route Managers over the substrate.

Theory of operation: each segment's Route Manager sits on one substrate node (its
*home*, the segment's highest-degree node). A control datagram from RM *a* to RM *b*
travels the shortest-latency substrate path between their homes, so its base delay is
that path's latency. The substrate can be damaged: individual links cut (and repaired)
and whole groups of segments partitioned from the rest (every link crossing the group's
border is cut until the partition heals). After each change the all-pairs home-to-home
latency matrix is recomputed in one C call (``scipy.sparse.csgraph.dijkstra``), so a
per-datagram lookup is two list indexings; unreachable pairs have ``inf``.

Impairments are applied per datagram from one seeded ``random.Random``: loss, uniform
jitter, reordering (an extra random delay so later datagrams overtake) and duplication
(a second copy a little later). Same seed, same sequence of calls -> same deliveries.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from vnstitch.model.ids import SegmentId
from vnstitch.model.substrate import Substrate
from vnstitch.sim.errors import SimError


@dataclass(frozen=True, slots=True)
class Impairments:
    """Per-datagram impairments; probabilities in [0, 1], times in milliseconds."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay_ms: float = 5.0
    jitter_ms: float = 0.0


def home_nodes(substrate: Substrate) -> dict[SegmentId, str]:
    """Each segment's home node: its highest-degree node (ties: smallest name)."""
    best: dict[SegmentId, tuple[int, str]] = {}
    g = substrate.graph
    for node, data in g.nodes(data=True):
        seg = data.get("segment")
        if seg is None:
            raise SimError(f"node {node!r} is in no segment; partition the substrate first")
        key = (-g.degree(node), node)
        if seg not in best or key < (-best[seg][0], best[seg][1]):
            best[seg] = (g.degree(node), node)
    return {seg: node for seg, (_, node) in sorted(best.items())}


class NetworkModel:
    """Latency between segment homes over a (possibly damaged) substrate, plus impairments."""

    def __init__(self, substrate: Substrate, impairments: Impairments, seed: int) -> None:
        self.substrate = substrate
        self.impairments = impairments
        self.rng = random.Random(seed)
        self.homes = home_nodes(substrate)
        self.segments: list[SegmentId] = list(self.homes)
        self.index = {seg: i for i, seg in enumerate(self.segments)}
        nodes = sorted(substrate.graph.nodes)
        self._node_index = {n: i for i, n in enumerate(nodes)}
        self._edges: dict[tuple[str, str], float] = {}
        for a, b, d in substrate.graph.edges(data=True):
            self._edges[_key(a, b)] = float(d["latency_ms"])
        self._cut_links: set[tuple[str, str]] = set()
        self._partition_links: dict[str, set[tuple[str, str]]] = {}
        self.latency_ms: list[list[float]] = []
        self.recompute()

    # -- damage ------------------------------------------------------------------------
    def cut_link(self, a: str, b: str) -> None:
        self._cut_links.add(self._require(a, b))
        self.recompute()

    def repair_link(self, a: str, b: str) -> None:
        self._cut_links.discard(self._require(a, b))
        self.recompute()

    def partition(self, name: str, segments: set[SegmentId]) -> None:
        """Cut every substrate link with exactly one end in ``segments``."""
        g = self.substrate.graph
        crossing = {
            _key(a, b) for a, b in g.edges
            if (g.nodes[a]["segment"] in segments) != (g.nodes[b]["segment"] in segments)
        }
        self._partition_links[name] = crossing
        self.recompute()

    def heal(self, name: str | None = None) -> None:
        """Heal the partition ``name`` (every partition when ``None``)."""
        if name is None:
            self._partition_links.clear()
        else:
            self._partition_links.pop(name, None)
        self.recompute()

    def _require(self, a: str, b: str) -> tuple[str, str]:
        key = _key(a, b)
        if key not in self._edges:
            raise SimError(f"no substrate link {a}-{b}")
        return key

    def down_links(self) -> set[tuple[str, str]]:
        down = set(self._cut_links)
        for links in self._partition_links.values():
            down |= links
        return down

    def recompute(self) -> None:
        down = self.down_links()
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        idx = self._node_index
        for (a, b), lat in self._edges.items():
            if (a, b) in down:
                continue
            rows += (idx[a], idx[b])
            cols += (idx[b], idx[a])
            vals += (lat, lat)
        n = len(idx)
        graph = csr_matrix((np.array(vals, dtype=float), (rows, cols)), shape=(n, n))
        homes = [idx[self.homes[s]] for s in self.segments]
        dist = dijkstra(graph, directed=True, indices=homes)
        self.latency_ms = [[float(x) for x in row] for row in dist[:, homes]]

    # -- queries -----------------------------------------------------------------------
    def latency(self, a: SegmentId, b: SegmentId) -> float:
        """One-way latency in ms between the homes of ``a`` and ``b`` (``inf``: cut off)."""
        return self.latency_ms[self.index[a]][self.index[b]]

    def reachable(self, a: SegmentId, b: SegmentId) -> bool:
        return math.isfinite(self.latency(a, b))

    def delays(self, src: int, dst: int) -> tuple[float, ...]:
        """Delivery delays in seconds for one datagram: () lost, one entry, or two (dup)."""
        base = self.latency_ms[src][dst]
        if base == math.inf:
            return ()
        imp = self.impairments
        rng = self.rng
        if imp.loss and rng.random() < imp.loss:
            return ()
        delay = base
        if imp.jitter_ms:
            delay += rng.random() * imp.jitter_ms
        if imp.reorder and rng.random() < imp.reorder:
            delay += rng.random() * imp.reorder_delay_ms
        if imp.duplicate and rng.random() < imp.duplicate:
            return (delay / 1000.0, (delay + rng.random() * imp.reorder_delay_ms) / 1000.0)
        return (delay / 1000.0,)


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)
