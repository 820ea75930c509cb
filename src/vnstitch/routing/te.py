"""Traffic engineering: place many demands at once, minimising max link utilisation.

Theory of operation. Links are full duplex, so each undirected link is two directed
arcs of the same capacity (:class:`ArcTable`). A demand is ``(src, dst, volume)``; a
routing gives each demand one or more paths with fractions summing to one. Utilisation
of an arc is load / capacity; MLU is the maximum over arcs.

Three methods, one result type (:class:`TeResult`):

* :func:`solve_shortest` -- every demand on its single shortest path (the static
  baseline an IGP gives).
* :func:`solve_path_lp` -- the exact path LP over caller-given candidate paths (e.g. k
  shortest), solved by HiGHS: ``min U  s.t.  sum_p x_dp = 1,  sum vol_d x_dp <= cap_e U``.
  This is the reference.
* :func:`vnstitch.routing.fast.solve_fast` -- the control-loop method: column
  generation over shortest-path trees with a certified gap to the all-paths optimum
  (see that module).

Pure: no I/O, no clock (timings use ``time.perf_counter`` only to report durations;
:func:`quiet_highs` points the process's stdout at the null device for the instant a
solver is made, so HiGHS's banner never reaches a user).
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import highspy
import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from vnstitch.routing.errors import NoPathError, RoutingError
from vnstitch.routing.paths import Path

ArcPath = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Demand:
    """Traffic ``src -> dst`` of ``volume_mbps`` in QoS class ``qos_class``."""

    src: str
    dst: str
    volume_mbps: float
    qos_class: str = "default"


class ArcTable:
    """The directed arcs of an undirected substrate graph, indexed for numpy."""

    def __init__(self, graph: nx.Graph) -> None:
        self.graph = graph
        self.nodes: list[str] = sorted(graph.nodes)
        self.node_index = {n: i for i, n in enumerate(self.nodes)}
        arcs: list[tuple[str, str]] = []
        for u, v in sorted((min(a, b), max(a, b)) for a, b in graph.edges):
            arcs += [(u, v), (v, u)]
        self.arcs = arcs
        self.arc_index = {a: i for i, a in enumerate(arcs)}
        self.capacity = np.array([graph.edges[a]["capacity_mbps"] for a in arcs], dtype=float)
        self.latency = np.array([graph.edges[a]["latency_ms"] for a in arcs], dtype=float)
        self.cost = np.array([graph.edges[a]["cost"] for a in arcs], dtype=float)
        n = len(self.nodes)
        self.tail = np.array([self.node_index[u] for u, _ in arcs], dtype=np.int64)
        self.head = np.array([self.node_index[v] for _, v in arcs], dtype=np.int64)
        self.arc_id = np.full((n, n), -1, dtype=np.int64)
        self.arc_id[self.tail, self.head] = np.arange(len(arcs))
        # CSR with a fixed sparsity pattern; csr_data_order maps arc -> data slot.
        order = np.lexsort((self.head, self.tail))
        self._csr = sp.csr_matrix(
            (np.ones(len(arcs)), (self.tail[order], self.head[order])), shape=(n, n))
        self._csr.sort_indices()
        slot = {(int(self.tail[a]), int(self.head[a])): a for a in range(len(arcs))}
        rows = np.repeat(np.arange(n), np.diff(self._csr.indptr))
        self._slot_arc = np.array(
            [slot[int(r), int(c)] for r, c in zip(rows, self._csr.indices, strict=True)],
            dtype=np.int64)

    def weighted(self, weights: np.ndarray) -> sp.csr_matrix:
        """The n x n CSR adjacency with the given per-arc weights (all must be > 0)."""
        m = self._csr.copy()
        m.data = np.asarray(weights, dtype=float)[self._slot_arc]
        return m

    def arc_path(self, path: Sequence[str]) -> ArcPath:
        try:
            return tuple(self.arc_index[u, v] for u, v in itertools.pairwise(path))
        except KeyError as exc:
            raise RoutingError(f"path {list(path)} uses a non-existent link {exc}") from None

    def node_path(self, arc_path: ArcPath, src: str) -> Path:
        if not arc_path:
            return (src,)
        return (self.arcs[arc_path[0]][0], *(self.arcs[a][1] for a in arc_path))

    def loads(self, demands: Sequence[Demand], routing: Sequence[Sequence[tuple[ArcPath, float]]]
              ) -> np.ndarray:
        arcs: list[int] = []
        amount: list[float] = []
        for d, paths in zip(demands, routing, strict=True):
            for p, frac in paths:
                arcs += p
                amount += [d.volume_mbps * frac] * len(p)
        load: np.ndarray = np.bincount(np.array(arcs, dtype=np.int64),
                                       weights=np.array(amount, dtype=float),
                                       minlength=len(self.arcs))
        return load


@dataclass
class TeResult:
    """A routing and its figures. ``routing[i]`` lists ``(arc path, fraction)`` of demand i."""

    method: str
    routing: list[list[tuple[ArcPath, float]]]
    arc_load: np.ndarray
    mlu: float
    paths_seconds: float
    solve_seconds: float
    optimal: bool = False
    iterations: int = 0
    lp_variables: int = 0
    notes: list[str] = field(default_factory=list)
    #: Candidate paths the method considered (for warm starts), when it had any.
    candidates: list[list[ArcPath]] | None = None
    #: A proven lower bound on the all-paths optimum MLU, when the method has one.
    lower_bound: float | None = None

    @property
    def demand_satisfied(self) -> float:
        """Fraction of every demand that fits if all are scaled down alike: min(1, 1/MLU)."""
        return 1.0 if self.mlu <= 1.0 else 1.0 / self.mlu

    def utilisation(self, table: ArcTable) -> np.ndarray:
        util: np.ndarray = self.arc_load / table.capacity
        return util


def _finish(method: str, table: ArcTable, demands: Sequence[Demand], *,
            routing: list[list[tuple[ArcPath, float]]], paths_s: float, solve_s: float,
            **kw: object) -> TeResult:
    load = table.loads(demands, routing)
    mlu = float(np.max(load / table.capacity)) if len(load) else 0.0
    return TeResult(method, routing, load, mlu, paths_s, solve_s, **kw)  # type: ignore[arg-type]


def _check_demands(table: ArcTable, demands: Sequence[Demand]) -> None:
    for i, d in enumerate(demands):
        for end in (d.src, d.dst):
            if end not in table.node_index:
                raise RoutingError(f"demand {i} ({d.src}->{d.dst}): unknown node {end!r}")
        if not (math.isfinite(d.volume_mbps) and d.volume_mbps >= 0):
            raise RoutingError(f"demand {i} ({d.src}->{d.dst}): volume must be >= 0")


def tree_paths(table: ArcTable, pred: np.ndarray, row: np.ndarray, src: np.ndarray,
               dst: np.ndarray) -> list[ArcPath]:
    """Walk each ``dst[i]`` back to ``src[i]`` along predecessor row ``pred[row[i]]``.

    ``pred`` is a (rows x nodes) predecessor matrix as scipy's ``dijkstra`` returns it
    (negative = unreached); all walks advance together, one numpy step per hop.
    """
    cur = dst.copy()
    active = np.nonzero(cur != src)[0]
    steps_d: list[np.ndarray] = []
    steps_a: list[np.ndarray] = []
    while active.size:
        p = pred[row[active], cur[active]]
        if (p < 0).any():
            bad = int(active[np.argmax(p < 0)])
            raise NoPathError(f"no path {table.nodes[int(src[bad])]} -> "
                              f"{table.nodes[int(dst[bad])]}")
        steps_d.append(active)
        steps_a.append(table.arc_id[p, cur[active]])
        cur[active] = p
        active = active[p != src[active]]
    if not steps_d:
        return [() for _ in range(len(dst))]
    dem = np.concatenate(steps_d)
    arc = np.concatenate(steps_a)
    order = np.argsort(dem, kind="stable")  # per walk: arcs from dst back to src
    counts = np.bincount(dem, minlength=len(dst))
    chunks = np.split(arc[order], np.cumsum(counts)[:-1])
    return [tuple(c[::-1].tolist()) for c in chunks]


def shortest_arc_paths(table: ArcTable, demands: Sequence[Demand],
                       weights: np.ndarray) -> list[ArcPath]:
    """Each demand's shortest path under per-arc ``weights`` (vectorised over demands)."""
    if not demands:
        return []
    src = np.array([table.node_index[d.src] for d in demands])
    dst = np.array([table.node_index[d.dst] for d in demands])
    sources, row = np.unique(src, return_inverse=True)
    _, pred = dijkstra(table.weighted(weights), directed=True, indices=sources,
                       return_predecessors=True)
    return tree_paths(table, pred, row, src, dst)


def _base_weights(table: ArcTable, weight: str) -> np.ndarray:
    if weight == "latency_ms":
        w = table.latency
    elif weight == "cost":
        w = table.cost
    elif weight == "hops":
        w = np.ones(len(table.arcs))
    else:
        raise RoutingError(f"unknown path weight {weight!r} (latency_ms, cost or hops)")
    # csgraph treats an explicit 0 as a missing arc in some paths; keep weights > 0.
    out: np.ndarray = np.maximum(w, 1e-9)
    return out


def solve_shortest(table: ArcTable, demands: Sequence[Demand], *,
                   weight: str = "latency_ms") -> TeResult:
    """Every demand on its single shortest path (static IGP-like routing)."""
    _check_demands(table, demands)
    t0 = time.perf_counter()
    paths = shortest_arc_paths(table, demands, _base_weights(table, weight))
    t1 = time.perf_counter()
    return _finish("shortest", table, demands, routing=[[(p, 1.0)] for p in paths],
                   paths_s=t1 - t0, solve_s=0.0)


def quiet_highs() -> highspy.Highs:
    """A HiGHS solver that prints nothing: output off, and its copyright banner -- which
    HiGHS writes to the C-level stdout when a process makes its first solver, before any
    option can be set -- sent to the null device. Every HiGHS object in the routing layer
    comes from here, so a library caller's stdout (say, ``--json``) stays its own."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        h = highspy.Highs()  # type: ignore[no-untyped-call]
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
    h.setOptionValue("output_flag", False)
    h.setOptionValue("random_seed", 0)
    return h



def solve_path_lp(table: ArcTable, demands: Sequence[Demand],
                  candidates: Sequence[Sequence[ArcPath]], *, paths_seconds: float = 0.0
                  ) -> TeResult:
    """The exact min-MLU path LP over ``candidates[i]`` for demand i, solved by HiGHS."""
    _check_demands(table, demands)
    if len(candidates) != len(demands):
        raise RoutingError("need one candidate list per demand")
    t0 = time.perf_counter()
    n_arc = len(table.arcs)
    col_demand: list[int] = []
    starts: list[int] = [0]
    index: list[int] = []
    value: list[float] = []
    col_paths: list[ArcPath] = []
    for i, (d, cands) in enumerate(zip(demands, candidates, strict=True)):
        if not cands:
            raise NoPathError(f"demand {i} ({d.src}->{d.dst}) has no candidate path")
        for p in cands:
            index.extend(p)
            value.extend([d.volume_mbps] * len(p))
            index.append(n_arc + i)
            value.append(1.0)
            starts.append(len(index))
            col_demand.append(i)
            col_paths.append(p)
    n_col = len(col_paths)
    h = quiet_highs()
    inf = highspy.kHighsInf
    # Arc rows: sum vol x - cap U <= 0; demand rows: sum x = 1.
    h.addRows(n_arc, np.full(n_arc, -inf), np.zeros(n_arc), 0, np.zeros(0, np.int32),
              np.zeros(0, np.int32), np.zeros(0))
    nd = len(demands)
    h.addRows(nd, np.ones(nd), np.ones(nd), 0, np.zeros(0, np.int32), np.zeros(0, np.int32),
              np.zeros(0))
    h.addCol(1.0, 0.0, inf, n_arc, np.arange(n_arc, dtype=np.int32), -table.capacity)
    h.addCols(n_col, np.zeros(n_col), np.zeros(n_col), np.ones(n_col), len(index),
              np.array(starts[:-1], np.int32), np.array(index, np.int32),
              np.array(value, float))
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise RoutingError(f"HiGHS could not solve the path LP: {h.modelStatusToString(status)}")
    x = np.asarray(h.getSolution().col_value)[1:]
    routing: list[list[tuple[ArcPath, float]]] = [[] for _ in demands]
    for j in np.nonzero(x > 1e-9)[0]:
        routing[col_demand[j]].append((col_paths[j], float(x[j])))
    for r in routing:  # renormalise away solver round-off
        s = sum(f for _, f in r)
        r[:] = [(p, f / s) for p, f in r]
    t1 = time.perf_counter()
    return _finish("lp", table, demands, routing=routing, paths_s=paths_seconds,
                   solve_s=t1 - t0, optimal=True, lp_variables=n_col)
