"""Predictive bandwidth allocation in the Route Manager daemon: measure, forecast, reserve.

Theory of operation
-------------------
Every stitch this RM terminates has a tunnel end here: a VXLAN port carrying an HTB class
(a :class:`~vnstitch.dataplane.objects.RateLimit`) that the protocol core puts in the
desired dataplane state with ``rate = ceil = `` the bandwidth it negotiated. With an
``allocation:`` config section, every ``interval_s`` the daemon

1. **measures**: reads the tx byte counter of each tunnel's VXLAN port (the bytes this
   end sent into the tunnel) through the driver (:class:`~vnstitch.dataplane.base.
   CountingDriver`) and turns the difference to the previous read into Mbit/s
   (:class:`RateSeries`; a counter that went backwards -- a recreated device -- is a new
   baseline, not a sample);
2. **forecasts** the next interval from that stitch's past samples only
   (:func:`forecast_next`: ``naive`` or ``ets`` from :mod:`vnstitch.forecast`, refitted
   on the kept window; the quantiles come from the empirical distribution of the model's
   own past one-step errors, which the forecaster computes itself);
3. **allocates** with the library's :class:`~vnstitch.allocate.allocator.Allocator`
   (newsvendor level of the VN's application class, whole ``unit_mbps`` steps, at least
   ``min_mbps``, hold and hysteresis from its scaling controller) and a
   :class:`~vnstitch.allocate.providers.linux.LinuxBandwidthProvider`. The ``available``
   capacity of the tunnel's link is the negotiated bandwidth, and the provider's link
   capacity is the same figure, so a plan above it is refused and the allocator reports
   a ``shortfall`` decision; the reservation stays at the negotiated bandwidth;
4. **grows** the stitch when the shortfall persists: :class:`~vnstitch.daemon.resizing.
   GrowPolicy` (only on stitches originated here, after ``grow_after`` intervals, with
   headroom, one request in flight, a hold-down after a refusal) puts a request in
   :attr:`StepResult.resizes` (and, if configured, a shrink when the demand stays far
   below it); the runner hands it to the core's in-place resize, and
   the outcome (:meth:`AllocationLoop.resize_outcome`) is logged as a decision. After a
   successful resize the core's RateLimit has the new negotiated bandwidth, so the next
   step plans against it.

*One writer.* The daemon's reconcile is the only thing that writes the kernel. The
provider does not get the real driver: it gets an :class:`OverrideView`, a driver whose
``observe()`` is the daemon's desired state (with current overrides) and whose
``apply()`` only records the new rate of a tunnel's HTB class as an *override*. The
daemon's ``desired_state()`` passes through :meth:`OverrideView.overlay`, which lays the
overrides over the core's objects (``rate`` = allocation, ``ceil`` = negotiated), and
then reconciles as usual. So the provider's idempotent plan/reconcile diff runs
against the same state the daemon reconciles, nothing reverts anything, and an override
whose tunnel is gone, or whose negotiated bandwidth changed, is ignored and pruned.

*Failure.* Bad counters (missing device, read error) and forecaster or allocator errors
become a ``keep`` decision naming the problem; the override (the last reservation) is
left as it was. Nothing here raises into the daemon.

*State.* Rate samples (bounded per stitch) and overrides are persisted by the daemon
(:mod:`vnstitch.daemon.state`), so a restart keeps both the history and the
reservation. Decisions are kept in a bounded deque for the control socket
(``show allocations``). This module reads no clock: ``now`` is an argument; only
:class:`AllocationRunner` (the thin asyncio driver) sleeps and calls the kernel.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from vnstitch.allocate.allocator import Allocator, Consumer, Decision, QuantileForecast
from vnstitch.allocate.policy import DEFAULT_CLASSES, DENSE_LEVELS, ScalingRules
from vnstitch.allocate.providers.base import ResourceKey, ResourceKind
from vnstitch.allocate.providers.linux import LinuxBandwidthProvider
from vnstitch.daemon.config import AllocationConfig
from vnstitch.daemon.resizing import GrowPolicy, needed_mbps
from vnstitch.dataplane.base import CountingDriver, DataplaneError
from vnstitch.dataplane.objects import DataplaneState, Op, OpKind, RateLimit, VxlanPort
from vnstitch.forecast.base import make_forecaster
from vnstitch.protocol.api import StitchResized

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon.allocation")

#: Fewer samples than this: no model is fitted, the last sample (or 0) is the forecast.
MIN_FIT_SAMPLES = 3


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


# -- measuring and forecasting ---------------------------------------------------------------


@dataclass(slots=True)
class RateSeries:
    """One stitch's measured rates (Mbit/s per interval) and its last counter read."""

    keep: int
    samples: deque[tuple[float, float]] = field(default_factory=deque)  # (t, Mbit/s)
    last: tuple[str, float, int] | None = None  # (device, t, tx bytes)

    def observe(self, device: str, now: float, tx_bytes: int) -> tuple[float | None, str]:
        """Add the rate since the previous read; returns (Mbit/s or None, note)."""
        prev, self.last = self.last, (device, now, tx_bytes)
        if prev is None or prev[0] != device:
            return None, "first counter read: baseline"
        dt, delta = now - prev[1], tx_bytes - prev[2]
        if dt <= 0:
            self.last = prev
            return None, f"no time passed since the last read ({dt:g} s)"
        if delta < 0:
            return None, f"counter went back ({prev[2]} -> {tx_bytes}): new baseline"
        mbps = delta * 8 / 1e6 / dt
        self.add(now, mbps)
        return mbps, f"{delta} bytes in {dt:.3g} s"

    def add(self, t: float, mbps: float) -> None:
        self.samples.append((t, mbps))
        while len(self.samples) > self.keep:
            self.samples.popleft()

    def values(self) -> list[float]:
        return [v for _, v in self.samples]


def forecast_next(history: Sequence[float], model: str,
                  levels: Sequence[float] = DENSE_LEVELS) -> QuantileForecast:
    """Quantiles of the next interval's rate from ``history`` (oldest first) only."""
    y = np.asarray(history, dtype=np.float64)
    lv = tuple(float(q) for q in levels)
    if y.size < MIN_FIT_SAMPLES:
        last = float(y[-1]) if y.size else 0.0
        return QuantileForecast(lv, np.full((len(lv), 1), last))
    fc = make_forecaster(model, 1).fit(y[:, None]).predict(1, quantiles=lv)
    values = np.array([[float(fc.quantiles[q][0, 0])] for q in lv])
    if not np.isfinite(values).all():
        raise ValueError(f"{model} forecast is not finite")
    return QuantileForecast(lv, values)


# -- the loop ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    end: TunnelEnd
    allocator: Allocator


@dataclass(slots=True)
class StepResult:
    samples: list[tuple[str, float, float]] = field(default_factory=list)  # (stitch, t, mbps)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False  # overrides changed: the daemon must reconcile
    resizes: list[tuple[str, float]] = field(default_factory=list)  # (stitch, Mbit/s) to ask


class AllocationLoop:
    """The pure part: one :meth:`step` per interval (see the module docstring)."""

    def __init__(self, config: AllocationConfig, base: Callable[[], DataplaneState]) -> None:
        self.config = config
        self.view = OverrideView(base)
        self.series: dict[str, RateSeries] = {}
        self._plans: dict[str, _Plan] = {}
        self.decisions: deque[dict[str, Any]] = deque(maxlen=config.decisions_kept)
        self.steps = 0
        self.grow = GrowPolicy(config)
        #: VXLAN device -> the protocol's stitch id, for ends originated here (set per step).
        self._origin_of: Mapping[str, str] = {}

    def overlay(self, state: DataplaneState) -> DataplaneState:
        return self.view.overlay(state)

    def restore(self, samples: Mapping[str, Sequence[tuple[float, float]]],
                overrides: Sequence[RateLimit]) -> None:
        for sid, rows in samples.items():
            s = self.series.setdefault(sid, RateSeries(self.config.history))
            for t, mbps in rows:
                s.add(t, mbps)
        for o in overrides:
            self.view.overrides[o.key] = o

    def _rules(self) -> ScalingRules:
        c = self.config
        return ScalingRules(unit=c.unit_mbps, min_units=max(1, math.ceil(c.min_mbps /
                                                                          c.unit_mbps - 1e-9)),
                            hold_steps=c.hold_steps)

    def _plan_for(self, end: TunnelEnd) -> _Plan:
        plan = self._plans.get(end.stitch_id)
        if plan is None or plan.end != end:  # new tunnel, or renegotiated: start afresh
            provider = LinuxBandwidthProvider(self.view, {end.device: (end.device, end.class_id)},
                                              {end.device: end.negotiated_mbps})
            app = DEFAULT_CLASSES[self.config.class_for(end.vnid)]
            consumer = Consumer(end.stitch_id, ResourceKind.BANDWIDTH, app, self._rules(),
                                path=(end.device,))
            plan = _Plan(end, Allocator([consumer], provider))
            self._plans[end.stitch_id] = plan
        return plan

    def step(self, now: float, ends: Sequence[TunnelEnd],
             tx_bytes: Mapping[str, int | str],
             origin_of: Mapping[str, str] | None = None) -> StepResult:
        """One interval: ``tx_bytes`` maps each end's device to its counter, or to the
        reason it could not be read; ``origin_of`` maps the devices of ends originated
        here to their stitch id (only those may be grown)."""
        self.steps += 1
        result = StepResult()
        self._origin_of = origin_of or {}
        self.grow.forget({self._grow_key(e) for e in ends})
        before = dict(self.view.overrides)
        live = {e.stitch_id for e in ends}
        for sid in [s for s in self._plans if s not in live]:
            del self._plans[sid]
        for sid in [s for s in self.series if s not in live]:
            del self.series[sid]
        self.view.prune({e.rate_key for e in ends})
        for end in ends:
            self._step_one(now, end, tx_bytes.get(end.device, "no counter read"), result)
        result.changed = self.view.overrides != before
        self.decisions.extend(result.decisions)
        return result

    def _row(self, now: float, end: TunnelEnd, measured: float | None, action: str,
             reason: str, **extra: Any) -> dict[str, Any]:
        return {"now": round(now, 3), "stitch_id": end.stitch_id, "device": end.device,
                "vnid": end.vnid, "class": self.config.class_for(end.vnid),
                "measured_mbps": None if measured is None else round(measured, 3),
                "forecast_mbps": None, "quantile": None,
                "available_mbps": end.negotiated_mbps, "reserved_mbps": self.reserved(end),
                "action": action, "reason": reason, **extra}

    def reserved(self, end: TunnelEnd) -> float:
        o = self.view.overrides.get(end.rate_key)
        return o.rate_mbps if o is not None and o.ceil_mbps == end.negotiated_mbps \
            else end.negotiated_mbps

    def _step_one(self, now: float, end: TunnelEnd, counter: int | str,
                  result: StepResult) -> None:
        series = self.series.setdefault(end.stitch_id, RateSeries(self.config.history))
        if isinstance(counter, str):
            result.decisions.append(self._row(now, end, None, "keep",
                                              f"counter read failed: {counter}; keeping the "
                                              "last reservation"))
            return
        mbps, note = series.observe(end.device, now, counter)
        if mbps is not None:
            result.samples.append((end.stitch_id, now, mbps))
        plan = self._plan_for(end)
        try:
            fc = forecast_next(series.values(), self.config.forecaster)
            report = plan.allocator.step(now, {end.stitch_id: fc},
                                         {ResourceKey(ResourceKind.BANDWIDTH, end.device):
                                          end.negotiated_mbps})
        except Exception as exc:  # a model or allocator failure must not stop the daemon
            log.warning("allocation for %s: %s", end.stitch_id, exc)
            result.decisions.append(self._row(now, end, mbps, "keep",
                                              f"{type(exc).__name__}: {exc}; keeping the "
                                              "last reservation"))
            return
        finally:  # the library logs every decision; ours are kept (bounded) below
            plan.allocator.log.clear()
            plan.allocator.provider.log.clear()
        shortfall = bool(report.shortfalls)
        needed = needed_mbps(max((s.needed for s in report.shortfalls), default=None), mbps,
                             end.negotiated_mbps)
        ask, why = self.grow.consider(now, self._grow_key(end), end.negotiated_mbps, needed,
                                      originated=end.device in self._origin_of,
                                      reserved=report.amounts.get(end.stitch_id))
        for d in report.decisions:
            result.decisions.append(self._decision(now, end, (mbps, note), d, shortfall,
                                                   grow=why))
        if ask is not None:
            result.resizes.append((self._grow_key(end), ask))
            result.decisions.append(self._row(now, end, mbps, "resize-requested", why,
                                              new_mbps=ask))

    def _grow_key(self, end: TunnelEnd) -> str:
        return self._origin_of.get(end.device, end.stitch_id)

    def resize_outcome(self, ev: StitchResized) -> None:
        """Log the outcome of a resize this loop asked for (ignored otherwise)."""
        row = self.grow.outcome(ev)
        if row is not None:
            self.decisions.append(row)

    def _decision(self, now: float, end: TunnelEnd, measured: tuple[float | None, str],
                  d: Decision, shortfall: bool, *, grow: str) -> dict[str, Any]:
        mbps, note = measured
        reason = d.reason
        if d.action == "shortfall":
            reason += (f"; the forecast exceeds the negotiated {end.negotiated_mbps:g} "
                       f"Mbit/s ({grow or 'an in-place resize is requested'})")
        elif d.quantile is not None:
            reason = f"measured: {note}; {reason}"
        return self._row(now, end, mbps, d.action, reason, subject=d.subject,
                         forecast_mbps=round(d.forecast, 6), quantile=d.quantile,
                         available_mbps=d.available if d.available is not None
                         else end.negotiated_mbps, amount_mbps=d.amount, shortfall=shortfall)

    def summary(self) -> list[dict[str, Any]]:
        """Per live stitch: its latest samples and current reservation."""
        out = []
        for plan in self._plans.values():
            end = plan.end
            s = self.series.get(end.stitch_id)
            out.append({"stitch_id": end.stitch_id, "device": end.device,
                        "class": self.config.class_for(end.vnid),
                        "negotiated_mbps": end.negotiated_mbps,
                        "reserved_mbps": self.reserved(end),
                        "samples": len(s.samples) if s else 0,
                        "last_mbps": s.samples[-1][1] if s and s.samples else None})
        return out


# -- the thin asyncio driver ---------------------------------------------------------------


class AllocationRunner:
    """Runs :class:`AllocationLoop` every ``interval_s`` inside a daemon."""

    def __init__(self, daemon: RouteManagerDaemon, config: AllocationConfig) -> None:
        self.daemon = daemon
        self.loop = AllocationLoop(config, daemon.base_desired_state)
        self._task: asyncio.Task[None] | None = None

    def restore(self) -> None:
        store = self.daemon.store
        self.loop.restore(store.allocation_samples(), store.allocation_overrides())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.loop.config.interval_s)
            try:
                await self.tick()
            except Exception:  # never let the loop die: log and try next interval
                log.exception("allocation tick failed")
                self.daemon.metrics["allocation_errors"] += 1

    async def tick(self) -> StepResult:
        d = self.daemon
        live = getattr(d.core, "tunnels", {})
        stitch_of = {t.vxlan_name: t.stitch_id for t in live.values()
                     if hasattr(t, "vxlan_name")}
        ends = tunnel_ends(d.core_desired, stitch_of)
        devices = [e.device for e in ends]
        if d.offloads_dataplane:
            counters = await asyncio.to_thread(read_counters, d.driver, devices)
        else:
            counters = read_counters(d.driver, devices)
        origin_of = {t.vxlan_name: t.stitch_id for t in live.values()
                     if getattr(t, "origin", False) and hasattr(t, "vxlan_name")}
        result = self.loop.step(d.now(), ends, counters, origin_of)
        for sid, mbps in result.resizes:
            d.resize_stitch(sid, mbps)
        if d.store_open:
            d.store.save_allocation(result.samples, list(self.loop.view.overrides.values()),
                                    self.loop.config.history, {e.stitch_id for e in ends})
        d.metrics["allocation_steps"] += 1
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
