"""Symbolic places and rates in a scenario, resolved against a partitioned topology.

Theory of operation. A scenario meant for *any* topology (``builtin:story``) cannot name
substrate nodes or capacities. Its flows name *picks* instead, resolved here, purely and
deterministically, once the topology is loaded and partitioned -- by the simulator and by
the lab alike, so both runtimes place the same VNs on the same segments:

* ``@K`` -- the home node (:func:`vnstitch.sim.network.home_nodes`: highest degree) of
  the K-th segment in sorted order;
* ``@ring-a`` / ``@ring-b`` -- the two ends of an adjacency that lies on a cycle of the
  segment graph (not a bridge), so cutting it leaves a way round: among those, the one
  with the fewest substrate links (a lab wire then stands for exactly one link), then the
  largest capacity, then by name;
* ``@far-a`` / ``@far-b`` -- two segments as far apart as the segment graph allows (its
  diameter, by hops; ties by name): a stitch between them crosses transit segments when
  there are any.

Rates may be written as ``"N%"`` (``mbps``, ``reserve_mbps`` and every schedule step of
one flow): N percent of the smallest capacity on the flow's latency-shortest substrate
path, so a surge congests whatever the topology's capacities are.

Two fault targets are resolved *when the fault fires*, from the segment paths of the
stitches established at that moment, with the same functions in both runtimes:
:func:`busiest_transit` (the segment most stitches cross as transit: the existing
``busiest-transit``) and :func:`busiest_adjacency` (``link: busiest-adjacency``: the
segment adjacency most stitches cross, among those that are not bridges; cutting it cuts
every substrate link between the two segments).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence

import networkx as nx

from vnstitch.model import Substrate
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.network import home_nodes
from vnstitch.sim.traffic_spec import FlowSpec, TrafficSpec

PICK_PREFIX = "@"
#: ``link:`` alias of cut_link / repair_link faults (see the module docstring).
BUSIEST_ADJACENCY = "busiest-adjacency"


def segment_picks(sub: Substrate) -> dict[str, str]:
    """Every pick name (without ``@``) -> segment id."""
    segs = [str(s) for s in sub.segments()]
    picks = {str(k): s for k, s in enumerate(segs)}
    g = sub.segment_graph()
    ring = ring_adjacency(sub)
    if ring is not None:
        picks["ring-a"], picks["ring-b"] = ring
    if g.number_of_nodes() >= 2 and nx.is_connected(g):
        dist = dict(nx.all_pairs_shortest_path_length(g))
        a, b = min(itertools.combinations(sorted(map(str, g.nodes)), 2),
                   key=lambda p: (-dist[p[0]][p[1]], p))
        picks["far-a"], picks["far-b"] = a, b
    return picks


def ring_adjacency(sub: Substrate) -> tuple[str, str] | None:
    """The adjacency ``@ring-a``/``@ring-b`` name (module docstring), or ``None``."""
    g = sub.segment_graph()
    bridges = {frozenset(e) for e in nx.bridges(g)} if g.number_of_edges() else set()
    cands = [adj for adj in sub.segment_adjacencies()
             if frozenset((adj.a, adj.b)) not in bridges]
    if not cands:
        return None
    best = min(cands, key=lambda adj: (len(adj.links), -adj.capacity_mbps, adj.a, adj.b))
    return str(best.a), str(best.b)


def _pick_node(sub: Substrate, picks: Mapping[str, str], homes: Mapping[str, str],
               raw: str, *, source: str, where: str) -> str:
    if not raw.startswith(PICK_PREFIX):
        return raw
    name = raw.removeprefix(PICK_PREFIX)
    if name not in picks:
        have = ", ".join(PICK_PREFIX + k for k in picks)
        raise ScenarioError(source, where, f"no pick {raw!r} in {sub.name} in "
                            f"{len(sub.segments())} segments (have {have})")
    return homes[picks[name]]


def _capacity(sub: Substrate, src: str, dst: str, source: str, where: str) -> float:
    g = sub.graph
    try:
        path = nx.shortest_path(g, src, dst, weight="latency_ms")
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        raise ScenarioError(source, where, f"no path from {src!r} to {dst!r}") from None
    return min(float(g.edges[u, v]["capacity_mbps"]) for u, v in itertools.pairwise(path))


def resolve_picks(spec: TrafficSpec, sub: Substrate, source: str) -> TrafficSpec:
    """``spec`` with every ``@pick`` replaced by a node id and every percent rate by
    Mbit/s (module docstring); unchanged if it has neither."""
    if not any(f.src.startswith(PICK_PREFIX) or f.dst.startswith(PICK_PREFIX) or f.percent
               for f in spec.flows):
        return spec
    picks = segment_picks(sub)
    homes = {str(s): n for s, n in home_nodes(sub).items()}
    flows: list[FlowSpec] = []
    for f in spec.flows:
        src = _pick_node(sub, picks, homes, f.src, source=source, where=f"{f.field}.src")
        dst = _pick_node(sub, picks, homes, f.dst, source=source, where=f"{f.field}.dst")
        if src == dst:
            raise ScenarioError(source, f"{f.field}.dst", f"{f.dst!r} and src {f.src!r} are "
                                f"the same node in {sub.name}")
        cap = _capacity(sub, src, dst, source, f.field) / 100.0 if f.percent else 1.0
        flows.append(dataclasses.replace(
            f, src=src, dst=dst, mbps=f.mbps * cap,
            schedule=tuple((t, x * cap) for t, x in f.schedule),
            reserve_mbps=None if f.reserve_mbps is None else f.reserve_mbps * cap,
            percent=False))
    return dataclasses.replace(spec, flows=tuple(flows))


def busiest_transit(paths: Sequence[Sequence[str]], segments: Sequence[str]) -> str:
    """The segment most of ``paths`` (segment ids, origin first) cross as transit; ties
    (and no transit at all): the first in ``segments`` order."""
    count = dict.fromkeys(segments, 0)
    for p in paths:
        for s in p[1:-1]:
            count[s] = count.get(s, 0) + 1
    return max(segments, key=lambda s: (count[s], -segments.index(s)))


def busiest_adjacency(paths: Sequence[Sequence[str]], sub: Substrate) -> tuple[str, str]:
    """The segment adjacency most of ``paths`` cross that is not a bridge of the segment
    graph (so the segments stay connected without it); ties: the ring adjacency, then by
    name. :class:`ScenarioError` if every adjacency is a bridge."""
    g = sub.segment_graph()
    bridges = {frozenset(map(str, e)) for e in nx.bridges(g)} if g.number_of_edges() else set()
    adjs = [(str(a.a), str(a.b)) for a in sub.segment_adjacencies()
            if frozenset((str(a.a), str(a.b))) not in bridges]
    if not adjs:
        raise ScenarioError(sub.name, "faults.link", f"{BUSIEST_ADJACENCY}: every segment "
                            "adjacency is a bridge; cutting one would split the segments")
    count = dict.fromkeys(adjs, 0)
    for p in paths:
        for a, b in itertools.pairwise(p):
            key = (a, b) if a < b else (b, a)
            if key in count:
                count[key] += 1
    ring = ring_adjacency(sub)
    return min(adjs, key=lambda k: (-count[k], k != ring, k))


def adjacency_links(sub: Substrate, a: str, b: str) -> list[tuple[str, str]]:
    """The substrate links (node pairs) between segments ``a`` and ``b``."""
    for adj in sub.segment_adjacencies():
        if {str(adj.a), str(adj.b)} == {a, b}:
            return [(lk.a, lk.b) for lk in adj.links]
    raise ScenarioError(sub.name, "faults.link", f"segments {a} and {b} are not adjacent")
