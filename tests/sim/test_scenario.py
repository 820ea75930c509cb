"""Scenario files: shipped ones load; bad ones fail naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.sim.conftest import double_factory
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.runner import build
from vnstitch.sim.scenario import BUILTIN, load_scenario, parse_scenario
from vnstitch.sim.workload import FaultKind


@pytest.mark.parametrize("name", BUILTIN)
def test_shipped_scenarios_load(name: str) -> None:
    sc = load_scenario(f"builtin:{name}")
    assert sc.name == name


def test_faulty_has_a_crash_restart_and_partition() -> None:
    sc = load_scenario("builtin:faulty")
    kinds = [f.action for f in sc.faults]
    assert FaultKind.CRASH in kinds and FaultKind.PARTITION in kinds


@pytest.mark.parametrize(("text", "field", "problem"), [
    ("segments: many", "segments", "integer"),
    ("segments: 0", "segments", "between"),
    ("duration_s: -3", "duration_s", "between"),
    ("colour: blue", "colour", "unknown field"),
    ("network: {loss: 1.5}", "network.loss", "between"),
    ("network: {los: 0.1}", "network.los", "unknown field"),
    ("network: [1, 2]", "network", "mapping"),
    ("vns: {count: 0}", "vns.count", "between"),
    ("requests: {arrival: burst}", "requests.arrival", "poisson"),
    ("requests: {bandwidth_mbps: [100, 10]}", "requests.bandwidth_mbps", "low <= high"),
    ("requests: {start_s: 10, end_s: 5}", "requests.end_s", ">= start_s"),
    ("requests: {arrival: file}", "requests.file", "required"),
    ("requests: {hold_s: -1}", "requests.hold_s", "> 0"),
    # Non-finite numbers (YAML .inf / .nan) are refused wherever a number is read.
    ("requests: {bandwidth_mbps: .inf}", "requests.bandwidth_mbps", "number > 0"),
    ("requests: {bandwidth_mbps: .nan}", "requests.bandwidth_mbps", "number > 0"),
    ("requests: {bandwidth_mbps: [1, .inf]}", "requests.bandwidth_mbps", "low <= high"),
    ("requests: {hold_s: .inf}", "requests.hold_s", "finite"),
    ("requests: {start_s: .nan}", "requests.start_s", "finite"),
    ("duration_s: .inf", "duration_s", "finite"),
    ("network: {loss: .nan}", "network.loss", "finite"),
    ("protocol: {announce_interval_s: .inf}", "protocol.announce_interval_s", "finite"),
    ("faults: {at: 1}", "faults", "list"),
    ("faults: [{action: crash, segment: seg00}]", "faults[0].at", "required"),
    ("faults: [{at: 1, action: explode}]", "faults[0].action", "one of"),
    ("faults: [{at: 1, action: crash}]", "faults[0].segment", "required"),
    ("faults: [{at: 1, action: cut_link, link: [a]}]", "faults[0].link", "[nodeA, nodeB]"),
    ("faults: [{at: 1, action: partition, segments: []}]", "faults[1-1].segments"
     .replace("1-1", "0"), "non-empty"),
    ("protocol: {announce_interval_s: fast}", "protocol.announce_interval_s", "number"),
    # the protocol section is the core's Timers, by name and type (generated schema)
    ("protocol: {announce_interval: 1}", "protocol.announce_interval", "unknown field"),
    ("protocol: {probe_misses_down: 2.5}", "protocol.probe_misses_down", "integer"),
    ("protocol: {query_fanout: 0}", "protocol.query_fanout", ">= 1"),
    ("protocol: {announce_interval_s: 0}", "protocol.announce_interval_s", "> 0"),
])
def test_bad_field_is_named(text: str, field: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "bad.yaml", None)
    assert err.value.field == field
    assert problem in str(err.value)
    assert re.match(rf"bad\.yaml:1:\d+: {re.escape(field)}: ", str(err.value)), str(err.value)


def test_protocol_timers_reach_the_core_and_problems_come_together() -> None:
    from vnstitch.sim.protocol_cores import timers_with  # noqa: PLC0415

    sc = parse_scenario("protocol: {announce_interval_s: 2, probe_misses_down: 5, "
                        "offer_grace_rtt: 0}\n", "ok.yaml", None)
    timers = timers_with(sc.protocol)
    assert (timers.announce_interval_s, timers.probe_misses_down) == (2.0, 5)
    assert timers.offer_grace_rtt == 0 and timers.query_fanout == 3  # control: a default
    with pytest.raises(ScenarioError) as err:
        parse_scenario("protocol: {hold_intervals: .nan, colour: red, degraded_loss: -1}\n",
                       "bad.yaml", None)
    assert [ln.split(": ")[1] for ln in str(err.value).splitlines()] == [
        "protocol.hold_intervals", "protocol.colour", "protocol.degraded_loss"]


def test_yaml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario("name: x\nsegments: [1, 2\n", "broken.yaml", None)
    assert re.match(r"broken\.yaml:3:1: not valid YAML: ", str(err.value)), str(err.value)


def test_unknown_segment_in_fault_is_named_after_loading() -> None:
    sc = parse_scenario("segments: 3\nfaults: [{at: 5, action: crash, segment: seg42}]",
                        "f.yaml", None)
    with pytest.raises(ScenarioError) as err:
        build(sc, double_factory)
    assert "f.yaml: faults[0].segment: unknown segment 'seg42'" in str(err.value)


def test_unknown_link_and_late_fault_are_named() -> None:
    sc = parse_scenario("faults: [{at: 5, action: cut_link, link: [x, y]}]", "g.yaml", None)
    with pytest.raises(ScenarioError, match=r"g.yaml: faults\[0\].link: no substrate link"):
        build(sc, double_factory)
    sc = parse_scenario("duration_s: 10\nfaults: [{at: 50, action: heal}]", "h.yaml", None)
    with pytest.raises(ScenarioError, match=r"faults\[0\].at: 50s is after the end"):
        build(sc, double_factory)


def test_request_file_errors_name_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "req.csv").write_text("at,origin,vnid,bandwidth_mbps\n1,seg00,100,10\n"
                                      "2,seg01,100,lots\n")
    (tmp_path / "s.yaml").write_text("segments: 3\nrequests: {arrival: file, file: req.csv}\n")
    sc = load_scenario(tmp_path / "s.yaml")
    with pytest.raises(ScenarioError, match=r"req.csv: line 3, column bandwidth_mbps: not a"):
        build(sc, double_factory)


def test_request_file_is_replayed(tmp_path: Path) -> None:
    (tmp_path / "req.csv").write_text("at,origin,vnid,bandwidth_mbps,hold_s\n"
                                      "2.5,seg00,100,10,\n1.5,seg01,101,20,5\n")
    (tmp_path / "s.yaml").write_text("segments: 3\nrequests: {arrival: file, file: req.csv}\n")
    sim = build(load_scenario(tmp_path / "s.yaml"), double_factory)
    sim.run(10)
    recs = sorted(sim.metrics.records.values(), key=lambda r: r.requested_at)
    assert [r.requested_at for r in recs] == [1.5, 2.5]
    assert [r.vnid for r in recs] == [101, 100]


def test_missing_file_is_a_clear_error() -> None:
    with pytest.raises(ScenarioError, match=r"nope\.yaml: cannot read"):
        load_scenario("nope.yaml")


def test_every_problem_is_reported_in_file_order_with_its_position() -> None:
    text = ("segments: 0\nnetwork: {loss: 2, colour: red}\n"
            "faults:\n  - {at: -1, action: crash}\n  - {at: 1, action: explode}\n")
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "many.yaml", None)
    lines = str(err.value).splitlines()
    assert [ln.split(": ")[0:2] for ln in lines] == [
        ["many.yaml:1:11", "segments"], ["many.yaml:2:17", "network.loss"],
        ["many.yaml:2:28", "network.colour"], ["many.yaml:4:10", "faults[0].at"],
        ["many.yaml:5:21", "faults[1].action"]], lines
    assert err.value.field == "segments"  # the first problem, for callers that blame one


def test_published_scenario_schema_accepts_every_builtin_scenario() -> None:
    import importlib.resources  # noqa: PLC0415

    import jsonschema  # type: ignore[import-untyped]  # noqa: PLC0415
    import yaml  # noqa: PLC0415

    from vnstitch.cli.schema import schema_of  # noqa: PLC0415

    validator = jsonschema.Draft202012Validator(schema_of("scenario"))
    for name in BUILTIN:
        text = (importlib.resources.files("vnstitch.sim") / "scenarios" / f"{name}.yaml"
                ).read_text()
        assert list(validator.iter_errors(yaml.safe_load(text))) == [], name
    assert list(validator.iter_errors({"segments": "many"}))  # control
