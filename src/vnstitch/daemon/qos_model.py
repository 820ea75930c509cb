"""The schema of the daemon config's ``qos:`` section (format: :mod:`vnstitch.daemon.qosconfig`).

Theory of operation: :class:`DaemonQosSection` is the QoS policy with ``borrow`` -- the
very model a scenario's ``qos:`` section uses (:mod:`vnstitch.routing.qos_model`, one
home) -- plus where the Route Manager applies it: ``tunnels``, ``interfaces`` and
``stitching_priority``. :func:`qos_relations` checks what relates its parts (the
policy's own relations, an interface listed twice, a stitching priority for a class the
policy lacks) over the raw data, so that :mod:`vnstitch.daemon.config_model` reports
those problems together with the schema's. :func:`to_qos_config` turns a valid section
into the runtime :class:`~vnstitch.daemon.qosconfig.QosConfig`. pydantic is loaded only
when a config is read (the daemon's start-up imports stay light).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vnstitch.daemon.qosconfig import QosConfig, QosInterface
from vnstitch.model.ids import vnid
from vnstitch.routing.qos_model import (
    QosBorrowSection,
    class_names,
    policy_relations,
    to_policy,
    valid_entries,
)
from vnstitch.routing.table import MAX_PRIORITY, STITCHED, StitchPriorities
from vnstitch.yamlfile import FileModel, Loc, Problem, checked

Priority = Annotated[int, Field(ge=1, le=MAX_PRIORITY)]


def _vnid_key(key: object) -> int:  # mapping keys arrive as text
    if isinstance(key, str):
        if not key.isdigit():
            raise ValueError(f"VNID must be an integer below 2^24, got {key!r}")
        key = int(key)
    return int(vnid(key))


class QosInterfaceEntry(FileModel):
    """A substrate egress interface this RM owns, and its capacity."""

    device: Annotated[str, Field(min_length=1, max_length=15, pattern=r"^[^/\s]+$",
                                 description="interface name")]
    capacity_mbps: Annotated[float, Field(gt=0, lt=1e7)]


class StitchingPrioritySection(FileModel):
    """Priority (1..15) of stitched routes: per VN, else per QoS class, else default."""

    default: Priority = STITCHED
    vnids: dict[Annotated[int, checked(_vnid_key)], Priority] = Field(default_factory=dict)
    classes: dict[str, Priority] = Field(default_factory=dict)


class DaemonQosSection(QosBorrowSection):
    """QoS classes live on this Route Manager, and stitching-priority bands."""

    tunnels: bool = Field(default=True, description="split each tunnel end's HTB class "
                          "into the policy's classes")
    interfaces: list[QosInterfaceEntry] = Field(default_factory=list)
    stitching_priority: StitchingPrioritySection | None = None


def qos_relations(data: object, at: Loc = ("qos",)) -> list[Problem]:
    """Problems between the parts of a ``qos:`` section found at ``at``."""
    if not isinstance(data, dict):
        return []
    out = policy_relations(data, at)
    seen: dict[str, int] = {}
    for i, entry in valid_entries(QosInterfaceEntry, data.get("interfaces")):
        if entry.device in seen:
            out.append(Problem((*at, "interfaces", i, "device"),
                               f"interface {entry.device!r} listed twice (also "
                               f"interfaces[{seen[entry.device]}])"))
        seen.setdefault(entry.device, i)
    classes = class_names(data)
    prio = valid_entries(StitchingPrioritySection, [data.get("stitching_priority") or {}])
    if classes is not None and prio:
        for name in prio[0][1].classes:
            if name not in classes:
                out.append(Problem((*at, "stitching_priority", "classes", name),
                                   f"unknown QoS class {name!r} (one of "
                                   f"{', '.join(sorted(classes))})"))
    return out


def to_qos_config(m: DaemonQosSection) -> QosConfig:
    """The runtime config of a valid section (relations checked)."""
    p = m.stitching_priority or StitchingPrioritySection()
    return QosConfig(to_policy(m), m.borrow, m.tunnels,
                     tuple(QosInterface(i.device, i.capacity_mbps) for i in m.interfaces),
                     StitchPriorities(p.default, dict(p.vnids), dict(p.classes)))
