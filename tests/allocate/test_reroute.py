"""The allocator asks the routing layer for another path when a link cannot be scaled."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from vnstitch.allocate import AllocateError, ApplicationClass, ScalingRules
from vnstitch.allocate.allocator import Allocator, Consumer, QuantileForecast
from vnstitch.allocate.providers import ResourceKey, ResourceKind, SimProvider, SimResource
from vnstitch.allocate.reroute import arc_of, routing_reroute

VIDEO = ApplicationClass("video", c_under=99.0)  # q = 0.99
RULES = ScalingRules(unit=1.0, hold_steps=0, scale_in_window=1, scale_in_hysteresis=0.0)


def substrate() -> nx.Graph:
    # A-B-C is the short way (2 ms), A-D-C the long one (4 ms).
    g = nx.Graph()
    for u, v, lat in (("A", "B", 1.0), ("B", "C", 1.0), ("A", "D", 2.0), ("D", "C", 2.0)):
        g.add_edge(u, v, capacity_mbps=1000.0, latency_ms=lat, cost=1.0)
    return g


def bw(link: str) -> ResourceKey:
    return ResourceKey(ResourceKind.BANDWIDTH, link)


def forecast(p99: float) -> QuantileForecast:
    return QuantileForecast((0.5, 0.99), np.array([[p99 / 2], [p99]]))


def test_routing_moves_the_stitch_off_a_link_that_cannot_be_scaled() -> None:
    consumers = [Consumer("big", ResourceKind.BANDWIDTH, VIDEO, RULES, 1, ("A->B", "B->C")),
                 Consumer("small", ResourceKind.BANDWIDTH, VIDEO, RULES, 1, ("A->B",))]
    reroute = routing_reroute(substrate(), {"big": ("A", "C"), "small": ("A", "B")})
    sim = SimProvider({ResourceKind.BANDWIDTH: SimResource(quota=80)})
    avail = {bw("A->B"): 80.0, bw("B->C"): 100.0, bw("A->D"): 100.0, bw("D->C"): 100.0}
    rep = Allocator(consumers, sim, reroute).step(0.0, {"big": forecast(70),
                                                        "small": forecast(30)}, avail)
    assert rep.reroutes == {"big": ("A->D", "D->C")}
    assert not rep.shortfalls
    assert rep.per_location[bw("A->D")] == 70.0 and rep.per_location[bw("A->B")] == 30.0
    why = next(d for d in rep.decisions if d.action == "reroute")
    assert "A->D/D->C" in why.reason


def test_no_room_anywhere_is_a_reported_shortfall() -> None:
    consumers = [Consumer("big", ResourceKind.BANDWIDTH, VIDEO, RULES, 1, ("A->B", "B->C"))]
    # The long way has only 10 Mbit/s left: routing finds no path with 70 free.
    reroute = routing_reroute(substrate(), {"big": ("A", "C")},
                              residual=lambda: {("A", "D"): 10.0, ("D", "C"): 10.0})
    sim = SimProvider({ResourceKind.BANDWIDTH: SimResource(quota=50)})
    avail = {bw("A->B"): 50.0, bw("B->C"): 100.0}
    rep = Allocator(consumers, sim, reroute).step(0.0, {"big": forecast(70)}, avail)
    assert not rep.reroutes
    assert [(s.key, s.needed, s.covered) for s in rep.shortfalls] == [(bw("A->B"), 70.0, 50.0)]


def test_unknown_stitch_and_bad_link_ids() -> None:
    reroute = routing_reroute(substrate(), {})
    assert reroute("nobody", frozenset(), 1.0) is None
    assert arc_of("A->B") == ("A", "B")
    with pytest.raises(AllocateError):
        arc_of("A-B")
