"""The simulator demo: runs with no input, tells the story, writes the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vnstitch.sim.demo import main, summary_rows


def test_demo_story_and_report(tmp_path: Path) -> None:
    result, lines, path = main(tmp_path / "demo.html")
    text = "\n".join(lines)
    assert "segments, one Route Manager each" in text
    assert "discovery converged" in text
    assert "crashed" in text and "restarted" in text
    assert "repaired via" in text  # a failure and its repair
    assert "seg0" in text and "seg 0" not in text
    assert path.read_text().count("data:image/png;base64,") == 1
    rows: dict[str, Any] = dict(summary_rows(result.summary))
    assert rows["committed"] >= 5 and rows["overcommit_violations"] == 0
