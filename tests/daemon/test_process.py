"""Daemons as real processes: SIGTERM shuts down cleanly; kill -9 loses no state and
never makes the restarted daemon reuse a sequence number (its peer would drop replays)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.helpers import write_cluster
from vnstitch.daemon.control import request
from vnstitch.daemon.errors import ControlError

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


def _spawn(config: Path, core: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    args = (["-m", "tests.daemon.procmain", str(config)] if core == "fake" else
            ["-m", "vnstitch", "routemgr", "run", "--config", str(config),
             "--log-level", "warning"])
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE)


def _wait_socket(sock: Path, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    # Generous: a Python start on a loaded shared host can take seconds.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited: {proc.stderr.read() if proc.stderr else ''!r}")
        try:
            request(sock, {"cmd": "show", "what": "status"}, timeout_s=2)
            return
        except ControlError:
            time.sleep(0.05)
    raise AssertionError("control socket did not come up")


def _poll(fn: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if fn():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(10)
        if p.stderr:
            p.stderr.close()


@pytest.mark.parametrize("core", ["fake", "protocol"])
def test_kill9_restart_keeps_state_and_sequence(
        tmp_path: Path, procs: list[subprocess.Popen[bytes]], core: str) -> None:
    """``protocol`` runs the real ``vnstitch routemgr run`` command. The lease (0.5 s x
    (20 + 1)) outlasts a restart even on a loaded host, so the stitch is adopted as is."""
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], {
        "A": [{"vnid": 100, "components": ["10.1.0.0/24"]}],
        "B": [{"vnid": 100, "components": ["10.2.0.0/24"]}]},
        timers={"announce_interval_s": 0.1, "probe_interval_s": 0.5, "probe_misses": 20})
    sock_a, sock_b = tmp_path / "A.sock", tmp_path / "B.sock"
    procs.append(_spawn(nodes["B"].config_path, core))
    procs.append(_spawn(nodes["A"].config_path, core))
    _wait_socket(sock_b, procs[0])
    _wait_socket(sock_a, procs[1])
    _poll(lambda: any(v["where"] == "remote" for v in request(
        sock_a, {"cmd": "show", "what": "vnids"})), 5)
    reply = request(sock_a, {"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 30, "wait_s": 5})
    assert reply["established"]
    before = request(sock_a, {"cmd": "show", "what": "stitches"})

    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait(5)
    procs.append(_spawn(nodes["A"].config_path, core))  # the stale socket must not block it
    _wait_socket(sock_a, procs[2])
    assert request(sock_a, {"cmd": "show", "what": "stitches"}) == before
    # B keeps accepting A's messages: no sequence number was reused after the crash.
    b_peers = request(sock_b, {"cmd": "show", "what": "peers"})
    received = b_peers[0]["received"]
    _poll(lambda: request(sock_b, {"cmd": "show", "what": "peers"})[0]["received"]
          > received + 3, 5)
    metrics = request(sock_b, {"cmd": "show", "what": "metrics"})
    assert 'reason="replay"' not in metrics
    assert request(sock_b, {"cmd": "show", "what": "peers"})[0]["faults"] == 0

    procs[2].send_signal(signal.SIGTERM)
    assert procs[2].wait(10) == 0
    assert not sock_a.exists()  # clean shutdown removes its socket
