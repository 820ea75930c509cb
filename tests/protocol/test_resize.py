"""In-place resize of an established stitch: grow, refusal, shrink, loss, races, leases."""

from __future__ import annotations

import contextlib
import json
import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.examples import examples
from vnstitch.dataplane.objects import RateLimit
from vnstitch.model import Component, SegmentId, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import (
    PeerFault,
    StitchConstraints,
    StitchEstablished,
    StitchResized,
)
from vnstitch.protocol.codec import HEADER_LEN, Codec
from vnstitch.protocol.core import RouteManagerCore
from vnstitch.protocol.errors import RemoteProtocolError
from vnstitch.protocol.identity import Identity, TrustStore
from vnstitch.protocol.messages import MsgType, Resize, ResizeRefused
from vnstitch.protocol.negotiation import StitchState
from vnstitch.protocol.reservation import ReservationState
from vnstitch.protocol.testing import InMemoryNetwork

ORIGIN, TARGET = SegmentId("seg02"), SegmentId("seg06")
VN = VNID(100)


@pytest.fixture(scope="module")
def abilene8():  # type: ignore[no-untyped-def]
    return partitioned(load_topology("zoo:Abilene"), 8)


def _net(sub, **kw: object) -> InMemoryNetwork:  # type: ignore[no-untyped-def]
    vns = {s: [VirtualNetwork(VN, s, (Component.parse(f"10.100.{i}.0/24"),))]
           for i, s in enumerate((ORIGIN, TARGET))}
    net = InMemoryNetwork(sub, vns, seed=3, **kw)  # type: ignore[arg-type]
    net.check = lambda n: n.check_no_overcommit()
    net.start()
    net.converge()
    return net


def _stitch(net: InMemoryNetwork, mbps: float = 100.0) -> StitchEstablished:
    core = net.core(ORIGIN)
    sid, out = core.request_stitch(VN, StitchConstraints(mbps), net.now)
    net.process(core.rm_id, out)
    net.run_until(net.now + 2)
    ok = [e for _, _, e in net.events if isinstance(e, StitchEstablished) and e.stitch_id == sid]
    assert ok
    return ok[-1]


def _resize(net: InMemoryNetwork, sid: str, mbps: float, run_s: float = 5.0) -> StitchResized:
    core = net.core(ORIGIN)
    start = len(net.events)
    net.process(core.rm_id, core.resize_stitch(sid, mbps, net.now))
    net.run_until(net.now + run_s)
    found = [e for _, _, e in net.events[start:] if isinstance(e, StitchResized)]
    assert len(found) >= 1, "no StitchResized"
    return found[0]


def _amounts(net: InMemoryNetwork, est: StitchEstablished) -> list[float]:
    """Every hop's committed amount and what its ledger holds on each of its links."""
    token = net.core(ORIGIN).requests[est.stitch_id].token
    seen = []
    for rm in est.path:
        core = net.cores[rm]
        res = core.reservations[token]
        assert res.state is ReservationState.COMMITTED
        seen.append(res.bandwidth_mbps)
        for peer in res.links:
            seen.append(core.ledger._link[peer][token])
    return seen


def _rates(net: InMemoryNetwork, est: StitchEstablished) -> list[tuple[float, float]]:
    return [(o.rate_mbps, o.ceil_mbps) for rm in (est.path[0], est.path[-1])
            for o in net.dataplane[rm] if isinstance(o, RateLimit)]


def test_grow_along_a_three_hop_path_updates_every_hop_and_both_tunnel_ends(  # type: ignore[no-untyped-def]
        abilene8) -> None:
    net = _net(abilene8)
    est = _stitch(net)
    assert len(est.path) == 4  # origin, two transits, target
    assert set(_amounts(net, est)) == {100.0} and _rates(net, est) == [(100.0, 100.0)] * 2
    ev = _resize(net, est.stitch_id, 250.0)
    assert (ev.ok, ev.reason, ev.old_mbps, ev.new_mbps) == (True, "resized", 100.0, 250.0)
    assert set(_amounts(net, est)) == {250.0}
    assert _rates(net, est) == [(250.0, 250.0)] * 2
    origin = net.core(ORIGIN)
    req = origin.requests[est.stitch_id]
    assert req.state is StitchState.ESTABLISHED and req.constraints.bandwidth_mbps == 250.0
    assert origin.counters.sent_by_type.get("RESIZE") == 1
    # hitless: the tunnel never went down, no renegotiation
    assert origin.stats.get("renegotiations", 0) == 0
    assert all(t.state.value == "up" for t in origin.active_tunnels())


def test_grow_refused_at_a_transit_keeps_everything_at_the_old_amount(  # type: ignore[no-untyped-def]
        abilene8) -> None:
    net = _net(abilene8)
    est = _stitch(net)
    transit = net.cores[est.path[2]]
    transit.ledger.capacity[est.path[3]] = 300.0  # only 200 Mbit/s more fit on that link
    before_usage = {rm: c.link_usage() for rm, c in net.cores.items()}
    ev = _resize(net, est.stitch_id, 500.0)
    assert (ev.ok, ev.reason) == (False, "bandwidth")
    assert est.path[2][:8] in ev.detail and "300" in ev.detail
    assert set(_amounts(net, est)) == {100.0}
    assert _rates(net, est) == [(100.0, 100.0)] * 2
    assert {rm: c.link_usage() for rm, c in net.cores.items()} == before_usage
    assert net.core(ORIGIN).requests[est.stitch_id].state is StitchState.ESTABLISHED
    # a grow that fits still works afterwards
    assert _resize(net, est.stitch_id, 290.0).ok
    assert set(_amounts(net, est)) == {290.0}


def test_shrink_frees_capacity_everywhere(abilene8) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene8)
    est = _stitch(net, 400.0)
    ev = _resize(net, est.stitch_id, 150.0)
    assert (ev.ok, ev.old_mbps, ev.new_mbps) == (True, 400.0, 150.0)
    assert set(_amounts(net, est)) == {150.0}
    assert _rates(net, est) == [(150.0, 150.0)] * 2
    mid = net.cores[est.path[1]]
    assert mid.link_usage()[est.path[0]][0] == pytest.approx(150.0)


def test_origin_link_too_small_and_not_established_are_refused_at_once(  # type: ignore[no-untyped-def]
        abilene8) -> None:
    net = _net(abilene8)
    est = _stitch(net)
    origin = net.core(ORIGIN)
    out = origin.resize_stitch(est.stitch_id, 1e9, net.now)
    assert [(e.ok, e.reason) for e in out if isinstance(e, StitchResized)] == \
        [(False, "bandwidth")]
    assert not any(o for o in out if not isinstance(o, StitchResized))
    assert [e.reason for e in origin.resize_stitch("nope", 10.0, net.now)
            if isinstance(e, StitchResized)] == ["not_established"]
    assert [e.reason for e in origin.resize_stitch(est.stitch_id, -1.0, net.now)
            if isinstance(e, StitchResized)] == ["local"]
    # one in flight at a time
    net.process(origin.rm_id, origin.resize_stitch(est.stitch_id, 200.0, net.now))
    assert [e.reason for e in origin.resize_stitch(est.stitch_id, 300.0, net.now)
            if isinstance(e, StitchResized)] == ["in_progress"]
    net.run_until(net.now + 3)
    assert set(_amounts(net, est)) == {200.0}


def test_lost_resize_messages_are_retransmitted_hop_by_hop(abilene8) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene8)
    est = _stitch(net)
    left = {MsgType.RESIZE: 2, MsgType.RESIZE_OK: 2}

    def drop(src: RouteManagerId, dst: RouteManagerId, code: int) -> bool:
        kind = MsgType(code)
        if left.get(kind, 0) > 0:
            left[kind] -= 1
            return True
        return False
    net.drop = drop
    ev = _resize(net, est.stitch_id, 220.0)
    assert ev.ok and not any(left.values())
    assert set(_amounts(net, est)) == {220.0}


def test_timeout_settles_every_hop_at_the_old_amount(abilene8) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene8)
    est = _stitch(net)
    last_link = frozenset((est.path[2], est.path[3]))
    cut_kinds = {int(MsgType.RESIZE_OK)}
    # the target commits, but its answer never gets past the last link
    net.drop = lambda s, d, code: code in cut_kinds and frozenset((s, d)) == last_link
    ev = _resize(net, est.stitch_id, 300.0, run_s=4.0)
    assert (ev.ok, ev.reason) == (False, "timeout")
    net.drop = None
    net.run_until(net.now + 10)
    assert set(_amounts(net, est)) == {100.0}  # settled: the target went back too
    assert _rates(net, est) == [(100.0, 100.0)] * 2
    origin = net.core(ORIGIN)
    assert origin.stats.get("resizes_timed_out") == 1 and not origin.resizes
    assert net.core(ORIGIN).requests[est.stitch_id].state is StitchState.ESTABLISHED


def test_timed_out_shrink_is_settled_and_reported(abilene8) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene8)
    est = _stitch(net, 300.0)
    first = frozenset((est.path[0], est.path[1]))
    net.drop = lambda s, d, code: code == int(MsgType.RESIZE_OK) and frozenset((s, d)) == first
    start = len(net.events)
    net.process(net.core(ORIGIN).rm_id, net.core(ORIGIN).resize_stitch(est.stitch_id, 120.0,
                                                                       net.now))
    net.run_until(net.now + 4)
    net.drop = None
    net.run_until(net.now + 10)
    evs = [(e.ok, e.reason) for _, _, e in net.events[start:] if isinstance(e, StitchResized)]
    assert evs == [(False, "timeout"), (True, "settled")]
    assert set(_amounts(net, est)) == {120.0}


def test_stale_and_duplicate_resizes_are_ignored(abilene8) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene8)
    est = _stitch(net)
    origin = net.core(ORIGIN)
    out = origin.resize_stitch(est.stitch_id, 180.0, net.now)
    net.process(origin.rm_id, out)
    net.run_until(net.now + 3)
    assert set(_amounts(net, est)) == {180.0}
    # the same RESIZE again (a fresh datagram, as a retransmission is) to the first
    # transit: it answers from its cache, and the origin ignores the old answer
    token = origin.requests[est.stitch_id].token
    mid = net.cores[est.path[1]]
    old_msg = mid.reservations[token].resize_answer
    assert old_msg is not None and old_msg.kind is MsgType.RESIZE_OK
    res = origin.reservations[token]
    dup = origin._sign_resize(MsgType.RESIZE, token, est.path, res.resize_seq, 180.0)
    stale = origin._sign_resize(MsgType.RESIZE, token, est.path, res.resize_seq - 1
                                if res.resize_seq > 1 else 1, 999.0)
    outs = mid.receive(origin.codec.encode(mid.rm_id, dup, net.now), origin.rm_id, net.now)
    assert mid.stats.get("resize_duplicate") == 1
    net.process(mid.rm_id, outs)
    net.run_until(net.now + 1)
    assert origin.stats.get("resize_stale_answer", 0) >= 1  # the replayed answer is old news
    # a second resize, then the first one's number again: stale at the hop
    assert _resize(net, est.stitch_id, 160.0).ok
    outs = mid.receive(origin.codec.encode(mid.rm_id, stale, net.now), origin.rm_id, net.now)
    assert mid.stats.get("resize_stale") == 1 and not outs
    assert set(_amounts(net, est)) == {160.0}


def test_resize_racing_a_release_is_harmless(abilene8) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene8)
    est = _stitch(net)
    origin = net.core(ORIGIN)
    out = origin.resize_stitch(est.stitch_id, 300.0, net.now)
    out += origin.release_stitch(est.stitch_id, net.now)
    net.process(origin.rm_id, out)
    evs = [e for e in out if isinstance(e, StitchResized)]
    assert [(e.ok, e.reason) for e in evs] == [(False, "torn_down")]
    net.run_until(net.now + 10)
    for core in net.cores.values():
        for _peer, (used, _cap) in core.link_usage().items():
            assert used == 0.0
    assert not origin.resizes
    # nobody keeps relaying a resize of a released reservation
    resizes = sum(c.counters.sent_by_type.get("RESIZE", 0) for c in net.cores.values())
    assert resizes <= 2 * len(est.path), resizes


def test_lease_digests_agree_after_a_resize(abilene8) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene8)
    est = _stitch(net)
    assert _resize(net, est.stitch_id, 333.0).ok
    for a, b in zip(est.path, est.path[1:], strict=False):
        assert net.cores[a].lease_summary(b) == net.cores[b].lease_summary(a)
    mismatches = {rm: c.stats.get("lease_mismatch", 0) for rm, c in net.cores.items()}
    net.run_until(net.now + 60)
    assert {rm: c.stats.get("lease_mismatch", 0) for rm, c in net.cores.items()} == mismatches
    assert set(_amounts(net, est)) == {333.0}
    # one side at another amount than the other does show as a mismatch
    token = net.core(ORIGIN).requests[est.stitch_id].token
    net.cores[est.path[1]].reservations[token].bandwidth_mbps = 1.0
    assert net.cores[est.path[0]].lease_summary(est.path[1]) != \
        net.cores[est.path[1]].lease_summary(est.path[0])


def _pair() -> tuple[Codec, Codec, Identity]:
    rng = random.Random(5)
    a, b = Identity.from_rng(rng), Identity.from_rng(rng)
    trust = TrustStore([a.public_bytes, b.public_bytes])
    return Codec(a, trust), Codec(b, trust), a


rm_ids = st.binary(min_size=16, max_size=16).map(lambda b: RouteManagerId(b.hex()))
paths = st.lists(rm_ids, min_size=2, max_size=6, unique=True).map(tuple)
resizes = st.one_of(
    st.builds(Resize, st.sampled_from([MsgType.RESIZE, MsgType.RESIZE_OK]),
              st.text(min_size=1, max_size=30), paths, st.integers(1, (1 << 32) - 1),
              st.floats(0.001, 1e6), st.binary(min_size=64, max_size=64)),
    st.builds(ResizeRefused, st.text(min_size=1, max_size=30), paths,
              st.integers(1, (1 << 32) - 1), rm_ids, st.text(max_size=20),
              st.floats(0, 1e6)))


@settings(max_examples=examples(200), deadline=None)
@given(resizes)
def test_resize_messages_round_trip(msg: Resize | ResizeRefused) -> None:
    ca, cb, a = _pair()
    sender, back = cb.decode(ca.encode(cb.identity.rm_id, msg, 1.0), 1.0)
    assert sender == a.rm_id and back == msg


@settings(max_examples=examples(300), deadline=None)
@given(st.sampled_from([16, 17, 18]), st.lists(st.one_of(
    st.integers(-5, 1 << 40), st.floats(), st.binary(max_size=80), st.text(max_size=50),
    st.none()), max_size=7))
def test_malformed_resize_payloads_are_remote_errors(code: int, payload: list[object]) -> None:
    ca, cb, _ = _pair()
    good = ca.encode(cb.identity.rm_id, ResizeRefused("t.1", (RouteManagerId("a" * 32),
                                                              RouteManagerId("b" * 32)),
                                                      1, RouteManagerId("a" * 32), "x", 1.0),
                     1.0)
    head = good[:HEADER_LEN]
    signed = head + msgpack.packb([1, 1.0, code, payload], use_bin_type=True)
    with contextlib.suppress(RemoteProtocolError):
        cb.decode(signed + ca.identity.sign(signed), 1.0)


@pytest.mark.parametrize("payload", [
    ["t.1", b"\x01" * 32, 0, 10.0, b"s" * 64],  # seq 0
    ["t.1", b"\x01" * 32, 1, 0.0, b"s" * 64],  # zero bandwidth
    ["t.1", b"\x01" * 32, 1, -3.0, b"s" * 64],  # negative bandwidth
    ["t.1", b"\x01" * 16, 1, 10.0, b"s" * 64],  # path of one
    ["t.1", b"\x01" * 32, 1, 10.0, b"s" * 63],  # short signature
    ["t.1", b"\x01" * 32, 1, 10.0],  # missing field
])
def test_malformed_resize_bytes_are_a_fault_not_a_crash(abilene8, payload: list[object]) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene8)
    origin = net.core(ORIGIN)
    peer = next(iter(origin.peers))
    good = origin.codec.encode(peer, ResizeRefused("t.1", (origin.rm_id, peer), 1, peer, "x",
                                                   1.0), net.now)
    signed = good[:HEADER_LEN] + msgpack.packb([10_000, net.now, int(MsgType.RESIZE), payload],
                                               use_bin_type=True)
    out = net.cores[peer].receive(signed + origin.identity.sign(signed), origin.rm_id, net.now)
    assert [(type(o), o.reason) for o in out if isinstance(o, PeerFault)] == \
        [(PeerFault, "malformed")]
    assert net.cores[peer].counters.dropped["malformed"] == 1


def test_an_origin_restarted_mid_resize_settles_every_hop(abilene8) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene8)
    est = _stitch(net)
    last_link = frozenset((est.path[2], est.path[3]))
    net.drop = lambda s, d, code: code == int(MsgType.RESIZE_OK) and \
        frozenset((s, d)) == last_link
    origin = net.core(ORIGIN)
    net.process(origin.rm_id, origin.resize_stitch(est.stitch_id, 300.0, net.now))
    net.run_until(net.now + 0.5)
    token = origin.requests[est.stitch_id].token
    assert net.cores[est.path[3]].reservations[token].bandwidth_mbps == 300.0
    state = json.loads(json.dumps(origin.export_state()))  # as the daemon stores it
    restored = RouteManagerCore.from_state(origin.config, net.identities[ORIGIN],
                                           origin.trust, random.Random(9), state)
    net.cores[origin.rm_id] = restored
    net.drop = None
    start = len(net.events)
    net.process(origin.rm_id, restored.start(net.now))
    net.run_until(net.now + 10)
    evs = [(e.ok, e.reason) for _, _, e in net.events[start:] if isinstance(e, StitchResized)]
    assert evs == [(False, "timeout")]
    assert set(_amounts(net, est)) == {100.0}
    assert restored.requests[est.stitch_id].state is StitchState.ESTABLISHED


def test_a_transit_cannot_forge_a_resize_and_an_unknown_token_is_released(  # type: ignore[no-untyped-def]
        abilene8) -> None:
    net = _net(abilene8)
    est = _stitch(net)
    origin = net.core(ORIGIN)
    token = origin.requests[est.stitch_id].token
    transit, target = net.cores[est.path[2]], net.cores[est.path[3]]
    forged = transit._sign_resize(MsgType.RESIZE, token, est.path, 7, 900.0)  # wrong signer
    out = target.receive(transit.codec.encode(target.rm_id, forged, net.now), transit.rm_id,
                         net.now)
    answers = [transit.codec.decode(o.payload, net.now)[1] for o in out
               if hasattr(o, "payload")]
    assert [(a.reason, a.seq) for a in answers if isinstance(a, ResizeRefused)] == \
        [("bad_keysig", 7)]
    assert target.reservations[token].resize_seq == 0  # a forgery blocks no later resize
    assert target.reservations[token].bandwidth_mbps == 100.0
    # a RESIZE for a reservation the hop does not hold
    ghost = origin._sign_resize(MsgType.RESIZE, "feedbeef0000.1", est.path, 1, 5.0)
    mid = net.cores[est.path[1]]
    out = mid.receive(origin.codec.encode(mid.rm_id, ghost, net.now), origin.rm_id, net.now)
    answers = [origin.codec.decode(o.payload, net.now)[1] for o in out
               if hasattr(o, "payload")]
    assert [a.reason for a in answers if isinstance(a, ResizeRefused)] == ["released"]
    assert _resize(net, est.stitch_id, 150.0).ok  # the real origin still can
