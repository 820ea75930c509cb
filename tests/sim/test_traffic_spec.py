"""The ``traffic:`` / ``qos:`` scenario sections: bad fields give errors naming the field;
``vnstitch simulate`` shows and exports the traffic summary."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from vnstitch.cli import build_parser
from vnstitch.cli.simulate import run_simulate
from vnstitch.model import load_topology
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.scenario import load_scenario, parse_scenario
from vnstitch.sim.traffic import TrafficSim

QOS = """
qos:
  link_mbps: 1000
  classes:
    - {name: video, priority: 0, guaranteed_mbps: 300, max_mbps: 1000}
    - {name: email, priority: 3, guaranteed_mbps: 50, max_mbps: 1000}
"""
FLOWS = """
traffic:
  flows:
    - {name: a, class: video, src: New York, dst: Chicago, mbps: 10}
"""


def _parse(text: str) -> None:
    parse_scenario(textwrap.dedent(text), "bad.yaml", None)


@pytest.mark.parametrize(("text", "field", "problem"), [
    (FLOWS, "qos", "required"),
    (QOS, "traffic", "required"),
    (QOS.replace("borrow", "x") + "  borrow: fair\n" + FLOWS, "qos.borrow", "priority"),
    (QOS.replace("300", "3000") + FLOWS, "qos.classes[0].guaranteed_mbps", "exceeds max"),
    (QOS.replace("priority: 3", "priority: low") + FLOWS, "qos.classes[1].priority", "integer"),
    (QOS + "  colour: red\n" + FLOWS, "qos.colour", "unknown field"),
    (QOS + FLOWS.replace("class: video", "class: gold"), "traffic.flows[0].class", "gold"),
    (QOS + FLOWS.replace("mbps: 10", "mbps: -1"), "traffic.flows[0].mbps", ">= 0"),
    (QOS + FLOWS.replace(", mbps: 10", ""), "traffic.flows[0].mbps", "required"),
    (QOS + FLOWS.replace("dst: Chicago", "dst: New York"), "traffic.flows[0].dst", "differ"),
    (QOS + FLOWS.replace("name: a,", "nme: a,"), "traffic.flows[0].name", "missing"),
    (QOS + FLOWS.replace("mbps: 10}", "mbps: 10, colour: red}"), "traffic.flows[0].colour",
     "unknown field"),
    (QOS + FLOWS + "    - {name: a, class: email, src: Chicago, dst: Denver, mbps: 1}\n",
     "traffic.flows[1].name", "duplicate"),
    (QOS + FLOWS.replace("mbps: 10}", "mbps: 10, schedule: [{at: 9, mbps: 1}, "
                                      "{at: 5, mbps: 2}]}"),
     "traffic.flows[0].schedule[1].at", "after the previous"),
    (QOS + FLOWS.replace("mbps: 10}", "mbps: 10, schedule: [{at: 9}]}"),
     "traffic.flows[0].schedule[0].mbps", "required"),
    (QOS + FLOWS.replace("mbps: 10}", "mbps: 10, schedule: 5}"),
     "traffic.flows[0].schedule", "list"),
    (QOS + "traffic:\n  flows: []\n", "traffic.flows", "non-empty"),
    (QOS + FLOWS + "  interval_s: 0\n", "traffic.interval_s", "> 0"),
    (QOS + FLOWS + "  monitor: {high: 0.5, low: 0.7}\n", "traffic.monitor.low",
     "below high"),
    (QOS + FLOWS + "  monitor: {raise_samples: 0}\n", "traffic.monitor.raise_samples",
     "between 1"),
    (QOS + FLOWS + "  reroute: {hold_down_s: -1}\n", "traffic.reroute.hold_down_s", ">= 0"),
    (QOS + FLOWS + "  reroute: {classes: [video, gold]}\n", "traffic.reroute.classes[1]",
     "gold"),
    (QOS + FLOWS + "  reroute: {returns: maybe}\n", "traffic.reroute.returns", "true or"),
    (QOS + FLOWS + "  stitched_classes: [silver]\n", "traffic.stitched_classes[0]",
     "silver"),
    (QOS + FLOWS + "  speed: 3\n", "traffic.speed", "unknown field"),
])
def test_bad_traffic_fields_are_named(text: str, field: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as err:
        _parse(text)
    assert err.value.field == field, str(err.value)
    assert problem in err.value.problem, str(err.value)
    # the problem's position in the file: FILE:LINE:COL
    assert re.search(rf"bad\.yaml:\d+:\d+: {re.escape(field)}:", str(err.value)), str(err.value)


@pytest.mark.parametrize(("flow", "field", "problem"), [
    ("src: Atlantis, dst: Chicago", "traffic.flows[0].src", "no such node"),
    ("src: New York, dst: '99'", "traffic.flows[0].dst", "no such node"),
    ("src: '0', dst: New York", "traffic.flows[0].dst", "same node"),  # id 0 = New York
])
def test_nodes_are_checked_against_the_topology(flow: str, field: str, problem: str) -> None:
    sc = parse_scenario(QOS + FLOWS.replace("src: New York, dst: Chicago", flow), "t.yaml",
                        None)
    assert sc.traffic is not None
    with pytest.raises(ScenarioError) as err:
        TrafficSim(sc.traffic, load_topology("zoo:Abilene"), source="t.yaml")
    assert err.value.field == field and problem in err.value.problem, str(err.value)


def test_defaults_and_stitched_classes() -> None:
    sc = parse_scenario(QOS + FLOWS, "ok.yaml", None)
    assert sc.traffic is not None
    assert sc.traffic.borrow == "priority" and sc.traffic.interval_s == 5.0
    assert sc.traffic.stitched_classes == ("video",)  # the first priority
    assert parse_scenario("name: x", "plain.yaml", None).traffic is None


def test_simulate_prints_and_exports_the_traffic_section(
        capsys: pytest.CaptureFixture[str]) -> None:
    def run(*extra: str) -> int:
        args = build_parser().parse_args(["simulate", "--scenario", "builtin:congestion",
                                          "--duration", "60", *extra])
        return run_simulate(args)  # the real cores: only they renegotiate stitches

    assert run("--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert "committed" in data and "overcommit_violations" in data  # existing keys stay
    t = data["traffic"]
    ids = {s["id"] for s in data["stitches"]}
    assert all(f["stitch_ids"] and set(f["stitch_ids"]) <= ids for f in t["flows"])
    assert t["max_intervals_to_reroute"] <= 3 and t["stitched_guarantee_kept"]
    assert set(t["classes"]) == {"video", "interactive", "database", "bulk", "email"}
    assert run() == 0
    out = capsys.readouterr().out
    assert "onset to reroute" in out and "email" in out


def test_builtin_congestion_loads() -> None:
    sc = load_scenario("builtin:congestion")
    assert sc.traffic is not None and len(sc.traffic.flows) >= 5


def test_every_problem_of_qos_traffic_and_allocation_is_reported_at_once() -> None:
    text = textwrap.dedent("""\
        qos:
          link_mbps: 1000
          borrow: fair
          classes:
            - {name: video, priority: 0, guaranteed_mbps: 300, max_mbps: 2000}
            - {name: email, priority: 3, guaranteed_mbps: .nan}
        traffic:
          interval_s: .inf
          flows:
            - {name: a, class: video, src: x, dst: x, mbps: 10}
            - {name: b, class: video, src: x, dst: y, mbps: "5%", reserve_mbps: 3}
        allocation: {unit_mbps: 0, provider: {outages: [{start: 5, end: 1}]}}
        """)
    with pytest.raises(ScenarioError) as err:
        _parse(text)
    got = [ln.split(": ")[:2] for ln in str(err.value).splitlines()]
    assert got == [
        ["bad.yaml:3:11", "qos.borrow"],
        ["bad.yaml:5:66", "qos.classes[0].max_mbps"],
        ["bad.yaml:6:51", "qos.classes[1].guaranteed_mbps"],
        ["bad.yaml:8:15", "traffic.interval_s"],
        ["bad.yaml:10:44", "traffic.flows[0].dst"],
        ["bad.yaml:11:53", "traffic.flows[1].mbps"],
        ["bad.yaml:12:25", "allocation.unit_mbps"],
        ["bad.yaml:12:65", "allocation.provider.outages[0].end"]], str(err.value)
    assert "must be finite" in str(err.value)  # .nan and .inf are refused, not defaulted


def test_class_references_are_checked_with_the_schema_problems() -> None:
    # A bad rate elsewhere does not hide an unknown class (both reported), and a class
    # list that is itself broken does not make every reference look unknown (control).
    text = QOS + FLOWS.replace("class: video", "class: gold") + "  interval_s: -1\n"
    with pytest.raises(ScenarioError) as err:
        _parse(text)
    fields = [ln.split(": ")[1] for ln in str(err.value).splitlines()]
    assert fields == ["traffic.flows[0].class", "traffic.interval_s"], str(err.value)
    broken = QOS.replace("priority: 3", "priority: -3") + FLOWS.replace("class: video",
                                                                         "class: email")
    with pytest.raises(ScenarioError) as err:
        _parse(broken)
    assert [ln.split(": ")[1] for ln in str(err.value).splitlines()] == [
        "qos.classes[1].priority"], str(err.value)


def test_published_schema_describes_the_traffic_sections() -> None:
    import jsonschema  # type: ignore[import-untyped]  # noqa: PLC0415
    import yaml  # noqa: PLC0415

    from vnstitch.cli.schema import schema_of  # noqa: PLC0415

    validator = jsonschema.Draft202012Validator(schema_of("scenario"))
    good = yaml.safe_load(QOS + FLOWS)
    assert list(validator.iter_errors(good)) == []
    for bad in (QOS + FLOWS.replace("mbps: 10", "mbps: -1"),
                QOS + "  colour: red\n" + FLOWS,
                QOS + FLOWS + "  monitor: {high: 11}\n",
                QOS + FLOWS + "allocation: {forecaster: lstm}\n"):
        assert list(validator.iter_errors(yaml.safe_load(bad))), bad
