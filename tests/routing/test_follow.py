"""When a tunnel end's endpoint is written again: the pure decision (routing/follow.py)."""

from __future__ import annotations

from vnstitch.routing.follow import EndpointFollower, SubstrateRoute, TunnelEnd

END = TunnelEnd("wg0", "cGVlcg==", "10.0.0.3:51820", 51821)
OTHER = TunnelEnd("wg1", "b3RoZXI=", "10.0.0.2:51820", 51822)
L1 = SubstrateRoute(2, "l1", "10.1.0.2")
L2 = SubstrateRoute(3, "l2", "10.1.0.6")


def test_first_sight_is_remembered_a_move_resets_a_steady_route_does_not() -> None:
    f = EndpointFollower()
    assert f.observe({END: L2, OTHER: L1}, 1.0) == []  # new ends: nothing to drop
    assert f.observe({END: L2, OTHER: L1}, 2.0) == []  # control: same routes, no reset
    resets = f.observe({END: L1, OTHER: L1}, 3.0)
    assert [(r.device, r.peer, r.endpoint, r.now) for r in resets] == \
        [("wg0", "cGVlcg==", "10.0.0.3:51820", 3.0)]
    assert "l2#3 via 10.1.0.6 -> l1#2 via 10.1.0.2" in resets[0].reason
    assert f.observe({END: L1, OTHER: L1}, 4.0) == [] and f.resets == 1


def test_a_recreated_link_of_the_same_name_is_another_interface() -> None:
    f = EndpointFollower()
    f.observe({END: L2}, 1.0)
    again = SubstrateRoute(9, "l2", "10.1.0.6")  # cut and restored: a new index
    assert len(f.observe({END: again}, 2.0)) == 1


def test_no_route_waits_and_the_route_coming_back_resets() -> None:
    f = EndpointFollower()
    f.observe({END: L2}, 1.0)
    assert f.observe({END: None}, 2.0) == []  # nothing can be sent: nothing to reset
    assert f.observe({END: None}, 3.0) == []
    resets = f.observe({END: L1}, 4.0)
    assert len(resets) == 1 and "no route -> l1" in resets[0].reason


def test_gone_ends_are_forgotten_and_a_new_endpoint_is_a_new_end() -> None:
    f = EndpointFollower()
    f.observe({END: L2}, 1.0)
    f.observe({}, 2.0)
    assert f.observe({END: L1}, 3.0) == []  # seen afresh after it went away
    moved = TunnelEnd("wg0", "cGVlcg==", "10.0.0.9:51820", 51821)
    assert f.observe({moved: L2}, 4.0) == []  # renegotiated endpoint: configured anew
    assert END.host == "10.0.0.3" and END.port == 51820
