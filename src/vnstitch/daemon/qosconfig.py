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
that turns a problem at a dotted field path into the caller's error; the section's schema
is :mod:`vnstitch.daemon.qos_model` (its policy part the one
:mod:`vnstitch.routing.qos_model` a scenario uses too), which the config file validates
with every problem at once (``FILE:LINE:COL: qos.classes[1].max_mbps: ...``). Pure: no
I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vnstitch.routing.htb import BorrowMode
from vnstitch.routing.qos import QosPolicy
from vnstitch.routing.table import StitchPriorities

Fail = Callable[[str, str], Exception]


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


def parse_qos(data: Any, fail: Fail, source: str = "<config>") -> QosConfig | None:
    """The ``qos:`` section (None when absent), validated by its schema
    (:mod:`vnstitch.daemon.qos_model`); the first problem raises ``fail(path, problem)``
    (the config file itself reports every problem, with positions)."""
    if data is None:
        return None
    from vnstitch.daemon.qos_model import (  # noqa: PLC0415 -- pydantic loads lazily
        DaemonQosSection,
        qos_relations,
        to_qos_config,
    )
    from vnstitch.yamlfile import dotted, problems_of  # noqa: PLC0415

    problems = problems_of(DaemonQosSection, data, ("qos",)) + qos_relations(data)
    if problems:
        raise fail(dotted(problems[0].loc), problems[0].problem)
    return to_qos_config(DaemonQosSection.model_validate(data))
