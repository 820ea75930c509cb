"""Path computation over a substrate graph: constrained, k-shortest and disjoint paths.

Theory of operation: every function takes the undirected ``networkx.Graph`` of a
:class:`~vnstitch.model.Substrate` (edge attributes ``capacity_mbps``, ``latency_ms``,
``cost``) and returns paths as tuples of node names. Nothing is cached globally.

* :func:`shortest_path` -- Dijkstra with banned nodes/arcs (the workhorse of the rest).
* :func:`constrained_shortest_path` -- minimise one metric subject to a minimum bandwidth
  (capacity or a caller-given residual per directed arc) and budgets on latency and
  cost. Exact label-setting: labels are Pareto-pruned per node and cut by lower bounds
  (one Dijkstra per budgeted metric toward the destination).
* :func:`k_shortest_paths` -- Yen's algorithm, with the shortcut that makes it fast: the
  spur path from spur node ``v`` is first tried as ``v -> w`` plus the shortest-path-tree
  path from ``w`` to the target (the tree is computed once per target). If that tree
  path avoids the root nodes it *is* the optimal spur path (any path from ``v`` leaves
  through some allowed ``w`` and costs at least ``c(v,w) + d(w,t)``); only otherwise do
  we run a real Dijkstra. :func:`all_pairs_k_shortest_paths` reuses one tree per target
  and, because links are symmetric, computes unordered pairs once and reverses them.
* :func:`disjoint_backup_path` -- shortest path sharing no link (or no interior node)
  with a given primary path.

Ties are broken deterministically (by the node-name tuple), so results are reproducible.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence

import networkx as nx

from vnstitch.routing.errors import NoPathError, RoutingError

Path = tuple[str, ...]
Arc = tuple[str, str]
Adjacency = dict[str, list[tuple[str, float]]]


def adjacency(graph: nx.Graph, weight: str = "latency_ms") -> Adjacency:
    """Sorted neighbour lists ``node -> [(neighbour, weight)]`` (both directions)."""
    adj: Adjacency = {}
    for node in sorted(graph.nodes):
        nbrs = []
        for nbr, data in graph[node].items():
            w = float(data[weight])
            if w < 0 or not math.isfinite(w):
                raise RoutingError(f"link {node}-{nbr}: {weight} must be finite and >= 0")
            nbrs.append((nbr, w))
        adj[node] = sorted(nbrs)
    return adj


def path_weight(graph: nx.Graph, path: Sequence[str], attr: str) -> float:
    """Sum of ``attr`` over the links of ``path``."""
    return float(sum(graph.edges[u, v][attr] for u, v in itertools.pairwise(path)))


def path_arcs(path: Sequence[str]) -> list[Arc]:
    return list(itertools.pairwise(path))


def _check_endpoints(adj: Mapping[str, object], src: str, dst: str) -> None:
    for end in (src, dst):
        if end not in adj:
            raise RoutingError(f"unknown node {end!r}")


def _dijkstra(
    adj: Adjacency, src: str, dst: str, *,
    banned_nodes: frozenset[str] | set[str] = frozenset(),
    banned_arcs: frozenset[Arc] | set[Arc] = frozenset(),
    to_target: Mapping[str, float] | None = None,
) -> tuple[float, Path] | None:
    """Shortest ``src -> dst`` avoiding banned nodes/arcs.

    With ``to_target`` (exact distances to ``dst`` in a supergraph: an admissible and
    consistent heuristic) this is A*, which on a spur search settles few nodes.
    """
    h = to_target
    if h is not None and src not in h:
        return None
    best: dict[str, float] = {src: 0.0}
    parent: dict[str, str] = {}
    heap: list[tuple[float, float, str]] = [(h[src] if h is not None else 0.0, 0.0, src)]
    done: set[str] = set()
    while heap:
        _, d, node = heapq.heappop(heap)
        if node in done:
            continue
        if node == dst:
            path = [dst]
            while path[-1] != src:
                path.append(parent[path[-1]])
            return d, tuple(reversed(path))
        done.add(node)
        for nbr, w in adj[node]:
            if nbr in done or nbr in banned_nodes or (node, nbr) in banned_arcs:
                continue
            nd = d + w
            if nd < best.get(nbr, math.inf):
                if h is not None:
                    if nbr not in h:
                        continue
                    key = nd + h[nbr]
                else:
                    key = nd
                best[nbr] = nd
                parent[nbr] = node
                heapq.heappush(heap, (key, nd, nbr))
    return None


def shortest_path(
    graph: nx.Graph, src: str, dst: str, *, weight: str = "latency_ms",
    avoid_nodes: Iterable[str] = (), avoid_arcs: Iterable[Arc] = (),
) -> Path:
    """The shortest path by ``weight``; raises :class:`NoPathError` when none exists."""
    adj = adjacency(graph, weight)
    _check_endpoints(adj, src, dst)
    found = _dijkstra(adj, src, dst, banned_nodes=set(avoid_nodes),
                      banned_arcs=set(avoid_arcs))
    if found is None:
        raise NoPathError(f"no path {src} -> {dst}")
    return found[1]


def _tree_to(adj: Adjacency, target: str) -> tuple[dict[str, float], dict[str, str]]:
    """Distances to ``target`` and each node's next hop toward it (links are symmetric)."""
    dist: dict[str, float] = {target: 0.0}
    nxt: dict[str, str] = {}
    heap: list[tuple[float, str, str]] = [(0.0, target, target)]
    done: set[str] = set()
    while heap:
        d, node, via = heapq.heappop(heap)
        if node in done:
            continue
        done.add(node)
        if node != target:
            nxt[node] = via
        for nbr, w in adj[node]:
            nd = d + w
            if nbr not in done and nd <= dist.get(nbr, math.inf):
                dist[nbr] = nd
                heapq.heappush(heap, (nd, nbr, node))
    return dist, nxt


def _yen(
    adj: Adjacency, src: str, dst: str, k: int, *, dist: dict[str, float],
    nxt: dict[str, str],
) -> list[Path]:
    if src not in dist:
        return []
    first = [src]
    while first[-1] != dst:
        first.append(nxt[first[-1]])
    accepted: list[Path] = [tuple(first)]
    # Lawler's refinement: a path's spurs before the index where it left its parent were
    # already explored from the parent, so start at that index.
    deviation = {accepted[0]: 0}
    candidates: list[tuple[float, int, Path]] = []
    seen: set[Path] = {accepted[0]}
    while len(accepted) < k:
        prev = accepted[-1]
        start = deviation[prev]
        root_cost = sum(next(w for n, w in adj[prev[i]] if n == prev[i + 1])
                        for i in range(start))
        for j in range(start, len(prev) - 1):
            spur, root = prev[j], prev[: j + 1]
            banned_arcs = {(p[j], p[j + 1]) for p in accepted if p[: j + 1] == root}
            banned_nodes = set(root[:-1])
            spur_found = _spur_by_tree(adj, spur, dst, banned_nodes=banned_nodes,
                                       banned_arcs=banned_arcs, dist=dist, nxt=nxt)
            if spur_found is None:
                spur_found = _dijkstra(adj, spur, dst, banned_nodes=banned_nodes,
                                       banned_arcs=banned_arcs, to_target=dist)
            if spur_found is not None:
                cand = root[:-1] + spur_found[1]
                if cand not in seen:
                    seen.add(cand)
                    heapq.heappush(candidates, (root_cost + spur_found[0], j, cand))
            root_cost += next(w for n, w in adj[spur] if n == prev[j + 1])
        if not candidates:
            break
        _, dev, path = heapq.heappop(candidates)
        accepted.append(path)
        deviation[path] = dev
    return accepted


def _spur_by_tree(
    adj: Adjacency, spur: str, dst: str, *, banned_nodes: set[str], banned_arcs: set[Arc],
    dist: dict[str, float], nxt: dict[str, str],
) -> tuple[float, Path] | None:
    """The optimal spur path if the cheapest first hop's tree path is feasible, else None."""
    best_w, best_cost = None, math.inf
    for w, c in adj[spur]:
        if w in banned_nodes or (spur, w) in banned_arcs or w not in dist:
            continue
        total = c + dist[w]
        if total < best_cost:
            best_w, best_cost = w, total
    if best_w is None:
        return None
    path = [spur, best_w]
    node = best_w
    while node != dst:
        node = nxt[node]
        if node in banned_nodes or node == spur:
            return None
        path.append(node)
    return best_cost, tuple(path)


def k_shortest_paths(graph: nx.Graph, src: str, dst: str, k: int, *,
                     weight: str = "latency_ms") -> list[Path]:
    """Up to ``k`` loopless paths in increasing ``weight`` (Yen, tree-shortcut spurs)."""
    if k < 1:
        raise RoutingError(f"k must be >= 1, got {k}")
    adj = adjacency(graph, weight)
    _check_endpoints(adj, src, dst)
    if src == dst:
        return [(src,)]
    dist, nxt = _tree_to(adj, dst)
    return _yen(adj, src, dst, k, dist=dist, nxt=nxt)


def all_pairs_k_shortest_paths(
    graph: nx.Graph, k: int, *, weight: str = "latency_ms",
    pairs: Iterable[tuple[str, str]] | None = None,
) -> dict[tuple[str, str], list[Path]]:
    """k shortest paths for every ordered pair (or only ``pairs``), one tree per target."""
    adj = adjacency(graph, weight)
    wanted: dict[str, set[str]] = {}
    requested = None if pairs is None else {(s, t) for s, t in pairs if s != t}
    if requested is None:
        nodes = sorted(adj)
        for i, a in enumerate(nodes):
            wanted[a] = set(nodes[i + 1:])
    else:
        for s, t in requested:
            _check_endpoints(adj, s, t)
            if s != t:
                lo, hi = (s, t) if s < t else (t, s)
                wanted.setdefault(hi, set()).add(lo)
    out: dict[tuple[str, str], list[Path]] = {}
    for target in sorted(wanted):
        dist, nxt = _tree_to(adj, target)
        for src in sorted(wanted[target]):
            paths = _yen(adj, src, target, k, dist=dist, nxt=nxt)
            out[src, target] = paths
            out[target, src] = [p[::-1] for p in paths]
    if requested is not None:
        out = {key: val for key, val in out.items() if key in requested}
    return out


def constrained_shortest_path(
    graph: nx.Graph, src: str, dst: str, *, weight: str = "cost",
    min_bandwidth_mbps: float = 0.0, max_latency_ms: float | None = None,
    max_cost: float | None = None, residual_mbps: Mapping[Arc, float] | None = None,
    avoid_arcs: Iterable[Arc] = (),
) -> Path:
    """Cheapest path by ``weight`` with bandwidth >= ``min_bandwidth_mbps`` on every arc
    (``residual_mbps[(u, v)]`` if given, else capacity) and latency/cost within budget.

    Raises :class:`NoPathError` naming the constraint when no path qualifies.
    """
    avoid = set(avoid_arcs)
    _check_endpoints(graph, src, dst)

    def usable(u: str, v: str) -> bool:
        if (u, v) in avoid:
            return False
        bw = (residual_mbps.get((u, v), graph.edges[u, v]["capacity_mbps"])
              if residual_mbps is not None else graph.edges[u, v]["capacity_mbps"])
        return bool(bw >= min_bandwidth_mbps)

    arcs: dict[str, list[tuple[str, float, float, float]]] = {}
    rev_lat: Adjacency = {n: [] for n in graph.nodes}
    rev_cost: Adjacency = {n: [] for n in graph.nodes}
    for u in sorted(graph.nodes):
        arcs[u] = []
        for v in sorted(graph[u]):
            if usable(u, v):
                d = graph.edges[u, v]
                arcs[u].append((v, float(d[weight]), float(d["latency_ms"]), float(d["cost"])))
                rev_lat[v].append((u, float(d["latency_ms"])))
                rev_cost[v].append((u, float(d["cost"])))
    lat_lb = _distances_to(rev_lat, dst)
    cost_lb = _distances_to(rev_cost, dst)
    if src not in lat_lb:
        raise NoPathError(f"no path {src} -> {dst} with {min_bandwidth_mbps:g} Mbit/s free")
    lat_budget = math.inf if max_latency_ms is None else max_latency_ms
    cost_budget = math.inf if max_cost is None else max_cost
    eps = 1e-9
    labels: dict[str, list[tuple[float, float, float]]] = {}
    heap: list[tuple[float, float, float, Path]] = [(0.0, 0.0, 0.0, (src,))]
    while heap:
        w, lat, cost, path = heapq.heappop(heap)
        node = path[-1]
        if node == dst:
            return path
        if any(lw <= w + eps and ll <= lat + eps and lc <= cost + eps
               for lw, ll, lc in labels.get(node, [])):
            continue
        labels.setdefault(node, []).append((w, lat, cost))
        for nbr, aw, al, ac in arcs[node]:
            if nbr in path:
                continue
            nl, nc = lat + al, cost + ac
            if (nbr not in lat_lb or nl + lat_lb[nbr] > lat_budget + eps
                    or nc + cost_lb[nbr] > cost_budget + eps):
                continue
            heapq.heappush(heap, (w + aw, nl, nc, (*path, nbr)))
    raise NoPathError(
        f"no path {src} -> {dst} with {min_bandwidth_mbps:g} Mbit/s free, latency <= "
        f"{lat_budget:g} ms, cost <= {cost_budget:g}"
    )


def _distances_to(rev: Adjacency, target: str) -> dict[str, float]:
    dist = {target: 0.0}
    heap = [(0.0, target)]
    while heap:
        d, node = heapq.heappop(heap)
        if d > dist[node]:
            continue
        for nbr, w in rev[node]:
            if d + w < dist.get(nbr, math.inf):
                dist[nbr] = d + w
                heapq.heappush(heap, (d + w, nbr))
    return dist


def disjoint_backup_path(
    graph: nx.Graph, primary: Sequence[str], *, weight: str = "latency_ms",
    node_disjoint: bool = False,
) -> Path:
    """Shortest path between the ends of ``primary`` sharing none of its links (both
    directions) -- or, with ``node_disjoint``, none of its interior nodes either."""
    if len(primary) < 2:
        raise RoutingError("primary path needs at least two nodes")
    src, dst = primary[0], primary[-1]
    arcs = {a for u, v in path_arcs(primary) for a in ((u, v), (v, u))}
    nodes = set(primary[1:-1]) if node_disjoint else set()
    try:
        return shortest_path(graph, src, dst, weight=weight, avoid_nodes=nodes, avoid_arcs=arcs)
    except NoPathError:
        kind = "node" if node_disjoint else "link"
        raise NoPathError(f"no {kind}-disjoint backup for {src} -> {dst}") from None
