"""Renegotiating an established stitch around an element, make-before-break."""

from __future__ import annotations

import pytest

from vnstitch.model import Component, SegmentId, VirtualNetwork, load_topology, partitioned
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import (
    FailureReason,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
)
from vnstitch.protocol.negotiation import StitchRequest, touches
from vnstitch.protocol.testing import InMemoryNetwork

ORIGIN, TARGET = SegmentId("seg02"), SegmentId("seg01")
TRANSIT, DETOUR = SegmentId("seg00"), SegmentId("seg03")
VN = VNID(100)


@pytest.fixture(scope="module")
def abilene4():  # type: ignore[no-untyped-def]
    return partitioned(load_topology("zoo:Abilene"), 4)


def _established(abilene4) -> tuple[InMemoryNetwork, str]:  # type: ignore[no-untyped-def]
    vns = {s: [VirtualNetwork(VN, s, (Component.parse(f"10.100.{i}.0/24"),))]
           for i, s in enumerate((ORIGIN, TARGET))}
    net = InMemoryNetwork(abilene4, vns, seed=1)
    net.check = lambda n: n.check_no_overcommit()
    net.start()
    net.converge()
    core = net.core(ORIGIN)
    sid, out = core.request_stitch(VN, StitchConstraints(1000), net.now)
    net.process(core.rm_id, out)
    net.run_until(net.now + 3)
    return net, sid


def _events(net: InMemoryNetwork, sid: str) -> list[object]:
    return [e for _, _, e in net.events if getattr(e, "stitch_id", None) == sid]


def _segments(net: InMemoryNetwork, path: tuple[RouteManagerId, ...]) -> list[SegmentId]:
    return [net.segment_of[r] for r in path]


def test_touches_segments_and_adjacencies_in_either_direction() -> None:
    a, b, c = RouteManagerId("a"), RouteManagerId("b"), RouteManagerId("c")
    assert touches((a, b, c), {(b,)})
    assert touches((a, b, c), {(c, b)})
    assert not touches((a, b, c), {(a, c)})  # not consecutive
    assert not touches((a, b, c), set())


def test_around_an_adjacency_make_before_break(abilene4) -> None:  # type: ignore[no-untyped-def]
    net, sid = _established(abilene4)
    first = _events(net, sid)[-1]
    assert isinstance(first, StitchEstablished)
    assert _segments(net, first.path) == [ORIGIN, TRANSIT, TARGET]
    core = net.core(ORIGIN)
    avoid = frozenset({(net.rm_of[TRANSIT], net.rm_of[TARGET])})
    new_sid, out = core.renegotiate_stitch(sid, avoid, net.now)
    assert new_sid != sid  # the old one stays up meanwhile:
    assert not any(isinstance(o, StitchTornDown) for o in out)
    net.process(core.rm_id, out)
    net.run_until(net.now + 3)
    new = [e for e in _events(net, new_sid) if isinstance(e, StitchEstablished)]
    assert len(new) == 1
    assert _segments(net, new[0].path) == [ORIGIN, TRANSIT, DETOUR, TARGET]
    assert new[0].cost > first.cost or new[0].latency_ms > first.latency_ms
    torn = [(t, e) for t, _, e in net.events
            if isinstance(e, StitchTornDown) and e.stitch_id == sid]
    assert len(torn) == 1 and not torn[0][1].renegotiating
    up = next(t for t, _, e in net.events if e is new[0])
    assert torn[0][0] == up  # released in the step the successor came up, not before
    # Only the successor's reservation remains on the transit's links.
    assert sum(u for u, _ in net.core(TRANSIT).link_usage().values()) == 2 * 1000
    net.check_no_overcommit()


def test_nothing_avoids_the_element_old_stitch_untouched(abilene4) -> None:  # type: ignore[no-untyped-def]
    net, sid = _established(abilene4)
    core = net.core(ORIGIN)
    # The origin's only neighbour is the transit: no path avoids it.
    new_sid, out = core.renegotiate_stitch(sid, frozenset({(net.rm_of[TRANSIT],)}), net.now)
    net.process(core.rm_id, out)
    net.run_until(net.now + 30)
    fail = [e for e in _events(net, new_sid) if isinstance(e, StitchFailed)]
    assert len(fail) == 1 and fail[0].reason is not FailureReason.LOCAL
    assert not any(isinstance(e, StitchTornDown) for e in _events(net, sid))
    assert core.requests[sid].state.value == "established"


def test_not_established_is_refused_as_an_event(abilene4) -> None:  # type: ignore[no-untyped-def]
    net, _ = _established(abilene4)
    core = net.core(ORIGIN)
    _sid, out = core.renegotiate_stitch("nosuch", frozenset({(net.rm_of[TRANSIT],)}),
                                           net.now)
    assert [type(o) for o in out] == [StitchFailed]
    assert isinstance(out[0], StitchFailed) and out[0].reason is FailureReason.LOCAL


def test_avoid_and_replaces_survive_export() -> None:
    r = StitchRequest("s1", VN, StitchConstraints(5.0), 0.0,
                      avoid=frozenset({(RouteManagerId("x"),)}), replaces="s0")
    back = StitchRequest.from_dict(r.to_dict())
    assert back.avoid == r.avoid and back.replaces == "s0"
