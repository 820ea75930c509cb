"""The ``vnstitch routemgr`` command line against a daemon running in a thread."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.fakecore import fake_core_factory
from tests.daemon.helpers import daemons_in_thread
from vnstitch.cli import main

pytestmark = pytest.mark.timeout(60)


def test_keygen_writes_0600_and_prints_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    out = tmp_path / "rm.key"
    assert main(["routemgr", "keygen", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert len(result["rm_id"]) == 32 and len(result["public_key"]) == 44
    assert main(["routemgr", "keygen", "--out", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_check_reports_bad_field_in_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("segment: A\nlisten: {address: 127.0.0.1, port: 1}\nkey_file: k\n"
                   "state_db: s\ncontrol_socket: c\npeers: [{id: zz}]\n")
    assert main(["routemgr", "check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "peers[0].address: missing required field" in err


@pytest.fixture
def two_daemons(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    with daemons_in_thread(tmp_path, fake_core_factory, {
            "A": [{"vnid": 100, "components": ["10.1.0.0/24"], "host_ports": ["hA"]}],
            "B": [{"vnid": 100, "components": ["10.2.0.0/24"], "host_ports": ["hB"]}]},
    ) as daemons:
        yield daemons[0].config.source, daemons[0].config.control_socket


def test_show_and_stitch_against_running_daemon(
        two_daemons: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, sock = two_daemons
    assert main(["routemgr", "stitch", "--vnid", "100", "--bandwidth", "25",
                 "--socket", str(sock), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["established"] is True
    assert main(["routemgr", "show", "stitches", "--config", str(config), "--json"]) == 0
    stitches = json.loads(capsys.readouterr().out)["stitches"]
    assert [(s["vnid"], s["status"], s["reserved_mbps"]) for s in stitches] == [(100, "up", 25)]
    for what in ("peers", "vnids", "stitches", "tunnels", "status", "allocations"):
        assert main(["routemgr", "show", what, "--socket", str(sock)]) == 0
        assert capsys.readouterr().out.strip()
    # No allocation: section in this config: the loop is off and says so.
    assert main(["routemgr", "show", "allocations", "--socket", str(sock), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"allocations": []}
    assert main(["routemgr", "show", "status", "--socket", str(sock), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"]["allocation"] == {"enabled": False}
    assert main(["routemgr", "show", "metrics", "--socket", str(sock)]) == 0
    assert "# TYPE vnstitch_datagrams_received_total counter" in capsys.readouterr().out
    assert main(["routemgr", "stitch", "--vnid", "4242", "--bandwidth", "1", "--wait", "2",
                 "--socket", str(sock)]) == 1
    assert "no_route" in capsys.readouterr().out
