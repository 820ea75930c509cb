"""The exact min-MLU multicommodity flow LP, source-aggregated arc formulation.

Theory of operation. The true optimum of min-MLU routing -- over *all* paths, with any
split -- is a linear program in arc flows. Demands from the same source can share one
commodity (flow conservation does not care where the flow ends), so there is one
commodity per source node ``s``: variables ``f[s, a] >= 0`` for every directed arc ``a``
plus the MLU ``U``::

    min U
    s.t.  sum_{a out of v} f[s, a] - sum_{a into v} f[s, a] = b_s(v)   for all s, v
          sum_s f[s, a] - cap_a U <= 0                                for all a

with ``b_s(s) = sum of s's demands`` and ``b_s(t) = -d(s, t)``. That is about
``|S| x 2|E|`` variables (Cogentco: 197 x 486 ~ 96k), built as one sparse matrix in
scipy (``kron(I_S, incidence)`` stacked over the capacity rows) with no Python loop per
nonzero, and handed to HiGHS in one ``passModel``. It is the reference
``lp_optimal_mlu`` every other method is measured against.

Pure: no I/O, no clock (timings use ``time.perf_counter`` only to report durations).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from vnstitch.routing.errors import RoutingError
from vnstitch.routing.te import ArcTable, Demand, _check_demands, quiet_highs


@dataclass
class ArcLpResult:
    """The optimum MLU, the per-arc total load and the per-source arc flows."""

    mlu: float
    arc_load: np.ndarray
    sources: list[str]
    flow: np.ndarray  # len(sources) x len(arcs)
    solve_seconds: float
    variables: int
    constraints: int


def solve_arc_lp(table: ArcTable, demands: Sequence[Demand], *,
                 solver: str = "ipm") -> ArcLpResult:
    """Solve the source-aggregated arc LP exactly with HiGHS (see the module docstring).

    ``solver`` is a HiGHS ``solver`` option: ``ipm`` (interior point with crossover, the
    fastest here on large graphs), ``simplex`` or ``choose``.
    """
    _check_demands(table, demands)
    res, _ = arc_lp(table, demands, np.zeros(len(table.arcs)), solver=solver)
    return res


def arc_lp(table: ArcTable, demands: Sequence[Demand], fixed_load: np.ndarray, *,
           solver: str = "ipm", crossover: bool = True) -> tuple[ArcLpResult, np.ndarray]:
    """The arc LP of ``demands`` on top of a constant ``fixed_load`` per arc.

    ``crossover=False`` skips IPM's crossover to a vertex: faster, and the duals are
    central (spread over all tight arcs), which is what a pricing step wants.

    Returns the result and the arc duals ``y >= 0`` (``sum cap_a y_a = 1`` at optimum).
    """
    t0 = time.perf_counter()
    n, m = len(table.nodes), len(table.arcs)
    src_idx = np.array([table.node_index[d.src] for d in demands], dtype=np.int64)
    dst_idx = np.array([table.node_index[d.dst] for d in demands], dtype=np.int64)
    vol = np.array([d.volume_mbps for d in demands], dtype=float)
    keep = (vol > 0) & (src_idx != dst_idx)
    src_idx, dst_idx, vol = src_idx[keep], dst_idx[keep], vol[keep]
    sources, row_of = np.unique(src_idx, return_inverse=True)
    k = len(sources)
    if k == 0:
        mlu0 = float(np.max(fixed_load / table.capacity))
        return ArcLpResult(mlu0, fixed_load.copy(), [], np.zeros((0, m)), 0.0, 0, 0), \
            np.zeros(m)
    # Supplies b[s, v]: + total at the source, - demand at each destination.
    supply = np.zeros((k, n))
    np.add.at(supply, (row_of, dst_idx), -vol)
    supply[np.arange(k), sources] += np.bincount(row_of, weights=vol, minlength=k)
    arcs = np.arange(m)
    incidence = sp.csr_matrix(
        (np.concatenate([np.ones(m), -np.ones(m)]),
         (np.concatenate([table.tail, table.head]), np.concatenate([arcs, arcs]))),
        shape=(n, m))
    conservation = sp.kron(sp.identity(k, format="csr"), incidence, format="csr")
    capacity_rows = sp.hstack([sp.identity(m, format="csr")] * k, format="csr")
    a_flow = sp.vstack([conservation, capacity_rows], format="csr")
    u_col = sp.csr_matrix(
        (-table.capacity, (k * n + arcs, np.zeros(m, dtype=np.int64))), shape=(k * n + m, 1))
    a_mat = sp.hstack([a_flow, u_col], format="csc")
    a_mat.sort_indices()
    n_col = k * m + 1
    n_row = k * n + m
    lp = highspy.HighsLp()
    lp.num_col_ = n_col
    lp.num_row_ = n_row
    cost = np.zeros(n_col)
    cost[-1] = 1.0
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(n_col)
    lp.col_upper_ = np.full(n_col, highspy.kHighsInf)
    rhs = supply.ravel()
    lp.row_lower_ = np.concatenate([rhs, np.full(m, -highspy.kHighsInf)])
    lp.row_upper_ = np.concatenate([rhs, -np.asarray(fixed_load, dtype=float)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a_mat.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a_mat.indices.astype(np.int32)
    lp.a_matrix_.value_ = a_mat.data
    h = quiet_highs()
    h.setOptionValue("solver", solver)
    if not crossover:
        h.setOptionValue("run_crossover", "off")
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise RoutingError(f"HiGHS could not solve the arc LP: {h.modelStatusToString(status)}")
    sol = h.getSolution()
    x = np.asarray(sol.col_value)
    # HiGHS: reduced cost = c - A^T row_dual, so an active <= row has row_dual <= 0.
    y = np.maximum(-np.asarray(sol.row_dual)[k * n:], 0.0)
    flow = np.maximum(x[:-1].reshape(k, m), 0.0)
    load = flow.sum(axis=0) + fixed_load
    mlu = float(np.max(load / table.capacity))
    return ArcLpResult(mlu, load, [table.nodes[int(s)] for s in sources], flow,
                       time.perf_counter() - t0, n_col, n_row), y
