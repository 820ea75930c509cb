"""Two origins stitching one VNID to the same target would need two VXLAN devices with
one VNI at that target, which the kernel refuses (EEXIST): the target refuses the second
HOLD with ``vnid_in_use`` instead, reserves nothing for it, and the first stitch is
untouched; an RM that is the far end of another origin's stitch for the VNID refuses to
start its own. Once the first is released, the second origin's next attempt succeeds.

On Abilene in 4 segments with VN 100 on seg00, seg01 and seg02, seg00's stitch goes to
seg02; seg02's goes to seg00 (found by trying every choice of three segments). The rule
is the daemon's (``CoreConfig.one_end_per_vnid``); the simulator leaves it off."""

from __future__ import annotations

import dataclasses

import pytest

from vnstitch.model import (
    Component,
    SegmentId,
    Substrate,
    VirtualNetwork,
    load_topology,
    partitioned,
)
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import (
    FailureReason,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
)
from vnstitch.protocol.testing import InMemoryNetwork

FIRST, SECOND, TARGET = SegmentId("seg00"), SegmentId("seg01"), SegmentId("seg02")
VN = VNID(100)


@pytest.fixture(scope="module")
def abilene4() -> Substrate:
    return partitioned(load_topology("zoo:Abilene"), 4)


def _net(sub: Substrate, origins: tuple[SegmentId, ...], *,
         one_end_per_vnid: bool = True) -> InMemoryNetwork:
    vns = {s: [VirtualNetwork(VN, s, (Component.parse(f"10.100.{i}.0/24"),))]
           for i, s in enumerate((*origins, TARGET))}
    net = InMemoryNetwork(sub, vns, seed=1, configure=lambda cfg, _ids: dataclasses.replace(
        cfg, one_end_per_vnid=one_end_per_vnid))
    net.check = lambda n: n.check_no_overcommit()
    net.start()
    net.converge()
    return net


def _stitch(net: InMemoryNetwork, seg: SegmentId) -> StitchEstablished | StitchFailed:
    """Request a stitch from ``seg`` for VN 100; its outcome within 20 s."""
    core = net.core(seg)
    sid, out = core.request_stitch(VN, StitchConstraints(10), net.now)
    net.process(core.rm_id, out)
    net.run_until(net.now + 20)
    found = [e for _, _, e in net.events
             if isinstance(e, StitchEstablished | StitchFailed) and e.stitch_id == sid]
    assert found, "no outcome"
    return found[-1]


def _vnid_ends(net: InMemoryNetwork, seg: SegmentId) -> int:
    return sum(1 for t in net.core(seg).active_tunnels() if t.vnid == VN)


def test_control_one_origin_stitches_the_vnid_to_the_target(abilene4: Substrate) -> None:
    net = _net(abilene4, (FIRST,))
    first = _stitch(net, FIRST)
    assert isinstance(first, StitchEstablished)
    assert first.path[-1] == net.core(TARGET).rm_id
    assert _vnid_ends(net, TARGET) == 1


def test_a_second_origin_is_refused_with_a_reason_and_gets_it_after_a_release(
        abilene4: Substrate) -> None:
    net = _net(abilene4, (FIRST, SECOND))
    first = _stitch(net, FIRST)
    assert isinstance(first, StitchEstablished)
    assert first.path[-1] == net.core(TARGET).rm_id
    second = _stitch(net, SECOND)
    assert isinstance(second, StitchFailed)
    assert second.reason is FailureReason.RESERVATION_REFUSED  # retried by the intent
    assert "vnid_in_use" in second.detail
    refusers = [s for s in (FIRST, TARGET) if net.core(s).stats.get("vnid_in_use", 0)]
    assert refusers  # whichever far end SECOND tried said why
    assert _vnid_ends(net, TARGET) == 1 and _vnid_ends(net, SECOND) == 0
    assert first.stitch_id in {t.stitch_id for t in net.core(FIRST).active_tunnels()}
    net.check_no_overcommit()

    net.process(net.core(FIRST).rm_id, net.core(FIRST).release_stitch(first.stitch_id,
                                                                       net.now))
    net.run_until(net.now + 5)
    assert isinstance(_stitch(net, SECOND), StitchEstablished)


def test_the_far_end_of_a_stitch_does_not_start_its_own_for_that_vnid(
        abilene4: Substrate) -> None:
    net = _net(abilene4, (TARGET, FIRST))
    first = _stitch(net, TARGET)  # TARGET -> FIRST (seg02 -> seg00)
    assert isinstance(first, StitchEstablished)
    assert first.path[-1] == net.core(FIRST).rm_id
    own = _stitch(net, FIRST)
    assert isinstance(own, StitchFailed)
    assert own.reason is FailureReason.RESERVATION_REFUSED
    assert f"stitch {first.stitch_id}" in own.detail
    assert _vnid_ends(net, FIRST) == 1


def test_control_without_the_rule_both_are_reported_up(abilene4: Substrate) -> None:
    # What the simulator's idealised dataplane allows (and the kernel would refuse).
    net = _net(abilene4, (FIRST, SECOND), one_end_per_vnid=False)
    assert isinstance(_stitch(net, FIRST), StitchEstablished)
    assert isinstance(_stitch(net, SECOND), StitchEstablished)
