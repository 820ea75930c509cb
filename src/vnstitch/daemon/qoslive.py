"""QoS classes and stitching-priority bands, live in the Route Manager daemon.

Theory of operation
-------------------
The daemon's reconcile stays the only writer of the kernel. :class:`QosLive` is one more
layer of ``RouteManagerDaemon.desired_state()`` (after the allocation loop's overrides):
given the state the core, the config and the allocation loop want, :meth:`QosLive.overlay`
returns it with, from the ``qos:`` section (:mod:`vnstitch.daemon.qosconfig`),

1. **stitching priority**: every route the core put on a VN's bridge (a stitched
   prefix) carries the kernel metric of that VN's priority band
   (:meth:`~vnstitch.daemon.qosconfig.QosConfig.route_metric`, one table:
   :class:`vnstitch.routing.table.StitchPriorities`), below the substrate's own routes
   (OSPF at 20) to the same prefix, so the kernel sends stitched traffic into the stitch;
2. **tunnel ends** (``tunnels: true``): the stitch's one HTB class on its VXLAN port
   (``rate`` = reservation, ``ceil`` = negotiated bandwidth) becomes the policy's classes,
   guaranteed rates scaled to the reservation and maxima to the negotiated bandwidth
   (:func:`vnstitch.routing.qos.scaled_tc`), with the policy's u32 filters (DSCP, ports);
   the stitch as a whole is still capped at its bandwidth (the HTB parent);
3. **substrate egress interfaces** this RM owns: the policy's classes scaled to the
   interface's capacity -- or the rates of the controller's last
   :class:`~vnstitch.control.SetQosClasses` for that device (:meth:`QosLive.set_classes`)
   -- plus one filter per tunnel whose VN has a class: WireGuard hides the inner DSCP,
   so stitched traffic is matched by its UDP source port (the tunnel's WireGuard listen
   port) and put in its VN's class.

Reading back (``show qos``, ``show routes``): :func:`live_view` joins the desired classes
with the kernel's per-class counters (bytes, packets, drops; a
:class:`~vnstitch.dataplane.qos.ClassCountingDriver`) and the stitched routes with what
the kernel holds for the same prefix (:func:`~vnstitch.dataplane.qos.route_metrics`:
the stitched and the substrate metric and the device the kernel picks). Kernel reads run
in a worker thread. The overlay is pure; only :func:`live_view` does I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vnstitch.daemon.qosconfig import QosConfig
from vnstitch.dataplane.base import DataplaneError
from vnstitch.dataplane.objects import (
    DataplaneObject,
    DataplaneState,
    RateLimit,
    Route,
    U32Filter,
    VxlanPort,
    WireguardInterface,
)
from vnstitch.dataplane.qos import ClassCountingDriver, route_metrics
from vnstitch.model.ids import VNID
from vnstitch.protocol.tunnels import bridge_name
from vnstitch.routing.qos import port_handle, scaled_tc
from vnstitch.routing.table import MAX_PRIORITY

if TYPE_CHECKING:
    from vnstitch.control.model import SetQosClasses  # the package loads numpy
    from vnstitch.daemon.runtime import RouteManagerDaemon

#: ``show`` views that read the kernel (served by :func:`live_view`).
LIVE_VIEWS = ("qos", "routes")


class QosLive:
    """The ``qos:`` section applied as a desired-state overlay (module docstring)."""

    def __init__(self, config: QosConfig) -> None:
        self.config = config
        #: device -> (class name, rate, ceil) from the controller's SetQosClasses
        self.link_classes: dict[str, tuple[tuple[str, float, float], ...]] = {}

    def set_classes(self, action: SetQosClasses) -> bool:
        """Take the controller's classes for an owned interface; True if they changed
        (the daemon must reconcile). Other devices are not this RM's to shape: ignored."""
        if action.device not in self.config.devices:
            return False
        known = {c.name for c in self.config.policy.classes}
        classes = tuple(c for c in action.classes if c[0] in known)
        if self.link_classes.get(action.device) == classes:
            return False
        self.link_classes[action.device] = classes
        return True

    def overlay(self, state: DataplaneState) -> DataplaneState:
        add: list[DataplaneObject] = []
        remove: list[str] = []
        vxlans = {o.name: o for o in state if isinstance(o, VxlanPort)}
        bridges = {bridge_name(VNID(v.vni)): v.vni for v in vxlans.values()}
        for o in state:
            if isinstance(o, Route) and o.device in bridges:
                metric = self.config.route_metric(bridges[o.device])
                if metric != o.metric:
                    remove.append(o.key)
                    add.append(replace(o, metric=metric))
        if self.config.tunnels:
            for dev in vxlans:
                classes = [o for o in state if isinstance(o, RateLimit) and o.device == dev]
                if len(classes) != 1 or any(isinstance(o, U32Filter) and o.device == dev
                                            for o in state):
                    continue  # not a plain tunnel end (already classed by someone else)
                one = classes[0]
                limits, filters = scaled_tc(self.config.policy, dev, one.rate_mbps,
                                            one.ceil_mbps, borrow=self.config.borrow)
                remove.append(one.key)
                add += [*limits, *filters]
        stitched = self._stitched_matches(state, vxlans)
        for iface in self.config.interfaces:
            add += self._interface_objects(iface.device, iface.capacity_mbps, stitched)
        return state.with_objects(add=add, remove=remove)

    def _stitched_matches(self, state: DataplaneState, vxlans: dict[str, VxlanPort]
                          ) -> list[tuple[str, tuple[str, ...], int]]:
        """(class, u32 matches, handle) for the WireGuard packets of every tunnel whose VN
        has a class: UDP from the tunnel's listen port, under that port's own handle."""
        vn_of_wg = {v.underlay: v.vni for v in vxlans.values()}
        out: list[tuple[str, tuple[str, ...], int]] = []
        for o in sorted((o for o in state if isinstance(o, WireguardInterface)),
                        key=lambda o: o.name):
            cls = self.config.vn_class(vn_of_wg[o.name]) if o.name in vn_of_wg else None
            if cls is not None:
                out.append((cls, ("ip protocol 17 0xff", f"ip sport {o.listen_port} 0xffff"),
                            port_handle(o.listen_port)))
        return out

    def _interface_objects(self, device: str, capacity: float,
                           stitched: Sequence[tuple[str, tuple[str, ...], int]]
                           ) -> list[DataplaneObject]:
        limits, filters = scaled_tc(self.config.policy, device, capacity, capacity,
                                    borrow=self.config.borrow, extra=stitched)
        chosen = {name: (rate, ceil) for name, rate, ceil in self.link_classes.get(device, ())}
        out: list[DataplaneObject] = []
        for leaf in limits:
            name = self.class_name(leaf.class_id)
            if name in chosen:
                rate, ceil = chosen[name]
                leaf = replace(leaf, rate_mbps=min(rate, ceil), ceil_mbps=ceil)  # noqa: PLW2901
            out.append(leaf)
        return [*out, *filters]

    def class_name(self, class_id: int) -> str | None:
        """The policy class an HTB class id of :func:`~vnstitch.routing.qos.scaled_tc`
        stands for (ids 10, 20, ... in priority order)."""
        i, rem = divmod(class_id, 10)
        classes = self.config.policy.classes
        return classes[i - 1].name if rem == 0 and 1 <= i <= len(classes) else None


# -- views ------------------------------------------------------------------------------


def qos_rows(daemon: RouteManagerDaemon) -> list[dict[str, Any]]:
    """The HTB classes of the desired state, one row each, named by their QoS class and,
    on a tunnel end's VXLAN port, by its stitch -- both read from the core at the same
    moment, so a scrape's per-stitch sums never pair one moment's devices with another
    moment's tunnels."""
    live = daemon.qos
    stitch_of = {t.vxlan_device: t.stitch_id for t in daemon.core.tunnel_views()}
    return [{"device": o.device, "class_id": o.class_id,
             "class": live.class_name(o.class_id) if live is not None else None,
             "stitch_id": stitch_of.get(o.device),
             "rate_mbps": o.rate_mbps, "ceil_mbps": o.ceil_mbps, "prio": o.prio}
            for o in sorted((o for o in daemon.desired_state() if isinstance(o, RateLimit)),
                            key=lambda o: (o.device, o.class_id))]


def route_rows(daemon: RouteManagerDaemon) -> list[dict[str, Any]]:
    """Learned remote routes, then one row per stitched prefix route in the desired state
    with its priority band (``where: stitched``)."""
    rows: list[dict[str, Any]] = [
        {"vnid": int(r.vnid), "where": "remote", "via": list(r.path),
         "components": list(r.components)}
        for r in daemon.core.route_views() if r.via is not None]
    paths = {int(t.vnid): [str(p) for p in t.path] for t in daemon.core.tunnel_views()}
    state = daemon.desired_state()
    vnid_of = {bridge_name(VNID(v.vni)): v.vni for v in state if isinstance(v, VxlanPort)}
    for o in sorted((o for o in state if isinstance(o, Route)), key=lambda o: o.key):
        vn = vnid_of.get(o.device)
        rows.append({"vnid": vn, "where": "stitched",
                     "via": paths.get(vn, []) if vn is not None else [],
                     "prefix": o.destination, "device": o.device, "metric": o.metric,
                     # the band's priority (metric = MAX_PRIORITY - p); 0: ordinary band
                     "priority": MAX_PRIORITY - o.metric if o.metric < MAX_PRIORITY else 0})
    return rows


def _read_classes(driver: ClassCountingDriver, devices: Sequence[str]
                  ) -> tuple[dict[tuple[str, int], dict[str, Any]], dict[str, str]]:
    """Counters per (device, class id), and why a device could not be read."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for dev in devices:
        try:
            for s in driver.class_stats(dev):
                out[(dev, s.class_id)] = {"bytes": s.bytes, "packets": s.packets,
                                          "drops": s.drops}
        except DataplaneError as exc:
            errors[dev] = str(exc)
    return out, errors


def _read_routes(netns: str | None, prefixes: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for p in prefixes:
        try:
            got = route_metrics(netns, p)
        except DataplaneError as exc:
            out[p] = {"kernel_error": str(exc)}
            continue
        out[p] = {"kernel_metric": got.stitched_metric,
                  "substrate_metric": got.substrate_metric,
                  "chosen_device": got.chosen_device}
    return out


async def live_view(daemon: RouteManagerDaemon, what: str) -> list[dict[str, Any]]:
    """``show qos`` / ``show routes`` with what the kernel reports (module docstring);
    kernel fields are None where the driver cannot read them (the memory driver)."""
    offload = daemon.offloads_dataplane
    if what == "qos":
        rows = qos_rows(daemon)
        driver = daemon.driver
        stats: dict[tuple[str, int], dict[str, Any]] = {}
        errors: dict[str, str] = {}
        if isinstance(driver, ClassCountingDriver):
            devices = sorted({str(r["device"]) for r in rows})
            stats, errors = (await asyncio.to_thread(_read_classes, driver, devices)
                             if offload else _read_classes(driver, devices))
        for r in rows:
            seen = stats.get((r["device"], r["class_id"]))
            r.update({"bytes": None, "packets": None, "drops": None} if seen is None else seen)
            if r["device"] in errors:
                r["error"] = errors[r["device"]]
        return rows
    rows = route_rows(daemon)
    if offload:
        prefixes = sorted({str(r["prefix"]) for r in rows if r["where"] == "stitched"})
        kernel = await asyncio.to_thread(_read_routes, daemon.config.dataplane.netns, prefixes)
    else:
        kernel = {}
    for r in rows:
        if r["where"] == "stitched":
            r.update(kernel.get(str(r["prefix"]), {"kernel_metric": None,
                                                   "substrate_metric": None,
                                                   "chosen_device": None}))
    return rows
