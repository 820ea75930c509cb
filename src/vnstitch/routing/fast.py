"""The fast TE method: commodity generation over the arc LP, with a certified gap.

Theory of operation. The exact optimum is the source-aggregated arc LP of
:mod:`vnstitch.routing.arclp` (one commodity per source, ~N x 2E variables). Most sources
never need to leave their shortest-path tree, so this method solves that LP *restricted
to a few free sources*, the others pinned to their latency-shortest paths as a constant
arc load, and grows the free set by pricing:

1. solve the restricted arc LP (HiGHS) over the free sources on top of the pinned load;
   read its arc duals ``y`` (scaled so ``sum cap_a y_a = 1``);
2. one multi-source Dijkstra in C (scipy.sparse.csgraph) under ``y`` prices *every*
   demand at once: ``LB = sum_d vol_d dist_y(d)`` is a lower bound on the optimum over
   all paths (weak duality), the restricted LP's MLU is an upper bound -- stop when
   ``U <= (1 + gap) LB``: the result is certified within ``gap`` of the true optimum;
3. otherwise free the ``batch`` pinned sources whose demands would save the most
   (``sum vol_d (y(pinned path) - dist_y(d))``) and repeat. A free source is optimal
   over *all* its paths at once, so few rounds are needed (unlike per-path column
   generation, which trickles in one path per demand per round).

The free sources' arc flows are then decomposed into paths (per destination, walk back
along the arcs that carry that source's flow) so the routing is a list of paths with
fractions, like every other method's.

Pure: no I/O, no clock (timings use ``time.perf_counter`` only to report durations).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from vnstitch.routing.arclp import arc_lp
from vnstitch.routing.te import (
    ArcPath,
    ArcTable,
    Demand,
    TeResult,
    _base_weights,
    _check_demands,
    _finish,
    shortest_arc_paths,
)

#: Stop when the restricted LP's MLU is within this fraction of the lower bound.
DEFAULT_GAP = 0.01


def _flat(paths: Sequence[ArcPath]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated arcs and the demand index of each (for vectorised path sums)."""
    lens = np.fromiter((len(p) for p in paths), np.int64, len(paths))
    arcs = np.fromiter((a for p in paths for a in p), np.int64, int(lens.sum()))
    return arcs, np.repeat(np.arange(len(paths)), lens)


def _decompose(table: ArcTable, flow: np.ndarray, src: int, dst: int, *, volume: float,
               into: list[list[int]], fallback: ArcPath) -> list[tuple[ArcPath, float]]:
    """Peel ``volume`` of ``src -> dst`` off the single-source arc ``flow`` (in place)."""
    out: list[tuple[ArcPath, float]] = []
    left = volume
    eps = 1e-9 * max(volume, 1e-12)
    for _ in range(256):
        if left <= eps:
            break
        node, arcs, pos = dst, [], {dst: 0}
        while node != src:
            best = max(into[node], key=lambda a: flow[a], default=-1)
            if best < 0 or flow[best] <= eps:
                break
            node = int(table.tail[best])
            arcs.append(best)
            if node in pos:  # walked round a circulation: cancel it and go on
                cycle = arcs[pos[node]:]
                flow[cycle] -= float(flow[cycle].min())
                del arcs[pos[node]:]
                pos = {k: v for k, v in pos.items() if v <= pos[node]}
                continue
            pos[node] = len(arcs)
        if node != src:
            break
        amount = min(left, float(flow[arcs].min()))
        flow[arcs] -= amount
        left -= amount
        out.append((tuple(reversed(arcs)), amount / volume))
    if left > eps:  # solver round-off: the rest stays on the shortest path
        out.append((fallback, left / volume))
    return out


def solve_fast(table: ArcTable, demands: Sequence[Demand], *, weight: str = "latency_ms",
               gap: float = DEFAULT_GAP, batch: int | None = None,
               max_rounds: int = 100, solver: str = "ipm", crossover: bool = False,
               first_hot: float = 1.0) -> TeResult:
    """Min-MLU routing within ``gap`` of the all-paths optimum (module docstring).

    ``batch`` sources are freed per round (default ``max(10, N // 15)``); after
    ``max_rounds`` the result is returned uncertified (said in ``notes``).
    """
    _check_demands(table, demands)
    t0 = time.perf_counter()
    m = len(table.arcs)
    base = _base_weights(table, weight)
    vol = np.array([d.volume_mbps for d in demands], dtype=float)
    srcs = np.array([table.node_index[d.src] for d in demands], dtype=np.int64)
    pinned = shortest_arc_paths(table, demands, base)
    pin_arcs, pin_dem = _flat(pinned)
    paths_s = time.perf_counter() - t0
    solve_s = 0.0
    per_round = batch or max(10, len(table.nodes) // 15)
    free = np.zeros(len(table.nodes), dtype=bool)
    lower, upper, rounds, certified = 0.0, math.inf, 0, False
    flows: np.ndarray = np.zeros((0, m))
    free_sources: list[str] = []
    for rounds in range(1, max_rounds + 1):  # noqa: B007 - reported below
        t1 = time.perf_counter()
        is_free = free[srcs]
        fixed = np.bincount(pin_arcs, weights=np.where(is_free[pin_dem], 0.0, vol[pin_dem]),
                            minlength=m)
        res, y = arc_lp(table, [d for d, f in zip(demands, is_free, strict=True) if f],
                        fixed, solver=solver, crossover=crossover)
        upper, flows, free_sources = res.mlu, res.flow, res.sources
        if not y.any():  # nothing free yet: weigh every hot arc, the hottest most
            util = res.arc_load / table.capacity
            y = np.where(util >= first_hot * util.max(), util ** 4, 0.0)
        y = y / float(table.capacity @ y)
        solve_s += time.perf_counter() - t1
        t2 = time.perf_counter()
        tie = 1e-6 * float(y.max()) * base / float(base.max())  # y is 0 on most arcs
        priced = shortest_arc_paths(table, demands, y + tie)
        new_arcs, new_dem = _flat(priced)
        new_len = np.bincount(new_dem, weights=y[new_arcs], minlength=len(demands))
        lower = max(lower, float(vol @ new_len))
        pin_len = np.bincount(pin_dem, weights=y[pin_arcs], minlength=len(demands))
        saving = np.bincount(srcs, weights=np.where(is_free, 0.0, vol * (pin_len - new_len)),
                             minlength=len(table.nodes))
        paths_s += time.perf_counter() - t2
        if upper <= (1.0 + gap) * lower:
            certified = True
            break
        order = np.argsort(-saving, kind="stable")[:per_round]
        order = order[saving[order] > 1e-12 * upper]
        if not order.size:
            certified = True  # no source can improve: optimal over all paths
            break
        free[order] = True
    t3 = time.perf_counter()
    routing: list[list[tuple[ArcPath, float]]] = [[(p, 1.0)] for p in pinned]
    into: list[list[int]] = [[] for _ in table.nodes]
    for a in range(m):
        into[int(table.head[a])].append(a)
    row_of = {table.node_index[s]: r for r, s in enumerate(free_sources)}
    for i, d in enumerate(demands):
        r = row_of.get(int(srcs[i]))
        if r is not None and d.volume_mbps > 0 and d.src != d.dst:
            routing[i] = _decompose(table, flows[r], int(srcs[i]), table.node_index[d.dst],
                                    volume=d.volume_mbps, into=into, fallback=pinned[i])
    paths_s += time.perf_counter() - t3
    result = _finish("fast", table, demands, routing=routing, paths_s=paths_s,
                     solve_s=solve_s, optimal=certified, iterations=rounds,
                     lp_variables=len(free_sources) * m + 1)
    result.notes.append(
        f"commodity generation: {rounds} round(s), {len(free_sources)} of "
        f"{len(set(srcs.tolist()))} sources free, MLU lower bound {lower:.6g} (gap "
        f"{(upper / lower - 1) if lower > 0 else math.inf:.2%})"
        + ("" if certified else "; round limit hit: not certified"))
    return result
