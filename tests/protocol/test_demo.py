"""The demo stitches across a transit segment in three round trips."""

from __future__ import annotations

import json

import pytest

from vnstitch.cli import main


def test_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["stitch"]["path"]) >= 3  # a transit segment in between
    assert r["stitch"]["round_trips"] == pytest.approx(3.0)
    assert {t["state"] for t in r["tunnels"]} == {"up"} and len(r["tunnels"]) == 2
    assert r["converged_after_messages"] > 0 and not r["dropped"]
