"""The per-Route-Manager control loop: measurements in, actions and decision records out.

Theory of operation
-------------------
One :class:`Controller` runs per Route Manager (per simulated run of flows, in the
simulator). Each interval the runtime calls :meth:`Controller.step` with ``now``, the
consumers the protocol core's typed views give it (:class:`~vnstitch.control.model.
Consumer`: a stitch end or a flow, the links it crosses, what it may reserve on each),
one :class:`~vnstitch.control.model.StitchSample` per consumer and, optionally, samples
of the substrate links this RM owns with the stitches that cross each. It then

1. **measures**: a byte counter becomes a rate over the time since the previous read
   (:class:`RateSeries`: the first read, a read on another device, a counter that went
   backwards are baselines, not samples); a rate is taken as is; an unreadable sample
   is a ``keep`` record and that consumer is left alone this interval;
2. **forecasts** each consumer from its own past only (:class:`~vnstitch.control.
   forecasting.ForecastBank`: refit cadence, quantiles from the model's own errors);
3. **allocates** with :class:`~vnstitch.allocate.allocator.Allocator` at the newsvendor
   level of the consumer's application class, in whole units, held and damped by the
   policy's :class:`~vnstitch.allocate.policy.ScalingRules`. With ``joint`` one
   allocator covers every consumer and the runtime's provider (and reroute) -- flows
   sharing links; otherwise each consumer has its own allocator over a
   :class:`ReservationBook` capped at its capacity -- a stitch end's HTB class. A
   reservation that differs from the one in force is a :class:`~vnstitch.control.
   model.Reserve`; the provider's answers are :class:`~vnstitch.control.model.
   ProviderOrder` records;
4. **grows** a stitch originated here whose shortfall persists
   (:class:`~vnstitch.control.growth.GrowPolicy`, hold-down after a refusal), never
   beyond the capacity of an owned link it crosses: :class:`~vnstitch.control.model.
   ResizeStitch`;
5. **watches congestion** on owned links with :class:`~vnstitch.control.reroute.
   LinkWatch` (utilisation, hysteresis) and, while a link is congested, reports it to
   the stitches crossing it, busiest first (by the rate measured on that link), each
   with the Mbit/s the link would still carry above the rules' ``target`` once the
   busier stitches asked to move have left (until none remains). A
   stitch that begins or ends here cannot leave a link inside this segment: that is an
   ``unavoidable`` record, not a report. Each report goes to the
   :class:`~vnstitch.control.reroute.StitchMover` (what a daemon's origin decides
   with, from a CONGESTION; the runtime hands the action to the stitch's origin), which
   decides from the stitch's own rate whether it is one to move -- busier stitches
   first, down to the target -- and asks to renegotiate it around the link
   (:class:`~vnstitch.control.model.Renegotiate`) unless it is in flight or held down
   (no ``target``: the first movable stitch, one per interval). Once nothing owned is congested,
   the mover asks a moved stitch back (a renegotiation avoiding nothing: the best path
   now) when its hold-down has passed and the link would stay under ``return_below``
   with it. The runtime tells the controller when a renegotiation's successor replaces
   a stitch (:meth:`Controller.stitch_replaced`), so the hold-down follows the stitch.

Every action comes with a :class:`~vnstitch.control.model.DecisionRecord`. Nothing here
does I/O, reads a clock or draws random numbers; a model or allocator failure becomes a
``keep`` record, never an exception out of ``step``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from vnstitch.allocate.allocator import (
    Allocator,
    Decision,
    QuantileForecast,
    RerouteFn,
    StepReport,
)
from vnstitch.allocate.allocator import Consumer as AllocConsumer
from vnstitch.allocate.providers.base import Provider, RequestStatus, ResourceKey, ScaleResult
from vnstitch.allocate.providers.base import ResourceKind as Kind
from vnstitch.control.forecasting import ColdStart, ForecastBank
from vnstitch.control.growth import GrowPolicy, needed_mbps
from vnstitch.control.model import (
    Consumer,
    ControlAction,
    ControlPolicy,
    DecisionRecord,
    LinkSample,
    ProviderOrder,
    Reserve,
    ResizeStitch,
    SetQosClasses,
    StitchSample,
)
from vnstitch.control.reroute import LinkWatch, StitchMover
from vnstitch.protocol.api import StitchResized

_EPS = 1e-9


def _key(link: str) -> ResourceKey:
    return ResourceKey(Kind.BANDWIDTH, link)


@dataclass(slots=True)
class RateSeries:
    """One consumer's last counter read, to turn byte counters into rates."""

    last: tuple[str, float, float] | None = None  # (device, t, bytes)

    def observe(self, device: str, now: float, tx_bytes: float) -> tuple[float | None, str]:
        """The rate since the previous read (Mbit/s, or None: a baseline) and a note."""
        prev, self.last = self.last, (device, now, tx_bytes)
        if prev is None or prev[0] != device:
            return None, "first counter read: baseline"
        dt, delta = now - prev[1], tx_bytes - prev[2]
        if dt <= 0:
            self.last = prev
            return None, f"no time passed since the last read ({dt:g} s)"
        if delta < 0:
            return None, f"counter went back ({prev[2]:g} -> {tx_bytes:g}): new baseline"
        return delta * 8 / 1e6 / dt, f"{delta:g} bytes in {dt:.3g} s"


class ReservationBook:
    """A provider that only books reservations up to each link's capacity (the stitch
    end's negotiated bandwidth): the reservation *is* the action; nothing is bought."""

    name = "book"

    def __init__(self) -> None:
        self.capacity: dict[str, float] = {}
        self.reserved: dict[str, float] = {}
        self.log: list[ScaleResult] = []

    def supports(self, kind: Kind) -> bool:
        return kind is Kind.BANDWIDTH

    def lead_time(self, kind: Kind) -> float:
        return 0.0

    def limit(self, key: ResourceKey) -> float:
        return self.capacity.get(key.location, 0.0)

    def request(self, key: ResourceKey, target: float, now: float) -> ScaleResult:
        cap = self.capacity.get(key.location, 0.0)
        if target > cap + _EPS:
            status, why = RequestStatus.REFUSED, f"link capacity {cap:g} Mbit/s exceeded"
        elif abs(self.committed(key, now) - target) <= _EPS:
            status, why = RequestStatus.UNCHANGED, "already in place"
        else:
            status, why = RequestStatus.ACCEPTED, f"rate {target:g} Mbit/s (ceil {cap:g})"
            self.reserved[key.location] = target
        ok = status is not RequestStatus.REFUSED
        out = ScaleResult(key, target, status, now, now if ok else None, why)
        self.log.append(out)
        return out

    def available(self, key: ResourceKey, now: float) -> float:
        return self.committed(key, now)

    def committed(self, key: ResourceKey, now: float) -> float:
        cap = self.capacity.get(key.location, 0.0)
        return min(self.reserved.get(key.location, cap), cap)


#: The quantiles of each forecast reported as its band (10 %, median, 90 %).
BAND_LEVELS = (0.1, 0.5, 0.9)


def forecast_band(f: QuantileForecast) -> dict[float, float]:
    """``f``'s next-step demand at :data:`BAND_LEVELS` (interpolated between its levels)."""
    import numpy as np  # noqa: PLC0415  (the daemon imports this module without numpy)

    return {q: float(np.interp(q, f.levels, f.values[:, 0])) for q in BAND_LEVELS}


@dataclass(slots=True)
class ControlResult:
    actions: list[ControlAction] = field(default_factory=list)
    records: list[DecisionRecord] = field(default_factory=list)
    samples: list[tuple[str, float, float]] = field(default_factory=list)  # (id, t, Mbit/s)
    amounts: dict[str, float] = field(default_factory=dict)  # reserved per consumer
    centres: dict[str, float] = field(default_factory=dict)  # point forecasts
    #: Forecast quantiles per consumer at :data:`BAND_LEVELS` (the band operators see).
    bands: dict[str, dict[float, float]] = field(default_factory=dict)
    #: The allocator's own reports (raw decisions, shortfalls, reroutes), per allocator.
    reports: list[StepReport] = field(default_factory=list)


class Controller:
    """The control loop of one Route Manager (see the module docstring)."""

    def __init__(self, policy: ControlPolicy, provider: Provider | None = None,
                 reroute: RerouteFn | None = None, *, mover: StitchMover | None = None
                 ) -> None:
        """``mover``: the origins' move decisions, when the runtime shares one table
        between the controllers (the simulator: stitch ids are unique, and the origin
        side re-optimises through the same table); else this controller's own."""
        self.policy = policy
        self.bank = ForecastBank(policy.forecast)
        self.book = ReservationBook()
        self.provider: Provider = provider if provider is not None else self.book
        self.reroute = reroute
        self.series: dict[str, RateSeries] = {}
        self._allocs: dict[str, tuple[tuple[object, ...], Allocator]] = {}
        self.grow = GrowPolicy(policy.grow) if policy.grow is not None else None
        cong = policy.congestion
        self.watch = LinkWatch(cong.monitor) if cong is not None else None
        self.mover = mover if mover is not None or cong is None else \
            StitchMover(cong.reroute_rules())
        self._qos_for: dict[str, float] = {}  # owned link -> capacity its classes are for
        self.steps = 0

    # -- inputs besides step ---------------------------------------------------------------
    def restore(self, consumer: str, samples: Sequence[float]) -> None:
        self.bank.restore(consumer, samples)

    def resize_outcome(self, ev: StitchResized) -> DecisionRecord | None:
        """The outcome of a resize this controller asked for (None otherwise)."""
        if self.grow is None:
            return None
        row = self.grow.outcome(ev)
        if row is None:
            return None
        return DecisionRecord(ev.now, ev.stitch_id, str(row["action"]), str(row["reason"]),
                              amount_mbps=ev.new_mbps, consumer=ev.stitch_id)

    def stitch_replaced(self, old: str, new: str, now: float, *, hold: bool = True) -> None:
        """A renegotiation's successor ``new`` now carries what ``old`` did (established
        at ``now``): the hold-down and the return follow it (``hold``: a congestion move,
        which starts a hold-down; a re-optimisation does not)."""
        if self.mover is not None:
            self.mover.moved(now, old, new, hold=hold)

    def renegotiation_failed(self, sid: str, now: float) -> None:
        """No path avoided what ``sid`` was asked to leave (known at ``now``): it stays,
        held down from then."""
        if self.mover is not None:
            self.mover.failed(sid, now)

    def stitch_ended(self, sid: str) -> None:
        """``sid`` is gone (released, failed): forget its hold-down and return."""
        if self.mover is not None:
            self.mover.forget_one(sid)

    # -- the step ------------------------------------------------------------------------------
    def step(self, now: float, consumers: Sequence[Consumer],
             samples: Mapping[str, StitchSample], links: Sequence[LinkSample] = (),
             crossing: Mapping[str, Sequence[str]] | None = None, *,
             link_rates: Mapping[str, Mapping[str, float]] | None = None,
             stitch_rates: Mapping[str, float] | None = None,
             ends: Collection[str] = ()) -> ControlResult:
        """One interval. ``crossing``: owned link -> the stitches that cross it;
        ``link_rates``: owned link -> stitch -> its Mbit/s measured on that link
        (default: the stitch's own measured rate); ``stitch_rates``: the current rate of
        stitches (as their origins measure it), for the return of a stitch that no longer
        crosses an owned link; ``ends``: the stitches that begin or end at this RM."""
        self.steps += 1
        out = ControlResult()
        live = {c.id for c in consumers}
        for cid in [c for c in self.series if c not in live]:
            del self.series[cid]
        for cid in [c for c in self._allocs if c not in live and c != "*"]:
            del self._allocs[cid]
        self.bank.forget(live)
        if self.grow is not None:
            self.grow.forget({c.stitch_id or c.id for c in consumers})
        measured: dict[str, float | None] = {}
        notes: dict[str, str] = {}
        ready: list[Consumer] = []
        for c in consumers:
            s = samples.get(c.id, StitchSample(error="no measurement"))
            if s.error or (s.tx_bytes is None and s.mbps is None):
                out.records.append(DecisionRecord(
                    now, c.id, "keep", f"counter read failed: {s.error or 'no sample'}; "
                    "keeping the last reservation", consumer=c.id))
                continue
            mbps: float | None
            if s.mbps is not None:
                mbps, notes[c.id] = s.mbps, "measured rate"
            else:
                assert s.tx_bytes is not None
                series = self.series.setdefault(c.id, RateSeries())
                mbps, notes[c.id] = series.observe(s.device, now, s.tx_bytes)
            measured[c.id] = mbps
            if mbps is not None:
                self.bank.observe(c.id, mbps)
                out.samples.append((c.id, now, mbps))
            ready.append(c)
        limits = self._link_limits(links, crossing or {})
        if self.policy.joint:
            self._allocate(now, "*", ready, measured=measured, notes=notes, limits=limits,
                           out=out)
        else:
            for c in ready:
                self._allocate(now, c.id, [c], measured=measured, notes=notes, limits=limits,
                               out=out)
        if stitch_rates and self.mover is not None:
            for sid, x in stitch_rates.items():
                self.mover.rate(sid, x)
        self._congestion(now, links, crossing=crossing or {}, measured=measured,
                         rates=link_rates or {}, ends=ends, out=out)
        self._qos(now, links, out)
        return out

    def _qos(self, now: float, links: Sequence[LinkSample], out: ControlResult) -> None:
        """The policy's classes on each owned link, once per link and capacity: rates
        scaled from the policy's ``link_mbps`` to the link, none above its capacity."""
        qos = self.policy.qos
        if qos is None:
            return
        for s in links:
            if self._qos_for.get(s.link) == s.capacity_mbps or s.capacity_mbps <= 0:
                continue
            self._qos_for[s.link] = s.capacity_mbps
            k = s.capacity_mbps / qos.link_mbps
            classes = tuple((c.name, min(c.guaranteed_mbps * k, s.capacity_mbps),
                             min(c.max_mbps * k, s.capacity_mbps)) for c in qos.classes)
            out.actions.append(SetQosClasses(s.link, classes))
            out.records.append(DecisionRecord(
                now, s.link, "qos-classes", f"{len(classes)} class(es) of the QoS policy "
                f"scaled from {qos.link_mbps:g} to {s.capacity_mbps:g} Mbit/s"))

    def _allocator(self, group: str, consumers: Sequence[Consumer]) -> Allocator:
        pol = self.policy
        sig: tuple[object, ...] = tuple((c.id, c.app_class) if pol.joint else
                                        (c.id, c.app_class, c.links,
                                         tuple(sorted(c.capacity.items())))
                                        for c in consumers)
        have = self._allocs.get(group)
        if have is None or have[0] != sig:  # new, or renegotiated: start afresh
            made = [AllocConsumer(c.id, Kind.BANDWIDTH, pol.apps[c.app_class], pol.rules, 1,
                                  path=c.links) for c in consumers]
            have = (sig, Allocator(made, self.provider, self.reroute if pol.joint else None))
            self._allocs[group] = have
        alloc = have[1]
        for c in consumers:
            alloc.paths[c.id] = c.links
        return alloc

    def _allocate(self, now: float, group: str, consumers: Sequence[Consumer], *,
                  measured: Mapping[str, float | None], notes: Mapping[str, str],
                  limits: Mapping[str, float], out: ControlResult) -> None:
        if not consumers or any(self.bank.count(c.id) < self.policy.warmup
                                for c in consumers):
            return
        available: dict[ResourceKey, float] = {}
        seen: set[int] = set()
        for c in consumers:
            if id(c.capacity) not in seen:  # one map may be shared by many flows
                seen.add(id(c.capacity))
                for link, cap in c.capacity.items():
                    available[_key(link)] = cap
                    if self.provider is self.book:
                        self.book.capacity[link] = cap
            if self.provider is self.book and c.reserved_mbps is not None:
                for link in c.links:
                    self.book.reserved[link] = c.reserved_mbps
        ids = [c.id for c in consumers]
        alloc = self._allocator(group, consumers)
        try:
            forecasts: dict[str, QuantileForecast] = self.bank.forecast(
                ids, now=now, cold={c.id: ColdStart(c.app_class, c.negotiated_mbps)
                                    for c in consumers})
            report = alloc.step(now, forecasts, available)
        except Exception as exc:
            for c in consumers:
                out.records.append(DecisionRecord(
                    now, c.id, "keep", f"{type(exc).__name__}: {exc}; keeping the last "
                    "reservation", measured_mbps=measured.get(c.id), consumer=c.id))
            return
        finally:  # the library logs every decision; the runtime keeps ours (bounded)
            alloc.log.clear()
            if self.provider is self.book:
                self.book.log.clear()
        out.reports.append(report)
        shortfall = {sf.key.location: sf for sf in report.shortfalls}
        for c in consumers:
            out.centres[c.id] = self.bank.centre(c.id)
            out.bands[c.id] = forecast_band(forecasts[c.id])
            amount = report.amounts[c.id]
            if not self.policy.joint:  # what the book really holds (capped, refused)
                amount = min((report.per_location.get(_key(link), amount)
                              for link in c.links), default=amount)
            out.amounts[c.id] = amount
            if c.reserved_mbps is None or abs(amount - c.reserved_mbps) > _EPS:
                out.actions.append(Reserve(c.id, tuple(alloc.paths[c.id]), amount))
        grow_why: dict[str, str] = {}
        asks: list[DecisionRecord] = []
        if self.grow is not None:
            for c in consumers:
                need = max((sf.needed for link in c.links
                            if (sf := shortfall.get(link)) is not None), default=None)
                grow_why[c.id] = self._consider_grow(
                    now, c, needed_mbps(need, measured.get(c.id), c.negotiated_mbps),
                    reserved=report.amounts.get(c.id), mbps=measured.get(c.id),
                    limits=limits, out=out, asks=asks)
        for d in report.decisions:
            out.records.append(self._record(d, measured, notes, consumers, grow_why))
            if self.provider is not self.book and \
                    d.action in ("scale-substrate", "scale-refused"):
                out.actions.append(ProviderOrder(d.subject, d.amount,
                                                 "granted" if d.action == "scale-substrate"
                                                 else "refused", d.reason))
        out.records.extend(asks)

    def _record(self, d: Decision, measured: Mapping[str, float | None],
                notes: Mapping[str, str], consumers: Sequence[Consumer],
                grow_why: Mapping[str, str]) -> DecisionRecord:
        reason = d.reason
        subject = d.subject
        owner = next((c for c in consumers if c.id == d.subject or
                      any(d.subject == str(_key(x)) for x in c.links)), None)
        if d.action == "shortfall" and owner is not None:
            reason += (f"; the forecast exceeds the negotiated {owner.negotiated_mbps:g} "
                       f"Mbit/s ({grow_why.get(owner.id) or 'no in-place resize here'})")
        elif d.quantile is not None and d.subject in notes:
            reason = f"measured: {notes[d.subject]}; {reason}"
        return DecisionRecord(d.now, subject, d.action, reason,
                              measured.get(owner.id) if owner is not None else None,
                              d.forecast, d.quantile, d.available, d.amount,
                              owner.id if owner is not None else "")

    def _link_limits(self, links: Sequence[LinkSample],
                     crossing: Mapping[str, Sequence[str]]) -> dict[str, float]:
        """Per stitch: the smallest capacity of an owned link it crosses."""
        cap = {s.link: s.capacity_mbps for s in links}
        out: dict[str, float] = {}
        for link, stitches in crossing.items():
            if link in cap:
                for sid in stitches:
                    out[sid] = min(out.get(sid, math.inf), cap[link])
        return out

    def _consider_grow(self, now: float, c: Consumer, needed: float | None, *,
                       reserved: float | None, mbps: float | None,
                       limits: Mapping[str, float], out: ControlResult,
                       asks: list[DecisionRecord]) -> str:
        assert self.grow is not None
        sid = c.stitch_id or c.id
        ask, why = self.grow.consider(now, sid, c.negotiated_mbps, needed,
                                      originated=c.originated, reserved=reserved)
        if ask is None:
            return why
        limit = limits.get(sid, math.inf)
        if ask > limit + _EPS:
            if c.negotiated_mbps >= limit - _EPS:
                self.grow.outcome(StitchResized(sid, c.negotiated_mbps, ask, False,
                                                "link_capacity", now))
                return (f"at the capacity {limit:g} Mbit/s of a link this RM owns on "
                        "its path")
            ask = limit
            why += f"; capped at the owned link's capacity {limit:g} Mbit/s"
        out.actions.append(ResizeStitch(sid, ask, why))
        asks.append(DecisionRecord(now, c.id, "resize-requested", why,
                                   measured_mbps=mbps, amount_mbps=ask, consumer=c.id))
        return why

    def _congestion(self, now: float, links: Sequence[LinkSample], *,
                    crossing: Mapping[str, Sequence[str]],
                    measured: Mapping[str, float | None],
                    rates: Mapping[str, Mapping[str, float]], ends: Collection[str],
                    out: ControlResult) -> None:
        """The owner's watch and pick, the origin's decision (:mod:`vnstitch.control.
        reroute`): the simulated owner hands its pick straight to the origin."""
        rules, watch, mover = self.policy.congestion, self.watch, self.mover
        if rules is None or watch is None or mover is None:
            return
        out.records.extend(watch.observe(now, links))
        cap = {s.link: s.capacity_mbps for s in links}
        inside = {s.link for s in links if s.inside}
        util = watch.utilisation

        def rate(link: str, sid: str) -> float:
            on = rates.get(link)
            return on.get(sid, 0.0) if on is not None else (measured.get(sid) or 0.0)

        hot = [link for link in watch.hot() if link in cap]
        asked: set[str] = set()  # this interval, on any link: they leave the others too
        for link in hot:
            mover.link_hot(now, link)
            # What the link carries above the target: each origin decides from its own
            # stitch's rate whether it is one to move (StitchMover.congested), as a
            # daemon's origin does from a CONGESTION report. This owner measures every
            # stitch's rate on the link, so it reports them busiest first, each with
            # what would remain above the target once the busier ones it asked left.
            excess = None if rules.target is None else \
                (util.get(link, 0.0) - rules.target) * cap[link] \
                - sum(rate(link, x) for x in asked if x in crossing.get(link, ()))
            for sid in sorted(crossing.get(link, ()), key=lambda x: (-rate(link, x), x)):
                if excess is not None and excess <= 0:
                    break
                if not mover.movable(now, sid):
                    continue
                if link in inside and sid in ends:
                    out.records.append(DecisionRecord(
                        now, link, "unavoidable", f"stitch {sid}: link {link} is inside this "
                        "segment and the stitch begins or ends here: renegotiation cannot "
                        "avoid it", measured_mbps=rate(link, sid), consumer=sid))
                    continue
                acts, recs = mover.congested(now, sid, link, util.get(link, 0.0),
                                             "owner", mbps=rate(link, sid),
                                             excess_mbps=excess)
                out.records.extend(recs)
                out.actions.extend(acts)
                if acts and excess is None:
                    break  # no target: one stitch per link per interval
                if acts:
                    asked.add(sid)
                if acts and excess is not None:
                    excess -= rate(link, sid)
        if rules.returns and not hot:
            room = {sid: util.get(link, 0.0) + mbps / cap[link]
                    for sid, (link, mbps) in mover.away().items() if cap.get(link, 0.0) > 0}
            acts, recs = mover.step(now, None, room)
            out.actions.extend(acts)
            out.records.extend(recs)
