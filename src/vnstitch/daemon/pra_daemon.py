"""The live PRA inside the Route Manager daemon: what the daemon feeds the core.

Theory of operation: with a ``pra:`` config section (:mod:`vnstitch.daemon.pra_config`)
the daemon runs :class:`DaemonPra`. It builds the PRA core
(:class:`~vnstitch.control.pra.PraController`) over the providers routed by kind --
bandwidth: a :class:`~vnstitch.control.controller.ReservationBook` capped at each
stitch end's negotiated bandwidth; compute and storage: the live providers
(:mod:`vnstitch.allocate.providers.live`: cgroup instances running the VN's workload
command in its namespace, loop-mounted volumes) -- and drives it with
:class:`~vnstitch.daemon.pralive.PraRuntime` (steps in a worker thread, fits in worker
processes). Each interval, on the event loop, it reads the stitch table from the
protocol core: a :class:`~vnstitch.control.pra_bandwidth.StitchWatch` turns it into stitching
events (a new or renegotiated stitch restarts its bandwidth consumer from the cold
start; counts and path changes become regressors of the VN's consumers). Then, in the
worker thread, it measures: a stitch end's tx byte counter as a rate, a VN's CPU time
in its instances' cgroups as cores, its volume's used MiB. User-behaviour feeds
(``routemgr feed``) go to the core and into the state database (``meta`` rows
``pra_feed:<vnid>``), and are given back to the core after a restart.

Bandwidth is applied: after each step, on the loop, what the book holds for a stitch end
and the plan above it become the controller's actions
(:class:`~vnstitch.control.pra_bandwidth.PraBandwidthActions`: a ``Reserve``, and a
``ResizeStitch`` under the controller's grow rules -- the ``allocation:`` section's
when there is one), applied by the allocation loop's own
:func:`~vnstitch.daemon.allocation.apply_bandwidth_actions` into the daemon's one
:class:`~vnstitch.daemon.allocation.OverrideView`; the reconcile writes the HTB rate.
The ends of a VN with ``bandwidth`` under ``pra.vns`` are the PRA's alone: the
allocation loop leaves them out (:attr:`DaemonPra.bandwidth_vnids`).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vnstitch.allocate.policy import DEFAULT_CLASSES, ApplicationClass, ScalingRules
from vnstitch.allocate.providers.base import Provider, ResourceKey, ResourceKind
from vnstitch.allocate.providers.bykind import ProvidersByKind
from vnstitch.allocate.providers.compute import ComputeProvider
from vnstitch.allocate.providers.live import build_live_providers
from vnstitch.allocate.providers.storage import StorageProvider
from vnstitch.control.controller import RateSeries, ReservationBook
from vnstitch.control.model import GrowRules
from vnstitch.control.pra import (
    PraConsumer,
    PraController,
    PraPolicy,
    PraStep,
    application_profiles,
)
from vnstitch.control.pra_bandwidth import BandwidthEnd, PraBandwidthActions, StitchWatch
from vnstitch.daemon.allocation import (
    TunnelEnd,
    apply_bandwidth_actions,
    grow_rules,
    read_counters,
    tunnel_ends,
)
from vnstitch.daemon.errors import ControlError
from vnstitch.daemon.pra_config import PraConfig, PraVnConfig
from vnstitch.daemon.pralive import LSTM_MODULES, FitPool, PraRuntime

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon
    from vnstitch.protocol.api import StitchResized

FEED_KEY = "pra_feed:"
MAX_FEED_ROWS = 20_000


class DaemonPra:
    """See the module docstring."""

    def __init__(self, daemon: RouteManagerDaemon, config: PraConfig) -> None:
        self.daemon = daemon
        self.config = config
        self.book = ReservationBook()
        self.compute: ComputeProvider | None = None
        self.storage: StorageProvider | None = None
        self.runtime: PraRuntime | None = None
        self._pool: FitPool | None = None
        self._watch = StitchWatch()
        self._rates: dict[str, RateSeries] = {}
        self._ends: dict[str, tuple[str, int]] = {}  # consumer -> (device, vnid)
        self._cpu_last: dict[str, tuple[float, float]] = {}  # location -> (t, cpu s)
        self._vns = {v.vnid: v for v in config.vns}
        self._profiles = application_profiles()
        alloc = daemon.config.allocation
        self.bandwidth = PraBandwidthActions(grow_rules(alloc) if alloc is not None
                                             else GrowRules())
        self._rate_now: dict[str, float] = {}  # bandwidth consumer -> Mbit/s measured
        self._override_keys: set[str] = set()  # the HTB rate overrides the PRA wrote

    @property
    def bandwidth_vnids(self) -> frozenset[int]:
        """The VNs whose stitch ends' bandwidth the PRA sizes (the allocation loop not)."""
        return frozenset(v.vnid for v in self.config.vns if "bandwidth" in v.kinds)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.config
        routes: dict[ResourceKind, Provider] = {ResourceKind.BANDWIDTH: self.book}
        router: Provider = ProvidersByKind(routes)
        if cfg.providers is not None:
            router, self.compute, self.storage = build_live_providers(cfg.providers, routes)
        policy = PraPolicy(cfg.interval_s, cfg.season, cfg.refit_every, cfg.min_fit,
                           cfg.blend_steps, cfg.fit_timeout_s)
        ctl = PraController(policy, router)
        for vn in cfg.vns:
            self._add_vn_consumers(ctl, vn)
        if self.daemon.store_open:
            for key, text in self.daemon.store.meta_with_prefix(FEED_KEY).items():
                rows = [(float(t), float(v)) for t, v in json.loads(text)]
                ctl.feed(int(key[len(FEED_KEY):]), rows)
        self._pool = FitPool(cfg.fit_workers, cpus=cfg.fit_cpus)
        # The workers start now, not at the first fit: an LSTM's first fit would
        # otherwise wait for the spawn and torch's import (tens of seconds, niced).
        lstm = any(k.model == "lstm" for vn in cfg.vns for k in vn.kinds.values())
        self._pool.warm(LSTM_MODULES if lstm else ())
        self.runtime = PraRuntime(ctl, self._pool, measure=self._measure,
                                  clock=self.daemon.now, decisions_kept=cfg.decisions_kept,
                                  prepare=self._prepare, apply=self._apply)
        self.runtime.start()

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
        if self._pool is not None:
            await asyncio.to_thread(self._pool.close)
        for p in (self.compute, self.storage):
            if p is not None:
                await asyncio.to_thread(p.close)

    def _add_vn_consumers(self, ctl: PraController, vn: PraVnConfig) -> None:
        app = DEFAULT_CLASSES[vn.app_class]
        prof = self._profiles[vn.profile]
        loc = f"vn{vn.vnid}"
        comp = vn.kinds.get("compute")
        if comp is not None and self.compute is not None and \
                self.compute.limit(ResourceKey(ResourceKind.COMPUTE, loc)) > 0:
            cores = self.config.providers.workloads[loc].cpu_quota_cores \
                if self.config.providers else 1.0
            ctl.add(PraConsumer(f"{loc}/compute", ResourceKind.COMPUTE, vn.vnid, loc,
                                ApplicationClass(app.name, app.c_under, app.c_over,
                                                 1.0 / cores),
                                prof, ScalingRules(1.0, min_units=1), model=comp.model,
                                options=comp.options, prior_level=comp.prior))
        stor = vn.kinds.get("storage")
        if stor is not None and self.storage is not None and loc in self.storage.quotas:
            ctl.add(PraConsumer(f"{loc}/storage", ResourceKind.STORAGE, vn.vnid, loc,
                                ApplicationClass("volume", 1000.0, 1.0, 1.0 / 1024), prof,
                                ScalingRules(1.0, min_units=1, allow_scale_in=False),
                                model=stor.model, options=stor.options,
                                prior_level=stor.prior, cumulative=True))

    # -- each interval -------------------------------------------------------------------
    def _prepare(self, ctl: PraController, now: float) -> None:
        """On the loop: the stitch table -> stitching events and bandwidth consumers."""
        live = self.daemon.core.tunnel_views()
        table = {t.stitch_id: (int(t.vnid), tuple(str(p) for p in t.path)) for t in live}
        by_sid = {t.stitch_id: t for t in live}
        for vnid, sid, kind in self._watch.diff(table):
            vn = self._vns.get(vnid)
            cid = f"{sid}/bandwidth"
            if kind.value == "released":
                ctl.remove(cid)
                self._ends.pop(cid, None)
            elif vn is not None and "bandwidth" in vn.kinds:
                bw = vn.kinds["bandwidth"]
                t = by_sid[sid]
                if kind.value == "new":
                    ctl.add(PraConsumer(cid, ResourceKind.BANDWIDTH, vnid, t.vxlan_device,
                                        DEFAULT_CLASSES[vn.app_class],
                                        self._profiles[vn.profile],
                                        ScalingRules(1.0, min_units=1), model=bw.model,
                                        options=bw.options,
                                        prior_level=bw.prior or t.bandwidth_mbps))
                self._ends[cid] = (t.vxlan_device, vnid)
            rec = ctl.stitch_event(now, vnid, sid, kind,
                                   cid if cid in ctl.consumers() else None)
            if rec is not None and self.runtime is not None:
                self.runtime.keep([rec])
        for t in live:
            self.book.capacity[t.vxlan_device] = t.bandwidth_mbps

    def _measure(self, now: float) -> dict[str, float]:
        """In the worker thread: every consumer's value this interval."""
        out: dict[str, float] = {}
        self._rate_now = {}
        devices = {dev: cid for cid, (dev, _) in self._ends.items()}
        counters = read_counters(self.daemon.driver, list(devices))
        for dev, value in counters.items():
            if isinstance(value, str):
                continue
            rate, _ = self._rates.setdefault(dev, RateSeries()).observe(dev, now, value)
            if rate is not None:
                out[devices[dev]] = self._rate_now[devices[dev]] = rate
        for vn in self.config.vns:
            loc = f"vn{vn.vnid}"
            if self.compute is not None:
                key = ResourceKey(ResourceKind.COMPUTE, loc)
                if self.compute.instances(key):
                    cpu = self.compute.usage(key, now).cpu_seconds
                    prev = self._cpu_last.get(loc)
                    self._cpu_last[loc] = (now, cpu)
                    if prev is not None and now > prev[0] and cpu >= prev[1]:
                        out[f"{loc}/compute"] = (cpu - prev[1]) / (now - prev[0])
            if self.storage is not None and loc in self.storage.quotas:
                out[f"{loc}/storage"] = self.storage.used(
                    ResourceKey(ResourceKind.STORAGE, loc), now)
        return out

    def _apply(self, out: PraStep, now: float) -> None:
        """On the loop, after a step: the bandwidth actions into the dataplane."""
        d, view = self.daemon, self.daemon.rate_overrides
        if view is None:
            return
        live = {t.vxlan_device: t for t in d.core.tunnel_views()}
        by_device = {e.device: e for e in tunnel_ends(
            d.core_desired, {dev: t.stitch_id for dev, t in live.items()})}
        mine: dict[str, TunnelEnd] = {}
        ends: list[BandwidthEnd] = []
        for cid, (dev, _) in self._ends.items():
            end, t = by_device.get(dev), live.get(dev)
            if end is None or t is None:
                continue
            mine[cid] = end
            ends.append(BandwidthEnd(cid, t.stitch_id, dev, end.negotiated_mbps,
                                     bool(t.origin)))
        booked = {cid: self.book.committed(ResourceKey(ResourceKind.BANDWIDTH, e.device), now)
                  for cid, e in mine.items()}
        acts = self.bandwidth.step(now, ends, out.amounts, booked, self._rate_now)
        before = dict(view.overrides)
        keys = {e.rate_key for e in mine.values()}
        for key in self._override_keys - keys:  # its stitch is gone
            view.overrides.pop(key, None)
        self._override_keys = keys
        resizes = apply_bandwidth_actions(view, mine, acts.actions)
        if self.runtime is not None:
            self.runtime.keep(acts.records)
        for sid, mbps in resizes:
            d.resize_stitch(sid, mbps)
        if view.overrides != before:
            d.dataplane_changed()

    def resize_outcome(self, ev: StitchResized) -> None:
        """A resize's outcome: the grow policy's hold-down, a decision row."""
        row = self.bandwidth.resize_outcome(ev)
        if row is not None and self.runtime is not None:
            self.runtime.decisions.append({**row, "consumer": f"{ev.stitch_id}/bandwidth"})

    # -- requests ------------------------------------------------------------------------
    async def feed(self, vnid: int, rows: list[tuple[float, float]]) -> dict[str, Any]:
        if self.runtime is None:
            raise ControlError("feed: the PRA is not running")
        kept = await self.runtime.feed(vnid, rows)
        if self.daemon.store_open:
            key = f"{FEED_KEY}{vnid}"
            old = json.loads(self.daemon.store.meta_with_prefix(key).get(key, "[]"))
            merged = dict((float(t), float(v)) for t, v in [*old, *rows])
            keep = sorted(merged.items())[-MAX_FEED_ROWS:]
            self.daemon.store.put_meta(key, json.dumps(keep))
        return {"vnid": vnid, "rows": kept}

    def allocations(self) -> list[dict[str, Any]]:
        return [] if self.runtime is None else self.runtime.allocations()


def feed_rows(req: Mapping[str, Any]) -> tuple[int, list[tuple[float, float]]]:
    """Check a ``feed`` request body: ``{"vnid": N, "rows": [[t, users], ...]}``."""
    vnid = req.get("vnid")
    if not isinstance(vnid, int) or isinstance(vnid, bool) or vnid < 0:
        raise ControlError(f"feed: vnid must be an integer >= 0, got {vnid!r}")
    rows = req.get("rows")
    if not isinstance(rows, list) or not rows or len(rows) > MAX_FEED_ROWS:
        raise ControlError(f"feed: rows must be a list of 1..{MAX_FEED_ROWS} [time, users] "
                           "pairs")
    out = []
    for i, r in enumerate(rows):
        ok = isinstance(r, list) and len(r) == 2 and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in r) and r[1] >= 0
        if not ok:
            raise ControlError(f"feed: rows[{i}]: expected [unix time, users >= 0], "
                               f"got {r!r}")
        out.append((float(r[0]), float(r[1])))
    return vnid, out
