"""Retransmission, idempotent duplicates, exact neighbour expiry, resync after a heal and
tunnel progress under loss."""

from __future__ import annotations

import pytest

from vnstitch.model import Component, SegmentId, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import StitchConstraints, StitchEstablished, StitchFailed
from vnstitch.protocol.messages import MsgType
from vnstitch.protocol.testing import InMemoryNetwork
from vnstitch.protocol.tunnels import TunnelState

ORIGIN, TARGET, TRANSIT = SegmentId("seg02"), SegmentId("seg01"), SegmentId("seg00")
VN = VNID(100)


@pytest.fixture(scope="module")
def abilene4():  # type: ignore[no-untyped-def]
    return partitioned(load_topology("zoo:Abilene"), 4)


def _net(sub, seed: int = 1, **kw: object) -> InMemoryNetwork:  # type: ignore[no-untyped-def]
    vns = {s: [VirtualNetwork(VN, s, (Component.parse(f"10.100.{i}.0/24"),))]
           for i, s in enumerate((ORIGIN, TARGET))}
    net = InMemoryNetwork(sub, vns, seed=seed, **kw)  # type: ignore[arg-type]
    net.check = lambda n: n.check_no_overcommit()
    net.start()
    net.converge()
    return net


def _request(net: InMemoryNetwork, seg: SegmentId, mbps: float) -> str:
    core = net.core(seg)
    sid, out = core.request_stitch(VN, StitchConstraints(mbps), net.now)
    net.process(core.rm_id, out)
    return sid


def _outcome(net: InMemoryNetwork, sid: str) -> StitchEstablished | StitchFailed | None:
    found = [e for _, _, e in net.events
             if isinstance(e, StitchEstablished | StitchFailed) and e.stitch_id == sid]
    return found[-1] if found else None


def _drop_first(kinds: set[MsgType], count: int = 1):  # type: ignore[no-untyped-def]
    left = {k: count for k in kinds}

    def drop(src: RouteManagerId, dst: RouteManagerId, code: int) -> bool:
        kind = MsgType(code)
        if left.get(kind, 0) > 0:
            left[kind] -= 1
            return True
        return False
    return drop, left


@pytest.mark.parametrize("kind", [MsgType.QUERY, MsgType.OFFER, MsgType.HOLD,
                                  MsgType.HOLD_OK, MsgType.COMMIT, MsgType.COMMIT_ACK])
def test_a_lost_datagram_is_retransmitted_and_never_double_reserved(  # type: ignore[no-untyped-def]
        abilene4, kind: MsgType) -> None:
    net = _net(abilene4)
    net.drop, left = _drop_first({kind}, count=2)
    sid = _request(net, ORIGIN, 1000)
    net.run_until(net.now + 3)
    assert left[kind] == 0, "the scenario must really lose the datagrams"
    ev = _outcome(net, sid)
    assert isinstance(ev, StitchEstablished), ev
    # each RM on the path holds the bandwidth once, however many copies it saw
    for a, b in zip(ev.path, ev.path[1:], strict=False):
        assert net.cores[a].link_usage()[b][0] == 1000
        assert net.cores[b].link_usage()[a][0] == 1000
    retransmitted = sum(c.stats.get("retransmissions", 0) + c.stats.get(
        "relay_retransmissions", 0) for c in net.cores.values())
    assert retransmitted > 0 or kind in (MsgType.QUERY, MsgType.OFFER)
    o, t = net.core(ORIGIN), net.core(TARGET)
    net.run_until(net.now + 3)
    assert [x.state for x in o.active_tunnels()] == [TunnelState.UP]
    assert [x.state for x in t.active_tunnels()] == [TunnelState.UP]
    net.process(o.rm_id, o.release_stitch(sid, net.now))
    net.run_until(net.now + 10)
    assert all(u == 0 for c in net.cores.values() for u, _ in c.link_usage().values())


def test_duplicate_hold_at_the_target_gets_the_same_answer(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    net.drop, _ = _drop_first({MsgType.HOLD_OK}, count=1)
    sid = _request(net, ORIGIN, 1000)
    net.run_until(net.now + 3)
    assert isinstance(_outcome(net, sid), StitchEstablished)
    t = net.core(TARGET)
    assert t.stats.get("duplicate_hold", 0) + net.core(TRANSIT).stats.get(
        "duplicate_hold", 0) >= 1
    assert len(t.active_tunnels()) == 1  # one tunnel end, not one per copy


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_request_succeeds_under_20_percent_loss(abilene4, seed: int) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4, seed=seed, loss=0.2)
    sids = [_request(net, ORIGIN, 500), _request(net, TARGET, 500)]
    net.run_until(net.now + 15)
    for sid in sids:
        assert isinstance(_outcome(net, sid), StitchEstablished)


def test_silent_neighbour_dropped_exactly_at_hold_time(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    a, b = net.core(TRANSIT), net.core(TARGET)
    net.run_until(net.now + 5)
    net.cut.add(frozenset((a.rm_id, b.rm_id)))
    heard = a.last_heard[b.rm_id]
    hold = a.timers_cfg.hold_time_s
    net.run_until(heard + hold - 1e-6)
    assert b.rm_id in a.last_heard
    net.run_until(heard + hold)
    assert b.rm_id not in a.last_heard and a.stats["peer_lost"] == 1
    assert not a.discovery.rib_in[b.rm_id].entries


def test_after_a_heal_both_sides_relearn_everything(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    before = {rm: dict(c.discovery.best) for rm, c in net.cores.items()}
    target = net.rm_of[TARGET]
    cut = {frozenset((target, p.peer)) for p in net.cores[target].config.peers}
    net.cut |= cut
    net.run_until(net.now + 45)
    assert any(k[1] == target for k in before[net.rm_of[ORIGIN]])
    assert all(k[1] != target for k in net.core(ORIGIN).discovery.best)
    net.cut -= cut
    net.run_until(net.now + 15)  # one HELLO interval and the resync
    after = {rm: set(c.discovery.best) for rm, c in net.cores.items()}
    assert after == {rm: set(b) for rm, b in before.items()}


def test_tunnel_comes_up_on_the_first_answered_probe_despite_losses(abilene4) -> None:  # type: ignore[no-untyped-def]
    net = _net(abilene4)
    net.drop, left = _drop_first({MsgType.PROBE}, count=1)
    sid = _request(net, ORIGIN, 1000)
    net.run_until(net.now + 1)
    assert isinstance(_outcome(net, sid), StitchEstablished) and left[MsgType.PROBE] == 0
    tun = net.core(ORIGIN).active_tunnels()[0]
    assert tun.state is TunnelState.UP  # the retransmitted probe came back within 1 s
