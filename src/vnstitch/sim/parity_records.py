"""The simulator's side of the parity summary: its events as :mod:`vnstitch.sim.parity`
records.

Theory of operation. :class:`ParityRecorder` is an engine observer. It keeps, per
stitch key (origin segment and VN), the set of the origin's stitch ids that are up: the
key is *up* while that set is non-empty, so a make-before-break successor (up before the
old one is released) is a path change, not an outage. An origin that crashes takes its
stitches down with it (the simulator stops serving them). :func:`sim_records` adds what
only the finished run knows: the requests (from the metrics, without the successors a
renegotiation asks for), the faults as they were resolved, the flows' surges and
volumes, and the decisions (stitch renegotiations and returns, background reroutes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vnstitch.protocol.api import Event, StitchEstablished, StitchTornDown
from vnstitch.sim.parity import (
    DecisionMade,
    FaultApplied,
    FlowDelivery,
    Record,
    StitchDown,
    StitchRequested,
    StitchUp,
    stitch_key,
    surges,
)
from vnstitch.sim.workload import FaultKind

if TYPE_CHECKING:
    from vnstitch.sim.engine import Simulation
    from vnstitch.sim.scenario import Scenario
    from vnstitch.sim.traffic_model import TrafficResult


class ParityRecorder:
    """Stitch up / down records from the engine's events (module docstring)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.records: list[Record] = []
        self.live: dict[str, set[str]] = {}
        self.key_of: dict[tuple[int, str], str] = {}
        self.path: dict[str, tuple[str, ...]] = {}
        sim.observers.append(self)

    def on_event(self, rm: int, event: Event, now: float) -> None:
        if isinstance(event, StitchEstablished):
            if not event.path or self.sim.rm_index.get(event.path[0]) != rm:
                return  # only the origin's view counts
            segs = tuple(str(self.sim.segments[self.sim.rm_index[r]]) for r in event.path)
            key = stitch_key(segs[0], int(event.vnid))
            self.key_of[(rm, event.stitch_id)] = key
            live = self.live.setdefault(key, set())
            if not live or self.path.get(key) != segs:
                self.records.append(StitchUp(now, key, segs))
                self.path[key] = segs
            live.add(event.stitch_id)
        elif isinstance(event, StitchTornDown):
            known = self.key_of.get((rm, event.stitch_id))
            if known is not None:
                self._gone(known, event.stitch_id, now, str(event.reason))

    def _gone(self, key: str, sid: str, now: float, why: str) -> None:
        live = self.live.get(key, set())
        if sid in live:
            live.discard(sid)
            if not live:
                self.records.append(StitchDown(now, key, why))

    def on_crash(self, rm: int, now: float) -> None:
        for (origin, sid), key in list(self.key_of.items()):
            if origin == rm:
                self._gone(key, sid, now, "origin_crashed")

    def on_restart(self, rm: int, now: float) -> None:
        del rm, now

    def on_links(self, now: float) -> None:
        del now


def sim_records(recorder: ParityRecorder, scenario: Scenario,
                traffic: TrafficResult | None) -> list[Record]:
    """Every record of a finished run (module docstring)."""
    sim = recorder.sim
    out: list[Record] = []
    for rec in sim.metrics.records.values():
        if rec.replaces is not None:
            continue  # a renegotiation's successor, not a request of the workload
        key = stitch_key(str(sim.segments[rec.origin]), int(rec.vnid))
        out.append(StitchRequested(rec.requested_at, key, int(rec.vnid), rec.feasible))
    out += recorder.records
    for f in scenario.faults:
        target = f.segment or f.link_pick or "-".join(f.link or f.segments)
        target = sim.resolved_aliases.get(target, target)
        out.append(FaultApplied(f.at, FaultKind(f.action).value, target))
    if traffic is not None:
        for i, fl in enumerate(traffic.flows):
            out += surges(fl.name, fl.spec.mbps, fl.spec.schedule)
            out.append(FlowDelivery(fl.name, fl.qos_class, traffic.flow_offered[i],
                                    traffic.flow_delivered[i]))
        if traffic.stitched is not None:
            for m in traffic.stitched.moves:
                out.append(DecisionMade(m.decided_s, m.kind, m.old_stitch))
        for mv in traffic.moves:
            if mv.kind in ("reroute", "return", "allocate"):
                out.append(DecisionMade(mv.decided_s, mv.kind, mv.flow))
    return out
