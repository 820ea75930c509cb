"""Held paths (pure, in memory): the origin keeps a given-up path's tunnel end in the
dataplane while the far end's traffic still arrives on it, and only then."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from vnstitch.model import Component, SegmentId, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.model.substrate import Substrate
from vnstitch.protocol.api import (
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
)
from vnstitch.protocol.config import CoreConfig
from vnstitch.protocol.core import RouteManagerCore, decode_state, encode_state
from vnstitch.protocol.messages import MsgType
from vnstitch.protocol.testing import InMemoryNetwork

ORIGIN, TARGET = SegmentId("seg02"), SegmentId("seg01")
VN = VNID(100)


@pytest.fixture(scope="module")
def abilene4() -> Substrate:
    return partitioned(load_topology("zoo:Abilene"), 4)


def _hold(cfg: CoreConfig, _: Mapping[SegmentId, RouteManagerId]) -> CoreConfig:
    return dataclasses.replace(cfg, hold_datapath=True)


def _net(sub: Substrate, *, hold: bool = True) -> InMemoryNetwork:
    vns = {s: [VirtualNetwork(VN, s, (Component.parse(f"10.100.{i}.0/24"),))]
           for i, s in enumerate((ORIGIN, TARGET))}
    net = InMemoryNetwork(sub, vns, seed=3, configure=_hold if hold else None)
    net.start()
    net.converge()
    return net


def _stitch(net: InMemoryNetwork) -> str:
    core = net.core(ORIGIN)
    sid, out = core.request_stitch(VN, StitchConstraints(100.0), net.now)
    net.process(core.rm_id, out)
    net.run_until(net.now + 5)
    assert any(isinstance(e, StitchEstablished) and e.stitch_id == sid
               for _, _, e in net.events)
    return sid


def _kill_target(net: InMemoryNetwork) -> None:
    """The target's daemon is gone: nothing reaches it and it sends nothing."""
    b = net.rm_of[TARGET]
    net.drop = lambda src, dst, kind: b in (src, dst)


def _run_with_traffic(net: InMemoryNetwork, core: RouteManagerCore, token: str,
                      seconds: float, *, traffic: bool) -> None:
    """Advance time; the driver reports the held interface's received bytes every
    0.25 s, rising when ``traffic`` (the far wireguard-go still delivers)."""
    end = net.now + seconds
    while net.now < end:
        net.run_until(min(end, net.now + 0.25))
        held = core.held.get(token)
        rx = held.rx_bytes if held is not None and held.rx_bytes is not None else 1000
        net.process(core.rm_id, core.datapath_rx(token, rx + 500 if traffic else rx,
                                                 net.now))


def test_dead_target_daemon_keeps_the_origins_end_while_traffic_arrives(
        abilene4: Substrate) -> None:
    net = _net(abilene4)
    _stitch(net)
    a = net.core(ORIGIN)
    tun = a.active_tunnels()[0]
    wg = f"wg:{tun.wg_name}"
    assert wg in net.dataplane[a.rm_id]
    _kill_target(net)
    t = a.timers_cfg
    # Past the probe bound and the lease: the stitch itself is given up as before ...
    _run_with_traffic(net, a, tun.token, t.lease_s + 3 * t.probe_interval_s * 4,
                      traffic=True)
    assert [e for _, _, e in net.events if isinstance(e, StitchTornDown)]
    assert a.active_tunnels() == [] or a.active_tunnels()[0].token != tun.token
    # ... but its tunnel end stays while the far end's traffic arrives on it.
    assert wg in net.dataplane[a.rm_id]
    assert a.held_interfaces() == {tun.token: tun.wg_name}
    # Traffic stops (the far wireguard-go died too): still there while the reports
    # cover less than the detection bound, gone once they cover it (plus the re-check).
    stale = t.probe_interval_s * t.probe_misses_down
    _run_with_traffic(net, a, tun.token, stale - 0.5, traffic=False)
    assert wg in net.dataplane[a.rm_id]
    _run_with_traffic(net, a, tun.token, 1.0 + stale / 2, traffic=False)
    assert wg not in net.dataplane[a.rm_id]
    assert a.held == {}
    events = a.counters.events  # exported by the daemon's /metrics
    assert (events.get("datapath_held"), events.get("datapath_hold_ended"),
            events.get("datapath_hold_replaced")) == (1, 1, None)


def test_without_the_hold_the_end_goes_with_the_stitch(abilene4: Substrate) -> None:
    """Control: the simulator's setting (no hold) removes the end at the tear-down."""
    net = _net(abilene4, hold=False)
    _stitch(net)
    a = net.core(ORIGIN)
    tun = a.active_tunnels()[0]
    _kill_target(net)
    t = a.timers_cfg
    _run_with_traffic(net, a, tun.token, t.lease_s + 3 * t.probe_interval_s * 4,
                      traffic=True)
    assert f"wg:{tun.wg_name}" not in net.dataplane[a.rm_id]
    assert a.held == {}


def test_the_replacement_takes_over_in_one_step_and_a_restart_keeps_the_hold(
        abilene4: Substrate) -> None:
    net = _net(abilene4)
    _stitch(net)
    a = net.core(ORIGIN)
    tun = a.active_tunnels()[0]
    _kill_target(net)
    t = a.timers_cfg
    _run_with_traffic(net, a, tun.token, t.lease_s + 2.0, traffic=True)
    assert tun.token in a.held
    # The origin restarts while holding: the held end is in its exported state.
    restored = RouteManagerCore.from_state(a.config, a.identity, a.trust, a.rng,
                                           decode_state(encode_state(a.export_state())))
    net.cores[a.rm_id] = restored
    net.process(a.rm_id, restored.start(net.now))
    assert tun.token in restored.held
    assert f"wg:{tun.wg_name}" in net.dataplane[a.rm_id]
    # The target is back; the VN's stitch is established again (a new request, as the
    # daemon's intent makes it): the held end goes in the step that adds the new one.
    net.drop = None
    # the far wireguard-go keeps delivering while the Route Managers relearn each other
    _run_with_traffic(net, restored, tun.token, 3 * t.announce_interval_s + 0.5,
                      traffic=True)
    assert tun.token in restored.held
    sid, out = restored.request_stitch(VN, StitchConstraints(100.0), net.now)
    net.process(restored.rm_id, out)
    while not any(isinstance(e, StitchEstablished) and e.stitch_id == sid
                  for _, _, e in net.events):
        assert net.now < 200, "no replacement stitch"
        _run_with_traffic(net, restored, tun.token, 0.25, traffic=True)
    new = restored.active_tunnels()[0]
    assert restored.held == {}
    events = restored.counters.events
    # the replacement took the held end over (it did not go for silence)
    assert (events.get("datapath_hold_ended"), events.get("datapath_hold_replaced")) \
        == (None, 1)
    assert f"wg:{tun.wg_name}" not in net.dataplane[a.rm_id]
    assert f"wg:{new.wg_name}" in net.dataplane[a.rm_id]
    assert f"bridge:vn{int(VN)}" in {o.key for o in net.dataplane[a.rm_id]}


def test_the_target_holds_its_end_when_the_origin_is_gone_and_swaps_it_in_one_step(
        abilene4: Substrate) -> None:
    net = _net(abilene4)
    _stitch(net)
    a, b = net.core(ORIGIN), net.core(TARGET)
    tun_b = b.active_tunnels()[0]
    wg_b = f"wg:{tun_b.wg_name}"
    rm_a = net.rm_of[ORIGIN]
    net.drop = lambda src, dst, kind: rm_a in (src, dst)  # the origin's daemon is gone
    t = b.timers_cfg
    changes: list[set[str]] = []
    changes_a: list[set[str]] = []
    _run_with_traffic(net, b, tun_b.token, t.lease_s + 3.0, traffic=True)
    # The transit's lease with the origin ran out and it told the target (ABORT) ...
    assert tun_b.token not in {x.token for x in b.active_tunnels()}
    # ... which keeps its end while the origin's traffic still arrives on it.
    assert tun_b.token in b.held and wg_b in net.dataplane[b.rm_id]
    # The origin is back and stitches the VN again: the target swaps its ends in the
    # step that commits the new one (never two of this stitch's tunnels bridged).
    net.drop = None
    net.run_until(net.now + 3 * t.announce_interval_s)
    sid, out = a.request_stitch(VN, StitchConstraints(100.0), net.now)
    net.process(a.rm_id, out)
    while b.held:  # until the new end carried the origin's first probe
        assert net.now < 200, "no replacement stitch"
        _run_with_traffic(net, b, tun_b.token, 0.05, traffic=True)
        changes.append(_wgs(net, b.rm_id))
        changes_a.append(_wgs(net, a.rm_id))
    assert any(isinstance(e, StitchEstablished) and e.stitch_id == sid
               for _, _, e in net.events)
    assert wg_b not in net.dataplane[b.rm_id]
    events = b.counters.events  # exported by the daemon's /metrics
    assert (events.get("datapath_held"), events.get("datapath_hold_ended"),
            events.get("datapath_hold_replaced")) == (1, None, 1)
    # The origin never bridges two of the stitch's tunnels, so no loop can form (the
    # target briefly does, between the commit and the first probe).
    assert all(len(wgs) <= 1 for wgs in changes_a)
    assert all(len(wgs) <= 2 for wgs in changes)
    assert len({o.key for o in net.dataplane[b.rm_id] if o.key.startswith("wg:")}) == 1


def _wgs(net: InMemoryNetwork, rm: RouteManagerId) -> set[str]:
    return {k for k in (o.key for o in net.dataplane[rm]) if k.startswith("wg:")}


def test_the_target_keeps_its_held_end_when_the_origin_abandons_the_committed_attempt(
        abilene4: Substrate) -> None:
    """The origin is back and asks again; the target commits the new attempt, but the
    origin never hears the COMMIT_ACK and abandons it. The target's held end -- all that
    carries the VN meanwhile -- must stay through that; it goes only when a new end
    carries the origin's first probe."""
    net = _net(abilene4)
    _stitch(net)
    a, b = net.core(ORIGIN), net.core(TARGET)
    tun_b = b.active_tunnels()[0]
    wg_b = f"wg:{tun_b.wg_name}"
    rm_a = net.rm_of[ORIGIN]
    net.drop = lambda src, dst, kind: rm_a in (src, dst)  # the origin's daemon is gone
    t = b.timers_cfg
    _run_with_traffic(net, b, tun_b.token, t.lease_s + 3.0, traffic=True)
    assert tun_b.token in b.held
    # The origin is back, but every COMMIT_ACK toward it is lost.
    ack = int(MsgType.COMMIT_ACK)
    net.drop = lambda src, dst, kind: kind == ack
    net.run_until(net.now + 3 * t.announce_interval_s)
    sid, out = a.request_stitch(VN, StitchConstraints(100.0), net.now)
    net.process(a.rm_id, out)
    committed = False
    while not any(isinstance(e, StitchFailed) and e.stitch_id == sid
                  for _, _, e in net.events):
        assert net.now < 300, "the attempt was never given up"
        _run_with_traffic(net, b, tun_b.token, 0.1, traffic=True)
        committed = committed or len(_wgs(net, b.rm_id)) == 2
        assert wg_b in net.dataplane[b.rm_id]  # the held end never went
    assert committed  # the target did commit (and add) the new end meanwhile
    _run_with_traffic(net, b, tun_b.token, 2.0, traffic=True)
    assert tun_b.token in b.held and _wgs(net, b.rm_id) == {wg_b}
    # Acknowledgements get through again: the next attempt's first probe ends the hold.
    net.drop = None
    sid, out = a.request_stitch(VN, StitchConstraints(100.0), net.now)
    net.process(a.rm_id, out)
    while b.held:
        assert net.now < 400, "no replacement stitch"
        _run_with_traffic(net, b, tun_b.token, 0.1, traffic=True)
    assert wg_b not in net.dataplane[b.rm_id] and len(_wgs(net, b.rm_id)) == 1


def test_a_late_sampler_is_not_silence(abilene4: Substrate) -> None:
    """Reports that stop coming (a starved sampler on a loaded host) keep the end: only
    reports that span the detection bound without a rise remove it."""
    net = _net(abilene4)
    _stitch(net)
    a = net.core(ORIGIN)
    tun = a.active_tunnels()[0]
    _kill_target(net)
    t = a.timers_cfg
    _run_with_traffic(net, a, tun.token, t.lease_s + 2.0, traffic=True)
    assert tun.token in a.held
    stale = t.probe_interval_s * t.probe_misses_down
    net.run_until(net.now + 3 * stale)  # no report at all meanwhile
    assert tun.token in a.held
    _run_with_traffic(net, a, tun.token, 1.0, traffic=True)  # it was carrying traffic
    assert tun.token in a.held


# -- liveness from the data plane: a lease kept while the tunnel carries probes ---------


def _short_hold(cfg: CoreConfig, _: Mapping[SegmentId, RouteManagerId]) -> CoreConfig:
    return dataclasses.replace(cfg, hold_datapath=True, timers=dataclasses.replace(
        cfg.timers, datapath_hold_s=10.0))


def _target_and_neighbour(net: InMemoryNetwork) -> tuple[RouteManagerCore, str,
                                                         RouteManagerId]:
    b = net.core(TARGET)
    token = b.active_tunnels()[0].token
    return b, token, b.reservations[token].path[-2]


def _torn_down(net: InMemoryNetwork) -> list[StitchTornDown]:
    return [e for _, _, e in net.events if isinstance(e, StitchTornDown)]


@pytest.mark.parametrize("hold", [True, False])
def test_lost_control_datagrams_do_not_end_a_stitch_whose_tunnel_carries_probes(
        abilene4: Substrate, hold: bool) -> None:
    """Everything the target's neighbour on the path sends it is lost (a flood filling
    the target's receive buffer), while the origin's probes still cross the tunnel:
    the target keeps its lease, nothing is re-negotiated. Control (``hold`` False, the
    simulator's setting: probes prove nothing there): the lease runs out, the path is
    torn down."""
    net = _net(abilene4, hold=hold)
    _stitch(net)
    b, token, nb = _target_and_neighbour(net)
    net.drop = lambda src, dst, kind: (src, dst) == (nb, b.rm_id)
    t = b.timers_cfg
    net.run_until(net.now + t.lease_s + 40.0)
    if not hold:
        assert _torn_down(net)
        assert token not in {x.token for x in b.active_tunnels()}
        return
    assert _torn_down(net) == []
    assert [x.token for x in b.active_tunnels()] == [token]
    assert [x.token for x in net.core(ORIGIN).active_tunnels()] == [token]
    assert b.counters.events.get("lease_kept_by_datapath", 0) > 0
    # The neighbour is heard again: its next HELLO confirms the lease as usual.
    net.drop = None
    net.run_until(net.now + 2 * t.announce_interval_s)
    assert b.reservations[token].confirmed[nb] >= net.now - 2 * t.announce_interval_s
    assert _torn_down(net) == []


def test_the_lease_goes_when_the_probes_stop_too(abilene4: Substrate) -> None:
    """Control of the evidence: the neighbour's datagrams and the origin's probes are
    lost: the target gives the path up within the lease, the probes' detection bound
    and the last call."""
    net = _net(abilene4)
    _stitch(net)
    b, token, nb = _target_and_neighbour(net)
    a = net.rm_of[ORIGIN]
    net.drop = lambda src, dst, kind: dst == b.rm_id and src in (nb, a)
    t = b.timers_cfg
    bound = t.lease_s + t.probe_interval_s * t.probe_misses_down + \
        2 * t.retransmit_max_s + t.probe_interval_s
    net.run_until(net.now + bound + 0.5)
    assert token not in {x.token for x in b.active_tunnels()}
    assert b.reservations.get(token) is None or \
        b.reservations[token].state.value != "committed"


def test_a_lease_is_kept_by_the_data_plane_for_at_most_datapath_hold_s(
        abilene4: Substrate) -> None:
    vns = {s: [VirtualNetwork(VN, s, (Component.parse(f"10.100.{i}.0/24"),))]
           for i, s in enumerate((ORIGIN, TARGET))}
    net = InMemoryNetwork(abilene4, vns, seed=3, configure=_short_hold)
    net.start()
    net.converge()
    _stitch(net)
    b, token, nb = _target_and_neighbour(net)
    net.drop = lambda src, dst, kind: (src, dst) == (nb, b.rm_id)
    t = b.timers_cfg
    net.run_until(net.now + t.lease_s + 5.0)
    assert [x.token for x in b.active_tunnels()] == [token]  # still kept ...
    net.run_until(net.now + 5.0 + t.probe_interval_s + 2 * t.retransmit_max_s + 2.0)
    assert token not in {x.token for x in b.active_tunnels()}  # ... not for ever


def test_a_late_first_report_is_a_baseline_not_silence(abilene4: Substrate) -> None:
    """The first report after the hold starts (here two detection bounds late, as after
    a restart on a loaded host) has no earlier count to compare: silence is counted
    from it. Control: reports that then stay flat for a bound end the hold."""
    net = _net(abilene4)
    _stitch(net)
    a = net.core(ORIGIN)
    tun = a.active_tunnels()[0]
    _kill_target(net)
    t = a.timers_cfg
    stale = t.probe_interval_s * t.probe_misses_down
    while tun.token not in a.held:  # the probes give the path up: the end is held
        assert net.now < 300, "never held"
        net.run_until(net.now + 0.1)
    since = a.held[tun.token].since
    net.run_until(since + 2 * stale)  # no report yet
    net.process(a.rm_id, a.datapath_rx(tun.token, 5000, net.now))
    net.run_until(net.now + stale / 2 + 0.1)  # a re-check falls in here
    assert tun.token in a.held
    _run_with_traffic(net, a, tun.token, 2 * stale, traffic=True)
    assert tun.token in a.held
    _run_with_traffic(net, a, tun.token, 1.6 * stale, traffic=False)
    assert tun.token not in a.held
