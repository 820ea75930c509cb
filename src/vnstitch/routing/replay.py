"""Replay a sequence of traffic matrices under three policies, interval by interval.

Theory of operation. Row ``t`` of a :class:`~vnstitch.routing.demands.TrafficMatrices`
is the mean rate of every flow (one flow per column) during monitoring interval ``t``;
an interval is *counted* as congested under a policy when the routing in force during
it, loaded with that interval's matrix, puts some arc above 100% (or 80%).

* **static shortest path** -- every flow on its latency-shortest path, forever;
* **reroute on congestion** -- an online controller (:class:`ControllerConfig`). What it
  knows when it decides the routing of interval ``t``: the utilisation samples and flow
  rates of intervals ``<= t - lag`` and nothing later (``lag = 1``: it decides in the
  gap between interval ``t - 1`` and ``t``; ``lag = 2``: a decision takes a whole
  interval to compute and install). A change decided then is installed
  make-before-break and carries traffic from the *start* of interval ``t``, and interval
  ``t`` is counted with it. The controller

  1. feeds the routing layer's one loop (:class:`~vnstitch.routing.monitor.RerouteLoop`:
     its hysteresis monitor and its hold-down state) the utilisation
     samples of interval ``t - lag`` (``samples_per_interval`` per interval; the trace
     has one matrix per 5 minutes, so the samples of one interval are equal);
  2. forecasts interval ``t`` as the last matrix it has seen times ``1 + margin`` (the
     naive last-value forecast plus headroom) and predicts each arc's utilisation under
     the current routing;
  3. when the monitor reports a congested arc or the predicted peak exceeds
     ``trigger`` (acting before links saturate), re-optimises only a few flows: it
     solves the min-peak LP over every flow's split on its ``k`` shortest paths for the
     forecast, keeps the ``max_change`` share of flows whose split differs most from
     that target (volume-weighted) and never a flow changed in the last ``hold_down``
     intervals (dampening: no flapping), then solves the LP again with only those
     flows free and everyone else where it is;
  4. adopts the new splits only if they lower the predicted peak by ``min_gain``. Each
     changed flow is a :class:`~vnstitch.routing.monitor.RerouteDecision` (reason,
     make-before-break steps, the new split) timed at the start of interval ``t``.

* **per-interval optimum** -- the exact arc LP (:func:`~vnstitch.routing.arclp.
  solve_arc_lp`) solved afresh for each interval *with that interval's matrix*: an
  oracle no online policy can match, the bound the controller is measured against.

Pure: the clock is ``row * interval_s``; ``on_row`` lets a caller drive a progress bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from vnstitch.routing.arclp import solve_arc_lp
from vnstitch.routing.demands import DEFAULT_CLASS, TrafficMatrices
from vnstitch.routing.errors import RoutingError
from vnstitch.routing.monitor import (
    CongestionMonitor,
    MonitorConfig,
    RerouteDecision,
    RerouteLoop,
)
from vnstitch.routing.paths import all_pairs_k_shortest_paths
from vnstitch.routing.te import ArcTable, Demand


@dataclass(frozen=True)
class ControllerConfig:
    """The reroute-on-congestion controller's knobs (module docstring)."""

    lag: int = 1
    samples_per_interval: int = 5
    monitor: MonitorConfig = field(default_factory=lambda: MonitorConfig(
        high=0.8, low=0.6, raise_samples=2, clear_samples=3))
    trigger: float = 0.7
    margin: float = 0.1
    max_change: float = 0.049
    hold_down: int = 3
    min_gain: float = 0.01

    def __post_init__(self) -> None:
        if self.lag < 1 or self.samples_per_interval < 1:
            raise RoutingError("controller: lag and samples_per_interval must be >= 1")
        if not (self.trigger >= 0 and self.margin >= 0 and 0 <= self.max_change <= 1):
            raise RoutingError("controller: need trigger >= 0, margin >= 0, 0 <= max_change <= 1")


@dataclass
class ReplayResult:
    times: list[str]
    static_mlu: np.ndarray
    reroute_mlu: np.ndarray
    optimum_mlu: np.ndarray
    changed: np.ndarray  # flows whose routing changed at the start of each interval
    triggered: np.ndarray  # intervals whose start saw a re-optimisation attempt
    decisions: list[RerouteDecision] = field(default_factory=list)

    def summary(self, n_flows: int) -> dict[str, object]:
        out: dict[str, object] = {"intervals": len(self.times), "flows": n_flows}
        for name, mlu in (("static_shortest", self.static_mlu),
                          ("reroute_on_congestion", self.reroute_mlu),
                          ("per_interval_optimum", self.optimum_mlu)):
            out[name] = {"intervals_over_100": int((mlu > 1.0).sum()),
                         "intervals_over_80": int((mlu > 0.8).sum()),
                         "max_mlu": float(mlu.max()), "mean_mlu": float(mlu.mean())}
        frac = self.changed / max(1, n_flows)
        out["reroutes_total"] = int(self.changed.sum())
        out["intervals_with_changes"] = int((self.changed > 0).sum())
        out["reoptimisations_triggered"] = int(self.triggered.sum())
        out["max_flows_changed_per_interval"] = float(frac.max()) if len(frac) else 0.0
        out["mean_flows_changed_per_interval"] = float(frac.mean()) if len(frac) else 0.0
        return out


class _Paths:
    """Every flow's candidate paths as columns of one arc x path incidence matrix."""

    def __init__(self, table: ArcTable, tm: TrafficMatrices, k: int) -> None:
        cands = all_pairs_k_shortest_paths(table.graph, k, pairs=set(tm.pairs))
        self.nodes: list[tuple[str, ...]] = []
        owner: list[int] = []
        for j, pair in enumerate(tm.pairs):
            for p in cands[pair]:
                self.nodes.append(p)
                owner.append(j)
        self.flow = np.array(owner, dtype=np.int64)  # path -> flow
        self.first = np.searchsorted(self.flow, np.arange(len(tm.pairs)))  # shortest path
        arcs = [table.arc_path(p) for p in self.nodes]
        lens = [len(a) for a in arcs]
        self.inc = sp.csr_matrix(
            (np.ones(sum(lens)), (np.array([a for p in arcs for a in p], dtype=np.int64),
                                  np.repeat(np.arange(len(arcs)), lens))),
            shape=(len(table.arcs), len(arcs)))
        self.n_flows = len(tm.pairs)

    def of(self, flow: int) -> np.ndarray:
        return np.nonzero(self.flow == flow)[0]

    def util(self, split: np.ndarray, volumes: np.ndarray, cap: np.ndarray) -> np.ndarray:
        """Arc utilisation per scenario (rows of ``volumes``) for per-path ``split``."""
        load = np.asarray(self.inc @ (split[:, None] * volumes[:, self.flow].T)).T
        return np.asarray(load / cap)


def _min_peak_lp(paths: _Paths, cap: np.ndarray, split: np.ndarray, base: np.ndarray, *,
                 movable: np.ndarray | None) -> tuple[float, np.ndarray]:
    """Min peak utilisation of the ``base`` volumes when only ``movable`` flows (None: all)
    may change their split over their candidate paths; the rest keep ``split``."""
    m, n_p = paths.inc.shape
    n_f = paths.n_flows
    # Variables: path fractions x, then the peak U.  Rows: load_a / cap_a - U <= 0.
    a_ub = sp.hstack([sp.diags(1.0 / cap) @ paths.inc @ sp.diags(base[paths.flow]),
                      sp.csr_matrix(-np.ones((m, 1)))], format="csr")
    own = sp.csr_matrix((np.ones(n_p), (paths.flow, np.arange(n_p))), shape=(n_f, n_p))
    a_eq = sp.hstack([own, sp.csr_matrix((n_f, 1))], format="csr")
    lo = np.zeros(n_p + 1)
    hi = np.concatenate([np.ones(n_p), [np.inf]])
    if movable is not None:
        fixed = ~np.isin(paths.flow, movable)
        lo[:n_p][fixed] = hi[:n_p][fixed] = split[fixed]
    cost = np.zeros(n_p + 1)
    cost[-1] = 1.0
    res = linprog(cost, A_ub=a_ub, b_ub=np.zeros(m), A_eq=a_eq, b_eq=np.ones(n_f),
                  bounds=np.column_stack([lo, hi]), method="highs")
    if res.status != 0:
        raise RoutingError(f"reroute LP failed: {res.message}")
    x = np.clip(res.x[:n_p], 0.0, 1.0)
    x /= np.bincount(paths.flow, weights=x, minlength=n_f)[paths.flow]
    return float(paths.util(x, base[None], cap).max()), x


def shortest_path_mlu(graph: nx.Graph, tm: TrafficMatrices, *, scale: float = 1.0,
                      rows: range | None = None) -> np.ndarray:
    """MLU of static latency-shortest-path routing for each row (e.g. to pick a scale)."""
    table = ArcTable(graph)
    paths = _Paths(table, tm, 1)
    rows = rows if rows is not None else range(len(tm.times))
    vol = tm.mbps[rows.start:rows.stop:rows.step] * scale
    util = paths.util(np.ones(len(paths.flow)), vol, table.capacity)
    mlu: np.ndarray = util.max(axis=1)
    return mlu


def replay(graph: nx.Graph, tm: TrafficMatrices, *, scale: float = 1.0, k: int = 8,
           config: ControllerConfig | None = None, interval_s: float = 300.0,
           optimum: bool = True, rows: range | None = None,
           on_row: Callable[[int], None] | None = None) -> ReplayResult:
    cfg = config or ControllerConfig()
    table = ArcTable(graph)
    cap = table.capacity
    paths = _Paths(table, tm, k)
    n_flows = paths.n_flows
    budget = int(cfg.max_change * n_flows)
    ids = [f"{s}->{d}" + ("" if tm.class_of(j) == DEFAULT_CLASS else f"@{tm.class_of(j)}")
           for j, (s, d) in enumerate(tm.pairs)]
    rows = rows if rows is not None else range(len(tm.times))
    vol = tm.mbps[rows.start:rows.stop:rows.step] * scale
    n = len(vol)
    out = ReplayResult([tm.times[r] for r in rows], np.zeros(n), np.zeros(n), np.zeros(n),
                       np.zeros(n, dtype=int), np.zeros(n, dtype=bool))
    static = np.zeros(len(paths.flow))
    static[paths.first] = 1.0
    split = static.copy()
    in_force: list[np.ndarray] = []  # the split in force during each interval so far
    # Detection and dampening: the routing layer's one loop; the planner is the LP below.
    # Its clock here is the interval index x interval_s, so "changed more than hold_down
    # intervals ago" is "not held" with a hold-down of hold_down + 1 intervals.
    loop = RerouteLoop(CongestionMonitor(cfg.monitor),
                       hold_down_s=(cfg.hold_down + 1) * interval_s)
    keys = [str(f) for f in range(n_flows)]
    for t in range(n):
        seen = t - cfg.lag  # the newest interval the controller has observed
        if seen >= 0:
            now = rows[t] * interval_s  # when a change decided now carries traffic
            util_seen = paths.util(in_force[seen], vol[seen:seen + 1], cap)[0]
            sample = dict(zip(table.arcs, util_seen.tolist(), strict=True))
            for i in range(cfg.samples_per_interval):
                loop.observe((rows[seen] + i / cfg.samples_per_interval) * interval_s,
                             sample)
            base = vol[seen] * (1.0 + cfg.margin)  # naive forecast plus headroom
            peak = float(paths.util(split, base[None], cap).max())
            hot = loop.congested()
            if (hot or peak > cfg.trigger) and budget > 0:
                out.triggered[t] = True
                allowed = np.array([not loop.held(k, t * interval_s) for k in keys])
                new = _reoptimise(paths, cap, split, base, allowed=allowed, budget=budget)
                if new is not None and new[0] <= peak - cfg.min_gain:
                    changed = np.nonzero(np.abs(
                        np.bincount(paths.flow, weights=np.abs(new[1] - split),
                                    minlength=n_flows)) > 1e-6)[0]
                    why = (f"predicted peak {peak:.0%} (last matrix + {cfg.margin:.0%})"
                           + (f"; monitor: {len(hot)} congested arc(s)" if hot else "")
                           + f" -> {new[0]:.0%} moving {len(changed)} flow(s)")
                    for f in changed.tolist():
                        out.decisions.append(_decision(now, ids[f], paths, old=split,
                                                       new=new[1], f=f, why=why))
                    split = new[1]
                    for f in changed.tolist():
                        loop.moved(keys[f], t * interval_s)
                    out.changed[t] = len(changed)
        in_force.append(split)
        out.static_mlu[t] = paths.util(static, vol[t:t + 1], cap).max()
        out.reroute_mlu[t] = paths.util(split, vol[t:t + 1], cap).max()
        if optimum:
            demands = [Demand(s, d, float(v)) for (s, d), v in zip(tm.pairs, vol[t], strict=True)]
            out.optimum_mlu[t] = solve_arc_lp(table, demands, solver="simplex").mlu
        if on_row is not None:
            on_row(t)
    return out


def _reoptimise(paths: _Paths, cap: np.ndarray, split: np.ndarray, base: np.ndarray, *,
                allowed: np.ndarray, budget: int) -> tuple[float, np.ndarray] | None:
    """Move at most ``budget`` flows toward the unrestricted optimum for ``base``: the
    flows whose split differs most from it (volume-weighted) are re-optimised together
    by the LP, everyone else stays where it is."""
    _, target = _min_peak_lp(paths, cap, split, base, movable=None)
    diff = np.bincount(paths.flow, weights=np.abs(target - split),
                       minlength=paths.n_flows) * base
    diff[~allowed] = 0.0
    movable = np.argsort(-diff, kind="stable")[:budget]
    movable = movable[diff[movable] > 1e-6 * max(float(base.max()), 1e-300)]
    if not movable.size:
        return None
    return _min_peak_lp(paths, cap, split, base, movable=np.sort(movable))


def _decision(now: float, flow_id: str, paths: _Paths, *, old: np.ndarray, new: np.ndarray,
              f: int, why: str) -> RerouteDecision:
    cols = paths.of(f)
    main_old = paths.nodes[int(cols[np.argmax(old[cols])])]
    main_new = paths.nodes[int(cols[np.argmax(new[cols])])]
    split = tuple((paths.nodes[int(c)], float(new[c])) for c in cols if new[c] > 1e-9)
    return RerouteDecision(now, flow_id, main_old, main_new, why, split=split)
