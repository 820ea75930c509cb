"""The Predictive Resource Allocator inside the traffic simulator.

Theory of operation
-------------------
With an ``allocation:`` section (:mod:`vnstitch.sim.allocation_spec`) the traffic run
(:mod:`vnstitch.sim.traffic`) calls :meth:`SimAllocation.decide` at the end of every
monitoring interval (virtual time ``t``), once ``warmup_intervals`` have been measured.

* **Consumers.** Every flow of an allocated QoS class (default: the stitched classes) is
  a bandwidth :class:`~vnstitch.allocate.allocator.Consumer` along its current substrate
  path (links ``"U->V"`` on node ids, re-synchronised before each step because the
  congestion reroute may have moved it). A VN flow without a stitch (not yet asked
  for, or being repaired) is planned on the path it last rode, before its first stitch
  on its home path: its forecast history is kept, and what it reserves takes effect only
  on arcs it crosses (below), so none of its traffic goes there. Its class gives the
  :class:`~vnstitch.allocate.policy.ApplicationClass`, so video reserves at a higher
  newsvendor quantile than e-mail.
* **The decision is the Route Manager controller's** (:class:`~vnstitch.control.
  Controller`, one allocator over all flows): this module only measures -- each flow's
  mean *offered* rate per finished interval, what the edge measures -- and applies what
  it returns. The controller forecasts from the past only (the scenario's model, refit
  every ``refit_every`` decisions, quantiles from its own one-step errors over the last
  ``error_window``; :mod:`vnstitch.control.forecasting`). Lead time = 1 interval.
* **Available.** Non-allocated classes keep their static guarantees; what an allocated
  class may reserve on an arc without buying is the arc's capacity minus the guarantees
  of the classes not allocated (:attr:`SimAllocation.base`).
* **Provider.** A :class:`~vnstitch.allocate.providers.sim.SimProvider` sells *extra*
  capacity per directed link (turn-up delay, per-link quota, price per Mbit/s-hour,
  outage windows in which requests fail). :class:`ExtraCapacity` adapts it to the
  allocator: a reservation up to ``base`` is free and immediate, only the part above is
  requested from the provider. When the provider refuses or fails, the allocator asks
  :func:`~vnstitch.allocate.reroute.routing_reroute` (constrained shortest path with
  ``base`` as residual); what is still uncovered is a shortfall. Extra capacity on links
  no allocated flow crosses any more is released.
* **What the data plane does with it.** On every arc the HTB leaf of each allocated class
  gets ``rate`` = the sum of the reservations of that class's flows whose (planned) path
  crosses the arc, scaled down together if they exceed ``base`` + the provider's extra
  capacity *usable now* (booting capacity does not count); the leaf ``ceil`` grows by the
  extra capacity. The arc's link capacity (and so HTB's link and parent rate, the
  monitor's utilisation and the reroute planners' capacities) becomes physical capacity
  + usable extra. Non-allocated leaves keep their static rate and ceil. Trees change at
  decisions and when bought capacity becomes ready (an event of the run). Before the
  first decision the static policy applies. A reroute by the allocator is a
  make-before-break move (kind ``allocate``) like the congestion reroute's.

* **What is reported.** Per allocated flow, over the intervals under allocation:
  reserved vs offered vs delivered (Mbit), unserved and unreserved fractions, slack
  (reserved above delivered, per interval mean), reservation changes per hour and
  reroutes; provider cost, scale-out requests granted / refused / failed, the
  allocator's shortfalls and its decision log. A shortfall is the allocator's view: when
  the provider refuses or fails a scale-up, what it already committed (``base`` plus
  extra capacity bought earlier, ready or still turning up) counts as covered; the data
  plane uses only what is really usable. The traffic section's per-class
  ``guaranteed_mbps`` stays the static policy's.

Pure: virtual time only, no I/O; the same scenario gives the same result.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from vnstitch.allocate.allocator import Decision
from vnstitch.allocate.policy import ScalingRules
from vnstitch.allocate.providers.base import (
    RequestStatus,
    ResourceKey,
    ResourceKind,
    ScaleResult,
)
from vnstitch.allocate.providers.sim import Outage, SimProvider, SimResource
from vnstitch.allocate.reroute import arc_of, link_id, routing_reroute
from vnstitch.control import Consumer, Controller, ControlPolicy, ForecastPolicy, StitchSample
from vnstitch.routing.htb import BorrowMode, HtbClass, HtbTree, quantum_bytes, tree_for_link
from vnstitch.routing.qos import QosPolicy
from vnstitch.sim.allocation_spec import AllocationSpec

Arc = tuple[str, str]
Path = tuple[str, ...]
_EPS = 1e-9
_BW = ResourceKind.BANDWIDTH


def _key(arc: Arc) -> ResourceKey:
    return ResourceKey(_BW, link_id(*arc))


class ExtraCapacity:
    """A :class:`~vnstitch.allocate.providers.base.Provider` over a link's free capacity
    (``base``, free and immediate) plus extra capacity bought from ``inner``."""

    name = "sim-extra"

    def __init__(self, inner: SimProvider, base: Mapping[ResourceKey, float]) -> None:
        self.inner = inner
        self.base = dict(base)
        self.log: list[ScaleResult] = []
        self.scale_outs = {"granted": 0, "refused": 0, "failed": 0}
        self.ready_times: list[float] = []
        self._within: dict[ResourceKey, float] = {}

    def supports(self, kind: ResourceKind) -> bool:
        return self.inner.supports(kind)

    def lead_time(self, kind: ResourceKind) -> float:
        return self.inner.lead_time(kind)

    def limit(self, key: ResourceKey) -> float:
        return self.base.get(key, 0.0) + self.inner.limit(key)

    def request(self, key: ResourceKey, target: float, now: float) -> ScaleResult:
        free = self.base.get(key, 0.0)
        extra = max(0.0, target - free)
        before = self.inner.committed(key, now)
        res = self.inner.request(key, extra, now)
        if extra > before + _EPS:  # a scale-out attempt
            self.scale_outs["granted" if res.ok else res.status.value] += 1
        if res.status is RequestStatus.ACCEPTED and res.ready_at is not None \
                and res.ready_at > now:
            bisect.insort(self.ready_times, res.ready_at)
        if res.ok:
            self._within[key] = min(target, free)
        out = ScaleResult(key, target, res.status, now, res.ready_at,
                          f"{min(target, free):.4g} of free capacity {free:.4g} + extra "
                          f"{extra:.4g} from the provider: {res.reason}")
        self.log.append(out)
        return out

    def available(self, key: ResourceKey, now: float) -> float:
        return self.base.get(key, 0.0) + self.inner.available(key, now)

    def committed(self, key: ResourceKey, now: float) -> float:
        return self._within.get(key, 0.0) + self.inner.committed(key, now)

    def extra_usable(self, key: ResourceKey, now: float) -> float:
        return self.inner.available(key, now)

    def extra_committed(self, key: ResourceKey, now: float) -> float:
        return self.inner.committed(key, now)


@dataclass
class FlowAccount:
    """Per allocated flow, over the intervals under allocation (Mbit = Mbit/s x s)."""

    offered_mbit: float = 0.0
    delivered_mbit: float = 0.0
    reserved_mbit: float = 0.0
    unreserved_mbit: float = 0.0  # offered above the reservation, per interval mean
    slack_mbit: float = 0.0  # reserved above what was delivered, per interval mean
    changes: int = 0
    reroutes: int = 0
    peak_mbps: float = 0.0


@dataclass
class AllocationResult:
    spec: AllocationSpec
    interval_s: float
    flows: list[str]
    classes: list[str]
    first_decision_s: float | None = None
    decisions: int = 0
    accounts: dict[str, FlowAccount] = field(default_factory=dict)
    # per decision: (t, {flow: reservation}) and per finished interval: (end, offered)
    reservations: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    offered: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    forecasts: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    shortfalls: list[tuple[float, str, float, float]] = field(default_factory=list)
    reroutes: list[tuple[float, str, Path, Path]] = field(default_factory=list)
    log: list[Decision] = field(default_factory=list)
    cost: float = 0.0
    scale_outs: dict[str, int] = field(default_factory=dict)
    peak_extra_mbps: float = 0.0


class SimAllocation:
    """Allocator + forecaster + provider for one traffic run (see the module docstring)."""

    def __init__(self, spec: AllocationSpec, *, policy: QosPolicy, borrow: BorrowMode,
                 interval_s: float, graph: nx.Graph, cap: Mapping[Arc, float],
                 flows: Sequence[tuple[str, str, str, str, Path]]) -> None:
        """``flows``: (name, class, src, dst, home path) of every flow of the run."""
        self.spec, self.policy, self.borrow = spec, policy, borrow
        self.interval = interval_s
        self.cap0 = dict(cap)
        self.index = [i for i, f in enumerate(flows) if f[1] in spec.classes]
        self.names = [flows[i][0] for i in self.index]
        self.cls = [flows[i][1] for i in self.index]
        self.last_path: list[Path] = [flows[i][4] for i in self.index]  # for planning
        self.static: dict[float, HtbTree] = {}
        self.base: dict[Arc, float] = {}
        for arc, c in self.cap0.items():
            tree = self._static(c)
            others = sum(leaf.rate_mbps for leaf in tree.classes
                         if leaf.name not in spec.classes)
            self.base[arc] = max(0.0, c - others)
        p = spec.provider
        inner = SimProvider({_BW: SimResource(p.turn_up_s, p.quota_mbps,
                                              p.price_per_mbps_hour)},
                            outages=[Outage(s, e, _BW) for s, e in p.outages])
        self.provider = ExtraCapacity(inner, {_key(a): b for a, b in self.base.items()})
        ends = {flows[i][0]: (flows[i][2], flows[i][3]) for i in self.index}
        reroute = (routing_reroute(graph, ends, weight="latency_ms",
                                   residual=lambda: dict(self.base))
                   if spec.reroute else None)
        rules = ScalingRules(unit=spec.unit_mbps, hold_steps=spec.hold_intervals,
                             scale_in_hysteresis=spec.hysteresis,
                             scale_in_window=spec.scale_in_window)
        control = ControlPolicy({c: spec.app(c) for c in spec.classes}, rules,
                                ForecastPolicy(spec.forecaster, spec.season,
                                               spec.refit_every, spec.error_window),
                                joint=True, warmup=spec.warmup_intervals)
        self.controller = Controller(control, self.provider, reroute)
        self.capacity = {link_id(*a): b for a, b in self.base.items()}
        self.amounts: list[float] | None = None  # in force since the last decision
        self.result = AllocationResult(spec, interval_s, list(self.names), list(spec.classes),
                                       accounts={n: FlowAccount() for n in self.names})

    @staticmethod
    def _links(path: Path) -> tuple[str, ...]:
        return tuple(link_id(u, v) for u, v in itertools.pairwise(path))

    def _static(self, c: float) -> HtbTree:
        if c not in self.static:
            self.static[c] = tree_for_link(self.policy, c, self.borrow)
        return self.static[c]

    # -- the decision at the end of an interval ---------------------------------------
    def decide(self, t: float, offered: Sequence[float], delivered: Sequence[float],
               planned: Sequence[Path]) -> dict[int, Path]:
        """Account the interval that just ended, then plan the next one. Returns the
        allocator's reroutes as {flow index in the run: new node path}."""
        y = [offered[i] for i in self.index]
        self._account(t, y, [delivered[i] for i in self.index])
        for j, i in enumerate(self.index):
            if planned[i]:
                self.last_path[j] = planned[i]
        consumers = [Consumer(n, self.cls[j], self._links(self.last_path[j]),
                              self.capacity,
                              None if self.amounts is None else self.amounts[j])
                     for j, n in enumerate(self.names)]
        out = self.controller.step(t, consumers, {n: StitchSample(mbps=v) for n, v in
                                                  zip(self.names, y, strict=True)})
        if not out.reports:
            return {}
        report = out.reports[0]
        paths = {c.id: c.links for c in consumers} | report.reroutes
        crossed = {k for p in paths.values() for k in p}
        for arc in self.cap0:
            key = _key(arc)
            if key.location not in crossed and self.provider.extra_committed(key, t) > _EPS:
                self.provider.request(key, 0.0, t)  # release what nobody needs any more
        r = self.result
        if r.first_decision_s is None:
            r.first_decision_s = t
        r.decisions += 1
        amounts = [out.amounts[n] for n in self.names]
        if self.amounts is not None:
            for n, old, new in zip(self.names, self.amounts, amounts, strict=True):
                if abs(old - new) > _EPS:
                    r.accounts[n].changes += 1
        for n, a in zip(self.names, amounts, strict=True):
            r.accounts[n].peak_mbps = max(r.accounts[n].peak_mbps, a)
        self.amounts = amounts
        r.reservations.append((t, dict(zip(self.names, amounts, strict=True))))
        r.forecasts.append((t, {n: out.centres[n] for n in self.names}))
        r.shortfalls.extend((t, sf.key.location, sf.needed, sf.covered)
                            for sf in report.shortfalls)
        r.log.extend(report.decisions)
        moves: dict[int, Path] = {}
        pos = {n: j for j, n in enumerate(self.names)}
        for name, links in report.reroutes.items():
            j = pos[name]
            nodes = self._nodes(links)
            moves[self.index[j]] = nodes
            r.accounts[name].reroutes += 1
            r.reroutes.append((t, name, planned[self.index[j]], nodes))
        return moves

    def can_host(self, flow: str, path: Path, t: float,
                 planned: Sequence[Path]) -> tuple[bool, str]:
        """Could ``path`` carry ``flow``'s current reservation on every arc, beside the
        reservations of the other allocated flows whose ``planned`` path (indexed like
        the run's flows) crosses it? Room is ``base`` + the provider's extra capacity:
        its quota, or only what is already committed while it is in an outage. Turn-up
        delay is ignored (bought capacity counts as covered, as in a shortfall), so the
        check only refuses what the allocator could not cover at all. Flows outside the
        allocation, and any flow before the first decision, may always move."""
        if flow not in self.names or self.amounts is None:
            return True, "not under allocation"
        me = self.names.index(flow)
        for arc in itertools.pairwise(path):
            key = _key(arc)
            down = self.provider.inner.outage_at(key, t) is not None
            others = sum(a for j, (i, a) in enumerate(zip(self.index, self.amounts,
                                                          strict=True))
                         if j != me and arc in itertools.pairwise(planned[i]))
            extra = (self.provider.extra_committed(key, t) if down
                     else max(self.provider.inner.limit(key),
                              self.provider.extra_committed(key, t)))
            room = self.base[arc] + extra - others
            if self.amounts[me] > room + _EPS:
                return False, (f"{arc[0]}->{arc[1]}: reservation {self.amounts[me]:.4g} > "
                               f"room {room:.4g} (free {self.base[arc]:.4g} + provider "
                               f"{extra:.4g}{' (outage)' if down else ''} - others "
                               f"{others:.4g})")
        return True, "the reservation fits on every link"

    @staticmethod
    def _nodes(links: Sequence[str]) -> Path:
        arcs = [arc_of(x) for x in links]
        return (arcs[0][0], *(v for _, v in arcs))

    def _account(self, t: float, y: Sequence[float], got: Sequence[float]) -> None:
        r = self.result
        r.offered.append((t, dict(zip(self.names, y, strict=True))))
        if self.amounts is None:
            return  # not under allocation yet
        dt = self.interval
        for n, off, dl, res in zip(self.names, y, got, self.amounts, strict=True):
            acc = r.accounts[n]
            acc.offered_mbit += off * dt
            acc.delivered_mbit += dl * dt
            acc.reserved_mbit += res * dt
            acc.unreserved_mbit += max(0.0, off - res) * dt
            acc.slack_mbit += max(0.0, res - dl) * dt

    # -- what the data plane gets ---------------------------------------------------
    def dataplane(self, t: float, planned: Sequence[Path]) -> tuple[
            dict[Arc, HtbTree], dict[Arc, float]]:
        """HTB tree and capacity per arc at ``t`` (see the module docstring)."""
        want: dict[Arc, dict[str, float]] = {}
        if self.amounts is not None:
            for j, i in enumerate(self.index):
                for arc in itertools.pairwise(planned[i]):
                    per = want.setdefault(arc, {})
                    per[self.cls[j]] = per.get(self.cls[j], 0.0) + self.amounts[j]
        trees: dict[Arc, HtbTree] = {}
        caps: dict[Arc, float] = {}
        for arc, c in self.cap0.items():
            extra = self.provider.extra_usable(_key(arc), t)
            self.result.peak_extra_mbps = max(self.result.peak_extra_mbps, extra)
            static = self._static(c)
            if self.amounts is None:
                trees[arc], caps[arc] = static, c
                continue
            rates = want.get(arc, {})
            usable = self.base[arc] + extra
            total = sum(rates.values())
            cut = usable / total if total > usable + _EPS else 1.0
            leaves = []
            for leaf in static.classes:
                if leaf.name in self.spec.classes:
                    rate = rates.get(leaf.name, 0.0) * cut
                    leaves.append(HtbClass(leaf.name, rate, max(leaf.ceil_mbps + extra, rate),
                                           leaf.prio, quantum_bytes(rate)))
                else:
                    leaves.append(leaf)
            parent = max(leaf.ceil_mbps for leaf in leaves)
            trees[arc] = HtbTree(c + extra, parent, tuple(leaves))
            caps[arc] = c + extra
        return trees, caps

    def next_change(self, t: float) -> float:
        """The next time bought capacity becomes usable (the trees change), or inf."""
        k = bisect.bisect_right(self.provider.ready_times, t + _EPS)
        return self.provider.ready_times[k] if k < len(self.provider.ready_times) else math.inf

    def finish(self, t: float) -> AllocationResult:
        r = self.result
        r.cost = self.provider.inner.cost(t)
        r.scale_outs = dict(self.provider.scale_outs)
        return r


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def _fraction(num: float, den: float) -> float | None:
    return _r(num / den, 4) if den > _EPS else None


def _flow_summary(acc: FlowAccount, hours: float) -> dict[str, Any]:
    return {
        "offered_mbit": _r(acc.offered_mbit, 1),
        "delivered_mbit": _r(acc.delivered_mbit, 1),
        "reserved_mbit": _r(acc.reserved_mbit, 1),
        "unserved_fraction": _fraction(max(0.0, acc.offered_mbit - acc.delivered_mbit),
                                       acc.offered_mbit),
        "unreserved_fraction": _fraction(acc.unreserved_mbit, acc.offered_mbit),
        "slack_mbit": _r(acc.slack_mbit, 1),
        "slack_fraction": _fraction(acc.slack_mbit, acc.reserved_mbit),
        "changes": acc.changes,
        "changes_per_hour": _r(acc.changes / hours, 2) if hours > 0 else None,
        "reroutes": acc.reroutes,
        "peak_reservation_mbps": _r(acc.peak_mbps),
    }


def summarise_allocation(r: AllocationResult, duration_s: float,
                         labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``allocation`` section of the run summary: plain, rounded, deterministic.
    Flow figures cover the intervals under allocation (from ``first_decision_s``)."""
    names = labels or {}

    def path(p: Path) -> str:
        return " > ".join(names.get(n, n) for n in p)

    def link(location: str) -> str:
        u, v = arc_of(location)
        return f"{names.get(u, u)}->{names.get(v, v)}"

    spec, p = r.spec, r.spec.provider
    managed_s = 0.0 if r.first_decision_s is None else \
        len([t for t, _ in r.offered if t > r.first_decision_s + _EPS]) * r.interval_s
    hours = managed_s / 3600.0
    total = FlowAccount()
    flows: dict[str, Any] = {}
    last = r.reservations[-1][1] if r.reservations else {}
    for name in r.flows:
        acc = r.accounts[name]
        for f in ("offered_mbit", "delivered_mbit", "reserved_mbit", "unreserved_mbit",
                  "slack_mbit", "changes", "reroutes"):
            setattr(total, f, getattr(total, f) + getattr(acc, f))
        total.peak_mbps = max(total.peak_mbps, acc.peak_mbps)
        flows[name] = {**_flow_summary(acc, hours),
                       "final_reservation_mbps": _r(last.get(name))}
    kept = r.log[:spec.log_limit]
    missing = [need - got for _, _, need, got in r.shortfalls]
    return {
        "forecaster": spec.forecaster,
        "classes": {c: {"c_under": a.c_under, "c_over": a.c_over,
                        "quantile": _r(a.quantile, 4)} for c, a in spec.apps},
        "available": "link capacity minus the static guarantees of the classes not allocated",
        "first_decision_s": _r(r.first_decision_s),
        "decisions": r.decisions,
        "seconds_under_allocation": _r(managed_s),
        "flows": flows,
        "total": _flow_summary(total, hours),
        "provider": {
            "turn_up_s": p.turn_up_s, "quota_mbps": _r(p.quota_mbps),
            "price_per_mbps_hour": p.price_per_mbps_hour,
            "outages": [list(o) for o in p.outages],
            "cost": _r(r.cost, 4),
            "scale_requests": dict(r.scale_outs),
            "peak_extra_mbps": _r(r.peak_extra_mbps),
        },
        "reroutes": [{"at_s": _r(t), "flow": f, "old_path": path(a), "new_path": path(b)}
                     for t, f, a, b in r.reroutes],
        "shortfalls": {
            "count": len(r.shortfalls),
            "max_missing_mbps": _r(max(missing)) if missing else None,
            "missing_mbit": _r(sum(missing) * r.interval_s, 1),
            "first": [{"at_s": _r(t), "link": link(loc), "needed_mbps": _r(need),
                       "covered_mbps": _r(got)} for t, loc, need, got in r.shortfalls[:20]],
        },
        "decision_log": {
            "count": len(r.log), "kept": len(kept),
            "entries": [{"t": _r(d.now), "subject": d.subject, "action": d.action,
                         "forecast": _r(d.forecast), "quantile": _r(d.quantile, 4),
                         "available": _r(d.available), "amount": _r(d.amount),
                         "reason": d.reason} for d in kept],
        },
    }
