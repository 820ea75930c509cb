"""The Predictive Resource Allocator in the traffic simulator: reservations become HTB
guarantees, forecasts use only the past, the provider's quota, turn-up and outages show,
bad ``allocation:`` fields are named. Every claim is paired with a control."""

from __future__ import annotations

import copy
import importlib.resources
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sim.conftest import double_factory
from vnstitch.cli import build_parser
from vnstitch.cli.simulate import run_simulate
from vnstitch.model.substrate import Substrate, substrate_from_links
from vnstitch.sim.allocation import summarise_allocation
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import parse_scenario, scenario_from_mapping
from vnstitch.sim.traffic import TrafficSim
from vnstitch.sim.traffic_model import TrafficResult
from vnstitch.sim.traffic_summary import summarise_traffic

AB = ("A", "B")


def _tri() -> Substrate:
    return substrate_from_links("tri", ["A", "B", "C"], [
        ("A", "B", 1000.0, 1.0, 1.0), ("A", "C", 1000.0, 1.0, 1.0),
        ("C", "B", 1000.0, 1.0, 1.0)])


#: Video alternates 200 / 600 Mbit/s in 50 s blocks: mean 400 over the 300 s run.
BLOCKS = [{"at": 50.0 * k, "mbps": 600.0 if k % 2 else 200.0} for k in range(1, 6)]


def _tri_data(schedule: list[dict[str, float]], *, allocation: dict[str, Any] | None,
              video_g: float = 400.0) -> dict[str, Any]:
    """A hungry backup beside a stitched camera on A->B; HTB lends spare by quantum."""
    data: dict[str, Any] = {
        "duration_s": 300,
        "qos": {"link_mbps": 1000, "borrow": "quantum", "classes": [
            {"name": "video", "priority": 0, "guaranteed_mbps": video_g, "max_mbps": 1000},
            {"name": "bulk", "priority": 1, "guaranteed_mbps": 300, "max_mbps": 1000}]},
        "traffic": {"interval_s": 5, "stitched_classes": ["video"],
                    "monitor": {"high": 1.5, "low": 1.2}, "reroute": {"returns": False},
                    "flows": [
                        {"name": "cam", "class": "video", "src": "A", "dst": "B",
                         "mbps": 200, "schedule": schedule},
                        {"name": "backup", "class": "bulk", "src": "A", "dst": "B",
                         "mbps": 900}]},
    }
    if allocation is not None:
        data["allocation"] = allocation
    return data


def _run(data: dict[str, Any], substrate: Substrate | None = None,
         duration: float | None = None) -> tuple[TrafficSim, TrafficResult]:
    sc = scenario_from_mapping(data, "test")
    assert sc.traffic is not None
    sim = TrafficSim(sc.traffic, substrate if substrate is not None else _tri())
    return sim, sim.run(sc.duration_s if duration is None else duration)


NO_PROVIDER = {"unit_mbps": 10, "provider": {"quota_mbps": 0}}


def _unserved(res: TrafficResult, cls: str = "video") -> float:
    return res.offered_mbit[cls] - res.delivered_mbit[cls]


def _video_rate(sim: TrafficSim, arc: tuple[str, str] = AB) -> float:
    return next(c.rate_mbps for c in sim.tree[arc].classes if c.name == "video")


def test_reservation_follows_the_forecast_and_becomes_the_htb_guarantee() -> None:
    sim, res = _run(_tri_data(BLOCKS, allocation=NO_PROVIDER))
    assert res.allocation is not None
    plan = dict(res.allocation.reservations)
    assert plan[45.0]["cam"] <= 300.0  # 200 Mbit/s so far, no error seen yet
    # inside the first 600 Mbit/s block, after one interval of it was measured
    assert all(plan[t]["cam"] >= 600.0 for t in (55.0, 70.0, 95.0))
    # the data plane: the video leaf on A->B is the (only) reservation there, not the
    # policy's 400; the link's free capacity (1000 - bulk's 300) caps it
    final = plan[300.0]["cam"]
    assert _video_rate(sim) == pytest.approx(min(final, 700.0))
    static, _ = _run(_tri_data(BLOCKS, allocation=None))
    assert _video_rate(static) == pytest.approx(400.0)  # control: the static guarantee


def test_allocation_serves_more_than_a_static_guarantee_at_the_mean() -> None:
    _, res = _run(_tri_data(BLOCKS, allocation=NO_PROVIDER))
    _, static = _run(_tri_data(BLOCKS, allocation=None, video_g=400.0))
    assert _unserved(static) > 1000.0  # control: at the mean, the 600 blocks lose traffic
    assert _unserved(res) < 0.5 * _unserved(static)
    assert res.allocation is not None and res.allocation.scale_outs["granted"] == 0


def test_no_future_peeking() -> None:
    """Demand after 150 s differs; no decision up to 150 s may differ."""
    early = [s for s in BLOCKS if s["at"] < 150]
    high = _tri_data([*early, {"at": 150.0, "mbps": 650.0}], allocation=NO_PROVIDER)
    low = _tri_data([*early, {"at": 150.0, "mbps": 50.0}], allocation=NO_PROVIDER)
    _, a = _run(high)
    _, b = _run(low)
    assert a.allocation is not None and b.allocation is not None
    for (ta, ra), (tb, rb) in zip(a.allocation.reservations, b.allocation.reservations,
                                  strict=True):
        assert ta == tb
        if ta <= 150.0:
            assert ra == rb, ta
    assert any(ra != rb for (ta, ra), (_, rb) in zip(
        a.allocation.reservations, b.allocation.reservations, strict=True) if ta > 150.0)
    fa = dict(a.allocation.forecasts)
    fb = dict(b.allocation.forecasts)
    assert all(fa[t] == fb[t] for t in fa if t <= 150.0)


def _surge(turn_up: float) -> dict[str, Any]:
    return _tri_data([{"at": 50.0, "mbps": 900.0}], allocation={
        "unit_mbps": 10, "provider": {"turn_up_s": turn_up, "price_per_mbps_hour": 1.0}})


def test_bought_capacity_raises_the_link_only_once_turned_up() -> None:
    # decision at 55 s sees 900 > 700 free: buys the rest, usable at 75 s
    before, res = _run(_surge(20.0), duration=70.0)
    assert before.cap[AB] == 1000.0
    assert res.allocation is not None and res.allocation.scale_outs["granted"] >= 1
    after, res = _run(_surge(20.0), duration=80.0)
    assert after.cap[AB] > 1000.0
    assert _video_rate(after) > 700.0
    assert res.allocation is not None and res.allocation.cost > 0.0
    instant, _ = _run(_surge(0.0), duration=60.0)  # control: no turn-up delay
    assert instant.cap[AB] > 1000.0


def _builtin() -> dict[str, Any]:
    text = (importlib.resources.files("vnstitch.sim") / "scenarios" / "allocation.yaml"
            ).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def _builtin_summary(data: dict[str, Any]) -> tuple[TrafficResult, dict[str, Any]]:
    sc = scenario_from_mapping(data, "test")
    res = run(sc, check_every_step=False).traffic  # one simulation: flows ride stitches
    assert res is not None and res.allocation is not None
    return res, summarise_allocation(res.allocation, sc.duration_s, res.labels)


@pytest.fixture(scope="module")
def builtin() -> tuple[TrafficResult, dict[str, Any]]:
    return _builtin_summary(_builtin())


def test_quota_refusal_reroutes_and_outage_leaves_a_shortfall(
        builtin: tuple[TrafficResult, dict[str, Any]]) -> None:
    res, a = builtin
    req = a["provider"]["scale_requests"]
    assert req["granted"] >= 1 and req["refused"] >= 1 and req["failed"] >= 1
    assert [r["flow"] for r in a["reroutes"]] == ["tv2"]
    assert [m.kind for m in res.moves] == ["allocate"]  # it moved in the data plane
    moved = summarise_traffic(res)
    assert (moved["allocator_moves"], moved["reroutes"], moved["returns"]) == (1, 0, 0)
    assert res.final_paths["tv2"] == tuple(a_ for a_ in res.moves[0].new_path)
    outage = a["provider"]["outages"][0]
    times = [s[0] for s in res.allocation.shortfalls] if res.allocation else []
    assert times and any(outage[0] <= t < outage[1] for t in times)
    assert a["shortfalls"]["count"] == len(times)
    assert a["provider"]["cost"] > 0
    assert a["decision_log"]["count"] > a["decision_log"]["kept"] == 200


def test_control_without_quota_or_outage_nothing_is_refused() -> None:
    data = copy.deepcopy(_builtin())
    data["allocation"]["provider"]["quota_mbps"] = 100000
    data["allocation"]["provider"]["outages"] = []
    res, a = _builtin_summary(data)
    req = a["provider"]["scale_requests"]
    assert req["refused"] == 0 and req["failed"] == 0 and req["granted"] >= 1
    assert a["reroutes"] == [] and a["shortfalls"]["count"] == 0 and res.moves == []
    assert summarise_traffic(res)["allocator_moves"] == 0


def test_same_scenario_same_allocation_json(
        builtin: tuple[TrafficResult, dict[str, Any]]) -> None:
    _, again = _builtin_summary(_builtin())
    assert json.dumps(again, sort_keys=False) == json.dumps(builtin[1], sort_keys=False)


def test_ets_forecaster_runs() -> None:
    _, res = _run(_tri_data(BLOCKS, allocation={**NO_PROVIDER, "forecaster": "ets",
                                                "refit_every": 6}))
    assert res.allocation is not None and res.allocation.decisions == 58


def test_simulate_json_has_the_allocation_section(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--scenario", "builtin:allocation", "--requests", "2", "--json"]
    assert run_simulate(build_parser().parse_args(argv), double_factory) == 0
    first = capsys.readouterr().out
    data = json.loads(first)
    a = data["allocation"]
    assert set(a["flows"]) == {"tv", "tv2"}
    for key in ("reserved_mbit", "offered_mbit", "delivered_mbit", "unserved_fraction",
                "slack_mbit", "changes_per_hour", "reroutes"):
        assert key in a["total"]
    assert run_simulate(build_parser().parse_args(argv), double_factory) == 0
    assert capsys.readouterr().out == first


ALLOC_BASE = """
qos:
  link_mbps: 1000
  classes:
    - {name: video, priority: 0, guaranteed_mbps: 300, max_mbps: 1000}
    - {name: email, priority: 3, guaranteed_mbps: 50, max_mbps: 1000}
traffic:
  flows:
    - {name: a, class: video, src: New York, dst: Chicago, mbps: 10}
"""


@pytest.mark.parametrize(("section", "field", "problem"), [
    ("allocation: {bogus: 1}", "allocation.bogus", "unknown field"),
    ("allocation: {classes: [video, vidoe]}", "allocation.classes[1]", "unknown class"),
    ("allocation: {forecaster: lstm}", "allocation.forecaster", "one of"),
    ("allocation: {warmup_intervals: 1}", "allocation.warmup_intervals", "between 2"),
    ("allocation: {unit_mbps: 0}", "allocation.unit_mbps", "> 0"),
    ("allocation: {costs: {video: {c_over: 1}}}", "allocation.costs.video.c_under",
     "required"),
    ("allocation: {classes: [email], costs: {video: {c_under: 3}}}",
     "allocation.costs.video", "not an allocated class"),
    ("allocation: {provider: {quota_mbps: -1}}", "allocation.provider.quota_mbps", ">= 0"),
    ("allocation: {provider: {outages: [{start: 5, end: 9}, {start: 9, end: 2}]}}",
     "allocation.provider.outages[1].end", "> start"),
    ("allocation: {provider: {turn_up: 3}}", "allocation.provider.turn_up", "unknown"),
    ("allocation: {reroute: yes please}", "allocation.reroute", "true or false"),
])
def test_bad_allocation_fields_are_named(section: str, field: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(textwrap.dedent(ALLOC_BASE) + section + "\n", "bad.yaml", None)
    assert err.value.field == field and problem in str(err.value)


def test_allocation_needs_traffic_and_defaults_to_the_stitched_classes() -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario("allocation: {}\n", "bad.yaml", None)
    assert err.value.field == "allocation"
    sc = parse_scenario(textwrap.dedent(ALLOC_BASE) + "allocation: {}\n", "ok.yaml", None)
    assert sc.traffic is not None and sc.traffic.allocation is not None
    assert sc.traffic.allocation.classes == ("video",)
    assert sc.traffic.allocation.app("video").quantile > 0.9  # video_conferencing's costs
    plain = parse_scenario(textwrap.dedent(ALLOC_BASE), "ok.yaml", None)
    assert plain.traffic is not None and plain.traffic.allocation is None  # control


def test_html_report_has_the_allocation_panel(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    argv = ["simulate", "--scenario", "builtin:allocation", "--requests", "2", "--report",
            str(out)]
    assert run_simulate(build_parser().parse_args(argv), double_factory) == 0
    assert "predictive allocation" in capsys.readouterr().out
    text = out.read_text()
    assert "Predictive allocation" in text and text.count("data:image/png;base64,") == 2
