"""Strict class precedence and max-min fairness inside a class, on cases solved by hand."""

from __future__ import annotations

import pytest

from vnstitch.model.substrate import substrate_from_links
from vnstitch.routing.classes import class_order, solve_classes
from vnstitch.routing.paths import k_shortest_paths
from vnstitch.routing.te import ArcTable, Demand


def _line() -> ArcTable:
    # a - b (10 Mb/s) - c (10 Mb/s): every demand a->c crosses both links.
    return ArcTable(substrate_from_links("line", "abc", [
        ("a", "b", 10, 1, 1), ("b", "c", 10, 1, 1)]).graph)


def _cands(table: ArcTable, demands: list[Demand], k: int = 3) -> list[list[tuple[int, ...]]]:
    return [[table.arc_path(p) for p in k_shortest_paths(table.graph, d.src, d.dst, k)]
            for d in demands]


def test_higher_class_first_lower_class_shares_the_rest_fairly() -> None:
    t = _line()
    demands = [Demand("a", "c", 4, "interactive"), Demand("a", "c", 3, "database"),
               Demand("a", "c", 5, "email"), Demand("a", "c", 5, "bulk")]
    alloc = solve_classes(t, demands, _cands(t, demands))
    # interactive 4 and database 3 are fully served; bulk precedes email: 3 left -> bulk.
    assert alloc.rate_mbps == pytest.approx([4, 3, 0, 3], abs=1e-6)
    assert class_order(demands) == ["interactive", "database", "bulk", "email"]


def test_max_min_fair_inside_a_class() -> None:
    t = _line()
    demands = [Demand("a", "c", 2, "bulk"), Demand("a", "c", 20, "bulk"),
               Demand("b", "c", 20, "bulk")]
    alloc = solve_classes(t, demands, _cands(t, demands))
    # b->c has 10: the small demand gets all of its 2, the two big ones split 8 equally;
    # then a->b has spare capacity but the 20-demand a->c is stuck at b->c.
    assert alloc.rate_mbps == pytest.approx([2, 4, 4], abs=1e-6)
    assert alloc.arc_load.max() <= 10 + 1e-6


def test_fairness_uses_alternative_paths() -> None:
    # Two parallel routes a-b-d and a-c-d of 10 each: a->d of 30 (interactive) gets 20,
    # and a bulk b->d demand gets nothing, because interactive came first.
    t = ArcTable(substrate_from_links("sq", "abcd", [
        ("a", "b", 10, 1, 1), ("b", "d", 10, 1, 1), ("a", "c", 10, 2, 1),
        ("c", "d", 10, 2, 1)]).graph)
    demands = [Demand("a", "d", 30, "interactive"), Demand("b", "d", 5, "bulk")]
    alloc = solve_classes(t, demands, _cands(t, demands))
    assert alloc.rate_mbps == pytest.approx([20, 0], abs=1e-6)
    assert len(alloc.routing[0]) == 2
    assert alloc.satisfied(demands) == pytest.approx([2 / 3, 0], abs=1e-6)
