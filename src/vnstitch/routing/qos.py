"""QoS classes, the one home: the policy (YAML -> validated classes and application
matches) and its HTB classes and u32 filters.

Theory of operation.

*Policy.* :func:`parse_policy` validates a plain mapping (as ``yaml.safe_load`` gives)
into a :class:`QosPolicy` against the schema of :mod:`vnstitch.routing.qos_model`; a
problem raises :class:`PolicyError` naming the field as a dotted path
(``classes[1].guaranteed_mbps``). :func:`load_policy` only reads the file.
:func:`policy_to_tc` is pure: it turns a policy into
:class:`~vnstitch.dataplane.objects.RateLimit` objects (one HTB class per QoS class,
``rate`` = guaranteed, ``ceil`` = maximum) and
:class:`~vnstitch.dataplane.objects.U32Filter` objects (one per application match) that
steer packets into those classes; a dataplane driver enforces them live.
:attr:`QosPolicy.precedence` is the policy's class order, most important first.

*Precedence in TE* lives in :mod:`vnstitch.routing.qos_te` (it needs the LP stack;
the policy here must stay light enough for the daemon's start-up).

Policy format::

    link_mbps: 1000
    classes:
      - {name: stitched, priority: 0, guaranteed_mbps: 300, max_mbps: 1000}
      - {name: email, priority: 2, guaranteed_mbps: 10, max_mbps: 1000}
    applications:
      - {name: ssh, class: stitched, ports: [22], dscp: [46], vnid: 100, protocol: tcp}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vnstitch.dataplane.objects import (
    TUNNEL_VXLAN_PORT_BASE,
    TUNNEL_VXLAN_PORTS,
    RateLimit,
    U32Filter,
)
from vnstitch.routing.errors import PolicyError

PROTOCOLS = {"tcp": 6, "udp": 17}


@dataclass(frozen=True, slots=True)
class QosClass:
    name: str
    priority: int  # 0 = served first
    guaranteed_mbps: float
    max_mbps: float


@dataclass(frozen=True, slots=True)
class Application:
    name: str
    qos_class: str
    ports: tuple[int, ...] = ()
    dscp: tuple[int, ...] = ()
    vnid: int | None = None
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class QosPolicy:
    link_mbps: float
    classes: tuple[QosClass, ...]
    applications: tuple[Application, ...]

    def class_named(self, name: str) -> QosClass:
        return next(c for c in self.classes if c.name == name)

    @property
    def precedence(self) -> tuple[str, ...]:
        """Class names, most important first (priority, then name)."""
        return tuple(c.name for c in self.classes)


def parse_policy(data: Any, source: str = "<policy>") -> QosPolicy:
    """Validate a plain policy mapping (:mod:`vnstitch.routing.qos_model`, the schema);
    the first problem in file order raises :class:`PolicyError` naming its field."""
    from vnstitch.routing.qos_model import (  # noqa: PLC0415 -- pydantic loads lazily
        QosPolicySection,
        policy_relations,
        to_policy,
    )
    from vnstitch.yamlfile import YamlDocument, dotted, validate_problems  # noqa: PLC0415

    model, problems = validate_problems(QosPolicySection, YamlDocument(source, data),
                                        policy_relations)
    if model is None:
        raise PolicyError(source, dotted(problems[0].loc) or "(top)", problems[0].problem)
    return to_policy(model)


def load_policy(path: str | Path) -> QosPolicy:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(str(p), "(file)", "not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        raise PolicyError(str(p), where, f"invalid YAML: {exc}") from None
    return parse_policy(data, str(p))


#: HTB knows 8 priorities (0..7); policy priorities beyond the eighth distinct one share 7.
HTB_PRIOS = 8


def htb_prio(policy: QosPolicy, qos_class: QosClass) -> int:
    """The HTB ``prio`` of a class: the rank of its priority among the policy's distinct
    priorities, so the most important class borrows spare capacity first."""
    ranks = sorted({c.priority for c in policy.classes})
    return min(ranks.index(qos_class.priority), HTB_PRIOS - 1)


def policy_to_tc(policy: QosPolicy, device: str) -> tuple[list[RateLimit], list[U32Filter]]:
    """HTB classes 1:10, 1:20, ... in priority order (so the least important class, with
    the largest id, takes unclassified traffic), each borrowing by its :func:`htb_prio`,
    and the u32 filters feeding them."""
    return scaled_tc(policy, device, policy.link_mbps, policy.link_mbps)


#: The smallest HTB rate a class gets (a 0 guarantee still needs a rate for the kernel).
MIN_RATE_MBPS = 0.01
#: UDP to any tunnel's VXLAN port (the range is aligned: one mask).
TUNNEL_DPORT_MATCH = (f"ip dport 0x{TUNNEL_VXLAN_PORT_BASE:04x} "
                      f"0x{0xFFFF & ~(TUNNEL_VXLAN_PORTS - 1):04x}")
#: Filters a caller adds per source port (:func:`port_handle`) are numbered from here;
#: the policy's own filters number up from 1.
PORT_HANDLE_BASE = 0x800


def port_handle(port: int) -> int:
    """A u32 handle (1..4095) that belongs to ``port``: a filter keyed by it keeps its
    handle while other ports' filters come and go. (Numbered by position, adding a
    tunnel's filter would shift another's handle: the kernel replaces that filter, and
    for that moment the tunnel's packets fall into the default class.)"""
    return PORT_HANDLE_BASE + port % PORT_HANDLE_BASE


def scaled_tc(policy: QosPolicy, device: str, rate_mbps: float, ceil_mbps: float, *,
              borrow: str = "priority",
              extra: Sequence[tuple[str, tuple[str, ...], int]] = ()
              ) -> tuple[list[RateLimit], list[U32Filter]]:
    """:func:`policy_to_tc` for a link of another size: guaranteed rates scaled from
    ``link_mbps`` to ``rate_mbps``, maxima to ``ceil_mbps`` (and never above it), so a
    tunnel end reserving ``rate_mbps`` of a ``ceil_mbps`` stitch splits both by class.
    ``borrow="quantum"`` gives every class HTB prio 0 (spare shared about equally, the
    control of :mod:`vnstitch.routing.htb`). ``extra`` adds ``(class, matches, handle)``
    filters after the policy's own (the daemon's stitched-traffic matches, each with a
    handle of its own: :func:`port_handle`)."""
    if not 0 < rate_mbps <= ceil_mbps:
        raise PolicyError("<tc>", device, f"need 0 < rate ({rate_mbps:g}) <= ceil "
                          f"({ceil_mbps:g})")
    kr, kc = rate_mbps / policy.link_mbps, ceil_mbps / policy.link_mbps
    class_id = {c.name: 10 * (i + 1) for i, c in enumerate(policy.classes)}
    limits = []
    for c in policy.classes:
        ceil = min(c.max_mbps * kc, ceil_mbps)
        rate = min(max(c.guaranteed_mbps * kr, MIN_RATE_MBPS), ceil)
        limits.append(RateLimit(device, class_id[c.name], rate, ceil,
                                htb_prio(policy, c) if borrow == "priority" else 0))
    filters: list[U32Filter] = []
    for app in policy.applications:
        base: list[str] = []
        if app.protocol:
            base.append(f"ip protocol {PROTOCOLS[app.protocol]} 0xff")
        # VXLAN: UDP to 4789 or to a tunnel's port (one aligned range, one mask), VNI in
        # the 3 bytes after the 4-byte flags word of the header (offset 28+4 from the IP
        # header with a 20-byte IP header and 8-byte UDP header).
        vxlan: list[list[str]] = [[]]
        if app.vnid is not None:
            base.append(f"u32 0x{app.vnid << 8:08x} 0xffffff00 at 32")
            vxlan = [["ip dport 4789 0xffff"], [TUNNEL_DPORT_MATCH]]
        alternatives: list[list[str]] = ([[f"ip dport {p} 0xffff"] for p in app.ports]
                                         + [[f"ip tos 0x{d << 2:02x} 0xfc"] for d in app.dscp]
                                         ) or [[]]
        for alt in (v + a for v in vxlan for a in alternatives):
            matches = tuple(base + alt)
            filters.append(U32Filter(device, policy.class_named(app.qos_class).priority + 1,
                                     len(filters) + 1, class_id[app.qos_class], matches))
    for cls, matches, handle in extra:
        filters.append(U32Filter(device, policy.class_named(cls).priority + 1,
                                 handle, class_id[cls], matches))
    return limits, filters
