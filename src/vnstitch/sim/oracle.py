"""The simulator's own judgement of whether a stitch request *can* succeed.

Theory of operation: "every feasible request succeeds" needs an independent notion of
feasible. At the moment a request arrives the oracle looks at the segment graph as the
simulator knows it -- live Route Managers, neighbour pairs that can still reach each
other, and each adjacency's capacity minus the bandwidth held by live stitches (the
metrics ledger) -- and asks whether some path from the origin to another segment hosting
the VNID has enough residual bandwidth, at most ``hop_limit`` segment crossings and at
most ``max_latency_ms`` summed neighbour latency. It tries the lowest-latency and the
fewest-hop path among links with enough residual capacity; a request is feasible when
either meets every constraint. In-flight holds are not counted, so under contention the
oracle is optimistic (a refusal it calls feasible shows as a failure, never hidden).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from typing import TYPE_CHECKING

from vnstitch.model.ids import VNID
from vnstitch.protocol.api import StitchConstraints

if TYPE_CHECKING:
    from vnstitch.sim.engine import Simulation


def _usable(sim: Simulation, a: int, b: int, bw: float) -> bool:
    if sim.cores[b] is None or sim.net.latency_ms[a][b] == math.inf:
        return False
    key = (a, b) if a < b else (b, a)
    return sim.capacity[key] - sim.metrics.ledger.get(key, 0.0) >= bw - 1e-9


def _walk(prev: dict[int, int], end: int) -> tuple[int, ...]:
    path = [end]
    while path[-1] in prev:
        path.append(prev[path[-1]])
    return tuple(reversed(path))


def _latency(sim: Simulation, path: tuple[int, ...]) -> float:
    return sum(sim.peer_latency[(a, b)] for a, b in itertools.pairwise(path))


def feasible_path(
    sim: Simulation, origin: int, vnid: VNID, cons: StitchConstraints
) -> tuple[int, ...] | None:
    """A path meeting ``cons`` from ``origin`` to another host of ``vnid``, or ``None``."""
    targets = sim.hosts.get(vnid, set()) - {origin}
    if not targets or sim.cores[origin] is None or origin not in sim.hosts.get(vnid, set()):
        return None
    bw = cons.bandwidth_mbps

    def ok(path: tuple[int, ...]) -> bool:
        return len(path) - 1 <= cons.hop_limit and _latency(sim, path) <= cons.max_latency_ms

    # lowest latency
    dist = {origin: 0.0}
    prev: dict[int, int] = {}
    heap = [(0.0, origin)]
    while heap:
        d, a = heapq.heappop(heap)
        if d > dist[a]:
            continue
        if a in targets:
            path = _walk(prev, a)
            if ok(path):
                return path
            break
        for b in sim.neighbours[a]:
            nd = d + sim.peer_latency[(a, b)]
            if nd < dist.get(b, math.inf) and _usable(sim, a, b, bw):
                dist[b] = nd
                prev[b] = a
                heapq.heappush(heap, (nd, b))
    # fewest hops
    prev = {}
    seen = {origin}
    queue = deque([origin])
    while queue:
        a = queue.popleft()
        if a in targets:
            path = _walk(prev, a)
            return path if ok(path) else None
        for b in sim.neighbours[a]:
            if b not in seen and _usable(sim, a, b, bw):
                seen.add(b)
                prev[b] = a
                queue.append(b)
    return None
