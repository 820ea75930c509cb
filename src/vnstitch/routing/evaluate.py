"""Time-stepped, flow-level evaluation of QoS and reroute-on-congestion.

Theory of operation: each step (one monitoring interval) takes the offered rate of every
flow, computes the utilisation each arc would see (offered load / capacity), feeds it to
a :class:`~vnstitch.routing.monitor.CongestionMonitor`, and serves the flows:

* on every arc, the HTB model of the tc tree the policy configures there
  (:mod:`vnstitch.routing.htb`: each class up to its guaranteed rate, spare capacity
  lent by class priority up to each maximum; inside a class in proportion to the
  flows' offered rates) -- the same serving model the simulator uses;
* a flow gets the smallest share any arc of its path gives it.

After serving, the routing layer's one monitor-and-reroute loop
(:class:`~vnstitch.routing.monitor.RerouteLoop`, the simulator's too) moves flows off
congested arcs; the moves apply from the next step (make-before-break: the new path is installed
before traffic shifts, so no step loses the flow). Pure: ``step * interval_s`` is the
clock; the result records rates, congestion events and reroute decisions per step.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx

from vnstitch.routing.htb import HtbTree, flows_share, tree_for_link
from vnstitch.routing.monitor import (
    CongestionEvent,
    CongestionMonitor,
    Flow,
    MonitorConfig,
    RerouteDecision,
    RerouteLoop,
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
    """Rates each flow gets: on every arc the HTB tree the policy configures there
    (:mod:`vnstitch.routing.htb`, spare capacity lent by class priority), and a flow gets
    the smallest rate any arc of its path gives it."""
    share: dict[str, float] = {f.flow_id: float("inf") for f in flows}
    by_arc: dict[Arc, list[Flow]] = {}
    for f in flows:
        for a in itertools.pairwise(f.path):
            by_arc.setdefault(a, []).append(f)
    trees: dict[float, HtbTree] = {}
    for arc, on_arc in by_arc.items():
        cap = float(graph.edges[arc]["capacity_mbps"])
        if cap not in trees:
            trees[cap] = tree_for_link(policy, cap, "priority")
        rates = flows_share(trees[cap], [(f.qos_class, offered[f.flow_id]) for f in on_arc])
        for f, r in zip(on_arc, rates, strict=True):
            share[f.flow_id] = min(share[f.flow_id], r)
    return {fid: (offered[fid] if s == float("inf") else s) for fid, s in share.items()}


def evaluate(graph: nx.Graph, policy: QosPolicy, flows: Sequence[Flow],
             offered_at: Callable[[int], Mapping[str, float]], steps: int, *,
             config: MonitorConfig | None = None, k: int = 4, interval_s: float = 60.0,
             target: float = 0.75, hold_down_s: float = 600.0) -> list[StepRecord]:
    loop = RerouteLoop(CongestionMonitor(config), target=target, hold_down_s=hold_down_s)
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
        rec.events = loop.observe(now, util)
        sized = [Flow(f.flow_id, f.src, f.dst, offered[f.flow_id], f.path, f.qos_class)
                 for f in current]
        _, rec.decisions = loop.decide(now, sized, cap, cands)
        if rec.decisions:
            moved = {d.flow_id: d.new_path for d in rec.decisions}
            current = [Flow(f.flow_id, f.src, f.dst, f.volume_mbps,
                            moved.get(f.flow_id, f.path), f.qos_class) for f in current]
        out.append(rec)
    return out
