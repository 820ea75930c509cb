"""``vnstitch diagnose`` names the cause; ``vnstitch gather`` writes a tarball without
secrets. Two daemons on 127.0.0.1, reached through the HTTP API and the socket."""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.httphelpers import HttpNode, http_daemons
from vnstitch.cli import main

pytestmark = pytest.mark.timeout(90)


def _diagnose(node: HttpNode, capsys: pytest.CaptureFixture[str], *extra: str
              ) -> tuple[int, list[dict[str, Any]]]:
    code = main(["diagnose", *extra, *node.door(), "--json"])
    return code, json.loads(capsys.readouterr().out)["checks"]


def _verdicts(checks: list[dict[str, Any]], check: str) -> list[str]:
    return [c["verdict"] for c in checks if c["check"] == check]


def test_healthy_stitch_then_transit_down(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with http_daemons(tmp_path) as (a, b):
        status, created = a.call("POST", "/api/v1/stitches", {"vnid": 100,
                                                              "bandwidth_mbps": 20})
        assert status == 200 and created["established"], created
        sid = created["stitch_id"]
        code, checks = _diagnose(a, capsys, sid)
        assert code == 0, checks
        assert _verdicts(checks, "stitch-state") == ["ok"]
        assert _verdicts(checks, "peer-reachable") == ["ok"]
        assert _verdicts(checks, "peer-trust") == ["ok"]
        assert main(["routemgr", "show", "stitches", "--wait", "5", *a.door()]) == 0
        capsys.readouterr()
        b.stop()  # the only neighbour, hence the stitch's far end, goes away
        stopped_at = time.monotonic()
        deadline = time.monotonic() + 10
        code = 0
        while code == 0 and time.monotonic() < deadline:
            time.sleep(0.3)
            code, checks = _diagnose(a, capsys, "--stale", "0.5")
        assert code == 1
        reach = [c for c in checks if c["check"] == "peer-reachable"]
        assert reach[0]["verdict"] == "fail" and "transit down" in reach[0]["cause"]
        # show --wait gives up after its bound and says why (once B is silent for longer
        # than the default 5 s it allows)
        time.sleep(max(0.0, 5.5 - (time.monotonic() - stopped_at)))
        assert main(["routemgr", "show", "stitches", "--wait", "1", *a.door()]) == 1
        assert "not healthy: peer-reachable" in capsys.readouterr().err


def test_untrusted_peer_key_is_named(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with http_daemons(tmp_path, a_trusts_b=False) as (a, _b):
        code, checks = _diagnose(a, capsys)
        assert code == 1
        trust = [c for c in checks if c["check"] == "peer-trust"]
        assert trust[0]["verdict"] == "fail", trust
        assert "not trusted" in trust[0]["cause"] and "unknown_sender" in trust[0]["evidence"]
        # the same reason per peer on /metrics
        _, text = a.call("GET", "/metrics")
        line = next(ln for ln in str(text).splitlines()
                    if ln.startswith("vnstitch_peer_faults_by_reason_total{"))
        assert 'reason="unknown_sender"' in line and float(line.rsplit(" ", 1)[1]) > 0


def test_gather_writes_state_and_no_secrets(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with http_daemons(tmp_path) as (a, _b):
        status, created = a.call("POST", "/api/v1/stitches", {"vnid": 100,
                                                              "bandwidth_mbps": 20})
        assert status == 200
        log = tmp_path / "a.log"
        log.write_text("a log line\n")
        out = tmp_path / "bundle.tar.gz"
        assert main(["gather", "--config", str(a.daemon.config.source), "--out", str(out),
                     "--log", str(log), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["failed"] == []
    with tarfile.open(out) as tar:
        names = set(tar.getnames())
        blob = b"".join(tar.extractfile(m).read()  # type: ignore[union-attr]
                        for m in tar.getmembers() if m.isfile())
    for part in ("state/stitches.json", "state/decisions.json", "metrics.prom",
                 "config.yaml", "logs/a.log", "manifest.json"):
        assert f"vnstitch-gather/{part}" in names, names
    assert created["stitch_id"].encode() in blob
    key_pem = (tmp_path / "A.key").read_bytes()
    assert a.token.encode() not in blob and key_pem.strip() not in blob  # control below
    assert b"a log line" in blob  # the same search does find what was put in
