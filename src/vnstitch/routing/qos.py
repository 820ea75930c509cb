"""QoS classes, the one home: the policy (YAML -> validated classes and application
matches), its HTB classes and u32 filters, and strict class precedence in TE.

Theory of operation.

*Policy.* :func:`parse_policy` validates a plain mapping (as ``yaml.safe_load`` gives)
into a :class:`QosPolicy`; every problem raises :class:`PolicyError` naming the field as
a dotted path (``classes[1].guaranteed_mbps``). :func:`load_policy` only reads the file.
:func:`policy_to_tc` is pure: it turns a policy into
:class:`~vnstitch.dataplane.objects.RateLimit` objects (one HTB class per QoS class,
``rate`` = guaranteed, ``ceil`` = maximum) and
:class:`~vnstitch.dataplane.objects.U32Filter` objects (one per application match) that
steer packets into those classes; a dataplane driver enforces them live.
:attr:`QosPolicy.precedence` is the policy's class order, most important first.

*Precedence in TE (SWAN-style).* :func:`solve_classes` serves classes one after another
in precedence order (default :data:`PRECEDENCE`: stitched interactive/video first, then
database, then bulk/e-mail; unknown classes go last, in name order; a policy's
:attr:`QosPolicy.precedence` may be passed instead). Each class gets only the capacity
the classes before it left over (``residual``), so a lower class can never take
bandwidth a higher class could use. Inside a class the allocation is max-min fair by
**progressive filling with iterated LPs** (HiGHS through ``scipy.optimize.linprog``),
over each demand's candidate paths with any split:

1. maximise the common rate ``t`` that every unfrozen demand gets at least of
   (``sum_p x_dp >= t``), with frozen demands held at their frozen rate, every demand
   at most its volume, and arc loads within the residual capacity;
2. freeze every demand that is fully served (volume <= t) and every demand whose
   fairness row has a nonzero dual (it is held back by a saturated bottleneck: raising
   it would lower someone at ``t``), at its current rate; repeat until all are frozen.

Each round freezes at least one demand (the duals of the fairness rows sum to one when
``t`` is bounded by capacity), so there are at most as many LPs as demands in the class.
The class's final LP routing is subtracted from the residual before the next class.

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

import numpy as np
import scipy.sparse as sp
import yaml
from scipy.optimize import linprog

from vnstitch.dataplane.objects import RateLimit, U32Filter
from vnstitch.routing.errors import PolicyError, RoutingError
from vnstitch.routing.te import ArcPath, ArcTable, Demand, _check_demands

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


def _num(raw: Any, source: str, field: str, *, lo: float = 0.0, integer: bool = False
         ) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise PolicyError(source, field, f"must be a number, got {raw!r}")
    if integer and not isinstance(raw, int):
        raise PolicyError(source, field, f"must be an integer, got {raw!r}")
    if raw < lo:
        raise PolicyError(source, field, f"must be >= {lo:g}, got {raw!r}")
    return float(raw)


def _int_list(raw: Any, source: str, field: str, hi: int) -> tuple[int, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PolicyError(source, field, "must be a list")
    out = []
    for i, v in enumerate(raw):
        n = int(_num(v, source, f"{field}[{i}]", integer=True))
        if n > hi:
            raise PolicyError(source, f"{field}[{i}]", f"must be <= {hi}, got {n}")
        out.append(n)
    return tuple(out)


def parse_policy(data: Any, source: str = "<policy>") -> QosPolicy:
    if not isinstance(data, dict):
        raise PolicyError(source, "(top)", "must be a mapping")
    unknown = set(data) - {"link_mbps", "classes", "applications"}
    if unknown:
        raise PolicyError(source, sorted(unknown)[0], "unknown field")
    link = _num(data.get("link_mbps"), source, "link_mbps", lo=1e-9)
    classes: list[QosClass] = []
    raw_classes = data.get("classes")
    if not isinstance(raw_classes, list) or not raw_classes:
        raise PolicyError(source, "classes", "must be a non-empty list")
    for i, c in enumerate(raw_classes):
        f = f"classes[{i}]"
        if not isinstance(c, dict):
            raise PolicyError(source, f, "must be a mapping")
        name = c.get("name")
        if not isinstance(name, str) or not name:
            raise PolicyError(source, f"{f}.name", "must be a non-empty string")
        if any(k.name == name for k in classes):
            raise PolicyError(source, f"{f}.name", f"duplicate class {name!r}")
        prio = int(_num(c.get("priority"), source, f"{f}.priority", integer=True))
        g = _num(c.get("guaranteed_mbps"), source, f"{f}.guaranteed_mbps")
        m = _num(c.get("max_mbps", link), source, f"{f}.max_mbps", lo=1e-9)
        if g > m:
            raise PolicyError(source, f"{f}.guaranteed_mbps", f"{g:g} exceeds max_mbps {m:g}")
        if m > link:
            raise PolicyError(source, f"{f}.max_mbps", f"{m:g} exceeds link_mbps {link:g}")
        classes.append(QosClass(name, prio, g, m))
    total = sum(c.guaranteed_mbps for c in classes)
    if total > link:
        raise PolicyError(source, "classes", f"guaranteed rates sum to {total:g} Mbit/s, "
                          f"more than link_mbps {link:g}")
    apps: list[Application] = []
    for i, a in enumerate(data.get("applications") or []):
        f = f"applications[{i}]"
        if not isinstance(a, dict):
            raise PolicyError(source, f, "must be a mapping")
        name = a.get("name")
        if not isinstance(name, str) or not name:
            raise PolicyError(source, f"{f}.name", "must be a non-empty string")
        cls = a.get("class")
        if cls not in {c.name for c in classes}:
            raise PolicyError(source, f"{f}.class", f"unknown class {cls!r}")
        proto = a.get("protocol")
        if proto is not None and proto not in PROTOCOLS:
            raise PolicyError(source, f"{f}.protocol", f"must be tcp or udp, got {proto!r}")
        vnid = a.get("vnid")
        if vnid is not None:
            vnid = int(_num(vnid, source, f"{f}.vnid", integer=True))
            if vnid >= 1 << 24:
                raise PolicyError(source, f"{f}.vnid", "must fit in 24 bits")
        ports = _int_list(a.get("ports"), source, f"{f}.ports", 65535)
        dscp = _int_list(a.get("dscp"), source, f"{f}.dscp", 63)
        if not ports and not dscp and vnid is None:
            raise PolicyError(source, f, "needs at least one of ports, dscp, vnid")
        apps.append(Application(name, str(cls), ports, dscp, vnid, proto))
    return QosPolicy(link, tuple(sorted(classes, key=lambda c: (c.priority, c.name))),
                     tuple(apps))


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


def scaled_tc(policy: QosPolicy, device: str, rate_mbps: float, ceil_mbps: float, *,
              borrow: str = "priority", extra: Sequence[tuple[str, tuple[str, ...]]] = ()
              ) -> tuple[list[RateLimit], list[U32Filter]]:
    """:func:`policy_to_tc` for a link of another size: guaranteed rates scaled from
    ``link_mbps`` to ``rate_mbps``, maxima to ``ceil_mbps`` (and never above it), so a
    tunnel end reserving ``rate_mbps`` of a ``ceil_mbps`` stitch splits both by class.
    ``borrow="quantum"`` gives every class HTB prio 0 (spare shared about equally, the
    control of :mod:`vnstitch.routing.htb`). ``extra`` adds ``(class, matches)`` filters
    after the policy's own (the daemon's stitched-traffic matches)."""
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
        # VXLAN: UDP 4789, VNI in the 3 bytes after the 4-byte flags word of the header
        # (offset 28+4 from the IP header with a 20-byte IP header and 8-byte UDP header).
        if app.vnid is not None:
            base += ["ip dport 4789 0xffff", f"u32 0x{app.vnid << 8:08x} 0xffffff00 at 32"]
        alternatives: list[list[str]] = ([[f"ip dport {p} 0xffff"] for p in app.ports]
                                         + [[f"ip tos 0x{d << 2:02x} 0xfc"] for d in app.dscp]
                                         ) or [[]]
        for alt in alternatives:
            matches = tuple(base + alt)
            filters.append(U32Filter(device, policy.class_named(app.qos_class).priority + 1,
                                     len(filters) + 1, class_id[app.qos_class], matches))
    for cls, matches in extra:
        filters.append(U32Filter(device, policy.class_named(cls).priority + 1,
                                 len(filters) + 1, class_id[cls], matches))
    return limits, filters


# -- strict class precedence in TE ----------------------------------------------------

#: Default strict precedence, highest first.
PRECEDENCE = ("interactive", "video", "database", "bulk", "email")


@dataclass
class ClassAllocation:
    """Per demand: the rate it got and its paths with the rate on each."""

    rate_mbps: list[float]
    routing: list[list[tuple[ArcPath, float]]]
    arc_load: np.ndarray
    lp_rounds: int

    def satisfied(self, demands: Sequence[Demand]) -> list[float]:
        return [r / d.volume_mbps if d.volume_mbps > 0 else 1.0
                for r, d in zip(self.rate_mbps, demands, strict=True)]


def class_order(demands: Sequence[Demand], precedence: Sequence[str] = PRECEDENCE
                ) -> list[str]:
    """The classes present, highest precedence first (unknown ones last, by name)."""
    present = {d.qos_class for d in demands}
    known = [c for c in precedence if c in present]
    return known + sorted(present - set(known))


def _max_min_fair(table: ArcTable, vol: np.ndarray, cands: Sequence[Sequence[ArcPath]],
                  residual: np.ndarray) -> tuple[np.ndarray, list[list[float]], int]:
    """Progressive filling for one class; returns rates, per-path flows and LP count."""
    n, m = len(vol), len(table.arcs)
    col_dem = np.array([i for i, c in enumerate(cands) for _ in c], dtype=np.int64)
    col_paths = [p for c in cands for p in c]
    ncol = len(col_paths)
    lens = [len(p) for p in col_paths]
    arc_rows = sp.csr_matrix(
        (np.ones(sum(lens)), (np.array([a for p in col_paths for a in p], dtype=np.int64),
                              np.repeat(np.arange(ncol), lens))), shape=(m, ncol))
    dem_rows = sp.csr_matrix((np.ones(ncol), (col_dem, np.arange(ncol))), shape=(n, ncol))
    frozen = np.zeros(n, dtype=bool)
    rate = np.zeros(n)
    flows = np.zeros(ncol)
    rounds = 0
    scale = max(float(vol.max()), 1e-12)  # keep the LP near 1 for HiGHS' tolerances
    v, res = vol / scale, residual / scale
    while not frozen.all():
        rounds += 1
        unfrozen = np.nonzero(~frozen)[0]
        fz = np.nonzero(frozen)[0]
        zcol = sp.csr_matrix((m + n, 1))
        fair = sp.hstack([-dem_rows[unfrozen], sp.csr_matrix(np.ones((len(unfrozen), 1)))])
        hold = sp.hstack([-dem_rows[fz], sp.csr_matrix((len(fz), 1))])
        a_ub = sp.vstack([sp.hstack([sp.vstack([arc_rows, dem_rows]), zcol]), fair, hold],
                         format="csr")
        b_ub = np.concatenate([res, v, np.zeros(len(unfrozen)), -rate[fz] / scale * 0.999999])
        cost = np.zeros(ncol + 1)
        cost[-1] = -1.0
        out = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
        if out.status != 0:
            raise RoutingError(f"max-min fair LP failed: {out.message}")
        t = float(out.x[-1])
        flows = out.x[:-1] * scale
        got = dem_rows @ out.x[:-1]
        duals = np.asarray(out.ineqlin.marginals)[m + n:m + n + len(unfrozen)]
        done = (v[unfrozen] <= t + 1e-9) | (duals < -1e-9)
        if not done.any():  # degenerate duals: freeze everyone at t (always progress)
            done[:] = True
        newly = unfrozen[done]
        rate[newly] = np.minimum(got[newly], v[newly]) * scale
        frozen[newly] = True
    per_demand: list[list[float]] = [[] for _ in range(n)]
    for j, i in enumerate(col_dem.tolist()):
        per_demand[i].append(float(flows[j]))
    return rate, per_demand, rounds


def solve_classes(table: ArcTable, demands: Sequence[Demand],
                  candidates: Sequence[Sequence[ArcPath]], *,
                  precedence: Sequence[str] = PRECEDENCE) -> ClassAllocation:
    """Serve classes in strict precedence, each max-min fair inside (module docstring)."""
    _check_demands(table, demands)
    if len(candidates) != len(demands):
        raise RoutingError("need one candidate list per demand")
    residual = table.capacity.astype(float).copy()
    rate = [0.0] * len(demands)
    routing: list[list[tuple[ArcPath, float]]] = [[] for _ in demands]
    load = np.zeros(len(table.arcs))
    rounds = 0
    for cls in class_order(demands, precedence):
        idx = [i for i, d in enumerate(demands) if d.qos_class == cls and d.volume_mbps > 0]
        if not idx:
            continue
        for i in idx:
            if not candidates[i]:
                raise RoutingError(f"demand {i} ({demands[i].src}->{demands[i].dst}) has "
                                   "no candidate path")
        vol = np.array([demands[i].volume_mbps for i in idx])
        cls_rate, flows, n_lp = _max_min_fair(table, vol, [candidates[i] for i in idx],
                                              np.maximum(residual, 0.0))
        rounds += n_lp
        for k, i in enumerate(idx):
            rate[i] = float(cls_rate[k])
            routing[i] = [(p, f) for p, f in zip(candidates[i], flows[k], strict=True)
                          if f > 1e-9]
            for p, f in routing[i]:
                if p:
                    load[list(p)] += f
        residual = table.capacity - load
    return ClassAllocation(rate, routing, load, rounds)
