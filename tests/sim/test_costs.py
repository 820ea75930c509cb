"""Route Managers' time costs in the simulator (vnstitch.sim.costs): the clock, and a
stitch's setup through the engine with and without them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vnstitch.dataplane.objects import Bridge, WireguardInterface
from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.api import DataplaneChange, SendDatagram
from vnstitch.sim.costs import CostClock, RmCosts
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import load_scenario, scenario_from_mapping

COSTS = RmCosts(message_ms=2.0, tunnel_up_ms=300.0, tunnel_down_ms=200.0)
WG = WireguardInterface("wg0", "k", 51820, "100.64.0.0/31")
SEND = SendDatagram(RouteManagerId("rm"), b"x")


def test_a_step_s_datagrams_wait_for_its_handling_and_its_tunnel_pass() -> None:
    clock = CostClock(COSTS, 2)
    assert clock.departure(0, [SEND], 1.0) == pytest.approx(1.002)
    # a tunnel end created: the step's datagrams leave after the pass ...
    assert clock.departure(0, [DataplaneChange(add=(WG,)), SEND], 2.0) == pytest.approx(2.3)
    # ... and so does anything sent while it runs; the other RM is not held
    assert clock.departure(0, [SEND], 2.1) == pytest.approx(2.3)
    assert clock.departure(1, [SEND], 2.1) == pytest.approx(2.102)
    # a change that creates no tunnel end costs only its handling
    assert clock.departure(0, [DataplaneChange(add=(Bridge("vn1"),)), SEND], 3.0) == \
        pytest.approx(3.002)


def test_passes_queue_one_deep_and_the_queued_one_takes_later_changes() -> None:
    clock = CostClock(COSTS, 1)
    up = [DataplaneChange(add=(WG,))]
    assert clock.departure(0, up, 0.0) == pytest.approx(0.3)  # runs 0 .. 0.3
    assert clock.departure(0, up, 0.1) == pytest.approx(0.6)  # queued 0.3 .. 0.6
    assert clock.departure(0, up, 0.2) == pytest.approx(0.6)  # joins the queued pass
    down = [DataplaneChange(remove=("wg:wg0",))]
    assert clock.departure(0, down, 1.0) == pytest.approx(1.2)
    clock.crashed(0)
    assert clock.departure(0, [SEND], 1.1) == pytest.approx(1.102)


def _story(costs: bool) -> dict[str, Any]:
    sc = load_scenario("builtin:story")
    sc = dataclasses.replace(sc, rm_costs=COSTS if costs else None, duration_s=6.0,
                             faults=())
    return run(sc, check_every_step=False).summary


def test_setup_pays_the_target_s_tunnel_pass_and_each_hop_s_handling() -> None:
    with_costs, control = _story(True), _story(False)
    s, c = with_costs["parity"], control["parity"]
    assert s["stitches_established"] == c["stitches_established"] == 3
    # at least the target's tunnel pass (held COMMIT_ACK) on top of the cost-free setup
    assert s["setup_seconds_median"] >= c["setup_seconds_median"] + 0.3
    assert s["setup_seconds_median"] < c["setup_seconds_median"] + 3 * 0.3 + 1.0


def test_the_section_is_checked_and_empty_means_the_measured_defaults() -> None:
    base = {"name": "t", "topology": "zoo:Abilene", "segments": 3}
    assert scenario_from_mapping(base, "t.yaml").rm_costs is None
    assert scenario_from_mapping({**base, "rm_costs": {}}, "t.yaml").rm_costs == RmCosts()
    with pytest.raises(ScenarioError, match=r"rm_costs\.message_ms"):
        scenario_from_mapping({**base, "rm_costs": {"message_ms": -1}}, "t.yaml")
