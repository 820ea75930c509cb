"""Queries follow discovery, but never toward a route back through the query's path."""

from __future__ import annotations

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.discovery import Discovery
from vnstitch.protocol.messages import Entry, Update

A, B, C, D, E, F = (RouteManagerId(x * 8) for x in "abcdef")
VN = VNID(7)


def _discovery() -> Discovery:
    # B has neighbours C and E. C's best route to VN 7 leads to a copy on A (the RM that
    # is querying, two hops back); E's is longer but leads elsewhere (D, via F).
    d = Discovery(B, {C: (1.0, 1.0), E: (1.0, 1.0)}, lambda _peer: 1000.0, lambda: 1000.0)
    d.on_update(C, Update((Entry(VN, (C, A), 1000.0, 1.0, 1.0, ("10.0.1.0/24",)),), ()))
    d.on_update(E, Update((Entry(VN, (E, F, D), 1000.0, 2.0, 2.0, ("10.0.2.0/24",)),), ()))
    return d


def test_next_hops_prefers_cheapest_when_nothing_is_excluded() -> None:
    assert _discovery().next_hops(VN, {B}, 10.0) == [C, E]


def test_next_hops_skips_routes_back_through_the_query_path() -> None:
    # A query A -> X -> B: C's route goes back to A, so following it only walks the
    # query in circles (it dies on de-duplication); E's route is the one to take.
    assert _discovery().next_hops(VN, {A, RouteManagerId("x" * 8), B}, 10.0) == [E]


def test_next_hops_empty_when_every_route_leads_back() -> None:
    assert _discovery().next_hops(VN, {A, F, B}, 10.0) == []
