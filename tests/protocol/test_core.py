"""Three to five Route Managers in memory: discovery, stitches, refusals, failures."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.examples import examples
from vnstitch.model import Component, SegmentId, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import (
    FailureReason,
    PeerFault,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
)
from vnstitch.protocol.core import RouteManagerCore, decode_state, encode_state
from vnstitch.protocol.errors import ProtocolError
from vnstitch.protocol.messages import Hello, MsgType
from vnstitch.protocol.testing import InMemoryNetwork
from vnstitch.protocol.timers import TimerKind
from vnstitch.protocol.tunnels import TunnelState
from vnstitch.routing.table import stitch_route_metric

ORIGIN, TARGET, TRANSIT = SegmentId("seg02"), SegmentId("seg01"), SegmentId("seg00")
VN = VNID(100)


def _vns(*segments: SegmentId) -> dict[SegmentId, list[VirtualNetwork]]:
    return {s: [VirtualNetwork(VN, s, (Component.parse(f"10.100.{i}.0/24"),))]
            for i, s in enumerate(segments)}


@pytest.fixture(scope="module")
def abilene4():  # type: ignore[no-untyped-def]
    return partitioned(load_topology("zoo:Abilene"), 4)


def _net(sub, seed: int = 1, **kw: object) -> InMemoryNetwork:  # type: ignore[no-untyped-def]
    net = InMemoryNetwork(sub, _vns(ORIGIN, TARGET), seed=seed, **kw)  # type: ignore[arg-type]
    net.check = lambda n: n.check_no_overcommit()
    net.start()
    net.converge()
    return net


def _request(net: InMemoryNetwork, seg: SegmentId, mbps: float, **kw: float) -> str:
    core = net.core(seg)
    sid, out = core.request_stitch(VN, StitchConstraints(mbps, **kw), net.now)  # type: ignore[arg-type]
    net.process(core.rm_id, out)
    return sid


def _outcome(net: InMemoryNetwork, sid: str) -> StitchEstablished | StitchFailed | None:
    found = [e for _, _, e in net.events
             if isinstance(e, StitchEstablished | StitchFailed) and e.stitch_id == sid]
    return found[-1] if found else None


def test_discovery_converges(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    for core in net.cores.values():
        origins = {o for (v, o) in core.discovery.best if v == VN}
        assert origins == {net.rm_of[ORIGIN], net.rm_of[TARGET]}
        for (_, _), route in core.discovery.best.items():
            assert len(set(route.entry.path)) == len(route.entry.path)  # loop-free
    sent = net.sent
    net.run_until(net.now + 35)  # three hello intervals: only keepalives, no resync
    assert all(not c.stats.get("resync_requested") for c in net.cores.values())
    assert net.sent - sent <= 4 * len(net.cores) * 2  # ~one HELLO per neighbour per interval


def test_transit_stitch_in_three_round_trips(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    sid = _request(net, ORIGIN, 1000)
    t0 = net.now
    net.run_until(net.now + 3)
    ev = _outcome(net, sid)
    assert isinstance(ev, StitchEstablished)
    assert [net.segment_of[r] for r in ev.path] == [ORIGIN, TRANSIT, TARGET]
    one_way = sum(net.latency[(ev.path[i], ev.path[i + 1])] for i in range(2))
    assert ev.now - t0 == pytest.approx(3 * 2 * one_way)
    o, t = net.core(ORIGIN), net.core(TARGET)
    assert [x.state for x in o.active_tunnels()] == [TunnelState.UP]
    assert [x.state for x in t.active_tunnels()] == [TunnelState.UP]
    ot, tt = o.active_tunnels()[0], t.active_tunnels()[0]
    assert ot.peer_public == tt.public_key and tt.peer_public == ot.public_key
    dp = net.dataplane[o.rm_id]
    assert f"route:254:10.100.1.0/24:{stitch_route_metric()}" in dp and f"wg:{ot.wg_name}" in dp
    # Both ends may share a host (user-space WireGuard's socket is per interface name).
    assert ot.wg_name != tt.wg_name and max(len(ot.wg_name), len(ot.vxlan_name)) <= 15
    assert f"rate:{ot.vxlan_name}:{ot.class_id}" in dp  # one HTB class per VXLAN port
    assert net.core(TRANSIT).link_usage()[o.rm_id][0] == 1000
    net.process(o.rm_id, o.release_stitch(sid, net.now))
    net.run_until(net.now + 1)
    assert len(net.dataplane[o.rm_id]) == 0 and len(net.dataplane[t.rm_id]) == 0
    assert all(u == 0 for c in net.cores.values() for u, _ in c.link_usage().values())


def test_bandwidth_no_path_can_carry_is_refused(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    sid = _request(net, ORIGIN, 25000)
    net.run_until(net.now + 5)
    ev = _outcome(net, sid)
    assert isinstance(ev, StitchFailed) and ev.reason is FailureReason.BANDWIDTH
    assert "bandwidth 25000" in ev.detail and "best of" in ev.detail


def test_latency_constraint_names_itself(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    sid = _request(net, ORIGIN, 10, max_latency_ms=1.0)
    net.run_until(net.now + 5)
    ev = _outcome(net, sid)
    assert isinstance(ev, StitchFailed) and ev.reason is FailureReason.LATENCY


def test_concurrent_requests_never_overcommit(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    a = _request(net, ORIGIN, 7000)
    b = _request(net, ORIGIN, 7000)
    c = _request(net, TARGET, 7000)
    net.run_until(net.now + 5)
    outcomes = [_outcome(net, s) for s in (a, b, c)]
    assert all(o is not None for o in outcomes)
    paths = {o.path for o in outcomes if isinstance(o, StitchEstablished)}
    # Both 10 Gbit/s exits of the transit cannot carry 3 x 7 Gbit/s: someone was refused
    # or rerouted, and no link is over its capacity (checked after every step too).
    assert any(isinstance(o, StitchFailed) for o in outcomes) or len(paths) > 1
    net.check_no_overcommit()


def test_cut_on_the_path_reaches_the_origin_through_the_lease(abilene4) -> None:  # type: ignore[no-untyped-def]
    """The tunnel (and so the end-to-end probe) goes around a cut link, but the
    reservation on it is gone: the lease runs out at both RMs of the link, PATH_DOWN
    reaches the origin, which re-negotiates around the cut."""
    net = _net(abilene4)
    sid = _request(net, ORIGIN, 1000)
    net.run_until(net.now + 3)
    first = _outcome(net, sid)
    assert isinstance(first, StitchEstablished)
    assert first.path == (net.rm_of[ORIGIN], net.rm_of[TRANSIT], net.rm_of[TARGET])
    cut_at = net.now
    net.cut.add(frozenset((net.rm_of[TRANSIT], net.rm_of[TARGET])))
    net.run_until(net.now + 60)
    torn = [(t, e) for t, _, e in net.events if isinstance(e, StitchTornDown)]
    assert torn and torn[0][1].renegotiating and torn[0][1].reason is FailureReason.PEER_LOST
    t = net.core(ORIGIN).timers_cfg
    # last confirmation (before the cut) + lease + the last call's wait
    assert torn[0][0] - cut_at <= t.lease_s + 2 * t.retransmit_max_s
    again = _outcome(net, sid)
    assert isinstance(again, StitchEstablished) and again.path != first.path
    # the transit released its part of the dead path
    assert net.core(TRANSIT).link_usage()[net.rm_of[TARGET]][0] == 0


def test_dead_tunnel_renegotiates_within_the_probe_bound(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    sid = _request(net, ORIGIN, 1000)
    net.run_until(net.now + 3)
    first = _outcome(net, sid)
    assert isinstance(first, StitchEstablished)
    tun = net.core(ORIGIN).active_tunnels()[0]
    assert tun.state is TunnelState.UP
    a, b = net.rm_of[ORIGIN], net.rm_of[TARGET]
    dead_at = net.now
    net.drop = lambda src, dst, kind: {src, dst} == {a, b} and kind == MsgType.PROBE
    net.run_until(net.now + 12)
    torn = [(t, e) for t, _, e in net.events if isinstance(e, StitchTornDown)]
    assert torn and torn[0][1].reason is FailureReason.TUNNEL_DOWN and torn[0][1].renegotiating
    t = net.core(ORIGIN).timers_cfg
    assert torn[0][0] - dead_at <= t.probe_interval_s * (t.probe_misses_down + 1)
    # the transit's part of the old path was aborted at once (not left to its lease)
    assert net.core(TRANSIT).stats.get("lease_expired", 0) == 0


def test_forged_and_replayed_datagrams_dropped_and_counted(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    a, b = net.core(ORIGIN), net.core(TRANSIT)
    wire = a.codec.encode(b.rm_id, Hello(0, 0), net.now)
    b.receive(wire, "x", net.now)
    out = b.receive(wire, "x", net.now)
    assert any(isinstance(o, PeerFault) and o.reason == "replayed" for o in out)
    forged = wire[:-1] + bytes([wire[-1] ^ 1])
    b.receive(forged, "x", net.now)
    b.receive(b"garbage", "x", net.now)
    assert b.counters.dropped == {"replayed": 1, "bad_signature": 1, "truncated": 1}


def test_export_and_restore(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    sid = _request(net, ORIGIN, 1000)
    net.run_until(net.now + 3)
    o = net.core(ORIGIN)
    state = o.export_state()
    state = msgpack.unpackb(msgpack.packb(state))  # survives serialisation
    assert decode_state(encode_state(state)) == decode_state(encode_state(o.export_state()))
    state = decode_state(encode_state(state))  # ... and the one on-disk format (JSON)
    back = RouteManagerCore.from_state(o.config, o.identity, o.trust, random.Random(5), state)
    out = back.start(net.now)
    assert back.requests[sid].state.value == "established"
    assert back.link_usage() == o.link_usage()
    assert [t.token for t in back.active_tunnels()] == [t.token for t in o.active_tunnels()]
    assert any(getattr(x, "add", None) for x in out)  # dataplane re-applied


@settings(max_examples=examples(15), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["req", "rel", "wait"]),
                          st.sampled_from([ORIGIN, TARGET]), st.integers(500, 12000)),
                min_size=1, max_size=8), st.integers(0, 3))
def test_random_requests_never_overcommit(ops, seed) -> None:  # type: ignore[no-untyped-def]
    sub = partitioned(load_topology("zoo:Abilene"), 4)
    net = _net(sub, seed=seed)
    sids: list[str] = []
    rng = random.Random(seed)
    for op, seg, mbps in ops:
        if op == "req":
            sids.append(_request(net, seg, float(mbps)))
        elif op == "rel" and sids:
            sid = sids.pop(rng.randrange(len(sids)))
            for core in net.cores.values():
                if sid in core.requests:
                    net.process(core.rm_id, core.release_stitch(sid, net.now))
        net.run_until(net.now + rng.choice([0.0, 0.005, 0.05, 1.0]))
    net.run_until(net.now + 10)
    for sid in sids:
        assert _outcome(net, sid) is not None


def test_timer_kinds_are_an_enum_and_an_unknown_kind_is_refused(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    sid = _request(net, ORIGIN, 1000)
    net.run_until(net.now + 3)
    o = net.core(ORIGIN)
    kinds = {k for k, _ in o.timers}
    assert kinds and all(isinstance(k, TimerKind) for k in kinds)
    assert {TimerKind.HELLO, TimerKind.PROBE} <= kinds
    assert o.timer_due("probe", sid) == o.timer_due(TimerKind.PROBE, sid) is not None
    with pytest.raises(ProtocolError, match="unknown timer kind 'prbe'"):
        o.set_timer("prbe", sid, net.now + 1)


def test_a_state_that_is_not_one_is_refused() -> None:
    with pytest.raises(ProtocolError, match="unreadable"):
        decode_state(b"\x81\xa1a")  # msgpack, not the on-disk format
    with pytest.raises(ProtocolError, match="not a JSON object"):
        decode_state(b"[1, 2]")
