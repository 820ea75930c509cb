"""Strict QoS class precedence in TE (SWAN-style), over the classes of
:mod:`vnstitch.routing.qos`.

Theory of operation.

*Precedence in TE (SWAN-style).* :func:`solve_classes` serves classes one after another
in precedence order (default :data:`PRECEDENCE`: stitched interactive/video first, then
database, then bulk/e-mail; unknown classes go last, in name order; a policy's
:attr:`QosPolicy.precedence` may be passed instead). Each class gets only the capacity
the classes before it left over (``residual``), so a lower class can never take
bandwidth a higher class could use. Inside a class the allocation is max-min fair by
**progressive filling with iterated LPs** (HiGHS through ``scipy.optimize.linprog``),
over each demand's candidate paths with any split:

1. maximise the common rate ``t`` that every unfrozen demand gets at least of
   (``sum_p x_dp >= t``), with frozen demands held at their frozen rate, every demand
   at most its volume, and arc loads within the residual capacity;
2. freeze every demand that is fully served (volume <= t) and every demand whose
   fairness row has a nonzero dual (it is held back by a saturated bottleneck: raising
   it would lower someone at ``t``), at its current rate; repeat until all are frozen.

Each round freezes at least one demand (the duals of the fairness rows sum to one when
``t`` is bounded by capacity), so there are at most as many LPs as demands in the class.
The class's final LP routing is subtracted from the residual before the next class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from vnstitch.routing.errors import RoutingError
from vnstitch.routing.te import ArcPath, ArcTable, Demand, _check_demands

#: Default strict precedence, highest first.
PRECEDENCE = ("interactive", "video", "database", "bulk", "email")


@dataclass
class ClassAllocation:
    """Per demand: the rate it got and its paths with the rate on each."""

    rate_mbps: list[float]
    routing: list[list[tuple[ArcPath, float]]]
    arc_load: np.ndarray
    lp_rounds: int

    def satisfied(self, demands: Sequence[Demand]) -> list[float]:
        return [r / d.volume_mbps if d.volume_mbps > 0 else 1.0
                for r, d in zip(self.rate_mbps, demands, strict=True)]


def class_order(demands: Sequence[Demand], precedence: Sequence[str] = PRECEDENCE
                ) -> list[str]:
    """The classes present, highest precedence first (unknown ones last, by name)."""
    present = {d.qos_class for d in demands}
    known = [c for c in precedence if c in present]
    return known + sorted(present - set(known))


def _max_min_fair(table: ArcTable, vol: np.ndarray, cands: Sequence[Sequence[ArcPath]],
                  residual: np.ndarray) -> tuple[np.ndarray, list[list[float]], int]:
    """Progressive filling for one class; returns rates, per-path flows and LP count."""
    n, m = len(vol), len(table.arcs)
    col_dem = np.array([i for i, c in enumerate(cands) for _ in c], dtype=np.int64)
    col_paths = [p for c in cands for p in c]
    ncol = len(col_paths)
    lens = [len(p) for p in col_paths]
    arc_rows = sp.csr_matrix(
        (np.ones(sum(lens)), (np.array([a for p in col_paths for a in p], dtype=np.int64),
                              np.repeat(np.arange(ncol), lens))), shape=(m, ncol))
    dem_rows = sp.csr_matrix((np.ones(ncol), (col_dem, np.arange(ncol))), shape=(n, ncol))
    frozen = np.zeros(n, dtype=bool)
    rate = np.zeros(n)
    flows = np.zeros(ncol)
    rounds = 0
    scale = max(float(vol.max()), 1e-12)  # keep the LP near 1 for HiGHS' tolerances
    v, res = vol / scale, residual / scale
    while not frozen.all():
        rounds += 1
        unfrozen = np.nonzero(~frozen)[0]
        fz = np.nonzero(frozen)[0]
        zcol = sp.csr_matrix((m + n, 1))
        fair = sp.hstack([-dem_rows[unfrozen], sp.csr_matrix(np.ones((len(unfrozen), 1)))])
        hold = sp.hstack([-dem_rows[fz], sp.csr_matrix((len(fz), 1))])
        a_ub = sp.vstack([sp.hstack([sp.vstack([arc_rows, dem_rows]), zcol]), fair, hold],
                         format="csr")
        b_ub = np.concatenate([res, v, np.zeros(len(unfrozen)), -rate[fz] / scale * 0.999999])
        cost = np.zeros(ncol + 1)
        cost[-1] = -1.0
        out = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
        if out.status != 0:
            raise RoutingError(f"max-min fair LP failed: {out.message}")
        t = float(out.x[-1])
        flows = out.x[:-1] * scale
        got = dem_rows @ out.x[:-1]
        duals = np.asarray(out.ineqlin.marginals)[m + n:m + n + len(unfrozen)]
        done = (v[unfrozen] <= t + 1e-9) | (duals < -1e-9)
        if not done.any():  # degenerate duals: freeze everyone at t (always progress)
            done[:] = True
        newly = unfrozen[done]
        rate[newly] = np.minimum(got[newly], v[newly]) * scale
        frozen[newly] = True
    per_demand: list[list[float]] = [[] for _ in range(n)]
    for j, i in enumerate(col_dem.tolist()):
        per_demand[i].append(float(flows[j]))
    return rate, per_demand, rounds


def solve_classes(table: ArcTable, demands: Sequence[Demand],
                  candidates: Sequence[Sequence[ArcPath]], *,
                  precedence: Sequence[str] = PRECEDENCE) -> ClassAllocation:
    """Serve classes in strict precedence, each max-min fair inside (module docstring)."""
    _check_demands(table, demands)
    if len(candidates) != len(demands):
        raise RoutingError("need one candidate list per demand")
    residual = table.capacity.astype(float).copy()
    rate = [0.0] * len(demands)
    routing: list[list[tuple[ArcPath, float]]] = [[] for _ in demands]
    load = np.zeros(len(table.arcs))
    rounds = 0
    for cls in class_order(demands, precedence):
        idx = [i for i, d in enumerate(demands) if d.qos_class == cls and d.volume_mbps > 0]
        if not idx:
            continue
        for i in idx:
            if not candidates[i]:
                raise RoutingError(f"demand {i} ({demands[i].src}->{demands[i].dst}) has "
                                   "no candidate path")
        vol = np.array([demands[i].volume_mbps for i in idx])
        cls_rate, flows, n_lp = _max_min_fair(table, vol, [candidates[i] for i in idx],
                                              np.maximum(residual, 0.0))
        rounds += n_lp
        for k, i in enumerate(idx):
            rate[i] = float(cls_rate[k])
            routing[i] = [(p, f) for p, f in zip(candidates[i], flows[k], strict=True)
                          if f > 1e-9]
            for p, f in routing[i]:
                if p:
                    load[list(p)] += f
        residual = table.capacity - load
    return ClassAllocation(rate, routing, load, rounds)
