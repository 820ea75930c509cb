"""End-to-end probes and neighbour-kept leases: what transit RMs carry, and what breaks a
path (a neighbour that holds no part of it) or does not (a short outage)."""

from __future__ import annotations

import pytest

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
from vnstitch.protocol.messages import Hello, MsgType, Probe
from vnstitch.protocol.reservation import ReservationState
from vnstitch.protocol.testing import InMemoryNetwork
from vnstitch.protocol.tunnels import TunnelState

ORIGIN, TARGET, TRANSIT = SegmentId("seg02"), SegmentId("seg01"), SegmentId("seg00")
VN = VNID(100)


@pytest.fixture(scope="module")
def abilene4():  # type: ignore[no-untyped-def]
    return partitioned(load_topology("zoo:Abilene"), 4)


def _net(sub) -> InMemoryNetwork:  # type: ignore[no-untyped-def]
    vns = {s: [VirtualNetwork(VN, s, (Component.parse(f"10.100.{i}.0/24"),))]
           for i, s in enumerate((ORIGIN, TARGET))}
    net = InMemoryNetwork(sub, vns, seed=1)
    net.check = lambda n: n.check_no_overcommit()
    net.start()
    net.converge()
    return net


def _stitch(net: InMemoryNetwork, mbps: float = 100.0) -> tuple[str, StitchEstablished]:
    core = net.core(ORIGIN)
    sid, out = core.request_stitch(VN, StitchConstraints(mbps), net.now)
    net.process(core.rm_id, out)
    net.run_until(net.now + 2)
    ok = [e for _, _, e in net.events if isinstance(e, StitchEstablished) and e.stitch_id == sid]
    assert ok
    return sid, ok[-1]


def _torn(net: InMemoryNetwork) -> list[tuple[float, StitchTornDown]]:
    return [(t, e) for t, _, e in net.events if isinstance(e, StitchTornDown)]


def test_transit_carries_no_probes_and_only_hellos_in_steady_state(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    stitches = [_stitch(net, 50.0) for _ in range(5)]
    assert all(e.path[1] == net.rm_of[TRANSIT] for _, e in stitches)
    transit = net.core(TRANSIT)
    before = dict(transit.counters.sent_by_type)
    net.run_until(net.now + 60)
    sent = {k: n - before.get(k, 0) for k, n in transit.counters.sent_by_type.items()}
    assert sent.get("PROBE", 0) == sent.get("PROBE_REPLY", 0) == 0
    # one HELLO per neighbour per interval (10 s +-10 %), whatever the stitches through it
    assert {k for k, n in sent.items() if n} == {"HELLO"}
    assert 5 * len(transit.peers) <= sent["HELLO"] <= 7 * len(transit.peers)
    # while the ends probe each other directly, and every tunnel is up
    assert net.core(TARGET).counters.sent_by_type["PROBE_REPLY"] >= 5 * 25
    assert all(t.state is TunnelState.UP for t in net.core(ORIGIN).active_tunnels())
    # the transit's reservations are alive: confirmed by both neighbours' HELLOs
    live = [r for r in transit.reservations.values() if r.state is ReservationState.COMMITTED]
    assert len(live) == 5 and not _torn(net)


def test_only_the_tunnel_peer_may_probe_from_beyond_the_neighbours(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    sid, _ = _stitch(net)
    origin, target = net.core(ORIGIN), net.core(TARGET)
    assert target.rm_id not in origin.peers  # the ends are not neighbours
    token = origin.requests[sid].token
    # anything but a probe from a non-neighbour is refused
    out = origin.receive(target.codec.encode(origin.rm_id, Hello(0, 0), net.now), "x", net.now)
    assert any(isinstance(o, PeerFault) and o.reason == "not_neighbour" for o in out)
    # a probe naming a tunnel the sender is not the other end of is ignored
    transit = net.core(TRANSIT)
    probe = Probe(MsgType.PROBE, token, 7, net.now)
    assert target.receive(transit.codec.encode(target.rm_id, probe, net.now), "x", net.now) == []
    assert target.stats["probe_unknown_tunnel"] == 1
    # the real peer gets an answer, sent straight back
    out = target.receive(origin.codec.encode(target.rm_id, probe, net.now), "x", net.now)
    assert [o.destination for o in out if hasattr(o, "destination")] == [origin.rm_id]


def test_a_neighbour_that_lost_its_part_gets_the_path_renegotiated(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    sid, _ = _stitch(net)
    transit = net.core(TRANSIT)
    token = net.core(ORIGIN).requests[sid].token
    # The transit forgets its part silently (as if restored from an older state).
    res = transit.reservations[token]
    res.machine.move(ReservationState.RELEASED)
    transit.ledger.release(token)
    lost_at = net.now
    net.run_until(net.now + 15)
    torn = _torn(net)
    # the next HELLO digests disagree: LEASES query, list, GONE -> the origin re-negotiates
    assert torn and torn[0][1].reason is FailureReason.PEER_LOST and torn[0][1].renegotiating
    interval = transit.timers_cfg.announce_interval_s
    assert torn[0][0] - lost_at <= 1.1 * interval + 1.0
    assert transit.stats.get("lease_mismatch", 0) + net.core(ORIGIN).stats.get(
        "lease_mismatch", 0) >= 1
    again = [e for _, _, e in net.events if isinstance(e, StitchEstablished)
             and e.stitch_id == sid]
    assert len(again) == 2  # re-established
    net.run_until(net.now + 40)
    assert not [e for t, e in _torn(net) if t > torn[0][0] + 1]  # and stable since
    # nothing leaked at the target: only the new tunnel end
    assert len(net.core(TARGET).active_tunnels()) == 1


def test_a_transit_silent_for_less_than_the_lease_keeps_its_stitches(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    _stitch(net)
    t = net.rm_of[TRANSIT]
    # The transit RM is down (a restart, say) but its segment still forwards: the tunnel
    # and its probes keep working. Shorter than the 30 s lease (and hold time).
    net.drop = lambda src, dst, kind: t in (src, dst)
    net.run_until(net.now + 15)
    net.drop = None
    net.run_until(net.now + 60)
    assert not _torn(net)
    assert net.core(TRANSIT).stats.get("lease_expired", 0) == 0


def test_a_transit_silent_for_longer_than_the_lease_releases_the_path(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    sid, _ = _stitch(net)
    t = net.rm_of[TRANSIT]
    assert list(net.core(ORIGIN).peers) == [t]  # the origin has no other way out
    net.drop = lambda src, dst, kind: t in (src, dst)  # RM gone, segment forwarding
    dead_at = net.now
    net.run_until(net.now + 45)
    torn = _torn(net)
    assert torn and torn[0][1].reason is FailureReason.PEER_LOST  # not the tunnel: it works
    t_cfg = net.core(ORIGIN).timers_cfg
    # from the last confirmation (before the outage): lease + the last call's wait
    assert torn[0][0] - dead_at <= t_cfg.lease_s + 2 * t_cfg.retransmit_max_s
    failed = [e for _, _, e in net.events if isinstance(e, StitchFailed) and e.stitch_id == sid]
    assert failed and failed[0].reason is FailureReason.NO_ROUTE  # re-negotiation found none
    # both ends let go: no tunnel end and no reservation left
    for seg in (ORIGIN, TARGET):
        core = net.core(seg)
        assert core.active_tunnels() == []
        assert all(used == 0 for used, _ in core.link_usage().values())


def test_lost_hellos_alone_do_not_tear_a_working_stitch_down(abilene4) -> None:  # type: ignore[no-untyped-def]
    """Every HELLO between the origin and the transit lost for longer than the lease:
    the lease's last call (LEASES query and answer) finds the neighbour still holding it."""
    net = _net(abilene4)
    _stitch(net)
    o, t = net.rm_of[ORIGIN], net.rm_of[TRANSIT]
    net.drop = lambda src, dst, kind: {src, dst} == {o, t} and kind == MsgType.HELLO
    net.run_until(net.now + 70)
    assert not _torn(net)
    assert net.core(TRANSIT).stats.get("lease_last_call", 0) >= 1
    assert net.core(TRANSIT).stats.get("lease_expired", 0) == 0


def test_ended_reservations_are_forgotten_after_the_duplicate_window(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    sid, _ = _stitch(net)
    origin = net.core(ORIGIN)
    net.process(origin.rm_id, origin.release_stitch(sid, net.now))
    net.run_until(net.now + 1)
    cores = [net.core(s) for s in (ORIGIN, TRANSIT, TARGET)]
    # kept for a while, released, to answer retransmissions without re-admitting
    assert all(c.reservations and all(r.state is ReservationState.RELEASED
                                      for r in c.reservations.values()) for c in cores)
    t = origin.timers_cfg
    net.run_until(net.now + 2 * t.hold_timeout_s + t.lease_s + 1)
    assert all(not c.reservations for c in cores)
    assert all(c.stats.get("reservations_forgotten", 0) >= 1 for c in cores)
    # and a new stitch still works afterwards
    _stitch(net)
