"""A new tunnel end is given ``CoreConfig.tunnel_setup_s`` to answer its first probe
(a kernel dataplane is still creating its devices), and no longer (pure, in memory)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from vnstitch.model import Component, SegmentId, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.model.substrate import Substrate
from vnstitch.protocol.api import StitchConstraints, StitchEstablished, StitchTornDown
from vnstitch.protocol.config import CoreConfig
from vnstitch.protocol.messages import MsgType
from vnstitch.protocol.testing import InMemoryNetwork

ORIGIN, TARGET = SegmentId("seg02"), SegmentId("seg01")
VN = VNID(100)
SETUP_S = 15.0


@pytest.fixture(scope="module")
def abilene4() -> Substrate:
    return partitioned(load_topology("zoo:Abilene"), 4)


def _net(sub: Substrate, setup_s: float) -> InMemoryNetwork:
    def configure(cfg: CoreConfig, _: Mapping[SegmentId, RouteManagerId]) -> CoreConfig:
        return dataclasses.replace(cfg, tunnel_setup_s=setup_s)

    vns = {s: [VirtualNetwork(VN, s, (Component.parse(f"10.100.{i}.0/24"),))]
           for i, s in enumerate((ORIGIN, TARGET))}
    net = InMemoryNetwork(sub, vns, seed=3, configure=configure)
    net.start()
    net.converge()
    return net


def _stitch_with_silent_target(net: InMemoryNetwork, silent_s: float) -> str:
    """Stitch; the target's probe replies are lost for ``silent_s`` after the request
    (its tunnel device is not there yet)."""
    core = net.core(ORIGIN)
    reply = int(MsgType.PROBE_REPLY)
    until = net.now + silent_s
    net.drop = lambda src, dst, kind: kind == reply and net.now < until
    sid, out = core.request_stitch(VN, StitchConstraints(100.0), net.now)
    net.process(core.rm_id, out)
    net.run_until(net.now + SETUP_S + 5.0)
    assert any(isinstance(e, StitchEstablished) and e.stitch_id == sid
               for _, _, e in net.events)
    return sid


@pytest.mark.parametrize("setup_s", [SETUP_S, 0.0])
def test_a_slow_first_answer_is_not_a_dead_tunnel(abilene4: Substrate,
                                                   setup_s: float) -> None:
    """The first replies are lost for three detection bounds (within the setup time):
    the stitch stays on its first attempt. Control (no setup time, the simulator's
    setting): the same loss re-negotiates it."""
    net = _net(abilene4, setup_s)
    t = net.core(ORIGIN).timers_cfg
    bound = t.probe_interval_s * t.probe_misses_down
    assert bound < SETUP_S
    _stitch_with_silent_target(net, min(SETUP_S - 0.5, 1.5 * bound))
    torn = [e for _, _, e in net.events if isinstance(e, StitchTornDown)]
    if setup_s:
        assert torn == []
        assert [t.state.value for t in net.core(ORIGIN).active_tunnels()] == ["up"]
    else:
        assert torn


def test_a_tunnel_that_never_answers_is_still_given_up(abilene4: Substrate) -> None:
    net = _net(abilene4, SETUP_S)
    core = net.core(ORIGIN)
    t = core.timers_cfg
    reply = int(MsgType.PROBE_REPLY)
    net.drop = lambda src, dst, kind: kind == reply
    _, out = core.request_stitch(VN, StitchConstraints(100.0), net.now)
    net.process(core.rm_id, out)
    while not any(isinstance(e, StitchEstablished) for _, _, e in net.events):
        assert net.now < 100
        net.run_until(net.now + 0.1)
    est = net.now
    net.run_until(est + SETUP_S + t.probe_interval_s * (t.probe_misses_down + 1) + 0.5)
    assert [e for _, _, e in net.events if isinstance(e, StitchTornDown)]
