"""Time-stepped, flow-level evaluation of QoS and reroute-on-congestion.

Theory of operation: each step (one monitoring interval) takes the offered rate of every
flow, computes the utilisation each arc would see (offered load / capacity), feeds it to
a :class:`~vnstitch.routing.monitor.CongestionMonitor`, and serves the flows:

* on every arc, classes are served in the policy's strict precedence: first each class
  gets up to its guaranteed rate, then what is left goes to classes in priority order
  up to their maximum (SWAN-style); inside a class the arc's share is split in
  proportion to the flows' offered rates;
* a flow gets the smallest share any arc of its path gives it.

After serving, congested arcs trigger :func:`~vnstitch.routing.monitor.plan_reroutes`,
whose moves apply from the next step (make-before-break: the new path is installed
before traffic shifts, so no step loses the flow). Pure: ``step * interval_s`` is the
clock; the result records rates, congestion events and reroute decisions per step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx

from vnstitch.routing.monitor import (
    CongestionEvent,
    CongestionMonitor,
    Flow,
    MonitorConfig,
    RerouteDecision,
    RerouteState,
    plan_reroutes,
)
from vnstitch.routing.paths import Arc, all_pairs_k_shortest_paths
from vnstitch.routing.qos import QosPolicy


@dataclass
class StepRecord:
    step: int
    offered: dict[str, float]
    rate: dict[str, float]
    utilisation: dict[Arc, float]
    events: list[CongestionEvent] = field(default_factory=list)
    decisions: list[RerouteDecision] = field(default_factory=list)


def serve(graph: nx.Graph, policy: QosPolicy, flows: Sequence[Flow],
          offered: Mapping[str, float]) -> dict[str, float]:
    """Rates each flow gets under strict class precedence with guarantees (see above)."""
    share: dict[str, float] = {f.flow_id: float("inf") for f in flows}
    by_arc: dict[Arc, list[Flow]] = {}
    for f in flows:
        for a in zip(f.path, f.path[1:], strict=False):
            by_arc.setdefault(a, []).append(f)
    for arc, on_arc in by_arc.items():
        left = float(graph.edges[arc]["capacity_mbps"])
        want = {c.name: sum(offered[f.flow_id] for f in on_arc if f.qos_class == c.name)
                for c in policy.classes}
        got = dict.fromkeys(want, 0.0)
        for c in policy.classes:  # guarantees first, in precedence order
            give = min(want[c.name], c.guaranteed_mbps, left)
            got[c.name] += give
            left -= give
        for c in policy.classes:  # then the rest, strictly by precedence, up to max
            give = min(want[c.name] - got[c.name], c.max_mbps - got[c.name], left)
            if give > 0:
                got[c.name] += give
                left -= give
        for f in on_arc:
            w = want[f.qos_class]
            frac = 1.0 if w <= 0 else got[f.qos_class] / w
            share[f.flow_id] = min(share[f.flow_id], offered[f.flow_id] * frac)
    return {fid: (offered[fid] if s == float("inf") else s) for fid, s in share.items()}


def evaluate(graph: nx.Graph, policy: QosPolicy, flows: Sequence[Flow],
             offered_at: Callable[[int], Mapping[str, float]], steps: int, *,
             config: MonitorConfig | None = None, k: int = 4, interval_s: float = 60.0,
             target: float = 0.75, hold_down_s: float = 600.0) -> list[StepRecord]:
    monitor = CongestionMonitor(config)
    state = RerouteState()
    cands = all_pairs_k_shortest_paths(graph, k, pairs={(f.src, f.dst) for f in flows})
    cap = {}
    for u, v, d in graph.edges(data=True):
        cap[u, v] = cap[v, u] = float(d["capacity_mbps"])
    current = list(flows)
    out: list[StepRecord] = []
    for step in range(steps):
        now = step * interval_s
        offered = {fid: float(v) for fid, v in offered_at(step).items()}
        load = dict.fromkeys(cap, 0.0)
        for f in current:
            for a in zip(f.path, f.path[1:], strict=False):
                load[a] += offered[f.flow_id]
        util = {a: load[a] / cap[a] for a in cap}
        rec = StepRecord(step, offered, serve(graph, policy, current, offered), util)
        rec.events = monitor.observe(now, util)
        hot = monitor.congested()
        if hot:
            sized = [Flow(f.flow_id, f.src, f.dst, offered[f.flow_id], f.path, f.qos_class)
                     for f in current]
            rec.decisions = plan_reroutes(now, sized, cap, hot, cands, state=state, target=target,
                                          hold_down_s=hold_down_s)
            moved = {d.flow_id: d.new_path for d in rec.decisions}
            current = [Flow(f.flow_id, f.src, f.dst, f.volume_mbps,
                            moved.get(f.flow_id, f.path), f.qos_class) for f in current]
        out.append(rec)
    return out
