"""``/metrics`` of a running daemon: promtool accepts it, a real Prometheus scrapes it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.httphelpers import HttpNode, free_tcp_port, http_daemons

pytestmark = pytest.mark.timeout(120)
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="Debian package prometheus (prometheus, promtool) not installed")


@pytest.fixture(scope="module")
def stitched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpNode, HttpNode,
                                                                         str]]:
    with http_daemons(tmp_path_factory.mktemp("metrics")) as (a, b):
        status, created = a.call("POST", "/api/v1/stitches", {"vnid": 100,
                                                              "bandwidth_mbps": 20})
        assert status == 200 and created["established"], created
        yield a, b, created["stitch_id"]


def _samples(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


@needs_prometheus
def test_promtool_accepts_the_exposition(stitched: tuple[HttpNode, HttpNode, str]) -> None:
    a, b, sid = stitched
    for node in (a, b):
        status, text = node.call("GET", "/metrics", token="")
        assert status == 200
        check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                               capture_output=True, timeout=30, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        up = [s for s in _samples(text, "vnstitch_stitch_state")
              if f'stitch_id="{sid}"' in s and 'state="up"' in s]
        assert up and up[0].endswith(" 1.0"), up  # on both ends
    # control: promtool does fail on a malformed exposition
    bad = subprocess.run(["promtool", "check", "metrics"], input="vnstitch_x{a=} 1\n",
                         text=True, capture_output=True, timeout=30, check=False)
    assert bad.returncode != 0


def test_per_peer_link_and_qos_series(stitched: tuple[HttpNode, HttpNode, str]) -> None:
    a, _, _ = stitched
    text = a.call("GET", "/metrics", token="")[1]
    assert any(s.endswith(" 1.0") and 'state="up"' in s
               for s in _samples(text, "vnstitch_peer_state"))
    util = _samples(text, "vnstitch_link_utilisation_ratio")
    assert util and float(util[0].rsplit(" ", 1)[1]) == pytest.approx(20 / 1000)
    assert _samples(text, "vnstitch_qos_class_rate_mbps")
    # the control socket's ``show metrics`` is the same registry's exposition
    from vnstitch.daemon.control import request  # noqa: PLC0415
    sock_text = request(a.daemon.config.control_socket, {"cmd": "show", "what": "metrics"})
    assert _samples(sock_text, "vnstitch_link_utilisation_ratio") == util


def _value(text: str, name: str, *labels: str) -> float | None:
    for line in _samples(text, name):
        if all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    return None


@needs_prometheus
def test_class_and_stitch_counters_come_from_the_driver(
        stitched: tuple[HttpNode, HttpNode, str]) -> None:
    """The scrape reads the driver's HTB class counters (the memory driver's are set
    here; the kernel's: tests/daemon/test_live_qos.py): per class, and summed per stitch
    over its tunnel end's classes."""
    from vnstitch.dataplane.memory import MemoryDataplane  # noqa: PLC0415

    a, _, sid = stitched
    text = a.call("GET", "/metrics", token="")[1]
    rows = [r for r in a.call("GET", "/api/v1/qos")[1] if r["bytes"] is not None]
    assert rows, rows
    dev, cid = str(rows[0]["device"]), int(rows[0]["class_id"])
    labels = (f'device="{dev}"', f'class_id="{cid}"')
    # each row names the stitch whose tunnel end it is on (the per-stitch sums use it)
    assert {r["stitch_id"] for r in rows if r["device"] == dev} == {sid}, rows
    assert _value(text, "vnstitch_qos_class_bytes_total", *labels) == 0.0  # control
    assert isinstance(a.daemon.driver, MemoryDataplane)
    a.daemon.driver.set_class_stats(dev, cid, 123456, 789, 42)
    text = a.call("GET", "/metrics", token="")[1]
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert _value(text, "vnstitch_qos_class_bytes_total", *labels) == 123456
    assert _value(text, "vnstitch_qos_class_packets_total", *labels) == 789
    assert _value(text, "vnstitch_qos_class_drops_total", *labels) == 42
    assert _value(text, "vnstitch_stitch_sent_bytes_total", f'stitch_id="{sid}"') == 123456
    assert _value(text, "vnstitch_stitch_dropped_packets_total", f'stitch_id="{sid}"') == 42
    from vnstitch.daemon.control import request  # noqa: PLC0415
    sock_text = request(a.daemon.config.control_socket, {"cmd": "show", "what": "metrics"})
    assert _value(sock_text, "vnstitch_qos_class_drops_total", *labels) == 42  # same door


def _query(port: int, expr: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


@needs_prometheus
def test_prometheus_scrapes_and_answers_a_series(
        stitched: tuple[HttpNode, HttpNode, str], tmp_path: Path) -> None:
    a, _, sid = stitched
    target = a.base.removeprefix("http://")
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                   "scrape_configs:\n  - job_name: vnstitch\n"
                   f"    static_configs: [{{targets: ['{target}']}}]\n")
    port = free_tcp_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(["prometheus", f"--config.file={cfg}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        result: list[dict[str, object]] = []
        expr = f'vnstitch_stitch_state{{stitch_id="{sid}",state="up"}}'
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                result = _query(port, expr)
            except OSError:
                result = []
            if result:
                break
            time.sleep(0.5)
        assert result, "Prometheus never returned the series"
        value = result[0]["value"]
        assert isinstance(value, list) and value[1] == "1"
        up = _query(port, 'up{job="vnstitch"}')
        assert up and up[0]["value"][1] == "1"  # type: ignore[index]
        # control: a series the daemon does not export is absent
        assert _query(port, 'vnstitch_stitch_state{stitch_id="no-such-stitch"}') == []
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_metrics_auth_asks_for_the_token(tmp_path: Path) -> None:
    with http_daemons(tmp_path, metrics_auth=True) as (a, _b):
        assert a.call("GET", "/metrics", token="")[0] == 401
        status, text = a.call("GET", "/metrics")
        assert status == 200 and "vnstitch_peer_state" in text
        assert a.call("GET", "/healthz", token="")[0] == 200  # health stays open


HELD_SERIES = ("vnstitch_datapath_held_total", "vnstitch_datapath_hold_ended_total",
               "vnstitch_datapath_hold_replaced_total")


def test_the_cores_held_path_counters_are_exported(
        stitched: tuple[HttpNode, HttpNode, str]) -> None:
    """The protocol core's held-path counters (protocol/heldpaths.py; a real hold needs
    a kernel dataplane, counted in tests/protocol/test_held_paths.py) reach /metrics and
    ``show metrics``: counted here through the core's own ``stat``."""
    from vnstitch.daemon.control import request  # noqa: PLC0415
    from vnstitch.protocol.core import RouteManagerCore  # noqa: PLC0415

    a, _, _ = stitched
    rm = f'rm="{a.daemon.rm_id}"'
    text = a.call("GET", "/metrics", token="")[1]
    assert [_value(text, name, rm) for name in HELD_SERIES] == [0.0, 0.0, 0.0]  # control
    core = a.daemon.core
    assert isinstance(core, RouteManagerCore)
    core.stat("datapath_held", 3)
    core.stat("datapath_hold_ended")
    core.stat("datapath_hold_replaced", 2)
    text = a.call("GET", "/metrics", token="")[1]
    assert [_value(text, name, rm) for name in HELD_SERIES] == [3.0, 1.0, 2.0]
    sock_text = request(a.daemon.config.control_socket, {"cmd": "show", "what": "metrics"})
    assert [_value(sock_text, name, rm) for name in HELD_SERIES] == [3.0, 1.0, 2.0]
