"""Predictive bandwidth allocation in the Route Manager daemon: measure and apply.

Theory of operation
-------------------
Every stitch this RM terminates has a tunnel end here: a VXLAN port carrying an HTB class
(a :class:`~vnstitch.dataplane.objects.RateLimit`) that the protocol core puts in the
desired dataplane state with ``rate = ceil = `` the bandwidth it negotiated. With an
``allocation:`` config section, every ``interval_s`` the daemon

1. **measures**: reads the tx byte counter of each tunnel's VXLAN port (the bytes this
   end sent into the tunnel) through the driver (:class:`~vnstitch.dataplane.base.
   CountingDriver`), and names each end by the stitch the core's typed
   :meth:`~vnstitch.protocol.api.RouteManagerViews.tunnel_views` say it belongs to;
2. **decides** with the one Route Manager controller (:class:`~vnstitch.control.
   Controller`, policy from :func:`control_policy`): it turns counters into rates,
   forecasts each stitch from its own past, reserves at the newsvendor level of the
   VN's application class, never above the negotiated bandwidth (a ``shortfall``
   otherwise), and asks to grow a stitch originated here whose shortfall persists;
3. **applies** the actions: a :class:`~vnstitch.control.Reserve` becomes the rate of the
   tunnel's HTB class (an *override*, below), a :class:`~vnstitch.control.ResizeStitch`
   goes to the core's in-place resize (:mod:`vnstitch.daemon.resizing`), whose outcome
   goes back to the controller (hold-down after a refusal). With a ``qos:`` section the
   substrate interfaces it owns are the controller's link samples, and the controller's
   :class:`~vnstitch.control.SetQosClasses` for them go to the daemon's QoS overlay
   (:mod:`vnstitch.daemon.qoslive`).

*One writer.* The daemon's reconcile is the only thing that writes the kernel. Overrides
live in an :class:`OverrideView`; the daemon's ``desired_state()`` passes through
:meth:`OverrideView.overlay`, which lays them over the core's objects (``rate`` =
allocation, ``ceil`` = negotiated), then reconciles as usual. An override whose tunnel
is gone, or whose negotiated bandwidth changed, is ignored and pruned.

*Ownership.* An end of a VN whose bandwidth the PRA sizes (``pra.vns.<vnid>.bandwidth``)
is the PRA's: this loop leaves it out, and the PRA's actions go through the same
:func:`apply_bandwidth_actions` into the same :class:`OverrideView` (the daemon's one).

*Failure.* Bad counters (missing device, read error) and forecaster or allocator errors
become a ``keep`` decision naming the problem; the override (the last reservation) is
left as it was. Nothing here raises into the daemon.

*State.* Rate samples (bounded per stitch) and overrides are persisted by the daemon
(:mod:`vnstitch.daemon.state`), so a restart keeps both the history and the
reservation. Decisions are kept in a bounded deque for the control socket
(``show allocations``). Only :class:`AllocationRunner` (the thin asyncio driver)
sleeps, reads the clock and calls the kernel.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from vnstitch.allocate.policy import DEFAULT_CLASSES, ScalingRules
from vnstitch.control import (
    Consumer,
    Controller,
    ControlPolicy,
    DecisionRecord,
    ForecastPolicy,
    GrowRules,
    LinkSample,
    Reserve,
    ResizeStitch,
    SetQosClasses,
    StitchSample,
)
from vnstitch.daemon.config import AllocationConfig
from vnstitch.daemon.periodic import PeriodicTask
from vnstitch.dataplane.base import CountingDriver, DataplaneError
from vnstitch.dataplane.objects import DataplaneState, Op, OpKind, RateLimit, VxlanPort
from vnstitch.protocol.api import StitchResized
from vnstitch.routing.qos import QosPolicy

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon.allocation")

#: Fewer samples than this: no model is fitted, the last sample (or 0) is the centre.
MIN_FIT_SAMPLES = 3


def grow_rules(c: AllocationConfig) -> GrowRules:
    return GrowRules(c.unit_mbps, c.grow_after, c.grow_headroom, c.grow_holddown_s,
                     c.grow_max_factor, c.shrink_after, c.shrink_below)


def control_policy(c: AllocationConfig, qos: QosPolicy | None = None) -> ControlPolicy:
    """The controller's policy for the daemon's ``allocation:`` section: one allocator
    per stitch end (its own HTB class), refitted every interval on its kept history;
    ``qos`` (the ``qos:`` section's policy) for the classes of owned links."""
    rules = ScalingRules(unit=c.unit_mbps,
                         min_units=max(1, math.ceil(c.min_mbps / c.unit_mbps - 1e-9)),
                         hold_steps=c.hold_steps)
    return ControlPolicy(dict(DEFAULT_CLASSES), rules,
                         ForecastPolicy(c.forecaster, 1, 1, c.history, c.history,
                                        MIN_FIT_SAMPLES),
                         grow_rules(c), joint=False, qos=qos)


# -- tunnel ends --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TunnelEnd:
    """This RM's end of one stitch: the VXLAN port and HTB class the core asked for."""

    stitch_id: str
    device: str
    class_id: int
    vnid: int
    negotiated_mbps: float

    @property
    def rate_key(self) -> str:
        return f"rate:{self.device}:{self.class_id}"


def tunnel_ends(desired: DataplaneState, stitch_of: Mapping[str, str]) -> list[TunnelEnd]:
    """Each RateLimit on a VXLAN port in the core's ``desired`` state, named by its stitch
    (``stitch_of``: VXLAN device -> stitch id; the device name when unknown)."""
    ports = {o.name: o for o in desired if isinstance(o, VxlanPort)}
    ends: list[TunnelEnd] = []
    seen: set[str] = set()
    for o in sorted((o for o in desired if isinstance(o, RateLimit) and o.device in ports),
                    key=lambda o: o.key):
        sid = stitch_of.get(o.device, o.device)
        if sid in seen:  # two ends of one stitch here: keep them apart
            sid = f"{sid}/{o.device}"
        seen.add(sid)
        ends.append(TunnelEnd(sid, o.device, o.class_id, ports[o.device].vni, o.ceil_mbps))
    return ends


# -- the override view (the provider's driver) ---------------------------------------------


def _valid(override: RateLimit, base: object) -> bool:
    return (isinstance(base, RateLimit) and base.ceil_mbps == override.ceil_mbps
            and 0 < override.rate_mbps <= base.ceil_mbps)


class OverrideView:
    """A dataplane driver over the daemon's desired state that only records HTB rates."""

    def __init__(self, base: Callable[[], DataplaneState]) -> None:
        self._base = base
        self.overrides: dict[str, RateLimit] = {}

    def overlay(self, state: DataplaneState) -> DataplaneState:
        """``state`` with every still-valid override's rate laid over the core's class."""
        add: list[RateLimit] = []
        for key, o in self.overrides.items():
            base = state.get(key)
            if isinstance(base, RateLimit) and _valid(o, base):
                add.append(replace(base, rate_mbps=o.rate_mbps))
        return state.with_objects(add=add) if add else state

    def observe(self) -> DataplaneState:
        return self.overlay(self._base())

    def apply(self, ops: Sequence[Op]) -> None:
        base = self._base()
        for op in ops:
            obj = op.obj
            if op.kind is OpKind.REMOVE or not isinstance(obj, RateLimit) \
                    or not _valid(obj, base.get(obj.key)):
                raise DataplaneError(f"{op}: allocation may only set the rate of a tunnel's "
                                     "HTB class, above 0 and up to its negotiated ceil")
        for op in ops:
            assert isinstance(op.obj, RateLimit)
            self.overrides[op.obj.key] = op.obj

    def prune(self, keep: set[str]) -> None:
        for key in [k for k in self.overrides if k not in keep]:
            del self.overrides[key]


def apply_bandwidth_actions(view: OverrideView, ends: Mapping[str, TunnelEnd],
                            actions: Sequence[object]) -> list[tuple[str, float]]:
    """The one place a bandwidth action becomes dataplane state, for the allocation loop
    and the PRA alike: a :class:`~vnstitch.control.Reserve` for a consumer in ``ends``
    sets its tunnel's HTB rate override (ceil: the negotiated bandwidth); each
    :class:`~vnstitch.control.ResizeStitch` is returned as ``(stitch, Mbit/s)`` for the
    core's in-place resize. Other actions are the caller's."""
    resizes: list[tuple[str, float]] = []
    for action in actions:
        if isinstance(action, Reserve) and action.consumer in ends:
            end = ends[action.consumer]
            view.overrides[end.rate_key] = RateLimit(end.device, end.class_id, action.mbps,
                                                     end.negotiated_mbps)
        elif isinstance(action, ResizeStitch):
            resizes.append((action.stitch_id, action.mbps))
    return resizes


# -- the loop (measure, decide with the controller, apply) -----------------------------------


@dataclass(slots=True)
class StepResult:
    samples: list[tuple[str, float, float]] = field(default_factory=list)  # (stitch, t, mbps)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False  # overrides changed: the daemon must reconcile
    resizes: list[tuple[str, float]] = field(default_factory=list)  # (stitch, Mbit/s) to ask
    qos: list[SetQosClasses] = field(default_factory=list)  # for daemon/qoslive.py


class AllocationLoop:
    """One :meth:`step` per interval: the controller's inputs and the actions applied."""

    def __init__(self, config: AllocationConfig, base: Callable[[], DataplaneState],
                 qos: QosPolicy | None = None, view: OverrideView | None = None) -> None:
        self.config = config
        self.view = view if view is not None else OverrideView(base)
        self.controller = Controller(control_policy(config, qos))
        self.decisions: deque[dict[str, Any]] = deque(maxlen=config.decisions_kept)
        self.steps = 0
        self._ends: dict[str, TunnelEnd] = {}

    def overlay(self, state: DataplaneState) -> DataplaneState:
        return self.view.overlay(state)

    def restore(self, samples: Mapping[str, Sequence[tuple[float, float]]],
                overrides: Sequence[RateLimit]) -> None:
        for sid, rows in samples.items():
            self.controller.restore(sid, [mbps for _, mbps in rows])
        for o in overrides:
            self.view.overrides[o.key] = o

    def reserved(self, end: TunnelEnd) -> float:
        o = self.view.overrides.get(end.rate_key)
        return o.rate_mbps if o is not None and o.ceil_mbps == end.negotiated_mbps \
            else end.negotiated_mbps

    def consumer(self, end: TunnelEnd, origin_of: Mapping[str, str]) -> Consumer:
        return Consumer(end.stitch_id, self.config.class_for(end.vnid), (end.device,),
                        {end.device: end.negotiated_mbps}, self.reserved(end),
                        origin_of.get(end.device, end.stitch_id), end.device in origin_of,
                        end.negotiated_mbps)

    def step(self, now: float, ends: Sequence[TunnelEnd],
             tx_bytes: Mapping[str, int | str],
             origin_of: Mapping[str, str] | None = None,
             links: Sequence[LinkSample] = (), *,
             live_keys: set[str] | None = None) -> StepResult:
        """One interval: ``tx_bytes`` maps each end's device to its counter, or to the
        reason it could not be read; ``origin_of`` maps the devices of ends originated
        here to their stitch id (only those may be grown); ``live_keys``: the rate keys
        of every live tunnel end when ``ends`` are only those this loop sizes (the
        others' overrides, the PRA's, are kept)."""
        self.steps += 1
        result = StepResult()
        before = dict(self.view.overrides)
        self.view.prune(live_keys if live_keys is not None else {e.rate_key for e in ends})
        self._ends = {e.stitch_id: e for e in ends}
        samples = {}
        for e in ends:
            counter = tx_bytes.get(e.device, "no counter read")
            samples[e.stitch_id] = (StitchSample(error=counter) if isinstance(counter, str)
                                    else StitchSample(tx_bytes=counter, device=e.device))
        out = self.controller.step(now, [self.consumer(e, origin_of or {}) for e in ends],
                                   samples, links)
        result.samples = out.samples
        result.resizes = apply_bandwidth_actions(self.view, self._ends, out.actions)
        result.qos = [a for a in out.actions if isinstance(a, SetQosClasses)]
        result.decisions = [self._row(r, out.bands.get(r.consumer)) for r in out.records]
        result.changed = self.view.overrides != before
        self.decisions.extend(result.decisions)
        return result

    def _row(self, r: DecisionRecord, band: Mapping[float, float] | None = None
             ) -> dict[str, Any]:
        end = self._ends.get(r.consumer)
        row: dict[str, Any] = {
            "now": round(r.now, 3), "stitch_id": r.consumer,
            "device": end.device if end else None, "vnid": end.vnid if end else None,
            "class": self.config.class_for(end.vnid) if end else None,
            "measured_mbps": None if r.measured_mbps is None else round(r.measured_mbps, 3),
            "forecast_mbps": None if r.forecast_mbps is None else round(r.forecast_mbps, 6),
            "quantile": r.quantile,
            "available_mbps": r.available_mbps if r.available_mbps is not None
            else (end.negotiated_mbps if end else None),
            "reserved_mbps": self.reserved(end) if end else None,
            "action": r.action, "reason": r.reason, "subject": r.subject}
        if r.amount_mbps is not None:
            row["amount_mbps" if r.action != "resize-requested" else "new_mbps"] = \
                r.amount_mbps
        if band is not None and r.quantile is not None:  # the forecast's band, once
            row["band"] = {f"{q:g}": round(v, 6) for q, v in sorted(band.items())}
        return row

    def resize_outcome(self, ev: StitchResized) -> None:
        """Hand the outcome of a resize to the controller; log it if it asked for it."""
        rec = self.controller.resize_outcome(ev)
        if rec is not None:
            self.decisions.append({"now": round(ev.now, 3), "stitch_id": ev.stitch_id,
                                   "action": rec.action, "reason": rec.reason,
                                   "old_mbps": ev.old_mbps, "new_mbps": ev.new_mbps,
                                   "ok": ev.ok})

    def summary(self) -> list[dict[str, Any]]:
        """Per live stitch: its latest samples and current reservation."""
        out = []
        for end in self._ends.values():
            hist = self.controller.bank.history(end.stitch_id)
            out.append({"stitch_id": end.stitch_id, "device": end.device,
                        "class": self.config.class_for(end.vnid),
                        "negotiated_mbps": end.negotiated_mbps,
                        "reserved_mbps": self.reserved(end),
                        "samples": len(hist), "last_mbps": hist[-1] if hist else None})
        return out


# -- the thin asyncio driver ---------------------------------------------------------------


class AllocationRunner:
    """Runs :class:`AllocationLoop` every ``interval_s`` inside a daemon."""

    def __init__(self, daemon: RouteManagerDaemon, config: AllocationConfig,
                 view: OverrideView | None = None) -> None:
        self.daemon = daemon
        qos = daemon.config.qos.policy if daemon.config.qos is not None else None
        self.loop = AllocationLoop(config, daemon.base_desired_state, qos, view)
        self._periodic = PeriodicTask("allocation", self.tick, config.interval_s,
                                      counters=daemon.metrics, logger=log)

    def restore(self) -> None:
        store = self.daemon.store
        self.loop.restore(store.allocation_samples(), store.allocation_overrides())

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _links(self) -> list[LinkSample]:
        """The substrate interfaces the ``qos:`` section owns, as the controller's link
        samples (their classes come back as SetQosClasses); unreadable ones are left out."""
        d = self.daemon
        owned = {i.device: i.capacity_mbps for i in d.config.qos.interfaces} \
            if d.config.qos is not None else {}
        if not owned:
            return []
        counters = (await asyncio.to_thread(read_counters, d.driver, list(owned))
                    if d.offloads_dataplane else read_counters(d.driver, list(owned)))
        return [LinkSample(dev, float(tx), 0, owned[dev]) for dev, tx in counters.items()
                if not isinstance(tx, str)]

    async def tick(self) -> StepResult:
        d = self.daemon
        live = d.core.tunnel_views()
        stitch_of = {t.vxlan_device: t.stitch_id for t in live}
        every = tunnel_ends(d.core_desired, stitch_of)
        # An end of a VN whose bandwidth the PRA sizes is the PRA's: one decision maker.
        pra_vnids = d.pra.bandwidth_vnids if d.pra is not None else frozenset()
        ends = [e for e in every if e.vnid not in pra_vnids]
        devices = [e.device for e in ends]
        if d.offloads_dataplane:
            counters = await asyncio.to_thread(read_counters, d.driver, devices)
        else:
            counters = read_counters(d.driver, devices)
        origin_of = {t.vxlan_device: t.stitch_id for t in live if t.origin}
        result = self.loop.step(d.now(), ends, counters, origin_of, await self._links(),
                                live_keys={e.rate_key for e in every})
        for sid, mbps in result.resizes:
            d.resize_stitch(sid, mbps)
        if d.store_open:
            d.store.save_allocation(result.samples, list(self.loop.view.overrides.values()),
                                    self.loop.config.history, {e.stitch_id for e in ends})
        d.metrics["allocation_steps"] += 1
        if d.qos is not None and [a for a in result.qos if d.qos.set_classes(a)]:
            result.changed = True
        if result.changed:
            d.dataplane_changed()
        return result


def read_counters(driver: object, devices: Sequence[str]) -> dict[str, int | str]:
    """tx bytes per device, or why not (the driver cannot count, the device is missing)."""
    if not isinstance(driver, CountingDriver):
        return dict.fromkeys(devices, f"driver {type(driver).__name__} has no counters")
    out: dict[str, int | str] = {}
    for dev in devices:
        try:
            out[dev] = driver.counters(dev).tx_bytes
        except DataplaneError as exc:
            out[dev] = str(exc)
    return out
