"""Background traffic from a traffic-matrix CSV: flows built, errors named, and the
real Abilene matrices (skipped without the shared data folder)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vnstitch.datapath import shared_data_dir
from vnstitch.model import load_topology
from vnstitch.sim.errors import ScenarioError
from vnstitch.sim.runner import load_substrate
from vnstitch.sim.scenario import load_scenario, parse_scenario
from vnstitch.sim.traffic_matrix import build_traffic
from vnstitch.sim.traffic_summary import summarise_traffic

QOS = """
qos:
  link_mbps: 10000
  classes:
    - {name: video, priority: 0, guaranteed_mbps: 3000}
    - {name: bulk, priority: 1, guaranteed_mbps: 1000}
    - {name: email, priority: 2, guaranteed_mbps: 500}
"""


def _scenario(tmp_path: Path, matrix: str, duration: float = 30.0) -> str:
    (tmp_path / "tm.csv").write_text(
        "time,New York->Chicago,Chicago->Denver\n"
        "t0,100,10\n"
        "t1,100,20\n"
        "t2,300,0\n", encoding="utf-8")
    text = QOS + textwrap.dedent(f"""
        duration_s: {duration}
        traffic:
          matrix: {matrix}
        """)
    path = tmp_path / "sc.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_matrix_rows_become_flows_per_class(tmp_path: Path) -> None:
    sc = load_scenario(_scenario(tmp_path, "{file: tm.csv, mix: {bulk: 0.75, email: 0.25}, "
                                           "scale: 2, step_s: 10}"))
    sim = build_traffic(sc, load_topology("zoo:Abilene"))
    assert sim is not None
    flows = {f.name: f.spec for f in sim.flows}
    assert set(flows) == {"New York->Chicago:bulk", "New York->Chicago:email",
                          "Chicago->Denver:bulk", "Chicago->Denver:email"}
    bulk = flows["New York->Chicago:bulk"]
    assert bulk.mbps == 150.0 and bulk.schedule == ((20.0, 450.0),)  # unchanged rows skipped
    cd = flows["Chicago->Denver:email"]
    assert [cd.offered_at(t) for t in (0, 9.9, 10, 25)] == [5.0, 5.0, 10.0, 0.0]
    t = summarise_traffic(sim.run(sc.duration_s))
    assert t["classes"]["bulk"]["offered_mbit"] == pytest.approx(
        10 * (150 + 15) + 10 * (150 + 30) + 10 * 450)


@pytest.mark.parametrize(("matrix", "field", "problem"), [
    ("{file: tm.csv, mix: {bulk: 0.5}}", "traffic.matrix.mix", "sum to 1"),
    ("{file: tm.csv, mix: {gold: 1}}", "traffic.matrix.mix.gold", "unknown class"),
    ("{file: tm.csv, mix: {bulk: 0}}", "traffic.matrix.mix.bulk", "fraction"),
    ("{file: tm.csv, mix: [bulk]}", "traffic.matrix.mix", "must be a mapping"),
    ("{mix: {bulk: 1}}", "traffic.matrix.file", "missing required field"),
    ("{file: tm.csv, mix: {bulk: 1}, step_s: 0}", "traffic.matrix.step_s", "> 0"),
    ("{file: tm.csv, mix: {bulk: 1}, rows: 3}", "traffic.matrix.rows", "unknown field"),
])
def test_bad_matrix_fields_are_named(tmp_path: Path, matrix: str, field: str,
                                     problem: str) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(_scenario(tmp_path, matrix))
    assert err.value.field == field and problem in err.value.problem, str(err.value)


@pytest.mark.parametrize(("matrix", "field", "problem"), [
    ("{file: nosuch.csv, mix: {bulk: 1}}", "traffic.matrix.file", "not found"),
    ("{file: tm.csv, mix: {bulk: 1}, start_row: 3}", "traffic.matrix.start_row", "3 rows"),
])
def test_matrix_file_problems_are_named(tmp_path: Path, matrix: str, field: str,
                                        problem: str) -> None:
    sc = load_scenario(_scenario(tmp_path, matrix))
    with pytest.raises(ScenarioError) as err:
        build_traffic(sc, load_topology("zoo:Abilene"))
    assert err.value.field == field and problem in err.value.problem, str(err.value)


def test_unknown_matrix_node_is_named(tmp_path: Path) -> None:
    sc = parse_scenario(QOS + "traffic:\n  matrix: {file: tm.csv, mix: {bulk: 1}}\n",
                        "x.yaml", str(tmp_path))
    _scenario(tmp_path, "{}")
    with pytest.raises(ScenarioError) as err:
        build_traffic(sc, load_topology("sndlib:abilene"))
    assert err.value.field == "traffic.matrix.file[New York->Chicago].src"


@pytest.mark.skipif(shared_data_dir() is None, reason="needs the shared data folder "
                    "(VNSTITCH_DATA) for the Abilene traffic matrices")
def test_real_abilene_matrices_congest_and_are_rerouted() -> None:
    sc = load_scenario("builtin:abilene-tm")
    sim = build_traffic(sc, load_substrate(sc))
    assert sim is not None
    t = summarise_traffic(sim.run(sc.duration_s))
    assert t["congestion_resolved_by_reroute"] >= 1
    assert t["max_intervals_to_reroute"] <= 3.0
    assert t["stitched_guarantee_kept"]
    assert t["shortfall_mbit_total"] > 0 and t["lowest_class_share_of_shortfall"] >= 0.99
