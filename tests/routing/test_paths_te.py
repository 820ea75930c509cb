"""Paths and traffic engineering on small graphs with known answers."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest

from vnstitch.model.substrate import Substrate, substrate_from_links
from vnstitch.routing.arclp import solve_arc_lp
from vnstitch.routing.errors import NoPathError, RoutingError
from vnstitch.routing.fast import solve_fast
from vnstitch.routing.paths import (
    all_pairs_k_shortest_paths,
    constrained_shortest_path,
    disjoint_backup_path,
    k_shortest_paths,
    path_weight,
)
from vnstitch.routing.te import ArcTable, Demand, solve_path_lp, solve_shortest


def diamond() -> Substrate:
    """a-b-d (fast, 10 Mb/s) and a-c-d (slow, 100 Mb/s), plus a long a-e-f-d detour."""
    return substrate_from_links("diamond", "abcdef", [
        ("a", "b", 10, 1, 1), ("b", "d", 10, 1, 1),
        ("a", "c", 100, 5, 1), ("c", "d", 100, 5, 1),
        ("a", "e", 100, 2, 5), ("e", "f", 100, 2, 5), ("f", "d", 100, 2, 5),
    ])


def grid(n: int = 5) -> nx.Graph:
    g = nx.grid_2d_graph(n, n)
    out = nx.Graph()
    for (a, b) in g.edges:
        w = 1.0 + ((hash(a) ^ hash(b)) % 7) / 10
        out.add_edge(f"{a[0]}_{a[1]}", f"{b[0]}_{b[1]}", latency_ms=w, capacity_mbps=10.0,
                     cost=1.0)
    return out


def test_k_shortest_matches_networkx_yen() -> None:
    g = grid()
    allp = all_pairs_k_shortest_paths(g, 4)
    for s, t in itertools.permutations(sorted(g.nodes)[:8], 2):
        ref = list(itertools.islice(nx.shortest_simple_paths(g, s, t, weight="latency_ms"), 4))
        ours = k_shortest_paths(g, s, t, 4)
        assert [round(path_weight(g, p, "latency_ms"), 9) for p in ours] == \
            [round(path_weight(g, p, "latency_ms"), 9) for p in ref]
        assert [path_weight(g, p, 'latency_ms') for p in allp[s, t]] == pytest.approx(
            [path_weight(g, p, 'latency_ms') for p in ours])
        assert len(set(ours)) == len(ours)


def test_constrained_shortest_path_respects_bandwidth_and_latency() -> None:
    g = diamond().graph
    assert constrained_shortest_path(g, "a", "d", weight="latency_ms") == ("a", "b", "d")
    assert constrained_shortest_path(g, "a", "d", weight="latency_ms",
                                     min_bandwidth_mbps=50) == ("a", "e", "f", "d")
    # cheapest by cost is a-c-d (cost 2) but its latency 10 ms busts a 7 ms budget
    assert constrained_shortest_path(g, "a", "d", weight="cost", min_bandwidth_mbps=50,
                                     max_latency_ms=7) == ("a", "e", "f", "d")
    with pytest.raises(NoPathError, match="latency <= 5"):
        constrained_shortest_path(g, "a", "d", min_bandwidth_mbps=50, max_latency_ms=5)
    residual = {("a", "e"): 1.0}
    assert constrained_shortest_path(g, "a", "d", weight="latency_ms", min_bandwidth_mbps=50,
                                     residual_mbps=residual) == ("a", "c", "d")


def test_disjoint_backup() -> None:
    g = diamond().graph
    assert disjoint_backup_path(g, ("a", "b", "d")) == ("a", "e", "f", "d")
    with pytest.raises(NoPathError, match="disjoint"):
        disjoint_backup_path(g.subgraph(["a", "b", "d"]), ("a", "b", "d"))


def test_lp_and_fast_agree_on_known_optimum() -> None:
    # 30 Mb/s a->d over capacities 10 (a-b-d), 100 (a-c-d), 100 (a-e-f-d): optimum splits
    # so every path is equally loaded: U = 30 / 210.
    sub = diamond()
    table = ArcTable(sub.graph)
    demands = [Demand("a", "d", 30.0)]
    cands = [[table.arc_path(p) for p in k_shortest_paths(sub.graph, "a", "d", 3)]]
    lp = solve_path_lp(table, demands, cands)
    assert lp.mlu == pytest.approx(30 / 210)
    fast = solve_fast(table, demands)
    assert fast.mlu == pytest.approx(30 / 210, rel=0.02)
    sp_ = solve_shortest(table, demands)
    assert sp_.mlu == pytest.approx(3.0)
    for res in (lp, fast):
        assert sum(f for _, f in res.routing[0]) == pytest.approx(1.0)
        assert res.arc_load.max() / 10 <= res.mlu * 10 + 1e-9


def test_lp_and_fast_agree_on_grid() -> None:
    g = grid(4)
    table = ArcTable(g)
    nodes = sorted(g.nodes)
    demands = [Demand(s, t, 1.0 + (i % 3)) for i, (s, t) in
               enumerate(itertools.permutations(nodes, 2)) if i % 5 == 0]
    allp = all_pairs_k_shortest_paths(g, 6)
    lp = solve_path_lp(table, demands, [[table.arc_path(p) for p in allp[d.src, d.dst]]
                                        for d in demands])
    fast = solve_fast(table, demands)
    assert fast.mlu <= lp.mlu * 1.02
    assert solve_shortest(table, demands).mlu >= lp.mlu - 1e-9


def test_unknown_node_is_named() -> None:
    table = ArcTable(diamond().graph)
    with pytest.raises(RoutingError, match="unknown node 'zz'"):
        solve_shortest(table, [Demand("a", "zz", 1.0)])


def test_arc_lp_is_the_true_optimum() -> None:
    table = ArcTable(diamond().graph)
    # Over all paths the optimum spreads 30 Mb/s over capacities 10 + 100 + 100.
    assert solve_arc_lp(table, [Demand("a", "d", 30.0)]).mlu == pytest.approx(30 / 210)
    g = grid(4)
    t = ArcTable(g)
    nodes = sorted(g.nodes)
    demands = [Demand(s, d, 1.0 + (i % 3)) for i, (s, d) in
               enumerate(itertools.permutations(nodes, 2)) if i % 3 == 0]
    opt = solve_arc_lp(t, demands).mlu
    # The arc LP is a relaxation of every path LP, and the fast method is within its gap.
    allp = all_pairs_k_shortest_paths(g, 3)
    lp = solve_path_lp(t, demands, [[t.arc_path(p) for p in allp[d.src, d.dst]]
                                    for d in demands])
    assert opt <= lp.mlu + 1e-9
    fast = solve_fast(t, demands, gap=0.001)
    assert fast.optimal
    assert opt - 1e-7 <= fast.mlu <= opt * 1.001 + 1e-9
    for r in fast.routing:
        assert sum(f for _, f in r) == pytest.approx(1.0)


def test_fast_certificate_is_a_true_lower_bound() -> None:
    g = grid(5)
    t = ArcTable(g)
    nodes = sorted(g.nodes)
    demands = [Demand(s, d, 1.0 + (i % 7)) for i, (s, d) in
               enumerate(itertools.permutations(nodes, 2)) if i % 4 == 0]
    opt = solve_arc_lp(t, demands).mlu
    for gap in (0.05, 0.01, 0.0):
        fast = solve_fast(t, demands, gap=gap)
        assert fast.optimal and fast.lower_bound is not None
        assert fast.lower_bound <= opt + 1e-9
        # (the bound gives up 1e-6 relative for its tie-breaking lengths)
        assert opt - 1e-7 <= fast.mlu <= (1 + gap) * fast.lower_bound * (1 + 1e-5)
        # the routing is what the MLU says: fractions sum to one, loads recomputed agree
        for r in fast.routing:
            assert sum(f for _, f in r) == pytest.approx(1.0)
        assert float((t.loads(demands, fast.routing) / t.capacity).max()) == \
            pytest.approx(fast.mlu)
    # a round limit leaves the result honest: not certified
    capped = solve_fast(t, demands, gap=0.0, max_rounds=1)
    assert capped.mlu >= opt - 1e-7
    assert not capped.optimal or capped.mlu <= opt * (1 + 1e-6)


def test_fast_handles_trivial_and_unreachable_demands() -> None:
    t = ArcTable(diamond().graph)
    res = solve_fast(t, [Demand("a", "a", 5.0), Demand("a", "d", 0.0), Demand("b", "c", 4.0)])
    assert res.routing[0] == [((), 1.0)]
    assert sum(f for _, f in res.routing[1]) == pytest.approx(1.0)
    # b's only links are b-a and b-d (10 Mb/s each): 4 Mb/s splits 2 + 2.
    assert res.mlu == pytest.approx(0.2, rel=1e-6)
    g = diamond().graph.copy()
    g.add_node("z")
    with pytest.raises(NoPathError, match="a -> z"):
        solve_fast(ArcTable(g), [Demand("a", "z", 1.0)])
