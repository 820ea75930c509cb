"""The fast TE method: column generation over shortest-path *trees*, with a certified gap.

Theory of operation. Demands from one source ``s`` can be routed together: any routing
of them is (after cancelling cycles) a convex combination of *trees* rooted at ``s``,
each tree carrying every demand of ``s`` on its tree path. That is the Dantzig-Wolfe
form of the source-aggregated arc LP of :mod:`vnstitch.routing.arclp`, whose optimum is
the true all-paths optimum. The master LP over the trees generated so far is tiny --
one row per arc and one per source, one column per tree::

    min U  s.t.  sum_j lambda_j load_j(a) - cap_a U <= 0     for every arc a
                 sum_{j of s} lambda_j = 1                    for every source s

(rows left in Mbit/s: HiGHS' own scaling handles them far better than rows pre-divided
by capacity -- about 8x fewer seconds on GtsCe).

1. start with each source's latency-shortest-path tree (so round 1 is shortest path);
2. solve the master with HiGHS simplex, *warm-started*: the model is built once and only
   grows by ``addCols``, so each round re-optimises from the previous basis;
3. price with the arc duals ``z`` (``sum z_a = 1``) as lengths ``y_a = z_a / cap_a``: one
   multi-source Dijkstra in C (scipy.sparse.csgraph) gives every source's cheapest tree.
   Weak duality gives ``LB = sum_d vol_d dist_y(d)`` <= the optimum over all paths, and
   the master's ``U`` is achieved by the routing: stop when ``U <= (1 + gap) LB`` -- the
   result is certified within ``gap`` of the true optimum. Otherwise add each tree
   whose cost is below its source's convexity dual ``sigma_s`` (negative reduced cost)
   and repeat.

Ties among zero-dual arcs are broken by a tiny latency term ``tie_a`` scaled so that no
path carries more than ``tau`` of it; the lower bound subtracts ``tau`` per unit of
demand, so the certificate stays a true bound. The tree loads are accumulated for all
sources at once by walking nodes in decreasing distance (one numpy step per node).

The routing is read off the trees with ``lambda > 0``: demand ``s -> t`` takes its tree
path in each, with fraction ``lambda`` (identical paths merged).

Pure: no I/O, no clock (timings use ``time.perf_counter`` only to report durations).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import highspy
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from vnstitch.routing.errors import NoPathError, RoutingError
from vnstitch.routing.te import (
    ArcPath,
    ArcTable,
    Demand,
    TeResult,
    _base_weights,
    _check_demands,
    _finish,
    quiet_highs,
    tree_paths,
)

#: Stop when the master's MLU is within this fraction of the lower bound.
DEFAULT_GAP = 0.01
#: Relative size of the tie-break lengths (total over any path, vs the current MLU).
_TIE = 1e-6


class _Trees:
    """Shortest-path trees of every source under one length vector, and their arc loads."""

    def __init__(self, table: ArcTable, sources: np.ndarray, supply: np.ndarray,
                 lengths: np.ndarray) -> None:
        dist, pred = dijkstra(table.weighted(lengths), directed=True, indices=sources,
                              return_predecessors=True)
        unreached = ~np.isfinite(dist) & (supply > 0)
        if unreached.any():
            r, v = np.argwhere(unreached)[0]
            raise NoPathError(f"no path {table.nodes[int(sources[r])]} -> {table.nodes[v]}")
        self.dist, self.pred = dist, pred
        # Subtree demand: visit nodes farthest first and push each one's total to its parent.
        k = len(sources)
        sub = supply.copy()
        order = np.argsort(-np.where(np.isfinite(dist), dist, -1.0), axis=1, kind="stable")
        rows = np.arange(k)
        r_parts, a_parts, v_parts = [], [], []
        for step in range(supply.shape[1]):
            v = order[:, step]
            p = pred[rows, v]
            ok = p >= 0
            rr, vv, pp = rows[ok], v[ok], p[ok]
            amount = sub[rr, vv]
            sub[rr, pp] += amount
            r_parts.append(rr)
            a_parts.append(table.arc_id[pp, vv])
            v_parts.append(amount)
        r_all, a_all, v_all = (np.concatenate(r_parts), np.concatenate(a_parts),
                               np.concatenate(v_parts))
        keep = v_all > 0
        #: sources x arcs, each source's load per arc on its tree.
        self.load = sp.csr_matrix((v_all[keep], (r_all[keep], a_all[keep])),
                                  shape=(k, len(table.arcs)))


class _Master:
    """The restricted master LP, built once and grown by columns (warm-started simplex)."""

    def __init__(self, capacity: np.ndarray, n_sources: int) -> None:
        self.m, self.k = len(capacity), n_sources
        self.cap = capacity
        h = quiet_highs()
        inf = highspy.kHighsInf
        none_i, none_f = np.zeros(0, np.int32), np.zeros(0)
        h.addRows(self.m, np.full(self.m, -inf), np.zeros(self.m), 0, none_i, none_i, none_f)
        h.addRows(self.k, np.ones(self.k), np.ones(self.k), 0, none_i, none_i, none_f)
        h.addCol(1.0, 0.0, inf, self.m, np.arange(self.m, dtype=np.int32), -capacity)
        self.h = h
        self.col_source: list[int] = []

    def add(self, rows: np.ndarray, load: sp.csr_matrix) -> None:
        """One column per source in ``rows``: its tree's load per arc."""
        conv = sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)),
                             shape=(len(rows), self.k))
        cols = sp.hstack([load[rows], conv], format="csr")  # row i of this = column i of A
        cols.sort_indices()
        n = len(rows)
        self.h.addCols(n, np.zeros(n), np.zeros(n), np.full(n, highspy.kHighsInf), cols.nnz,
                       cols.indptr[:-1].astype(np.int32), cols.indices.astype(np.int32),
                       cols.data.astype(float))
        self.col_source += rows.tolist()

    def solve(self) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """``U``, arc duals ``z = cap * y`` and convexity duals (both scaled so ``sum z =
        1``, which optimality gives up to round-off), tree weights."""
        self.h.run()
        status = self.h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            raise RoutingError("HiGHS could not solve the TE master LP: "
                               f"{self.h.modelStatusToString(status)}")
        sol = self.h.getSolution()
        x = np.asarray(sol.col_value)
        dual = np.asarray(sol.row_dual)
        # HiGHS: reduced cost = c - A^T row_dual, so an active <= row has row_dual <= 0.
        z = np.maximum(-dual[:self.m], 0.0) * self.cap
        norm = max(float(z.sum()), 1e-300)
        return float(x[0]), z / norm, dual[self.m:] / norm, x[1:]


def solve_fast(table: ArcTable, demands: Sequence[Demand], *, weight: str = "latency_ms",
               gap: float = DEFAULT_GAP, max_rounds: int = 200) -> TeResult:
    """Min-MLU routing within ``gap`` of the all-paths optimum (module docstring).

    After ``max_rounds`` the best routing found is returned uncertified (said in ``notes``).
    """
    _check_demands(table, demands)
    if gap < 0:
        raise RoutingError(f"gap must be >= 0, got {gap}")
    t0 = time.perf_counter()
    n = len(table.nodes)
    src = np.array([table.node_index[d.src] for d in demands], dtype=np.int64)
    dst = np.array([table.node_index[d.dst] for d in demands], dtype=np.int64)
    vol = np.array([d.volume_mbps for d in demands], dtype=float)
    routed = src != dst
    if not routed.any():
        return _finish("fast", table, demands, routing=[[((), 1.0)] for _ in demands],
                       paths_s=0.0, solve_s=0.0, optimal=True)
    sources, row = np.unique(src[routed], return_inverse=True)
    supply = np.zeros((len(sources), n))
    np.add.at(supply, (row, dst[routed]), vol[routed])
    base = _base_weights(table, weight)
    trees = _Trees(table, sources, supply, base)
    preds = [trees.pred]
    paths_s = time.perf_counter() - t0
    solve_s = 0.0
    master = _Master(table.capacity, len(sources))
    master.add(np.arange(len(sources)), trees.load)
    total = float(vol[routed].sum())
    upper, lower, rounds, certified = math.inf, 0.0, 0, False
    lam = np.ones(len(sources))
    if total > 0:
        for rounds in range(1, max_rounds + 1):  # noqa: B007 - reported below
            t1 = time.perf_counter()
            upper, z, sigma, lam = master.solve()
            solve_s += time.perf_counter() - t1
            t2 = time.perf_counter()
            y = z / table.capacity
            tau = _TIE * upper / total  # any path carries at most tau of tie length
            trees = _Trees(table, sources, supply, y + tau * base / float(base.sum()))
            cost = np.asarray(trees.load @ y).ravel()  # each new tree's exact y-cost
            lower = max(lower, float((supply * trees.dist).sum()) - tau * total)
            better = np.nonzero(cost < sigma - 1e-9 * upper)[0]
            paths_s += time.perf_counter() - t2
            if upper <= (1.0 + gap) * lower or not better.size:
                certified = True  # no better tree anywhere: optimal over all paths
                break
            t3 = time.perf_counter()
            master.add(better, trees.load)
            preds.append(trees.pred[better])
            solve_s += time.perf_counter() - t3
    t4 = time.perf_counter()
    routing = _read_routing(table, np.concatenate(preds),
                            col_source=np.array(master.col_source), lam=lam, sources=sources,
                            src=src, dst=dst, routed=routed)
    paths_s += time.perf_counter() - t4
    result = _finish("fast", table, demands, routing=routing, paths_s=paths_s,
                     solve_s=solve_s, optimal=certified, iterations=rounds,
                     lp_variables=len(master.col_source) + 1, lower_bound=lower)
    result.notes.append(
        f"tree column generation: {rounds} round(s), {len(master.col_source)} trees for "
        f"{len(sources)} sources, MLU lower bound {lower:.6g} (gap "
        f"{(result.mlu / lower - 1) if lower > 0 else 0.0:.2%})"
        + ("" if certified else "; round limit hit: not certified"))
    return result


def _read_routing(table: ArcTable, pred: np.ndarray, *, col_source: np.ndarray,
                  lam: np.ndarray, sources: np.ndarray, src: np.ndarray, dst: np.ndarray,
                  routed: np.ndarray) -> list[list[tuple[ArcPath, float]]]:
    """Each demand's tree paths in the trees with ``lambda > 0``, fractions ``lambda``."""
    used = np.nonzero(lam > 1e-9)[0]
    by_source: dict[int, list[int]] = {}
    for j in used.tolist():
        by_source.setdefault(int(col_source[j]), []).append(j)
    row_of = {int(s): r for r, s in enumerate(sources)}
    walk_dem: list[int] = []
    walk_col: list[int] = []
    for i in np.nonzero(routed)[0].tolist():
        cols = by_source[row_of[int(src[i])]]
        walk_dem += [i] * len(cols)
        walk_col += cols
    wd = np.array(walk_dem, dtype=np.int64)
    wc = np.array(walk_col, dtype=np.int64)
    paths = tree_paths(table, pred, wc, src[wd], dst[wd])
    routing: list[list[tuple[ArcPath, float]]] = [[((), 1.0)] for _ in range(len(src))]
    for i in np.nonzero(routed)[0].tolist():
        routing[i] = []
    merged: dict[int, dict[ArcPath, float]] = {}
    for i, j, p in zip(wd.tolist(), wc.tolist(), paths, strict=True):
        share = merged.setdefault(i, {})
        share[p] = share.get(p, 0.0) + float(lam[j])
    for i, share in merged.items():
        s = sum(share.values())
        routing[i] = [(p, f / s) for p, f in share.items()]
    return routing
