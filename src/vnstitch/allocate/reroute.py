"""The allocator's routing callback, backed by :mod:`vnstitch.routing`.

Theory of operation: when a substrate link cannot carry a stitch's planned bandwidth and
the provider cannot scale it, :class:`~vnstitch.allocate.allocator.Allocator` calls a
:data:`~vnstitch.allocate.allocator.RerouteFn` with the stitch id, the links to avoid and
the Mbit/s it needs. :func:`routing_reroute` answers with the routing layer's
constrained shortest path (:func:`vnstitch.routing.paths.constrained_shortest_path`):
the lowest-``weight`` path between the stitch's endpoints that avoids those links and has
at least the needed bandwidth on every arc -- residual bandwidth when the caller passes a
``residual`` function (e.g. capacity minus what is already reserved), link capacity
otherwise. Links are named ``"U->V"`` (the allocator's substrate link ids, one per
direction). No path is ``None``, never an exception: the allocator then reports the
shortfall. Pure: the graph and residuals are inputs, nothing is cached between calls.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import networkx as nx

from vnstitch.allocate.errors import AllocateError
from vnstitch.routing.errors import RoutingError
from vnstitch.routing.paths import constrained_shortest_path

#: Residual Mbit/s per directed arc ``(u, v)``, asked at the moment of the reroute.
ResidualFn = Callable[[], Mapping[tuple[str, str], float]]


def link_id(u: str, v: str) -> str:
    return f"{u}->{v}"


def arc_of(link: str) -> tuple[str, str]:
    """``"U->V"`` to ``("U", "V")``; a malformed id is an error naming it."""
    u, sep, v = link.partition("->")
    if not sep or not u or not v or "->" in v:
        raise AllocateError(f"link id {link!r} is not of the form 'U->V'")
    return u, v


def routing_reroute(graph: nx.Graph, endpoints: Mapping[str, tuple[str, str]], *,
                    weight: str = "latency_ms", residual: ResidualFn | None = None,
                    ) -> Callable[[str, frozenset[str], float], Sequence[str] | None]:
    """A reroute callback over ``graph`` for stitches with the given (source, target)."""

    def reroute(stitch: str, avoid: frozenset[str], mbps: float) -> Sequence[str] | None:
        if stitch not in endpoints:
            return None
        src, dst = endpoints[stitch]
        try:
            nodes = constrained_shortest_path(
                graph, src, dst, weight=weight, min_bandwidth_mbps=mbps,
                residual_mbps=residual() if residual is not None else None,
                avoid_arcs=[arc_of(link) for link in avoid])
        except RoutingError:
            return None
        return tuple(link_id(u, v) for u, v in itertools.pairwise(nodes))

    return reroute
