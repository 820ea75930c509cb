"""Replay a sequence of traffic matrices under three policies, interval by interval.

Theory of operation: for every row of a :class:`~vnstitch.routing.demands.TrafficMatrices`
(in order, one monitoring interval each) compute the MLU of

* **static shortest path** -- every OD pair on its latency-shortest path, forever;
* **reroute on congestion** -- the same start, then after each interval the
  :class:`~vnstitch.routing.monitor.CongestionMonitor` sees that interval's utilisation
  and :func:`~vnstitch.routing.monitor.plan_reroutes` moves the fewest flows; the moves
  take effect from the next interval (the monitor only sees the past). The monitor acts
  *before* links saturate (default: above 70% raises, below 50% for 3 samples clears:
  the hysteresis), moves flows largest-first until the link is predicted under
  ``target`` (60%), picking for each the candidate with the most residual capacity on
  the last interval's loads (a one-step prediction). When an arc has cleared, flows that
  left their shortest path come back -- one at a time, only after ``hold_down_s`` and
  only if their home path is predicted under ``return_below`` -- the dampening that stops
  flapping. At most ``max_change`` of all flows change per interval, moves and returns
  together;
* **per-interval optimum** -- the exact arc LP (:func:`~vnstitch.routing.arclp.
  solve_arc_lp`), solved afresh for each interval with that interval's matrix (an oracle
  no online policy can beat).

Pure: the clock is ``row * interval_s``; ``on_row`` lets a caller drive a progress bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from vnstitch.routing.arclp import solve_arc_lp
from vnstitch.routing.demands import TrafficMatrices
from vnstitch.routing.monitor import (
    CongestionMonitor,
    Flow,
    MonitorConfig,
    RerouteDecision,
    RerouteState,
    plan_reroutes,
    plan_returns,
)
from vnstitch.routing.paths import all_pairs_k_shortest_paths
from vnstitch.routing.te import ArcTable, Demand


@dataclass
class ReplayResult:
    times: list[str]
    static_mlu: np.ndarray
    reroute_mlu: np.ndarray
    optimum_mlu: np.ndarray
    moves: np.ndarray  # flows moved after each interval
    decisions: list[RerouteDecision] = field(default_factory=list)

    def summary(self, n_flows: int) -> dict[str, object]:
        out: dict[str, object] = {"intervals": len(self.times), "flows": n_flows}
        for name, mlu in (("static_shortest", self.static_mlu),
                          ("reroute_on_congestion", self.reroute_mlu),
                          ("per_interval_optimum", self.optimum_mlu)):
            out[name] = {"intervals_over_100": int((mlu > 1.0).sum()),
                         "intervals_over_80": int((mlu > 0.8).sum()),
                         "max_mlu": float(mlu.max()), "mean_mlu": float(mlu.mean())}
        frac = self.moves / max(1, n_flows)
        out["reroutes_total"] = int(self.moves.sum())
        out["max_flows_changed_per_interval"] = float(frac.max())
        out["mean_flows_changed_per_interval"] = float(frac.mean())
        return out


def replay(graph: nx.Graph, tm: TrafficMatrices, *, scale: float = 1.0, k: int = 8,
           config: MonitorConfig | None = None, target: float = 0.6,
           hold_down_s: float = 3600.0, interval_s: float = 300.0, optimum: bool = True,
           max_change: float = 0.049, return_below: float = 0.45,
           rows: range | None = None, on_row: Callable[[int], None] | None = None
           ) -> ReplayResult:
    table = ArcTable(graph)
    cap = {a: float(c) for a, c in zip(table.arcs, table.capacity, strict=True)}
    cands = all_pairs_k_shortest_paths(graph, k, pairs=tm.pairs)
    static = [cands[pair][0] for pair in tm.pairs]
    current = list(static)
    monitor = CongestionMonitor(config or MonitorConfig(high=0.7, low=0.5, raise_samples=1,
                                                        clear_samples=3))
    state = RerouteState()
    rows = rows if rows is not None else range(len(tm.times))
    n = len(rows)
    out = ReplayResult([tm.times[r] for r in rows], np.zeros(n), np.zeros(n), np.zeros(n),
                       np.zeros(n, dtype=int))
    static_arcs = [table.arc_path(p) for p in static]
    for i, r in enumerate(rows):
        vol = tm.mbps[r] * scale
        load = np.zeros(len(table.arcs))
        for v, arcs in zip(vol, static_arcs, strict=True):
            load[list(arcs)] += v
        out.static_mlu[i] = (load / table.capacity).max()
        load[:] = 0
        for v, p in zip(vol, current, strict=True):
            load[list(table.arc_path(p))] += v
        util = load / table.capacity
        out.reroute_mlu[i] = util.max()
        now = r * interval_s
        monitor.observe(now, dict(zip(table.arcs, util.tolist(), strict=True)))
        hot = monitor.congested()
        budget = max(1, int(max_change * len(tm.pairs)))
        index = {f"{s}->{d}": j for j, (s, d) in enumerate(tm.pairs)}
        flows = [Flow(f"{s}->{d}", s, d, float(v), p)
                 for (s, d), v, p in zip(tm.pairs, vol, current, strict=True)]
        moves: list[RerouteDecision] = []
        if hot:
            moves = plan_reroutes(now, flows, cap, hot, cands, state=state, target=target,
                                  hold_down_s=hold_down_s, max_moves=budget)
            for m in moves:
                current[index[m.flow_id]] = m.new_path
        elif len(moves) < budget:
            moves = plan_returns(now, flows, cap, {f"{s}->{d}": p for (s, d), p in
                                                   zip(tm.pairs, static, strict=True)},
                                 state=state, below=return_below, hold_down_s=hold_down_s,
                                 max_moves=1)
            for m in moves:
                current[index[m.flow_id]] = m.new_path
        out.moves[i] = len(moves)
        out.decisions.extend(moves)
        if optimum:
            demands = [Demand(s, d, float(v)) for (s, d), v in zip(tm.pairs, vol, strict=True)]
            out.optimum_mlu[i] = solve_arc_lp(table, demands, solver="simplex").mlu
        if on_row is not None:
            on_row(i)
    return out
