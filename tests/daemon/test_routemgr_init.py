"""``vnstitch routemgr init`` writes a site that starts: key, token, config, unit; and
``routemgr run --log-format json`` logs one JSON object per line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.daemon.helpers import free_udp_port
from tests.daemon.httphelpers import free_tcp_port
from vnstitch.cli import main

pytestmark = pytest.mark.timeout(90)


def _init(tmp_path: Path, http_port: int, udp_port: int) -> None:
    code = main(["routemgr", "init", "--segment", "A", "--dir", str(tmp_path / "etc"),
                 "--listen", f"127.0.0.1:{udp_port}", "--driver", "memory",
                 "--http-listen", f"127.0.0.1:{http_port}", "--json"])
    assert code == 0


def test_init_writes_a_valid_site_and_refuses_to_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _init(tmp_path, 9464, 7701)
    result = json.loads(capsys.readouterr().out)
    etc = tmp_path / "etc"
    for name in ("A.key", "A.token"):
        assert stat.S_IMODE(os.stat(etc / name).st_mode) == 0o600
    assert main(["routemgr", "check", "--config", result["config"]]) == 0
    unit = Path(result["unit"]).read_text()
    assert f"--config {etc.resolve()}/%i.yaml --log-format json" in unit
    assert "@" not in unit.split("ExecStart=")[1].split()[0]  # placeholders filled in
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit  # systemctl reload: SIGHUP
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", result["unit"]],
                                capture_output=True, text=True, timeout=30, check=False)
        assert verify.returncode == 0, verify.stderr
    capsys.readouterr()
    assert main(["routemgr", "init", "--segment", "A", "--dir", str(etc),
                 "--listen", "127.0.0.1:7702"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    # control: a wildcard listen address without --endpoint is refused, nothing written
    assert main(["routemgr", "init", "--segment", "B", "--dir", str(etc)]) == 2
    assert not (etc / "B.yaml").exists()


def test_initialised_site_runs_and_logs_json(tmp_path: Path) -> None:
    http_port = free_tcp_port()
    _init(tmp_path, http_port, free_udp_port())
    config = tmp_path / "etc" / "A.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "vnstitch", "routemgr", "run", "--config",
                             str(config), "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and not ready:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz",
                                            timeout=2) as resp:
                    ready = json.loads(resp.read())["ready"]
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        assert ready
        token = (tmp_path / "etc" / "A.token").read_text().strip()
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/api/v1/status",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.loads(resp.read())["segment"] == "A"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines, "no log lines"
    assert all({"ts", "level", "logger", "msg"} <= set(rec) for rec in lines)
    assert any("listening on" in rec["msg"] for rec in lines)
