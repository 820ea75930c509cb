"""Each simulated Route Manager's controller moves the stitches crossing its links.

Theory of operation. The decision to move a stitch lives in one place,
:mod:`vnstitch.control.reroute` (hysteresis, hold-downs, dampening, returns), which the
daemon calls too; each simulated RM's :class:`vnstitch.control.Controller` picks the
stitches to move, busiest first down to the reroute ``target``; this module only
measures what each simulated RM could measure and applies what its controller asks,
as the daemon does live.

*Measure.* Each substrate arc belongs to the RM of its tail node's segment. At the end
of every monitoring interval that RM's controller gets, per owned arc, the cumulative
bytes the arc carried and its capacity (a :class:`~vnstitch.control.model.LinkSample`,
``inside`` when both ends are in its segment), the stitches crossing it with each
stitch's rate (the mean offered rate of the VN flows riding it over that arc: what the
stitch's origin puts into its tunnel), the current rate of every stitch (its busier
direction; the origins report it, so a stitch moved away can be asked back) and the
stitches that begin or end at it. An RM
that is down measures nothing; when it comes back its controller starts afresh.

*Apply.* A :class:`~vnstitch.control.model.Renegotiate` names an owned link; the
element to avoid is behind it (:meth:`~vnstitch.sim.stitched.StitchedFlows.element`:
the owner's segment for an arc inside it, the adjacency of the two segments for an arc
between them). The owner hands the request to the stitch's origin (no wire message
carries it in the simulator), which starts a make-before-break renegotiation through
the protocol core (:meth:`~vnstitch.sim.engine.Simulation.renegotiate`, i.e.
``RouteManagerCore.renegotiate_stitch``). ``around`` empty is a return: a
renegotiation avoiding nothing, which takes the best path now. When the successor is
established the controllers learn it (``stitch_replaced``), so the hold-down and the
return follow the stitch; when no path avoided the element, ``renegotiation_failed``;
when a stitch is gone for good, ``stitch_ended``. The controllers share one
:class:`~vnstitch.control.reroute.StitchMover` -- the table of the origins' decisions,
keyed by stitch id -- with the origins' re-optimisation
(:meth:`~vnstitch.sim.stitched.StitchedFlows.reoptimise`), so neither moves a stitch
the other has in flight, and a stitch away for congestion comes back by the return
rule only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Mapping, Sequence

from vnstitch.allocate.policy import ScalingRules
from vnstitch.control import Controller
from vnstitch.control.model import (
    CongestionRules,
    ControlPolicy,
    LinkSample,
    Renegotiate,
)
from vnstitch.control.reroute import StitchMover
from vnstitch.model.ids import SegmentId
from vnstitch.sim.stitched import StitchedFlows
from vnstitch.sim.traffic_model import SimFlow
from vnstitch.sim.traffic_spec import TrafficSpec

Arc = tuple[str, str]
Path = tuple[str, ...]


class StitchControl:
    """The simulated RMs' controllers over the arcs they own (module docstring)."""

    def __init__(self, spec: TrafficSpec, stitched: StitchedFlows, seg_of: Mapping[str, str],
                 arcs: Sequence[Arc], name: Callable[[Arc], str]) -> None:
        rr = spec.reroute
        self.policy = ControlPolicy(apps={}, rules=ScalingRules(unit=1.0),
                                    congestion=CongestionRules(
                                        spec.monitor, rr.hold_down_s, rr.target,
                                        rr.returns, rr.return_below,
                                        # the next interval's report is the next one
                                        report_window_s=1.5 * spec.interval_s))
        self.movable = frozenset(rr.classes) if rr.classes is not None else None
        self.st, self.seg_of = stitched, seg_of
        sim = stitched.sim
        names = {a: name(a) for a in arcs}
        if len(set(names.values())) != len(names):  # labels clash: use the node ids
            names = {a: f"{a[0]}->{a[1]}" for a in arcs}
        self.link = names
        self.arc_of = {n: a for a, n in names.items()}
        self.owner = {a: sim.seg_index[SegmentId(seg_of[a[0]])] for a in arcs}
        self.owned: dict[int, list[Arc]] = {}
        for a in sorted(arcs):
            self.owned.setdefault(self.owner[a], []).append(a)
        assert self.policy.congestion is not None
        #: The origins' decisions, one table for every controller (stitch ids are
        #: unique): a congestion move and a re-optimisation see each other.
        self.mover = StitchMover(self.policy.congestion.reroute_rules())
        self.ctrl: dict[int, Controller] = {}
        self.known: set[str] = set()  # stitch ids the controllers may remember
        self.bytes: dict[Arc, float] = dict.fromkeys(arcs, 0.0)

    def start(self, now: float, cap: Mapping[Arc, float]) -> None:
        """The first counter read of every RM (a baseline; every RM starts at time 0)."""
        self.known = set()
        self.bytes = dict.fromkeys(self.bytes, 0.0)
        assert self.policy.congestion is not None
        self.mover = self.st.mover = StitchMover(self.policy.congestion.reroute_rules())
        self.ctrl = {rm: self._controller() for rm in self.owned}
        for rm, arcs in self.owned.items():
            self.ctrl[rm].step(now, [], {}, self._samples(arcs, cap))

    def _controller(self) -> Controller:
        return Controller(self.policy, mover=self.mover)

    def _samples(self, arcs: Sequence[Arc], cap: Mapping[Arc, float]) -> list[LinkSample]:
        return [LinkSample(self.link[a], self.bytes[a], 0, cap[a],
                           inside=self.seg_of[a[0]] == self.seg_of[a[1]]) for a in arcs]

    def step(self, now: float, carried_mbit: Mapping[Arc, float], cap: Mapping[Arc, float],
             *, flows: Sequence[SimFlow], paths: Sequence[Path],
             offered: Sequence[float]) -> set[int]:
        """One monitoring interval: every RM that is up measures, decides, and its
        renegotiations are started. Returns the groups asked to move."""
        st = self.st
        for old, new, made, hold in st.replaced:  # the table knows (told twice: no-op)
            for c in self.ctrl.values():
                c.stitch_replaced(old, new, made, hold=hold)
        for sid in st.failed_moves:
            for c in self.ctrl.values():
                c.renegotiation_failed(sid, now)
        st.replaced.clear()
        st.failed_moves.clear()
        live = {x for g in st.groups for x in (g.sid, g.successor) if x is not None}
        for sid in self.known - live:  # released or given up: nothing to hold or return
            for c in self.ctrl.values():
                c.stitch_ended(sid)
        self.known = live
        for a, x in carried_mbit.items():
            self.bytes[a] += x * 1e6 / 8
        rates: dict[Arc, dict[str, float]] = {}
        for i, f in enumerate(flows):
            if f.group is None or not paths[i]:
                continue
            g = st.groups[f.group]
            if g.sid is None or (self.movable is not None and not any(
                    flows[j].qos_class in self.movable for j in g.flows)):
                continue
            for a in itertools.pairwise(paths[i]):
                on = rates.setdefault(a, {})
                on[g.sid] = on.get(g.sid, 0.0) + offered[i]
        heaviest: dict[str, float] = {}  # per stitch: its busier direction
        for on in rates.values():
            for sid, x in on.items():
                heaviest[sid] = max(heaviest.get(sid, 0.0), x)
        asked: set[int] = set()
        for rm, arcs in sorted(self.owned.items()):
            if st.sim.cores[rm] is None:
                self.ctrl.pop(rm, None)  # down: when it is back it starts afresh
                continue
            ctrl = self.ctrl.get(rm)
            if ctrl is None:
                ctrl = self.ctrl[rm] = self._controller()
            ends = {g.sid for g in st.groups if g.sid is not None and rm in (g.origin, g.target)}
            links = self._samples(arcs, cap)
            on_links = {self.link[a]: rates[a] for a in arcs if a in rates}
            out = ctrl.step(now, [], {}, links, {n: list(r) for n, r in on_links.items()},
                            link_rates=on_links, stitch_rates=heaviest, ends=ends)
            for rec in out.records:
                if rec.action == "unavoidable":
                    st.unavoidable.append((now, self.arc_of[rec.subject], rec.reason))
            for act in out.actions:
                if isinstance(act, Renegotiate):
                    k = self._apply(now, act)
                    if k is not None:
                        asked.add(k)
        return asked

    def links_down(self, now: float, arcs: Collection[Arc],
                   down: Collection[tuple[str, str]]) -> set[int]:
        """Substrate arcs just cut (``down``: every cut link now, node pairs sorted). The
        RM owning an arc sees it go down at once, as the daemon sees a netlink link
        event; once no link of the adjacency is left, the stitches it originates whose
        first hop is across move around the adjacency now (the one rule,
        :meth:`~vnstitch.control.reroute.StitchMover.neighbour_down`). Returns the
        groups asked to move."""
        st = self.st
        asked: set[int] = set()
        for a in sorted(arcs):
            sa, sb = self.seg_of[a[0]], self.seg_of[a[1]]
            rm = self.owner[a]
            ctrl = self.ctrl.get(rm)
            if sa == sb or ctrl is None or ctrl.mover is None or st.sim.cores[rm] is None:
                continue  # inside a segment its IGP re-picks the links; or the RM is down
            if self._adjacency_up(sa, sb, down):
                continue  # the adjacency keeps a link: the segments' IGP uses it
            paths = {g.sid: st.segments_of(c, False) for g in st.groups
                     if g.origin == rm and g.sid is not None
                     and (c := st.commitment(g)) is not None}
            acts, _ = ctrl.mover.neighbour_down(now, sa, sb, paths, link=self.link[a])
            for act in acts:
                k = self._apply(now, act)
                if k is not None:
                    asked.add(k)
        return asked

    def _adjacency_up(self, sa: str, sb: str, down: Collection[tuple[str, str]]) -> bool:
        """Some substrate link between segments ``sa`` and ``sb`` is not cut."""
        seg = self.seg_of
        return any({seg[x], seg[y]} == {sa, sb} and (min(x, y), max(x, y)) not in down
                   for x, y in self.st.sim.substrate.graph.edges)

    def _apply(self, now: float, act: Renegotiate) -> int | None:
        """Hand the request to the stitch's origin; the group moved (or None)."""
        if act.around:
            return self.st.renegotiate(now, act, "renegotiate",
                                       (self.arc_of[act.around], self.seg_of))
        return self.st.renegotiate(now, act, "return")
