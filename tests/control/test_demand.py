"""StitchDemand: when an origin asks for a VN's stitch (vnstitch.control.demand)."""

from __future__ import annotations

import random

import pytest

from vnstitch.control.demand import DemandState, StitchDemand, knows_route, wake_on_route
from vnstitch.control.errors import ControlError
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import FailureReason, RouteView, StitchConstraints
from vnstitch.protocol.intent import TRANSIENT, IntentState, IntentTable

WAIT = 10.0


def _demand(at: float | None = None) -> StitchDemand:
    rng = random.Random(1)
    d = StitchDemand(lambda n: TRANSIENT.delay(n, rng), route_wait_s=WAIT)
    d.add(7, at=at)
    return d


def _state(d: StitchDemand) -> DemandState:
    return d.vns[7].state


def test_nothing_is_asked_without_traffic_even_with_a_route() -> None:
    d = _demand()
    d.route(7, True, 0.5)
    assert d.due(100.0) == [] and d.next_timer() is None
    d.offered(7, 3.0)  # the route was known first: asked as soon as traffic comes
    assert d.due(3.0) == [7] and d.next_timer() == 3.0


def test_traffic_first_then_asked_at_the_route_event_not_before() -> None:
    d = _demand()
    d.offered(7, 0.0)
    assert d.due(0.4) == []
    d.route(7, True, 0.5)
    assert d.due(0.5) == [7]
    d.asked(7, 0.5)
    assert d.due(0.5) == [] and _state(d) is DemandState.ASKED
    d.up(7)
    assert _state(d) is DemandState.UP and d.next_timer() is None


def test_no_route_asks_blind_after_one_announcement_period_then_backs_off() -> None:
    d = _demand()
    d.offered(7, 1.0)
    assert d.next_timer() == 1.0 + WAIT and d.due(1.0 + WAIT - 0.01) == []
    assert d.due(1.0 + WAIT) == [7]
    d.asked(7, 11.0)
    d.failed(7, 14.0)
    nxt = d.next_timer()
    assert nxt is not None and 14.0 + TRANSIENT.base_s / 2 <= nxt <= 14.0 + TRANSIENT.base_s
    d.asked(7, nxt)
    d.failed(7, nxt + 3)
    later = d.next_timer()
    assert later is not None and later - (nxt + 3) <= TRANSIENT.cap_s
    # a route learned meanwhile cuts the wait short
    d.route(7, True, nxt + 3.1)
    assert d.due(nxt + 3.1) == [7]


def test_a_route_known_before_a_failure_does_not_ask_in_a_loop() -> None:
    d = _demand()
    d.route(7, True, 0.5)
    d.offered(7, 1.0)
    d.asked(7, 1.0)
    d.failed(7, 2.0)  # e.g. no capacity: the route is old news, back off
    assert d.due(2.0) == []
    d.route(7, False, 3.0)
    d.route(7, True, 3.5)  # learned again: news
    assert d.due(3.5) == [7]


def test_explicit_time_whatever_traffic_and_routes() -> None:
    d = _demand(at=2.0)
    assert d.due(1.9) == [] and d.next_timer() == 2.0
    assert d.due(2.0) == [7]


def test_a_stitch_lost_with_its_origin_is_asked_again_at_once() -> None:
    d = _demand()
    d.route(7, True, 0.0)
    d.offered(7, 0.0)
    d.asked(7, 0.0)
    d.up(7)
    d.lost(7, 30.0)
    assert d.due(30.0) == [7]


def test_invalid_transitions_and_inputs_raise() -> None:
    d = _demand()
    with pytest.raises(ControlError):
        d.vns[7].move(DemandState.UP)  # never asked: cannot be up
    with pytest.raises(ControlError):
        d.add(8, at=-1.0)
    with pytest.raises(ControlError):
        StitchDemand(lambda n: 1.0, route_wait_s=float("nan"))


def test_knows_route_only_counts_remote_routes() -> None:
    me, far = RouteManagerId("a"), RouteManagerId("b")
    local = RouteView(VNID(7), None, (me,), 100.0)
    remote = RouteView(VNID(7), far, (far,), 100.0)
    assert not knows_route([local], 7)
    assert knows_route([local, remote], 7) and not knows_route([remote], 8)


def test_wake_on_route_starts_waiting_intents_to_that_vnid_now() -> None:
    table = IntentTable(random.Random(1))
    seven = table.add("s7", 7, StitchConstraints(10.0), 0.0)
    eight = table.add("s8", 8, StitchConstraints(10.0), 0.0)
    for sid in ("s7", "s8"):
        table.failed(sid, FailureReason.NO_ROUTE, "", 3.0)
    assert seven.next_attempt_at is not None and seven.next_attempt_at > 3.1
    woken = wake_on_route(table.intents.values(), 7, 3.1)
    assert woken == [seven] and seven.next_attempt_at == 3.1
    assert eight.next_attempt_at is not None and eight.next_attempt_at > 3.1
    assert [a.intent_id for a in table.poll(3.1)] == ["s7"]
    up = table.add("u7", 7, StitchConstraints(10.0), 0.0)
    table.established("u7")
    assert wake_on_route([up], 7, 4.0) == [] and up.state is IntentState.UP
