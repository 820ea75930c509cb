"""Root tests: ``diagnose`` names the cause of four lab faults; ``verify`` passes on a
healthy lab and names the pair once a cut leaves no path.

Each test builds its own namespace lab (unique run id) with a live Route Manager per
segment, stitches VN 100 from A to B, breaks one thing, and runs the real CLI as a user
would (``python -m vnstitch diagnose|verify``). Everything is removed afterwards, even on
failure; the tests look only at their own lab's namespaces and processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.livelab import live_lab, wireguard_go_pids
from tests.rootutil import require_root
from vnstitch.daemon.identity import write_key_file
from vnstitch.lab import baseline, netns, substrate
from vnstitch.lab.routemgrs import LabRouteManagers, wait_for
from vnstitch.lab.substrate import Lab

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(150)]

Live = tuple[Lab, LabRouteManagers]


def _cli(*argv: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "vnstitch", *argv, "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def _diagnose(rms: LabRouteManagers, *extra: str) -> tuple[int, list[dict[str, str]]]:
    code, out = _cli("diagnose", "--socket", str(rms.rms["a"].socket), *extra)
    return code, out["checks"]


def _failing(checks: list[dict[str, str]], name: str) -> list[dict[str, str]]:
    return [c for c in checks if c["check"] == name and c["verdict"] == "fail"]


def _stitched(lab: Lab, rms: LabRouteManagers) -> str:
    rms.wait_route("a", 100)
    reply = rms.stitch("a", 100, 50.0)
    assert reply["established"], reply
    baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
    return str(reply["stitch_id"])


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    require_root()
    with live_lab(tmp_path / "rm") as pair:
        yield pair


def test_verify_passes_healthy_and_diagnose_names_a_too_small_mtu(live: Live) -> None:
    lab, rms = live
    _stitched(lab, rms)
    code, out = _cli("verify", "--lab", lab.run_id, "--socket", str(rms.rms["a"].socket),
                     "--iperf-seconds", "1")
    assert code == 0 and out["failed"] == [], out
    [pair] = out["pairs"]  # VN 200 is not stitched: only VN 100's pair is probed
    assert pair["pair"] == "ha1->hb1" and pair["received"] == pair["sent"] == 3
    assert pair["mtu_passes"] is True and pair["iperf_mbps"] > 0
    code, checks = _diagnose(rms)
    assert code == 0, [c for c in checks if c["verdict"] != "ok"]
    assert [c["verdict"] for c in checks if c["check"] == "path-mtu"] == ["ok"]  # control
    assert [c["verdict"] for c in checks if c["check"] == "wireguard"] == ["ok"]
    # The transit T's link toward B now carries only 1300-byte packets.
    link = lab.link("t", "b")
    netns.run_in(lab.routers["t"].ns, ["ip", "link", "set", link.a_dev, "mtu", "1300"])
    netns.run_in(lab.routers["b"].ns, ["ip", "link", "set", link.b_dev, "mtu", "1300"])
    code, checks = _diagnose(rms)
    failing = _failing(checks, "path-mtu")
    assert len(failing) == 1, checks
    [mtu] = failing
    assert code == 1 and "MTU too small" in mtu["cause"], mtu
    largest = int(mtu["evidence"].split("about ")[1].split(" ")[0])
    assert 1280 <= largest <= 1300, mtu  # the bisection found the cut link's MTU


def test_diagnose_names_a_killed_wireguard(tmp_path: Path) -> None:
    require_root()
    # Many probe misses: the tunnel is not replaced before diagnose looks at it.
    with live_lab(tmp_path / "rm", timers={"probe_misses": 60}) as (lab, rms):
        _stitched(lab, rms)
        ifnames = {str(t["interface"]) for t in rms.show("a", "tunnels") if t["interface"]}
        pids = wireguard_go_pids(ifnames)
        assert len(pids) == 1, (ifnames, pids)  # only our lab's A end
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: not wireguard_go_pids(ifnames), 5, "wireguard-go to exit")
        code, checks = _diagnose(rms)
        failing = _failing(checks, "wireguard")
        assert len(failing) == 1, (ifnames, checks)  # all the checks, to explain a miss
        [wg] = failing
        assert code == 1 and wg["subject"] in ifnames
        assert "WireGuard killed" in wg["cause"] and "missing" in wg["evidence"], wg


def test_diagnose_names_a_peer_key_not_trusted(live: Live, tmp_path: Path) -> None:
    lab, rms = live
    _stitched(lab, rms)
    t_id = rms.rm_id("t")
    # T is re-installed with a new key; A still trusts the old one.
    rms.stop("t")
    rms.purge_dataplane("t")
    workdir = rms.workdir
    (workdir / "t.key").unlink()
    (workdir / "t.db").unlink()
    write_key_file(workdir / "t.key")
    rms.start("t")
    wait_for(lambda: any(p["id"] == t_id and p["fault_reasons"]
                         for p in rms.show("a", "peers")), 10, "A to drop T's datagrams")
    code, checks = _diagnose(rms, "--no-kernel")
    trust = _failing(checks, "peer-trust")
    assert code == 1 and [c["subject"] for c in trust] == [t_id], trust
    assert "peer key not trusted" in trust[0]["cause"]
    assert "unknown_sender" in trust[0]["evidence"], trust  # this peer's own reason
    ok = [c for c in checks if c["check"] == "peer-trust" and c["subject"] == rms.rm_id("u")]
    assert ok and ok[0]["verdict"] == "ok"  # control: U is trusted and says so


def test_transit_down_without_alternative_fails_verify_naming_the_pair(live: Live) -> None:
    lab, rms = live
    sid = _stitched(lab, rms)
    # The transit segment goes down: its Route Manager killed and its router cut off.
    # Killing the RM alone leaves T's kernel forwarding the tunnel, and an end whose
    # tunnel still carries the far end's authenticated probes keeps the stitch
    # (PROTOCOL.md, liveness from the data plane) -- that stitch is not down.
    rms.kill("t")
    substrate.cut_link(lab, "a", "t")
    substrate.cut_link(lab, "a", "u")  # and the only other way to B
    wait_for(lambda: (rms.stitch_row("a", sid) or {}).get("status") not in
             ("up", "renegotiating"), 20, "A to give up the stitch's path")
    time.sleep(2.0)  # past diagnose's --stale
    code, checks = _diagnose(rms, sid, "--no-kernel", "--stale", "1.5")
    assert code == 1
    [stitch] = [c for c in checks if c["check"] == "stitch-state"]
    assert stitch["verdict"] == "fail" and "transit down" in stitch["cause"], stitch
    assert rms.rm_id("t")[:8] in stitch["cause"]
    down = {c["subject"] for c in _failing(checks, "peer-reachable")}
    assert rms.rm_id("t") in down
    code, out = _cli("verify", "--lab", lab.run_id, "--vnid", "100", "--iperf-seconds", "0")
    assert code == 1 and out["failed"] == ["ha1->hb1"], out
    assert "unreachable" in out["pairs"][0]["reason"]
