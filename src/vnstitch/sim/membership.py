"""Non-members in a simulation: segments that declare a VN they do not belong to.

Theory of operation: with ``vns.non_members: K`` each VN is, besides its member segments,
declared on K other segments that are not members. Every segment hosting a VN (member or
not) gets an access policy admitting exactly the member segments' Route Managers (an
allow list: the simulator has no owner to sign grants; the protocol checks both the same
way), so a request from a non-member is refused by every target (``not_authorised``)
and a member never stitches to a non-member. :func:`summarise_membership` reports what
the run did: stitches established from non-members (0 when membership holds), the
refusals at the origins and the per-(origin, VNID) refusal counts the targets kept.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vnstitch.model.ids import VNID, RouteManagerId, SegmentId
from vnstitch.model.virtual import Component, ComponentKind, VirtualNetwork
from vnstitch.protocol.grants import AccessPolicy

if TYPE_CHECKING:
    from vnstitch.sim.engine import Simulation

#: Prefix block of non-member placements (members use 10.0.0.0/8 upward, see workload).
_NON_MEMBER_NET = 0xAC100000  # 172.16.0.0


def place_non_members(members: Sequence[VirtualNetwork], segments: Sequence[SegmentId],
                      per_vn: int, rng: random.Random) -> list[VirtualNetwork]:
    """``per_vn`` placements of each VN on segments that are not its members."""
    hosts: dict[VNID, set[SegmentId]] = {}
    for vn in members:
        hosts.setdefault(vn.vnid, set()).add(vn.segment)
    out = []
    block = 0
    for vid in sorted(hosts):
        others = [s for s in segments if s not in hosts[vid]]
        for seg in sorted(rng.sample(others, min(per_vn, len(others)))):
            net = ipaddress.ip_network((_NON_MEMBER_NET + (block << 8), 24))
            block += 1
            out.append(VirtualNetwork(vid, seg, (Component(ComponentKind.PREFIX, str(net)),),
                                      application=f"vn{vid}"))
    return out


class MemberPolicies:
    """Per segment, per VN it hosts: admit the VN's member segments' RMs only. Worked out
    on first use (when the engine builds the first core, every RM id exists by then)."""

    def __init__(self, members: Sequence[VirtualNetwork], everyone: Sequence[VirtualNetwork],
                 rm_id: Callable[[SegmentId], RouteManagerId]) -> None:
        self._members, self._everyone, self._rm_id = members, everyone, rm_id
        self._table: dict[SegmentId, dict[VNID, AccessPolicy]] | None = None

    def __call__(self, segment: SegmentId) -> dict[VNID, AccessPolicy]:
        if self._table is None:
            allowed: dict[VNID, frozenset[RouteManagerId]] = {}
            for vn in self._members:
                allowed[vn.vnid] = allowed.get(vn.vnid, frozenset()) | {
                    self._rm_id(vn.segment)}
            self._table = {}
            for vn in self._everyone:
                self._table.setdefault(vn.segment, {})[vn.vnid] = AccessPolicy(
                    allow=allowed[vn.vnid])
        return self._table.get(segment, {})


def summarise_membership(sim: Simulation) -> dict[str, Any]:
    """Placements on segments their VN's policy does not admit are the non-members."""
    access: Callable[[SegmentId], Mapping[VNID, AccessPolicy]] = getattr(
        sim.factory, "access", lambda _s: {})
    outsiders = set()
    for vn in sim.placements:
        i = sim.seg_index[vn.segment]
        policy = access(vn.segment).get(vn.vnid)
        if policy is not None and not policy.allows_without_grant(sim.rm_ids[i]):
            outsiders.add((vn.vnid, i))
    recs = [r for r in sim.metrics.records.values() if (r.vnid, r.origin) in outsiders]
    refusals = 0
    for core in sim.cores:
        counts = getattr(core, "access_refusals", None)
        if isinstance(counts, dict):
            refusals += sum(counts.values())
    return {
        "non_member_placements": len(outsiders),
        "non_member_requests": len(recs),
        "non_member_stitches_established": sum(r.established_at is not None for r in recs),
        "non_member_refused_not_authorised": sum(r.reason == "not_authorised" for r in recs),
        "refusals_counted_at_targets": refusals,
    }
