"""The congestion part of ``vnstitch demo``: built-in data, a readable story."""

from __future__ import annotations

from vnstitch.sim.traffic_story import congestion_demo, summary_rows


def test_congestion_story() -> None:
    res, summary, lines = congestion_demo()
    text = "\n".join(lines)
    assert "congestion begins" in text
    assert "monitor: Houston->Los Angeles congested" in text
    assert "stitch backup (bulk): install New York > Chicago" in text
    assert "resolved by reroute" in text
    assert "email: delivered" in text
    # in time order
    times = [float(line.split("s ", 1)[0]) for line in lines if line[:7].strip()
             .replace(".", "").isdigit()]
    assert times == sorted(times) and times
    rows = dict(summary_rows(summary))
    assert str(rows["stitched classes keep their guarantee"]).startswith("True")
    assert res.final_paths["tv"] == res.flows[0].home
