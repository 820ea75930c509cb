"""The demo stitches across a transit segment in three round trips, then simulates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vnstitch.cli import main


def test_demo_closeup_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json", "--no-simulation"]) == 0
    r = json.loads(capsys.readouterr().out)["closeup"]
    assert len(r["stitch"]["path"]) >= 3  # a transit segment in between
    assert r["stitch"]["round_trips"] == pytest.approx(3.0)
    assert {t["state"] for t in r["tunnels"]} == {"up"} and len(r["tunnels"]) == 2
    assert r["converged_after_messages"] > 0 and not r["dropped"]


def test_demo_full_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "demo.html"
    assert main(["demo", "--json", "--report", str(report)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert report.is_file() and out["simulation"]["report"] == str(report)
    summary = out["simulation"]["summary"]
    assert summary["committed"] > 0 and summary["overcommit_violations"] == 0
    assert any("crash" in line for line in out["simulation"]["story"])
    part4 = out["forecast_allocation"]
    assert {v["vn"] for v in part4["vns"]} == {"video", "database", "e-mail"}
    assert all(set(v["policies"]) == {"static-p95", "reactive", "predictive"}
               for v in part4["vns"])
