"""CONGESTION: a Route Manager on a stitch's path tells the origin a link is hot."""

from __future__ import annotations

import pytest

from vnstitch.model import Component, SegmentId, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import CongestionReported, PeerFault, StitchConstraints
from vnstitch.protocol.messages import Congestion
from vnstitch.protocol.testing import InMemoryNetwork

ORIGIN, TARGET, TRANSIT = SegmentId("seg02"), SegmentId("seg01"), SegmentId("seg00")
VN = VNID(100)


@pytest.fixture(scope="module")
def abilene4():  # type: ignore[no-untyped-def]
    return partitioned(load_topology("zoo:Abilene"), 4)


def _established(abilene4) -> tuple[InMemoryNetwork, str]:  # type: ignore[no-untyped-def]
    vns = {s: [VirtualNetwork(VN, s, (Component.parse(f"10.100.{i}.0/24"),))]
           for i, s in enumerate((ORIGIN, TARGET))}
    net = InMemoryNetwork(abilene4, vns, seed=1)
    net.start()
    net.converge()
    core = net.core(ORIGIN)
    sid, out = core.request_stitch(VN, StitchConstraints(1000), net.now)
    net.process(core.rm_id, out)
    net.run_until(net.now + 3)
    return net, sid


def _reports(net: InMemoryNetwork) -> list[CongestionReported]:
    return [e for _, _, e in net.events if isinstance(e, CongestionReported)]


def test_transit_and_target_reports_reach_the_origin_hop_by_hop(abilene4) -> None:  # type: ignore[no-untyped-def]
    net, sid = _established(abilene4)
    transit, target = net.rm_of[TRANSIT], net.rm_of[TARGET]
    # The transit's link to the target, seen from the transit: one hop to the origin.
    net.process(transit, net.core(TRANSIT).report_congestion(target, 1.25, net.now))
    net.run_until(net.now + 0.5)
    # The same link seen from the target: relayed through the transit.
    net.process(target, net.core(TARGET).report_congestion(transit, 0.9, net.now))
    net.run_until(net.now + 0.5)
    got = _reports(net)
    assert [(r.stitch_id, r.reporter, frozenset(r.link), r.utilisation) for r in got] == [
        (sid, transit, frozenset({transit, target}), 1.25),
        (sid, target, frozenset({transit, target}), 0.9)]
    assert all(at == net.rm_of[ORIGIN] for _, at, e in net.events
               if isinstance(e, CongestionReported))


def test_origin_own_link_is_an_event_without_a_datagram(abilene4) -> None:  # type: ignore[no-untyped-def]
    net, sid = _established(abilene4)
    out = net.core(ORIGIN).report_congestion(net.rm_of[TRANSIT], 2.0, net.now)
    assert [type(o).__name__ for o in out] == ["CongestionReported"]
    assert isinstance(out[0], CongestionReported) and out[0].stitch_id == sid


def test_a_link_no_stitch_crosses_reports_nothing(abilene4) -> None:  # type: ignore[no-untyped-def]
    net, _ = _established(abilene4)
    other = next(p for p in net.core(TARGET).peers if p != net.rm_of[TRANSIT])
    assert net.core(TARGET).report_congestion(other, 2.0, net.now) == []


def test_a_link_off_the_path_is_a_peer_fault(abilene4) -> None:  # type: ignore[no-untyped-def]
    net, _ = _established(abilene4)
    origin, transit, target = (net.core(s) for s in (ORIGIN, TRANSIT, TARGET))
    res = next(r for r in transit.reservations.values() if r.index == 1)
    bogus = Congestion(res.token, res.path, transit.rm_id, (origin.rm_id, target.rm_id), 2000)
    out: list[object] = []
    transit.send(origin.rm_id, bogus, net.now, out)  # type: ignore[arg-type]
    faults = [o for o in origin.receive(out[0].payload, None, net.now)  # type: ignore[attr-defined]
              if isinstance(o, PeerFault)]
    assert faults and faults[0].reason == "malformed"
    assert not _reports(net)


def test_the_excess_travels_to_the_origin_and_an_old_report_has_none(abilene4) -> None:  # type: ignore[no-untyped-def]
    """What the link carries above the reporter's target reaches the origin hop by hop;
    a five-field CONGESTION (an older peer's) decodes with no excess."""
    net, sid = _established(abilene4)
    transit, target = net.rm_of[TRANSIT], net.rm_of[TARGET]
    net.process(target, net.core(TARGET).report_congestion(transit, 0.9, net.now,
                                                           excess_mbps=1234.2))
    net.run_until(net.now + 0.5)
    got = _reports(net)
    assert [(r.stitch_id, r.excess_mbps) for r in got] == [(sid, 1235.0)]  # whole Mbit/s
    old = Congestion("t.1", (transit, target), target, (transit, target), 900)
    assert old.to_wire()[-1] == 900 and len(old.to_wire()) == 5
    assert Congestion.from_wire(old.to_wire()).excess is None
    new = Congestion("t.1", (transit, target), target, (transit, target), 900, 0)
    assert Congestion.from_wire(new.to_wire()).excess == 0  # given, and none over target
