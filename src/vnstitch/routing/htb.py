"""A fluid model of one Linux HTB tree: how a link's capacity is split between classes.

Theory of operation. The live dataplane (:mod:`vnstitch.dataplane.tc`, fed by
:func:`vnstitch.routing.qos.policy_to_tc`) builds, per device, one HTB qdisc with a parent
class (``rate = ceil =`` the largest class ceil) and one leaf per QoS class with
``rate`` = the class's guaranteed rate and ``ceil`` = its maximum. Under a steady offered
load HTB converges to the rates this module computes, in two rounds:

1. **Assured rate.** A leaf below its own ``rate`` may always send (HTB's "can send"
   mode does not ask the parent), so class ``c`` gets ``min(demand_c, rate_c)`` first.
   Only if those together exceed the physical link are they cut, in proportion (the
   device queue is then the bottleneck, not HTB).
2. **Borrowing.** What the parent has left (``min(parent rate, link) - assured``) is lent
   to leaves that want more, up to their ``ceil``: leaves with the lowest ``prio`` value
   are offered it first (strictly); leaves of the same ``prio`` share it by deficit
   round robin, i.e. in proportion to their ``quantum`` -- a weighted water-filling.

The kernel's quantum is ``rate_bytes_per_s / r2q`` (``r2q`` = 10 by default) clamped to
1,000..200,000 bytes, so every class guaranteed 16 Mbit/s or more has the same quantum.
Two borrowing modes follow from how the classes are configured:

* ``priority``: HTB ``prio`` = the rank of the QoS class's priority
  (:func:`~vnstitch.routing.qos.htb_prio`, what ``policy_to_tc`` configures) -- spare
  capacity goes to the most important class first;
* ``quantum``: every class at ``prio`` 0 (HTB's default when no ``prio`` is given), a
  control: spare capacity is shared by quantum, i.e. about equally.

Inside a class, flows share the class's rate in proportion to their offered rates (a
fluid drop-tail FIFO, the default leaf qdisc). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from vnstitch.routing.qos import QosPolicy, htb_prio

BorrowMode = Literal["priority", "quantum"]
BORROW_MODES: tuple[BorrowMode, ...] = ("priority", "quantum")
#: Linux HTB defaults (sch_htb.c): rate-to-quantum divisor and the quantum clamp (bytes).
R2Q = 10
QUANTUM_MIN, QUANTUM_MAX = 1000, 200_000
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class HtbClass:
    """One leaf: ``rate``/``ceil`` in Mbit/s, HTB ``prio`` (0 first) and ``quantum`` bytes."""

    name: str
    rate_mbps: float
    ceil_mbps: float
    prio: int
    quantum: int


@dataclass(frozen=True, slots=True)
class HtbTree:
    """The HTB tree of one device: the link, the parent's rate and the leaves."""

    link_mbps: float
    parent_mbps: float
    classes: tuple[HtbClass, ...]


def quantum_bytes(rate_mbps: float, r2q: int = R2Q) -> int:
    """The quantum the kernel derives from a class rate when none is given."""
    q = int(rate_mbps * 1e6 / 8 / r2q)
    return max(QUANTUM_MIN, min(QUANTUM_MAX, q))


def tree_for_link(policy: QosPolicy, link_mbps: float, borrow: BorrowMode) -> HtbTree:
    """The HTB tree :func:`~vnstitch.routing.qos.policy_to_tc` would build on a link of
    ``link_mbps``: the policy's rates scaled by ``link_mbps / policy.link_mbps`` (a policy
    is written for a reference link), the parent at the largest ceil, as ``tc.py`` does."""
    scale = link_mbps / policy.link_mbps
    leaves = []
    for c in policy.classes:
        rate, ceil = c.guaranteed_mbps * scale, c.max_mbps * scale
        prio = htb_prio(policy, c) if borrow == "priority" else 0
        leaves.append(HtbClass(c.name, rate, ceil, prio, quantum_bytes(rate)))
    parent = max(c.ceil_mbps for c in leaves)
    return HtbTree(link_mbps, parent, tuple(leaves))


def _water_fill(spare: float, want: dict[str, float], weight: Mapping[str, float]
                ) -> dict[str, float]:
    """Split ``spare`` in proportion to ``weight``, never giving anyone more than it wants."""
    got = dict.fromkeys(want, 0.0)
    active = {n for n, w in want.items() if w > _EPS}
    while active and spare > _EPS:
        total_w = sum(weight[n] for n in active)
        # the largest step before the first active class is satisfied
        step = min(spare, *((want[n] - got[n]) * total_w / weight[n] for n in active))
        for n in active:
            got[n] += step * weight[n] / total_w
        spare -= step
        active = {n for n in active if want[n] - got[n] > _EPS}
    return got


def share(tree: HtbTree, demand: Mapping[str, float]) -> dict[str, float]:
    """Steady rate (Mbit/s) each class gets for its offered ``demand`` (module docstring).
    Classes missing from ``demand`` want nothing; unknown classes raise ``KeyError``."""
    leaves = {c.name: c for c in tree.classes}
    for name in demand:
        if name not in leaves:
            raise KeyError(f"no HTB class {name!r}")
    want = {c.name: max(0.0, float(demand.get(c.name, 0.0))) for c in tree.classes}
    assured = {n: min(want[n], leaves[n].rate_mbps) for n in want}
    total = sum(assured.values())
    if total > tree.link_mbps:
        cut = tree.link_mbps / total
        return {n: a * cut for n, a in assured.items()}
    got = dict(assured)
    spare = max(0.0, min(tree.parent_mbps, tree.link_mbps) - total)
    for prio in sorted({c.prio for c in tree.classes}):
        if spare <= _EPS:
            break
        more = {c.name: max(0.0, min(want[c.name], c.ceil_mbps) - got[c.name])
                for c in tree.classes if c.prio == prio}
        lent = _water_fill(spare, more, {n: float(leaves[n].quantum) for n in more})
        for n, x in lent.items():
            got[n] += x
            spare -= x
    return got


def flows_share(tree: HtbTree, offered: Sequence[tuple[str, float]]) -> list[float]:
    """Rates of flows ``(class, offered Mbit/s)`` on one link: each class's rate from
    :func:`share`, split inside the class in proportion to the offered rates."""
    demand: dict[str, float] = {}
    for cls, rate in offered:
        demand[cls] = demand.get(cls, 0.0) + rate
    got = share(tree, demand)
    return [rate * got[cls] / demand[cls] if demand[cls] > _EPS else 0.0
            for cls, rate in offered]
