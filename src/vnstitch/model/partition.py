"""Split a substrate into K connected segments.

Theory of operation: seeds are chosen by farthest-point sampling on latency distance
(the first seed is the node of highest closeness, so the result is deterministic); every
node then joins the seed nearest to it along a multi-source Dijkstra tree. Because each
node's whole shortest path to its seed lies in the same tree, every segment is connected.
A final pass moves border nodes from the largest segments to smaller neighbours while
that keeps both connected, to even out sizes.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
from scipy.sparse.csgraph import dijkstra

from vnstitch.model.errors import ModelError
from vnstitch.model.ids import SegmentId
from vnstitch.model.substrate import Substrate


def segment_name(index: int, count: int) -> SegmentId:
    """Stable segment names ``seg00``..``segNN`` (zero-padded to the count's width)."""
    width = max(2, len(str(count - 1)))
    return SegmentId(f"seg{index:0{width}d}")


def partition(substrate: Substrate, k: int, *, rebalance_rounds: int = 3) -> dict[str, SegmentId]:
    """Return a node -> segment mapping with ``k`` connected segments."""
    g = substrate.graph
    n = g.number_of_nodes()
    if not 1 <= k <= n:
        raise ModelError(f"cannot split {n} nodes into {k} segments (need 1 <= K <= {n})")
    if not nx.is_connected(g):
        raise ModelError("cannot partition a disconnected substrate (load keeps the largest part)")
    first = min(g.nodes, key=lambda v: (-nx.closeness_centrality(g, v, distance="latency_ms"), v)) \
        if n <= 400 else min(g.nodes, key=lambda v: (-g.degree(v), v))
    seeds = _farthest_point_seeds(g, first, k)
    # A list, not a set: ties between seeds go by seed order, not by string hashing
    # (which differs per process), so a partition is the same in every run.
    _, paths = nx.multi_source_dijkstra(g, seeds, weight="latency_ms")
    names = {seed: segment_name(i, k) for i, seed in enumerate(seeds)}
    mapping = {v: names[path[0]] for v, path in paths.items()}
    for _ in range(rebalance_rounds):
        if not _rebalance_once(g, mapping, set(seeds)):
            break
    return mapping


def _farthest_point_seeds(g: nx.Graph, first: str, k: int) -> list[str]:
    """``first``, then repeatedly the node farthest (by latency) from every seed so far;
    ties go to the greatest node name. One C-level Dijkstra per seed keeps K ~ N cheap."""
    nodes = sorted(g.nodes)
    index = {v: i for i, v in enumerate(nodes)}
    adjacency = nx.to_scipy_sparse_array(g, nodelist=nodes, weight="latency_ms", format="csr")
    seeds = [index[first]]
    near = dijkstra(adjacency, directed=False, indices=seeds[0])
    while len(seeds) < k:
        near[seeds] = -1.0
        nxt = int(np.flatnonzero(near == near.max())[-1])
        seeds.append(nxt)
        np.minimum(near, dijkstra(adjacency, directed=False, indices=nxt), out=near)
    return [nodes[i] for i in seeds]


def _rebalance_once(g: nx.Graph, mapping: dict[str, SegmentId], seeds: set[str]) -> bool:
    sizes: dict[SegmentId, int] = {}
    for seg in mapping.values():
        sizes[seg] = sizes.get(seg, 0) + 1
    moved = False
    for v in sorted(g.nodes, key=lambda x: (-sizes[mapping[x]], x)):
        if v in seeds:
            continue
        own = mapping[v]
        options = sorted(
            {mapping[u] for u in g.neighbors(v) if mapping[u] != own},
            key=lambda s: (sizes[s], s),
        )
        if not options or sizes[options[0]] + 1 >= sizes[own]:
            continue
        rest = [u for u, s in mapping.items() if s == own and u != v]
        if rest and not nx.is_connected(g.subgraph(rest)):
            continue
        mapping[v] = options[0]
        sizes[own] -= 1
        sizes[options[0]] += 1
        moved = True
    return moved


def partitioned(substrate: Substrate, k: int) -> Substrate:
    """Partition ``substrate`` in place into ``k`` segments and return it."""
    substrate.assign_segments(partition(substrate, k))
    return substrate
