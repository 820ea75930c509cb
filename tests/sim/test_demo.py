"""The simulator demo: runs with no input, tells the story, writes the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vnstitch.protocol.demo import run_demo as closeup
from vnstitch.sim.demo import main, summary_rows


def test_demo_story_and_report(tmp_path: Path) -> None:
    result, lines, path = main(tmp_path / "demo.html")
    text = "\n".join(lines)
    assert "segments, one Route Manager each" in text
    assert "discovery converged" in text
    assert "crashed" in text and "restarted" in text
    assert "flows again via" in text  # a failure and its repair
    assert "seg0" not in text and "Washington DC" in text  # segments named by PoPs
    # every line about a stitch names its id, VN and bandwidth
    stitch_lines = [line for line in lines if " stitch " in f" {line.split('s  ', 1)[-1]}"
                    and "VN " in line and "lives on" not in line]
    assert len(stitch_lines) >= 12
    for line in stitch_lines:
        assert "Mbit/s" in line and "(VN " in line, line
    # the crash: when traffic stopped, when it was detected and why, when it flowed again
    assert "traffic kept flowing" in text and "leases" in text and "flowed again" in text
    assert path.read_text().count("data:image/png;base64,") == 1
    rows: dict[str, Any] = dict(summary_rows(result.summary))
    assert rows["stitches requested / feasible / committed"] == "12 / 12 / 12"
    assert rows["over-commits / loops / stale routes / tunnel faults"] == "0 / 0 / 0 / 0"


def test_parts_one_and_two_cut_the_network_the_same_way(tmp_path: Path) -> None:
    one = closeup()
    result, _, _ = main(tmp_path / "demo.html")
    sim = result.simulation
    two = {str(seg): sorted(str(sim.substrate.graph.nodes[n].get("label", n))
                            for n in sim.substrate.nodes_in(seg)) for seg in sim.segments}
    assert one["pops"] == two
    assert len(set(one["segment_names"].values())) == len(two)  # one name, one place
