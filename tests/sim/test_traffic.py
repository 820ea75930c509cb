"""Data traffic in the simulator: congestion is rerouted within 3 monitoring intervals,
stitched classes keep their guarantee while e-mail absorbs the shortfall, no flapping."""

from __future__ import annotations

import copy
import importlib.resources
from typing import Any

import pytest
import yaml

from vnstitch.model.substrate import Substrate, substrate_from_links
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import Scenario, scenario_from_mapping
from vnstitch.sim.traffic import run_traffic
from vnstitch.sim.traffic_model import TrafficResult
from vnstitch.sim.traffic_spec import TrafficSpec
from vnstitch.sim.traffic_summary import summarise_traffic


def _builtin() -> dict[str, Any]:
    text = (importlib.resources.files("vnstitch.sim") / "scenarios" / "congestion.yaml"
            ).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def _run(data: dict[str, Any]) -> tuple[Scenario, TrafficResult, dict[str, Any]]:
    sc = scenario_from_mapping(data, "test")
    assert sc.traffic is not None
    res = run(sc, check_every_step=False).traffic  # one simulation: flows ride stitches
    assert res is not None
    return sc, res, summarise_traffic(res)


@pytest.fixture(scope="module")
def congestion() -> tuple[Scenario, TrafficResult, dict[str, Any]]:
    return _run(_builtin())


def test_link_congests_and_is_rerouted_within_3_intervals(
        congestion: tuple[Scenario, TrafficResult, dict[str, Any]]) -> None:
    _, res, t = congestion
    assert t["congestion_episodes"], "the scenario must congest a link"
    assert max(e["peak_offered_utilisation"] for e in t["congestion_episodes"]) > 1.0
    for ep in t["congestion_episodes"]:
        assert ep["resolved_by"] == "reroute", ep
        assert ep["intervals_to_resolve"] <= 3.0, ep
        assert ep["detected_s"] is not None and ep["detected_s"] <= ep["resolved_s"]
    assert t["max_intervals_to_reroute"] <= 3.0
    assert t["max_intervals_congested"] <= 3.0  # no congestion of any cause lasted longer
    # the monitor saw the carried load saturate before it acted
    assert t["max_link_utilisation_sampled"] > res.spec.monitor.high


def test_reroute_is_make_before_break(
        congestion: tuple[Scenario, TrafficResult, dict[str, Any]]) -> None:
    _, res, t = congestion
    reroutes = [m for m in res.moves if m.kind == "stitch"]
    assert reroutes
    for m in reroutes:
        # decided at a sample; the flow moves when the successor stitch is committed,
        # and the old stitch is released in that same step (never before)
        assert m.decided_s < m.effective_s == m.removed_s < m.decided_s + 1.0
        assert m.new_path != m.old_path
        assert m.new_path[0] == m.old_path[0] and m.new_path[-1] == m.old_path[-1]
    # the episode ends exactly when traffic shifts, not when the move is decided
    ep = t["congestion_episodes"][0]
    assert ep["resolved_s"] == pytest.approx(round(reroutes[0].effective_s, 3))  # as shown


def test_stitched_keep_guarantee_while_email_absorbs_the_shortfall(
        congestion: tuple[Scenario, TrafficResult, dict[str, Any]]) -> None:
    _, _, t = congestion
    assert t["stitched_guarantee_kept"]
    for name in t["stitched_classes"]:
        c = t["classes"][name]
        assert c["seconds_below_guarantee"] == 0.0
        assert c["worst_interval_delivered_fraction"] == 1.0  # offered within priority share
    email = t["classes"]["email"]
    assert email["shortfall_mbit"] > 0  # there was a shortfall, and e-mail took it
    assert email["worst_interval_delivered_fraction"] < 0.9
    assert t["lowest_class"] == "email"
    assert t["lowest_class_share_of_shortfall"] >= 0.99


def _served_during_surge(data: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """(offered, delivered) per flow at 35 s, surge on, nothing rerouted yet: the one
    simulation run to 35 s, then its traffic layer served on the stitches it rides."""
    data = {**data, "duration_s": 35, "requests": {**data["requests"], "end_s": 30}}
    sim = run(scenario_from_mapping(data, "test"), check_every_step=False).traffic_sim
    assert sim is not None and all(sim.paths)
    offered = [f.spec.offered_at(35.0) for f in sim.flows]
    state = sim.serve(offered)
    return {f.name: (o, d) for f, o, d in zip(sim.flows, offered, state.delivered,
                                              strict=True)}


def test_stitched_flows_whole_during_the_surge_and_not_without_qos() -> None:
    """Flow by flow: with the policy the stitched video is whole and e-mail is cut; with
    one best-effort class (control) the same load cuts the video too, so the guarantee
    tests are not vacuous."""
    with_qos = _served_during_surge(_builtin())
    assert with_qos["tv"][1] == pytest.approx(with_qos["tv"][0])
    assert with_qos["voice"][1] == pytest.approx(with_qos["voice"][0])
    assert with_qos["mail-east"][1] < 0.9 * with_qos["mail-east"][0]
    data = copy.deepcopy(_builtin())
    data["qos"]["classes"] = [{"name": "be", "priority": 0, "guaranteed_mbps": 0,
                               "max_mbps": 10000}]
    data["traffic"]["stitched_classes"] = ["be"]
    for f in data["traffic"]["flows"]:
        f["class"] = "be"
    best_effort = _served_during_surge(data)
    assert best_effort["tv"][1] < 0.99 * best_effort["tv"][0]  # 105 % offered: cut
    # the link is full either way: QoS changes who loses, not how much
    lost = sum(o - d for o, d in with_qos.values())
    assert sum(o - d for o, d in best_effort.values()) == pytest.approx(lost, rel=0.05)


def test_quantum_borrowing_without_prio_spreads_the_shortfall() -> None:
    """With every HTB class at prio 0 (HTB's default with no prio) spare capacity is
    shared by quantum, so bulk, not e-mail, takes most of the cut; guarantees still hold."""
    data = copy.deepcopy(_builtin())
    data["qos"]["borrow"] = "quantum"
    _, _, t = _run(data)
    assert t["stitched_guarantee_kept"]
    assert t["classes"]["bulk"]["shortfall_mbit"] > t["classes"]["email"]["shortfall_mbit"]
    assert t["lowest_class_share_of_shortfall"] < 0.5


def test_without_reroute_the_congestion_stays(
        congestion: tuple[Scenario, TrafficResult, dict[str, Any]]) -> None:
    data = copy.deepcopy(_builtin())
    data["traffic"]["reroute"]["classes"] = []  # nothing may move
    _, _, t = _run(data)
    assert t["reroutes"] == 0 and t["stitch_moves"] == 0 and not t["stitch_renegotiations"]
    assert t["congestion_resolved_by_reroute"] == 0
    assert all(e["resolved_by"] != "reroute" for e in t["congestion_episodes"])
    assert t["max_intervals_congested"] > 3.0
    moved = congestion[2]["classes"]["email"]["shortfall_mbit"]
    assert t["classes"]["email"]["shortfall_mbit"] > 5 * moved  # the surge lasts 68 s


def _triangle() -> Substrate:
    return substrate_from_links("tri", ["A", "B", "C"], [
        ("A", "B", 100.0, 1.0, 1.0), ("A", "C", 100.0, 1.0, 1.0),
        ("C", "B", 100.0, 1.0, 1.0)])


def _oscillating(hold_down_s: float, raise_samples: int, clear_samples: int) -> dict[str, Any]:
    """A flow A->B whose rate swings across both thresholds: two intervals hot, one cool."""
    schedule = [{"at": 5.0 * k, "mbps": 20.0 if k % 3 == 0 else 95.0} for k in range(1, 120)]
    return {
        "qos": {"link_mbps": 100, "classes": [
            {"name": "video", "priority": 0, "guaranteed_mbps": 30, "max_mbps": 100},
            {"name": "bulk", "priority": 1, "guaranteed_mbps": 10, "max_mbps": 100}]},
        "traffic": {
            "interval_s": 5,
            "monitor": {"high": 0.8, "low": 0.6, "raise_samples": raise_samples,
                        "clear_samples": clear_samples},
            "reroute": {"hold_down_s": hold_down_s, "return_below": 0.99, "target": 0.75,
                        "install_s": 0.1},
            "flows": [{"name": "swing", "class": "bulk", "src": "A", "dst": "B",
                       "mbps": 20, "schedule": schedule},
                      {"name": "call", "class": "video", "src": "A", "dst": "B", "mbps": 10}],
        },
    }


def _changes(data: dict[str, Any]) -> dict[str, Any]:
    sc = scenario_from_mapping(data, "osc")
    assert isinstance(sc.traffic, TrafficSpec)
    return summarise_traffic(run_traffic(sc.traffic, _triangle(), 600.0))


@pytest.mark.parametrize(("hold_down_s", "raise_samples", "clear_samples"), [
    (120.0, 2, 3),  # hold-down and hysteresis (the shipped defaults' shape)
    (120.0, 1, 1),  # hold-down alone
    (0.0, 2, 3),  # hysteresis alone
])
def test_oscillating_load_does_not_flap(hold_down_s: float, raise_samples: int,
                                        clear_samples: int) -> None:
    t = _changes(_oscillating(hold_down_s, raise_samples, clear_samples))
    assert t["reroutes"] >= 1  # it does react
    assert t["max_path_changes_per_flow"] <= 600 / 120 + 1
    gap = t["min_seconds_between_moves_of_a_flow"]
    assert gap is None or gap >= hold_down_s


def test_without_dampening_the_same_load_flaps() -> None:
    """Control: no hold-down and no hysteresis make the flow flap, so the check above
    would catch a planner that ignored its dampening."""
    t = _changes(_oscillating(hold_down_s=0.0, raise_samples=1, clear_samples=1))
    assert t["max_path_changes_per_flow"] > 600 / 120 + 1
    assert t["min_seconds_between_moves_of_a_flow"] < 120.0


def test_same_inputs_same_summary(
        congestion: tuple[Scenario, TrafficResult, dict[str, Any]]) -> None:
    _, _, t = congestion
    assert _run(_builtin())[2] == t
