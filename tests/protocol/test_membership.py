"""Membership: per-VN access policy, owner-signed grants, revocation, need to know.

Three Route Managers in memory (Abilene cut in three segments): A hosts VN 100, B is a
member (a grant, or the allow list), C declares VN 100 but is no member. Each claim is
paired with its control (the same request by a member succeeds; ``allow: any`` admits C).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping

import pytest

from vnstitch.model import Component, SegmentId, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.model.substrate import Substrate
from vnstitch.protocol.api import (
    AccessRefused,
    FailureReason,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
)
from vnstitch.protocol.config import CoreConfig
from vnstitch.protocol.core import decode_state, encode_state
from vnstitch.protocol.grants import AccessPolicy, Grant, OwnerKey
from vnstitch.protocol.messages import Hold, Query, message_from_wire
from vnstitch.protocol.reservation import ReservationState
from vnstitch.protocol.testing import InMemoryNetwork

A, B, C = SegmentId("seg00"), SegmentId("seg01"), SegmentId("seg02")
VN = VNID(100)
OWNER = OwnerKey(b"\x07" * 32)
PREFIX = {A: "10.100.0.0/24", B: "10.100.1.0/24", C: "10.100.2.0/24"}

Configure = Callable[[CoreConfig, Mapping[SegmentId, RouteManagerId]], CoreConfig]


@pytest.fixture(scope="module")
def abilene3() -> Substrate:
    return partitioned(load_topology("zoo:Abilene"), 3)


def _vns() -> dict[SegmentId, list[VirtualNetwork]]:
    return {s: [VirtualNetwork(VN, s, (Component.parse(p),))] for s, p in PREFIX.items()}


def members(policy: Callable[[Mapping[SegmentId, RouteManagerId]], AccessPolicy],
            grant_b: bool = True, expires: float = 1e9) -> Configure:
    """Every segment hosts VN 100 under ``policy``; B holds a grant (serial 1), and so
    does A (serial 10: membership is checked both ways, the origin admits the target)."""
    def configure(cfg: CoreConfig, rm_of: Mapping[SegmentId, RouteManagerId]) -> CoreConfig:
        grants: tuple[Grant, ...] = ()
        if grant_b and cfg.segment == B:
            grants = (OWNER.grant(VN, rm_of[B], expires, 1),)
        elif cfg.segment == A:
            grants = (OWNER.grant(VN, rm_of[A], 1e9, 10),)
        return dataclasses.replace(cfg, access={VN: policy(rm_of)}, grants=grants)
    return configure


GRANT_ONLY = members(lambda _: AccessPolicy(owner=OWNER.public_bytes))


def _net(sub: Substrate, configure: Configure) -> InMemoryNetwork:
    net = InMemoryNetwork(sub, _vns(), seed=3, configure=configure)
    net.check = lambda n: n.check_no_overcommit()
    net.start()
    net.converge()
    return net


def _request(net: InMemoryNetwork, seg: SegmentId) -> str:
    core = net.core(seg)
    sid, out = core.request_stitch(VN, StitchConstraints(10.0), net.now)
    net.process(core.rm_id, out)
    return sid


def _outcome(net: InMemoryNetwork, sid: str) -> StitchEstablished | StitchFailed | None:
    found = [e for _, _, e in net.events
             if isinstance(e, StitchEstablished | StitchFailed) and e.stitch_id == sid]
    return found[-1] if found else None


def _live_tokens(net: InMemoryNetwork, sid: str) -> list[str]:
    return [t for core in net.cores.values() for t, r in core.reservations.items()
            if t.startswith(sid) and r.state in (ReservationState.HELD,
                                                  ReservationState.COMMITTED)]


def test_member_with_grant_stitches_and_non_member_is_refused(abilene3: Substrate) -> None:
    net = _net(abilene3, GRANT_ONLY)
    sid_b = _request(net, B)
    sid_c = _request(net, C)
    net.run_until(net.now + 5)
    ok = _outcome(net, sid_b)
    assert isinstance(ok, StitchEstablished)
    refused = _outcome(net, sid_c)
    assert isinstance(refused, StitchFailed)
    assert refused.reason is FailureReason.NOT_AUTHORISED
    assert "not_authorised" in refused.detail
    assert _live_tokens(net, sid_c) == []  # nothing reserved anywhere
    a, c = net.core(A), net.core(C)
    assert a.access_refusals[(c.rm_id, VN)] >= 1
    refusals = [e for _, rm, e in net.events if isinstance(e, AccessRefused)
                and e.origin == c.rm_id]
    assert refusals and all(e.cause == "no_grant" for e in refusals)
    # C hosts VN 100 too, but B admits targets as targets admit origins: B's HOLD (and its
    # components) never reached C
    assert not [t for t in c.tunnels if t.startswith(sid_b)]


def test_non_member_fails_fast_without_waiting_for_the_query_timeout(
        abilene3: Substrate) -> None:
    net = _net(abilene3, GRANT_ONLY)
    t0 = net.now
    sid = _request(net, C)
    net.run_until(net.now + 5)
    failed = [t for t, _, e in net.events if isinstance(e, StitchFailed) and e.stitch_id == sid]
    assert failed and failed[0] - t0 < 1.0  # the query timeout is 3 s


def test_allow_list_admits_without_grant(abilene3: Substrate) -> None:
    net = _net(abilene3, members(lambda rm: AccessPolicy(allow=frozenset({rm[A], rm[B]})),
                                 grant_b=False))
    sid_b, sid_c = _request(net, B), _request(net, C)
    net.run_until(net.now + 5)
    assert isinstance(_outcome(net, sid_b), StitchEstablished)
    c_out = _outcome(net, sid_c)
    assert isinstance(c_out, StitchFailed) and c_out.reason is FailureReason.NOT_AUTHORISED


def test_allow_any_keeps_todays_behaviour(abilene3: Substrate) -> None:
    net = _net(abilene3, members(lambda _: AccessPolicy(allow_any=True), grant_b=False))
    sid_c = _request(net, C)
    net.run_until(net.now + 5)
    assert isinstance(_outcome(net, sid_c), StitchEstablished)  # control: C gets in
    # and every RM learns every VN's components, relayed or not
    c = net.core(C)
    comps = {r.entry.path[-1]: r.entry.components for r in c.discovery.routes_to(VN)}
    assert comps[net.rm_of[A]] == (PREFIX[A],)


def test_components_only_towards_members(abilene3: Substrate) -> None:
    net = _net(abilene3, members(lambda rm: AccessPolicy(allow=frozenset({rm[A], rm[B]}))))
    a_rm = net.rm_of[A]
    b_routes = {r.entry.path[-1]: r for r in net.core(B).discovery.routes_to(VN)}
    c_routes = {r.entry.path[-1]: r for r in net.core(C).discovery.routes_to(VN)}
    assert a_rm in c_routes  # C still learns reachability (VNID, bandwidth, path) ...
    assert c_routes[a_rm].entry.components == ()  # ... but no component of A's VN
    assert c_routes[a_rm].entry.bandwidth_mbps > 0
    if b_routes[a_rm].via == a_rm:  # B is A's neighbour and allowed: it has them
        assert b_routes[a_rm].entry.components == (PREFIX[A],)
    # and nobody relays them on: no RM but B holds A's prefix
    for seg, core in ((s, net.core(s)) for s in (A, C)):
        for r in core.discovery.routes_to(VN):
            if r.via is not None:
                assert PREFIX[A] not in r.entry.components, seg


def test_revocation_tears_down_within_two_intervals_and_refuses_again(
        abilene3: Substrate) -> None:
    net = _net(abilene3, GRANT_ONLY)
    sid = _request(net, B)
    net.run_until(net.now + 5)
    ok = _outcome(net, sid)
    assert isinstance(ok, StitchEstablished)
    target = next(s for s in (A, C) if net.rm_of[s] == ok.path[-1])
    interval = net.core(A).timers_cfg.announce_interval_s
    # The owner revokes B's grant at a Route Manager that is *not* the target: the list
    # must reach the target through announcements.
    where = A if target == C else C
    t0 = net.now
    net.process(net.rm_of[where], net.core(where).apply_revocations(
        OWNER.revocations(VN, 1, [(1, 1e9)]), net.now))
    net.run_until(net.now + 2 * interval)
    down = [t for t, _, e in net.events if isinstance(e, StitchTornDown)
            and e.stitch_id == sid]
    assert down and down[0] - t0 <= 2 * interval
    final = _outcome(net, sid)
    assert isinstance(final, StitchFailed) and final.reason is FailureReason.NOT_AUTHORISED
    assert _live_tokens(net, sid) == []
    assert all(core.revoked_serials(VN) == {1} for core in net.cores.values())
    again = _request(net, B)
    net.run_until(net.now + 5)
    refused = _outcome(net, again)
    assert isinstance(refused, StitchFailed) and refused.reason is FailureReason.NOT_AUTHORISED


def test_revocation_of_another_serial_changes_nothing(abilene3: Substrate) -> None:
    net = _net(abilene3, GRANT_ONLY)
    sid = _request(net, B)
    net.run_until(net.now + 5)
    net.process(net.rm_of[A], net.core(A).apply_revocations(
        OWNER.revocations(VN, 1, [(2, 1e9)]), net.now))
    net.run_until(net.now + 25)
    assert isinstance(_outcome(net, sid), StitchEstablished)  # control for the test above
    assert not [e for _, _, e in net.events if isinstance(e, StitchTornDown)]


def test_forged_revocation_list_is_not_kept(abilene3: Substrate) -> None:
    net = _net(abilene3, GRANT_ONLY)
    sid = _request(net, B)
    net.run_until(net.now + 5)
    forged = OWNER.revocations(VN, 5, [(1, 1e9)])
    forged = dataclasses.replace(forged, version=6)  # signature no longer matches
    net.process(net.rm_of[C], net.core(C).apply_revocations(forged, net.now))
    net.run_until(net.now + 25)
    assert isinstance(_outcome(net, sid), StitchEstablished)
    assert net.core(C).stats.get("revocations_bad_signature") == 1


def test_grant_expiry_tears_the_stitch_down(abilene3: Substrate) -> None:
    net = _net(abilene3, members(lambda _: AccessPolicy(owner=OWNER.public_bytes),
                                 expires=30.0))
    sid = _request(net, B)
    net.run_until(net.now + 5)
    assert isinstance(_outcome(net, sid), StitchEstablished)
    net.run_until(60.0)
    final = _outcome(net, sid)
    assert isinstance(final, StitchFailed) and final.reason is FailureReason.NOT_AUTHORISED


def test_replayed_grant_of_another_member_is_refused(abilene3: Substrate) -> None:
    """C presents B's (valid, unexpired) grant: it names B, so it admits only B."""
    def configure(cfg: CoreConfig, rm_of: Mapping[SegmentId, RouteManagerId]) -> CoreConfig:
        stolen = OWNER.grant(VN, rm_of[B], 1e9, 1)
        own = (OWNER.grant(VN, rm_of[A], 1e9, 10),) if cfg.segment == A else ()
        return dataclasses.replace(cfg, access={VN: AccessPolicy(owner=OWNER.public_bytes)},
                                   grants=(stolen,) if cfg.segment in (B, C) else own)
    net = _net(abilene3, configure)
    sid_c = _request(net, C)
    net.run_until(net.now + 5)
    out = _outcome(net, sid_c)
    assert isinstance(out, StitchFailed) and out.reason is FailureReason.NOT_AUTHORISED
    causes = {e.cause for _, _, e in net.events if isinstance(e, AccessRefused)}
    assert causes == {"other_member"}


def test_grant_travels_in_query_and_hold_and_hold_signature_covers_it() -> None:
    g = OWNER.grant(VN, RouteManagerId("ab" * 16), 1e9, 7)
    q = Query(b"q" * 8, VN, 1.0, 9.0, 9.0, 3, (RouteManagerId("cd" * 16),), 0.0, 0.0, 5.0,
              1, g)
    assert message_from_wire(int(q.TYPE), q.to_wire()) == q
    h = Hold("t.1", VN, (RouteManagerId("ab" * 16), RouteManagerId("cd" * 16)), 1.0, 2.0,
             b"k" * 32, "e:1", "10.0.0.1", "10.0.0.2", (), b"s" * 64, "", g)
    assert message_from_wire(int(h.TYPE), h.to_wire()) == h
    other = dataclasses.replace(h, grant=OWNER.grant(VN, RouteManagerId("ab" * 16), 1e9, 8))
    assert other.key_material() != h.key_material()
    assert dataclasses.replace(h, grant=None).key_material() != h.key_material()


def test_resize_after_revocation_is_refused_before_enforcement(abilene3: Substrate) -> None:
    net = _net(abilene3, GRANT_ONLY)
    sid = _request(net, B)
    net.run_until(net.now + 5)
    ok = _outcome(net, sid)
    assert isinstance(ok, StitchEstablished)
    target = net.cores[ok.path[-1]]
    token = net.core(B).requests[sid].token
    out: list[object] = []
    assert target.authorise_resize(token, net.rm_of[B], net.now, out)  # type: ignore[arg-type]
    target.revocation_lists[(VN, OWNER.public_bytes)] = OWNER.revocations(VN, 1, [(1, 1e9)])
    assert not target.authorise_resize(token, net.rm_of[B], net.now, out)  # type: ignore[arg-type]
    assert any(isinstance(e, AccessRefused) and e.kind == "resize" for e in out)


def test_admissions_survive_a_restore(abilene3: Substrate) -> None:
    """A target restarted after admitting a stitch still tears it down on revocation."""
    net = _net(abilene3, GRANT_ONLY)
    sid = _request(net, B)
    net.run_until(net.now + 5)
    ok = _outcome(net, sid)
    assert isinstance(ok, StitchEstablished)
    target = net.cores[ok.path[-1]]
    state = decode_state(encode_state(target.export_state()))
    back = type(target).from_state(target.config, target.identity, target.trust,
                                   random.Random(5), state)
    assert back.admitted == target.admitted and back.admitted
    back.revocation_lists[(VN, OWNER.public_bytes)] = OWNER.revocations(VN, 1, [(1, 1e9)])
    out: list[object] = []
    back.enforce_membership(net.now, out)  # type: ignore[arg-type]
    assert not back.admitted
    assert any(isinstance(e, AccessRefused) and e.cause == "revoked" for e in out)
