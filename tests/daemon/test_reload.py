"""Config reload: new peers without a restart, state kept, a bad config refused with what
and where while the daemon runs on; a removed peer is told from a never-connected one."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon.helpers import Node, run, start_daemon, until, write_cluster
from vnstitch.daemon.control import dispatch
from vnstitch.daemon.coreadapter import protocol_core_factory
from vnstitch.daemon.errors import ControlError
from vnstitch.daemon.reload import Membership, PeerState, move, peer_state
from vnstitch.daemon.runtime import RouteManagerDaemon
from vnstitch.errors import VnstitchError

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]
VNS = {"A": [{"vnid": 100, "components": ["10.1.0.0/24"]}],
       "B": [{"vnid": 100, "components": ["10.2.0.0/24"]}]}
TIMERS = {"announce_interval_s": 0.1, "probe_interval_s": 0.1, "probe_misses": 5}


def _cluster(tmp: Path) -> dict[str, Node]:
    # A's peers are B (started) and C (configured, never started: never connected).
    return write_cluster(tmp, ["A", "B", "C"], [("A", "B"), ("A", "C")], VNS, TIMERS)


def _edit(path: Path, change: Any) -> None:
    cfg = yaml.safe_load(path.read_text())
    change(cfg)
    path.write_text(yaml.safe_dump(cfg))


async def _peers(d: RouteManagerDaemon) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in await dispatch(d, {"cmd": "show", "what": "peers"})}


def _series(text: str, peer: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("vnstitch_peer_state{") and f'peer="{peer}"' in line:
            state = line.split('state="')[1].split('"')[0]
            out[state] = float(line.rsplit(" ", 1)[1])
    return out


def _counter(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{"))


def _runner(d: RouteManagerDaemon, name: str) -> Any:
    return getattr(d, name)


def test_membership_moves_only_along_its_table() -> None:
    assert move(Membership.CONFIGURED, Membership.REMOVED) is Membership.REMOVED
    with pytest.raises(VnstitchError):
        move(Membership.REMOVED, Membership.REMOVED)
    assert peer_state(Membership.REMOVED, 5.0, 6.0, 3.0) is PeerState.REMOVED
    assert peer_state(Membership.CONFIGURED, None, 6.0, 3.0) is PeerState.NEVER_CONNECTED
    assert peer_state(Membership.CONFIGURED, 5.0, 6.0, 3.0) is PeerState.UP
    assert peer_state(Membership.CONFIGURED, 1.0, 6.0, 3.0) is PeerState.DOWN


def test_reload_applies_peers_keeps_state_and_refuses_bad_configs(tmp_path: Path) -> None:
    nodes = _cluster(tmp_path)
    b_id, c_id = nodes["B"].key.rm_id, nodes["C"].key.rm_id
    a_cfg = nodes["A"].config_path

    async def body() -> None:
        b = await start_daemon(nodes["B"].config_path, protocol_core_factory)
        a = await start_daemon(a_cfg, protocol_core_factory)
        try:
            await until(lambda: a.routes.get(100) is not None, 10)
            made = await dispatch(a, {"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 10,
                                      "wait_s": 10})
            assert made["established"], made
            sid = made["stitch_id"]
            peers = await _peers(a)
            assert peers[b_id]["state"] == "up"
            assert peers[c_id]["state"] == "never_connected"
            received = peers[b_id]["received"]

            # 1. C leaves the config: removed, not never_connected; B and the stitch stay.
            _edit(a_cfg, lambda c: c.update(peers=[p for p in c["peers"]
                                                   if p["id"] != c_id]))
            done = await dispatch(a, {"cmd": "reload"})
            assert done["removed"] == [c_id] and done["added"] == [], done
            peers = await _peers(a)
            assert peers[c_id]["state"] == "removed"
            assert peers[b_id]["state"] == "up" and peers[b_id]["received"] >= received
            metrics = await dispatch(a, {"cmd": "show", "what": "metrics"})
            assert _series(metrics, c_id) == {"up": 0.0, "down": 0.0,
                                              "never_connected": 0.0, "removed": 1.0}
            assert _series(metrics, b_id)["up"] == 1.0  # control
            rows = {s["stitch_id"]: s for s in await dispatch(
                a, {"cmd": "show", "what": "stitches"})}
            assert rows[sid]["status"] == "up"
            tunnels = await dispatch(a, {"cmd": "show", "what": "tunnels"})
            assert any(t["stitch_id"] == sid and t["state"] == "up" for t in tunnels), tunnels
            before = b.metrics["datagrams_received"]
            await until(lambda: b.metrics["datagrams_received"] > before + 5, 10)
            assert (await _peers(a))[b_id]["state"] == "up"  # the new core talks to B

            # 2. A broken file: every problem with FILE:LINE:COL, the old config runs on.
            good = a_cfg.read_text()
            _edit(a_cfg, lambda c: c["peers"][0].update(capacity_mbps=-1,
                                                        address="nowhere"))
            with pytest.raises(ControlError) as err:
                await dispatch(a, {"cmd": "reload"})
            text = str(err.value)
            assert f"{a_cfg}:" in text and "peers[0].capacity_mbps" in text, text
            assert "peers[0].address" in text and "still running" in text, text
            assert a.metrics["config_reloads_refused"] == 1
            assert a.config.peers[0].capacity_mbps == 1000  # unchanged

            # 3. A field only a restart applies is refused by name.
            a_cfg.write_text(good)
            _edit(a_cfg, lambda c: c["listen"].update(port=c["listen"]["port"] + 1))
            with pytest.raises(ControlError, match="listen_port: changed"):
                await dispatch(a, {"cmd": "reload"})

            # 4. C back in the config: configured again and still never heard from.
            a_cfg.write_text(good)
            _edit(a_cfg, lambda c: c.update(peers=[*c["peers"], {
                "id": c_id, "address": f"127.0.0.1:{nodes['C'].port}",
                "capacity_mbps": 1000, "latency_ms": 1.0, "cost": 1}]))
            done = await dispatch(a, {"cmd": "reload"})
            assert done["added"] == [c_id], done
            assert (await _peers(a))[c_id]["state"] == "never_connected"
            rows = {s["stitch_id"]: s for s in await dispatch(
                a, {"cmd": "show", "what": "stitches"})}
            assert rows[sid]["status"] == "up" and a.metrics["config_reloads"] == 2
        finally:
            await a.stop()
            await b.stop()

    run(body(), 60)


QOS: dict[str, Any] = {
    "link_mbps": 100,
    "classes": [{"name": "video", "priority": 0, "guaranteed_mbps": 60},
                {"name": "email", "priority": 3, "guaranteed_mbps": 5}],
    "applications": [{"name": "vn100", "class": "video", "vnid": 100}],
    "interfaces": [{"device": "a-t", "capacity_mbps": 50}],
}
PRA = {"interval_s": 0.05, "min_fit": 3, "refit_every": 5, "blend_steps": 5,
       "vns": {100: {"bandwidth": {"model": "naive", "prior": 4}}}}


def test_reload_applies_qos_allocation_pra_log_level_and_names_restart_sections(
        tmp_path: Path) -> None:
    nodes = write_cluster(tmp_path, ["A", "B"], [("A", "B")], VNS, TIMERS)
    a_cfg = nodes["A"].config_path
    _edit(a_cfg, lambda c: c.update(qos=QOS))
    root = logging.getLogger()
    level = root.level

    async def tunnel_classes(d: RouteManagerDaemon) -> set[str]:
        rows = await dispatch(d, {"cmd": "show", "what": "qos"})
        return {r["class"] for r in rows if r["device"].startswith("vx")}

    async def reload_of(d: RouteManagerDaemon, change: Any) -> dict[str, Any]:
        _edit(a_cfg, change)
        done: dict[str, Any] = await dispatch(d, {"cmd": "reload"})
        return done

    async def body() -> None:
        b = await start_daemon(nodes["B"].config_path, protocol_core_factory)
        a = await start_daemon(a_cfg, protocol_core_factory)
        try:
            await until(lambda: a.routes.get(100) is not None, 10)
            made = await dispatch(a, {"cmd": "stitch", "vnid": 100, "bandwidth_mbps": 10,
                                      "wait_s": 10})
            assert made["established"], made
            # controls: the state each reload below changes
            assert await tunnel_classes(a) == {"video", "email"}
            assert a.allocation is None and a.pra is None and root.level != logging.DEBUG

            # 1. qos classes, a new allocation section and the log level, in one reload
            bulk = {"name": "bulk", "priority": 5, "guaranteed_mbps": 5}
            done = await reload_of(a, lambda c: c.update(
                qos={**QOS, "classes": [*QOS["classes"], bulk]}, log_level="debug",
                allocation={"interval_s": 0.05, "hold_steps": 0, "grow_after": 0}))
            assert done["sections"] == ["allocation", "qos", "log_level"], done
            assert await tunnel_classes(a) == {"video", "email", "bulk"}
            alloc: Any = a.allocation  # (not None now: the reload built it)
            assert alloc is not None and root.level == logging.DEBUG
            await until(lambda: alloc.loop.steps > 2, 10)
            rows = {s["stitch_id"]: s for s in await dispatch(
                a, {"cmd": "show", "what": "stitches"})}
            assert rows[made["stitch_id"]]["status"] == "up"  # the stitch never moved

            # 2. sections only a restart applies: refused by name, the config unchanged
            good, applied = a_cfg.read_text(), a.config
            for change, named in [
                    (lambda c: c["timers"].update(probe_misses=9), "timers: changed"),
                    (lambda c: c["qos"]["interfaces"][0].update(device="a-u"),
                     "qos.interfaces: changed"),
                    (lambda c: c.update(pra={**PRA, "providers": {
                        "state_dir": str(tmp_path), "storage": {"vn100": {"quota_gib": 1}}}}),
                     "pra: changed while pra.providers is set")]:
                a_cfg.write_text(good)
                with pytest.raises(ControlError, match=named):
                    await reload_of(a, change)
                assert a.config is applied and a.pra is None
            assert a.metrics["config_reloads_refused"] == 3
            a_cfg.write_text(good)

            # 3. the PRA (no providers) comes, changes and goes with reloads
            done = await reload_of(a, lambda c: c.update(pra=PRA))
            first: Any = a.pra
            assert done["sections"] == ["pra"] and first is not None, done
            await until(lambda: first.runtime is not None and first.runtime.steps > 0, 20)
            assert first.runtime is not None and first.runtime.periodic.running
            await reload_of(a, lambda c: c["pra"].update(interval_s=0.1))
            second: Any = a.pra
            assert second is not first and second is not None and second.runtime is not None
            assert second.config.interval_s == 0.1 and second.runtime.periodic.running
            assert not first.runtime.periodic.running  # the old runner was stopped
            await reload_of(a, lambda c: c.pop("pra"))
            assert _runner(a, "pra") is None

            # 4. allocation removed: its runner is gone, the stitch stays up
            done = await reload_of(a, lambda c: c.pop("allocation"))
            assert done["sections"] == ["allocation"], done
            assert _runner(a, "allocation") is None
            rows = {s["stitch_id"]: s for s in await dispatch(
                a, {"cmd": "show", "what": "stitches"})}
            assert rows[made["stitch_id"]]["status"] == "up"
            assert a.metrics["config_reloads"] == 5
        finally:
            root.setLevel(level)
            await a.stop()
            await b.stop()

    run(body(), 60)


def test_sighup_reloads_a_running_daemon_process(tmp_path: Path) -> None:
    """The real ``vnstitch routemgr run``: SIGHUP applies the edited config; a bad edit
    is logged with its position and the process keeps serving."""
    from vnstitch.daemon.control import request  # noqa: PLC0415

    nodes = _cluster(tmp_path)
    c_id = nodes["C"].key.rm_id
    a_cfg, sock = nodes["A"].config_path, tmp_path / "A.sock"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-m", "vnstitch", "routemgr", "run", "--config",
                             str(a_cfg), "--log-level", "warning"], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True)

    def state_of_c() -> str | None:
        try:
            rows = request(sock, {"cmd": "show", "what": "peers"}, timeout_s=2)
        except ControlError:
            return None
        return next((r["state"] for r in rows if r["id"] == c_id), None)

    def wait(predicate: Any, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.05)

    try:
        wait(lambda: state_of_c() == "never_connected")
        _edit(a_cfg, lambda c: c["peers"][0].update(latency_ms=float("nan")))
        proc.send_signal(signal.SIGHUP)
        wait(lambda: "vnstitch_config_reloads_refused_total{" in (metrics := request(
            sock, {"cmd": "show", "what": "metrics"}, timeout_s=2)) and
            _counter(metrics, "vnstitch_config_reloads_refused_total") == 1.0)
        assert state_of_c() == "never_connected"  # still on the old config
        _edit(a_cfg, lambda c: c["peers"][0].update(latency_ms=1.0))
        _edit(a_cfg, lambda c: c.update(peers=[p for p in c["peers"] if p["id"] != c_id]))
        proc.send_signal(signal.SIGHUP)
        wait(lambda: state_of_c() == "removed")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log = proc.stderr.read() if proc.stderr else ""
        assert "config reload refused" in log and f"{a_cfg}:" in log, log
        assert "latency_ms: must be finite" in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
