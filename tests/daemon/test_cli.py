"""The ``vnstitch routemgr`` command line against a daemon running in a thread."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.daemon.fakecore import fake_core_factory
from tests.daemon.helpers import daemons_in_thread, write_cluster
from vnstitch.cli import main
from vnstitch.daemon.control import request

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
    lines = capsys.readouterr().err.strip().splitlines()
    # Every problem, each on its own line as FILE:LINE:COL: field: problem.
    assert lines[0].startswith(f"{bad}:3:11: key_file: ")  # no such key file
    assert lines[1:4] == [f"{bad}:6:9: peers[0].{f}: missing required field"
                          for f in ("address", "capacity_mbps", "latency_ms")]
    assert lines[4].startswith(f"{bad}:6:14: peers[0].id: Route Manager id must be")
    assert lines[5] == f"{bad}: 5 problem(s)"


def test_check_reports_every_problem_with_missing_key_and_duplicate_address(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = write_cluster(tmp_path, ["A", "B", "C"], [("A", "B"), ("A", "C")], {})
    good = nodes["A"].config_path
    assert main(["routemgr", "check", "--config", str(good)]) == 0  # control: all fine
    capsys.readouterr()
    cfg = yaml.safe_load(good.read_text())
    cfg["peers"][1]["address"] = cfg["peers"][0]["address"]  # two peers, one address
    cfg["key_file"] = "missing.key"
    cfg["timers"]["probe_misses"] = 1.5
    cfg["peers"][0]["capacity_mbps"] = float("inf")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["routemgr", "check", "--config", str(bad), "--json"]) == 2
    problems = json.loads(capsys.readouterr().out)["problems"]
    fields = [p.split(": ")[1] for p in problems]
    assert sorted(fields) == ["key_file", "peers[0].capacity_mbps", "peers[1].address",
                              "timers.probe_misses"], problems
    for line in problems:  # FILE:LINE:COL: field: problem
        assert re.match(rf"^{re.escape(str(bad))}:\d+:\d+: \S+: .+", line), line
    assert any("same address as peer" in p for p in problems)
    assert any("missing.key" in p for p in problems)


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


def _raw(sock: Path, line: bytes) -> dict[str, object]:
    """One raw request line (not re-encoded by json.dumps) and its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(line + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply: dict[str, object] = json.loads(buf)
    return reply


def test_control_socket_refuses_non_finite_and_out_of_range_numbers(
        two_daemons: tuple[Path, Path]) -> None:
    _, sock = two_daemons
    bad = {
        b'{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": Infinity}': "bandwidth_mbps",
        b'{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": NaN}':
            "bandwidth_mbps: must be finite",
        b'{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 1e999}': "finite",
        b'{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 5, "hop_limit": 1e999}':
            "hop_limit",
        b'{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 5, "hop_limit": 1' +
            b"0" * 400 + b"}": "hop_limit",
        b'{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 1' + b"0" * 400 + b"}":
            "bandwidth_mbps",
        b'{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 5, "max_cost": -Infinity}':
            "max_cost",
        b'{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 5, "wait_s": 1e9}': "wait_s",
        b'{"cmd": "resize", "stitch_id": "x", "bandwidth_mbps": 1e999}': "bandwidth_mbps",
        b'[' * 100000 + b']' * 100000: "longer than",
    }
    for line, word in bad.items():
        reply = _raw(sock, line)
        assert reply["ok"] is False and word in str(reply["error"]), (line[:80], reply)
    # Nothing was stored, and the views still work; a good request still goes through.
    assert request(sock, {"cmd": "show", "what": "stitches"}) == []
    ok = _raw(sock, b'{"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 5, "hop_limit": 4.0}')
    assert ok["ok"] is True, ok


def test_a_stored_non_finite_row_never_breaks_show_stitches(
        two_daemons: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, sock = two_daemons
    assert main(["routemgr", "stitch", "--vnid", "100", "--bandwidth", "5",
                 "--socket", str(sock), "--json"]) == 0
    capsys.readouterr()
    db = yaml.safe_load(config.read_text())["state_db"]
    with sqlite3.connect(config.parent / db) as conn:  # as an old version would have
        conn.execute("INSERT INTO stitches VALUES ('bad', 100, '[]', ?, 0, 0, 'up', 0, 0)",
                     (float("inf"),))
    assert main(["routemgr", "show", "stitches", "--socket", str(sock), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["stitches"]
    assert [r["bandwidth_mbps"] for r in rows] == [5]  # the good one; the bad one skipped
    assert main(["routemgr", "show", "metrics", "--socket", str(sock)]) == 0


def test_release_and_resize_of_an_unknown_stitch_exit_2(
        two_daemons: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, sock = two_daemons
    assert main(["routemgr", "release", "nope", "--socket", str(sock)]) == 2
    assert "no stitch 'nope'" in capsys.readouterr().err
    assert main(["routemgr", "resize", "nope", "--bandwidth", "3", "--socket",
                 str(sock)]) == 2
    assert "no stitch 'nope'" in capsys.readouterr().err
    # Control: a known stitch is released.
    assert main(["routemgr", "stitch", "--vnid", "100", "--bandwidth", "5",
                 "--socket", str(sock), "--json"]) == 0
    sid = json.loads(capsys.readouterr().out)["stitch_id"]
    assert main(["routemgr", "release", sid, "--socket", str(sock)]) == 0


@pytest.mark.parametrize("argv", [
    ["stitch", "--vnid", "100", "--bandwidth", "inf"],
    ["stitch", "--vnid", "100", "--bandwidth", "nan"],
    ["stitch", "--vnid", "100", "--bandwidth", "1e999"],
    ["stitch", "--vnid", "100", "--bandwidth", "5", "--hop-limit", "99999999999999999999"],
    ["stitch", "--vnid", "-1", "--bandwidth", "5"],
    ["stitch", "--vnid", "100", "--bandwidth", "5", "--wait", "-1"],
    ["resize", "x", "--bandwidth", "0"],
])
def test_cli_refuses_bad_numbers_before_sending(argv: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["routemgr", *argv, "--socket", str(tmp_path / "none.sock")])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: argument" in err
