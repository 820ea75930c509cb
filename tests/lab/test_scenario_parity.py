"""One small scenario in both runtimes: the simulator and a live 3-segment lab (FRR,
Route Managers, iperf3) print the same summary keys. The lab is built by the run and
removed even when the run (or this test) fails."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.lab.test_topolab import GRAPHML
from tests.rootutil import require_root
from tests.rootutil import run_id as new_run_id
from vnstitch.lab import frr, scenario_run, substrate
from vnstitch.sim.parity import PARITY_KEYS
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import load_scenario

SCENARIO = """
name: parity-small
topology: tiny.graphml
segments: 3
duration_s: 16
vns: {count: 1, segments_per_vn: 2}
requests: {count: 0}
faults:
  - {at: 7, action: cut_link, link: busiest-adjacency}
  - {at: 10, action: repair_link, link: busiest-adjacency}
qos:
  link_mbps: 1000
  classes:
    - {name: video, priority: 0, guaranteed_mbps: 500, max_mbps: 1000}
    - {name: bulk, priority: 2, guaranteed_mbps: 100, max_mbps: 1000}
traffic:
  interval_s: 2
  stitch_at_s: 1
  flows:
    - {name: tv, vn: 1, class: video, src: "@ring-a", dst: "@ring-b", mbps: "0%",
       reserve_mbps: "10%", schedule: [{at: 3, mbps: "10%"}]}
    - {name: mail, vn: 2, class: bulk, src: "@far-b", dst: "@far-a", mbps: "0%",
       reserve_mbps: "5%", schedule: [{at: 3, mbps: "5%"}]}
"""


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    (tmp_path / "tiny.graphml").write_text(GRAPHML, encoding="utf-8")
    path = tmp_path / "small.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    return path


@pytest.mark.root
def test_a_small_scenario_gives_the_same_summary_keys_live_and_simulated(
        scenario_file: Path) -> None:
    require_root()
    if not frr.available():
        pytest.skip("FRR is not installed")
    sc = load_scenario(scenario_file)
    sim = run(sc, check_every_step=False).summary["parity"]
    run_id = new_run_id()
    try:
        live = scenario_run.run_live(sc, run_id=run_id, build=True, max_link_mbps=20)
    finally:  # the run removes its lab; make sure, whatever happened
        substrate.teardown(run_id)
    assert list(live["parity"]) == list(sim) and list(sim)[:len(PARITY_KEYS)] == \
        list(PARITY_KEYS)
    assert live["leftovers"] == 0 and not any(substrate.leftovers(run_id).values())
    assert frr.leftover_pathspaces(f"{substrate.NS_PREFIX}{run_id}-") == []
    p = live["parity"]
    assert p["stitches_requested"] == sim["stitches_requested"] == 2
    assert p["stitches_established"] == 2  # kernel state: both stitches came up live
    assert [f["action"] for f in live["faults"] if "action" in f] == ["cut_link",
                                                                      "repair_link"]
    assert set(p["delivered_by_class"]) == set(sim["delivered_by_class"]) == {"video",
                                                                              "bulk"}


@pytest.mark.root
def test_a_failing_run_removes_its_lab(scenario_file: Path) -> None:
    """A fault that cannot be applied live is refused before anything is built, and one
    that breaks mid-run (a bad restart target) still leaves nothing behind."""
    require_root()
    if not frr.available():
        pytest.skip("FRR is not installed")
    sc = load_scenario(scenario_file)
    run_id = new_run_id()
    broken = dataclasses.replace(sc, duration_s=2.0, faults=(), traffic=None)
    with pytest.raises(RuntimeError, match="a step failed"):
        scenario_run.run_live(broken, run_id=run_id, build=True, max_link_mbps=20,
                              progress=_explode)
    assert not any(substrate.leftovers(run_id).values())
    assert not (substrate.MANIFEST_DIR / f"{run_id}.json").exists()


def _explode(t: float, what: str) -> None:
    if what == "starting Route Managers":
        raise RuntimeError("a step failed")
