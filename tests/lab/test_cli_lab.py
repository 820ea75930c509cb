"""``vnstitch lab up|status|down --json`` end to end (root)."""

from __future__ import annotations

import json

import pytest

from tests.rootutil import require_root
from vnstitch.cli import main
from vnstitch.lab import substrate

pytestmark = pytest.mark.root


def test_up_status_down_json(capsys: pytest.CaptureFixture[str]) -> None:
    require_root()
    assert main(["lab", "up", "--json"]) == 0
    lab = json.loads(capsys.readouterr().out)
    rid = lab["run_id"]
    try:
        assert main(["lab", "status", rid, "--json"]) == 0
        (st,) = json.loads(capsys.readouterr().out)["labs"]
        assert len(st["namespaces"]) == 8 and st["wireguard"] == []
        ra = st["routers"][lab["routers"]["a"]["ns"]]
        assert "10.0.0.4/32 metric 10" in ra["routes_to_loopbacks"]
    finally:
        assert main(["lab", "down", rid, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["removed"][rid]) == 8
    assert substrate.leftovers(rid) == {"namespaces": [], "wireguard": [], "processes": []}
    assert main(["lab", "status", rid, "--json"]) == 0
