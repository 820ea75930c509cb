"""The daemon's ``qos:`` config section: QoS classes live and stitching-priority bands.

Theory of operation: the section is the simulator's QoS policy (the format of
:mod:`vnstitch.routing.qos`, validated by its own parser, plus ``borrow`` as in a
scenario) with three more fields that say *where* the Route Manager applies it:

* ``tunnels`` (default true): on each tunnel end's egress (the stitch's VXLAN port),
  the policy's classes scaled to the stitch's bandwidth replace the stitch's single HTB
  class; DSCP and port matches see the VN's own packets there;
* ``interfaces``: the substrate egress interfaces this Route Manager owns, each with its
  capacity (the policy's rates are scaled from ``link_mbps`` to it). The RM owns their
  root qdisc; stitched (WireGuard) traffic is matched there by its UDP source port and
  classed by its VN (an application matching ``vnid`` only names the VN's class);
* ``stitching_priority``: the priority (1..15) of the routes stitched connections use,
  per VN (``vnids``) or QoS class (``classes``; a VN's class is the one an application
  matching only its ``vnid`` names), else ``default``; :mod:`vnstitch.routing.table`
  maps a priority to a kernel metric band below the substrate's own routes.

Example::

    qos:
      link_mbps: 100
      borrow: priority
      classes:
        - {name: video, priority: 0, guaranteed_mbps: 60, max_mbps: 100}
        - {name: email, priority: 3, guaranteed_mbps: 5, max_mbps: 100}
      applications:
        - {name: tv, class: video, dscp: [34]}
        - {name: vn100, class: video, vnid: 100}
      tunnels: true
      interfaces: [{device: a-t, capacity_mbps: 50}]
      stitching_priority: {default: 10, vnids: {100: 12}, classes: {video: 14}}

:func:`parse_qos` takes the plain value (as YAML gives it) and a ``fail(path, problem)``
that turns a problem at a dotted field path into the config layer's positioned error
(``FILE:LINE:COL: qos.classes[1].max_mbps: ...``), so it fits whichever reader the
config file uses. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vnstitch.routing.errors import PolicyError, RoutingError
from vnstitch.routing.htb import BORROW_MODES, BorrowMode
from vnstitch.routing.qos import QosPolicy, parse_policy
from vnstitch.routing.table import MAX_PRIORITY, STITCHED, StitchPriorities

Fail = Callable[[str, str], Exception]
_OWN = {"borrow", "tunnels", "interfaces", "stitching_priority"}
_IFNAMSIZ = 15


@dataclass(frozen=True, slots=True)
class QosInterface:
    """A substrate egress interface this RM owns, and its capacity (Mbit/s)."""

    device: str
    capacity_mbps: float


@dataclass(frozen=True, slots=True)
class QosConfig:
    policy: QosPolicy
    borrow: BorrowMode = "priority"
    tunnels: bool = True
    interfaces: tuple[QosInterface, ...] = ()
    priorities: StitchPriorities = field(default_factory=StitchPriorities)

    def vn_class(self, vnid: int) -> str | None:
        """The QoS class of VN ``vnid``: the class of the first application that matches
        the VN alone (no ports, no DSCP), else None."""
        for app in self.policy.applications:
            if app.vnid == vnid and not app.ports and not app.dscp:
                return app.qos_class
        return None

    def route_metric(self, vnid: int) -> int:
        """Kernel metric of the routes stitched connections of VN ``vnid`` use."""
        return self.priorities.metric(vnid, self.vn_class(vnid))

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(i.device for i in self.interfaces)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _priority(value: Any, path: str, fail: Fail) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PRIORITY:
        raise fail(path, f"must be an integer in 1..{MAX_PRIORITY}, got {_kind(value)} "
                         f"{value!r}")
    return value


def _priorities(data: Any, classes: set[str], fail: Fail) -> StitchPriorities:
    p = "qos.stitching_priority"
    if data is None:
        return StitchPriorities()
    if not isinstance(data, Mapping):
        raise fail(p, f"must be a mapping, got {_kind(data)}")
    for key in sorted(set(data) - {"default", "vnids", "classes"}):
        raise fail(f"{p}.{key}", "unknown field (expected one of: classes, default, vnids)")
    default = _priority(data.get("default", STITCHED), f"{p}.default", fail)
    by_vnid: dict[int, int] = {}
    raw_vnids = data.get("vnids") or {}
    if not isinstance(raw_vnids, Mapping):
        raise fail(f"{p}.vnids", f"must be a mapping VNID -> priority, got {_kind(raw_vnids)}")
    for key, value in raw_vnids.items():
        text = str(key)
        if not text.isdigit() or int(text) >= 1 << 24:
            raise fail(f"{p}.vnids.{key}", f"VNID must be an integer below 2^24, got {key!r}")
        by_vnid[int(text)] = _priority(value, f"{p}.vnids.{key}", fail)
    by_class: dict[str, int] = {}
    raw_classes = data.get("classes") or {}
    if not isinstance(raw_classes, Mapping):
        raise fail(f"{p}.classes", f"must be a mapping class -> priority, got "
                                   f"{_kind(raw_classes)}")
    for key, value in raw_classes.items():
        if str(key) not in classes:
            raise fail(f"{p}.classes.{key}", f"unknown QoS class {key!r} (one of "
                                             f"{', '.join(sorted(classes))})")
        by_class[str(key)] = _priority(value, f"{p}.classes.{key}", fail)
    try:
        return StitchPriorities(default, by_vnid, by_class)
    except RoutingError as exc:  # unreachable after the checks above; kept as a guard
        raise fail(p, str(exc)) from None


def _interfaces(data: Any, fail: Fail) -> tuple[QosInterface, ...]:
    p = "qos.interfaces"
    if data is None:
        return ()
    if not isinstance(data, list):
        raise fail(p, f"must be a list, got {_kind(data)}")
    out: list[QosInterface] = []
    for i, entry in enumerate(data):
        f = f"{p}[{i}]"
        if not isinstance(entry, Mapping):
            raise fail(f, f"must be a mapping, got {_kind(entry)}")
        for key in sorted(set(entry) - {"device", "capacity_mbps"}):
            raise fail(f"{f}.{key}", "unknown field (expected one of: capacity_mbps, device)")
        dev = entry.get("device")
        if not isinstance(dev, str) or not 0 < len(dev) <= _IFNAMSIZ or "/" in dev \
                or any(c.isspace() for c in dev):
            raise fail(f"{f}.device", f"must be an interface name (1..{_IFNAMSIZ} "
                                      f"characters), got {_kind(dev)} {dev!r}")
        if any(x.device == dev for x in out):
            raise fail(f"{f}.device", f"interface {dev!r} listed twice")
        cap = entry.get("capacity_mbps")
        if isinstance(cap, bool) or not isinstance(cap, int | float) or not 0 < cap < 1e7:
            raise fail(f"{f}.capacity_mbps", f"must be a number > 0 (Mbit/s), got "
                                             f"{_kind(cap)} {cap!r}")
        out.append(QosInterface(dev, float(cap)))
    return tuple(out)


def parse_qos(data: Any, fail: Fail, source: str = "<config>") -> QosConfig | None:
    """The ``qos:`` section (None when absent); the first problem raises ``fail(...)``."""
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise fail("qos", f"must be a mapping, got {_kind(data)}")
    borrow = data.get("borrow", "priority")
    if borrow not in BORROW_MODES:
        raise fail("qos.borrow", f"must be one of {', '.join(BORROW_MODES)}, got {borrow!r}")
    tunnels = data.get("tunnels", True)
    if not isinstance(tunnels, bool):
        raise fail("qos.tunnels", f"must be true or false, got {_kind(tunnels)}")
    try:
        policy = parse_policy({k: v for k, v in data.items() if k not in _OWN}, source)
    except PolicyError as exc:
        where = "qos" if exc.field == "(top)" else f"qos.{exc.field}"
        raise fail(where, exc.problem) from None
    return QosConfig(policy, borrow, tunnels, _interfaces(data.get("interfaces"), fail),
                     _priorities(data.get("stitching_priority"),
                                 {c.name for c in policy.classes}, fail))
