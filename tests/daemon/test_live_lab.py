"""Root tests: four live Route Manager daemons (linux dataplane) in a namespace lab.

Each test builds its own lab (unique run id), runs ``vnstitch routemgr run`` inside every
segment router's namespace and removes everything afterwards, even on failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from tests.daemon.livelab import (
    live_lab,
    live_wireguard_sockets,
    send_from,
    sniff_udp_payload,
    wireguard_go_pids,
)
from tests.rootutil import require_root
from vnstitch.dataplane import tc
from vnstitch.dataplane.objects import RateLimit
from vnstitch.lab import baseline, substrate
from vnstitch.lab.routemgrs import LAB_TIMERS, RM_PORT, LabRouteManagers, PingStream, wait_for
from vnstitch.lab.substrate import Lab

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(90)]

Live = tuple[Lab, LabRouteManagers]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    require_root()
    with live_lab(tmp_path / "rm") as pair:
        yield pair


def _stitch(rms: LabRouteManagers, bandwidth_mbps: float = 50.0) -> dict[str, object]:
    rms.wait_route("a", 100)
    reply = rms.stitch("a", 100, bandwidth_mbps)
    assert reply["established"], reply
    return reply


def _overlay(lab: Lab) -> list[str]:
    return [h.address for h in lab.hosts]


def _interfaces(lab: Lab, seg: str) -> set[str]:
    with IPRoute(netns=lab.routers[seg].ns) as ipr:
        return {str(m.get_attr("IFLA_IFNAME")) for m in ipr.get_links()}


def test_on_demand_stitch_a_to_b_through_t_is_encrypted(live: Live) -> None:
    lab, rms = live
    rms.wait_route("a", 100)
    assert baseline.ping(lab, "ha1", "hb1", count=1, deadline_s=1)[1] == 0  # apart at first
    reply = _stitch(rms)
    assert rms.path_segments(reply["detail"]["path"]) == "A-T-B"  # type: ignore[index]
    baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
    (sent, got), cap = baseline.capture(lab.routers["t"].ns, lab.link("a", "t").b_dev,
                                        _overlay(lab),
                                        lambda: baseline.ping(lab, "ha1", "hb1", count=5))
    assert (sent, got) == (5, 5)
    assert cap.wireguard.get("data", 0) >= 10  # requests and replies, inside WireGuard
    assert cap.inner_icmp == 0 and cap.vxlan_in_clear == 0 and cap.encrypted
    # VN 200 was not stitched: its hosts stay apart.
    assert baseline.ping(lab, "ha2", "hb2", count=1, deadline_s=1)[1] == 0
    # The transit RM holds the reservation on both its links and terminates no tunnel.
    assert rms.reserved_mbps("t") == 100.0 and rms.show("t", "tunnels") == []
    tunnels = {seg: rms.show(seg, "tunnels") for seg in ("a", "b")}
    assert [t["state"] for t in tunnels["a"]] == ["up"]
    assert tunnels["a"][0]["interface"] in _interfaces(lab, "a")
    assert tunnels["b"][0]["interface"] in _interfaces(lab, "b")


def test_bandwidth_reservation_is_enforced(live: Live) -> None:
    lab, rms = live
    """The reservation is in the kernel: an HTB class at the reserved rate and ceil on
    each end's tunnel. (Measured rates depend on the host's load: benchmarks report them.)"""
    reserved = 50.0
    _stitch(rms, reserved)
    baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
    for seg in ("a", "b"):
        limits = _rate_limits(lab, seg)
        assert len(limits) == 1, limits
        assert limits[0].rate_mbps == pytest.approx(reserved, rel=1e-3)
        assert limits[0].ceil_mbps == pytest.approx(reserved, rel=1e-3)
    assert baseline.ping(lab, "ha1", "hb1", count=3)[1] >= 1  # and it carries traffic


def _rate_limits(lab: Lab, seg: str) -> list[RateLimit]:
    """Every HTB leaf class this lab's router has, on any of its interfaces."""
    out: list[RateLimit] = []
    with IPRoute(netns=lab.routers[seg].ns) as ipr:
        for link in ipr.get_links():
            name = str(link.get_attr("IFLA_IFNAME"))
            out += tc.observe(ipr, int(link["index"]), name)[0]
    return out


@pytest.mark.alone  # a latency claim (tests/rootutil.py)
def test_kill_9_route_manager_keeps_traffic_and_restart_adopts(tmp_path: Path) -> None:
    require_root()
    # The claim: a restart within the lease adopts the kernel objects without a flap.
    # The lease is max(hold_time_s, probe_interval_s x (probe_misses + 1)); a start-up
    # takes seconds on a loaded host, so the lease here (60 s) outlasts any restart,
    # and the test checks that it did rather than hoping.
    lease_s = 60.0
    with live_lab(tmp_path / "rm", {"probe_interval_s": 1.0, "probe_misses": 4,
                                    "hold_time_s": lease_s}) as (lab, rms):
        _stitch(rms)
        baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
        wait_for(lambda: [t["state"] for t in rms.show("a", "tunnels")] == ["up"], 15.0,
                 "A's tunnel to be up")
        before = rms.show("a", "stitches")
        wg = rms.show("a", "tunnels")[0]["interface"]
        pids = wireguard_go_pids({wg})
        assert len(pids) == 1
        with PingStream(lab, "ha1", "hb1") as stream:
            time.sleep(0.5)
            killed_at = time.time()
            assert rms.kill("a") == -9
            time.sleep(1.0)  # the scenario: a dead daemon for 1 s, its tunnel alive
            rms.start("a", timeout_s=lease_s / 2)
            restarted_at = time.time()
            assert restarted_at - killed_at < lease_s, "the restart outlasted the lease"

            def adopted() -> bool:
                return (rms.show("a", "stitches") == before and
                        [t["state"] for t in rms.show("a", "tunnels")] == ["up"])

            # The restarted daemon has answered; wait (deadline, not a sleep) until it
            # has reloaded its stitch and its probes see the tunnel up, the ping still
            # running so a late flap would show as a gap.
            wait_for(adopted, 30.0, "A to adopt its stitch and tunnel after the restart")
            time.sleep(0.5)  # keep the ping going past the adoption
        assert stream.replies, "no ping replies at all"
        during = [r for r in stream.replies if killed_at < r < restarted_at]
        assert len(during) >= 20  # traffic flowed while the daemon was dead
        assert stream.gaps_after(killed_at - 0.2, 0.5) == []  # and never stopped
        assert stream.replies[-1] > restarted_at  # ... through the restart
        assert rms.show("a", "stitches") == before
        status = rms.show("a", "status")
        assert status["dataplane_errors"] == 0
        assert wireguard_go_pids({wg}) == pids  # adopted: the same wireguard-go, not a new one
        assert [t["state"] for t in rms.show("a", "tunnels")] == ["up"]


def _sent_in_tunnel(rms: LabRouteManagers, seg: str) -> float:
    text = rms.show(seg, "metrics")
    found = re.search(r"^vnstitch_probes_sent_in_tunnel_total\{[^}]*\} (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


@pytest.mark.alone  # a latency claim (tests/rootutil.py)
def test_dead_wireguard_go_is_seen_by_probes_inside_the_tunnel(live: Live) -> None:
    """Probes travel inside the tunnel, so killing the far end's wireguard-go (its RM
    alive and well) is a dead tunnel: A gives it up within the probe bound and
    re-negotiates a new one, and traffic flows again."""
    lab, rms = live
    reply = _stitch(rms)
    sid = str(reply["stitch_id"])
    wait_for(lambda: [t["state"] for t in rms.show("a", "tunnels")] == ["up"], 3.0,
             "A's tunnel to come up")
    assert _sent_in_tunnel(rms, "a") > 0 and _sent_in_tunnel(rms, "b") > 0
    old_a = rms.show("a", "tunnels")[0]["interface"]
    pids = wireguard_go_pids({rms.show("b", "tunnels")[0]["interface"]})
    assert len(pids) == 1
    killed_at = time.monotonic()
    os.kill(pids[0], signal.SIGKILL)
    bound = LAB_TIMERS["probe_interval_s"] * (LAB_TIMERS["probe_misses"] + 1)

    def old_gone() -> bool:
        return all(t["interface"] != old_a or t["state"] == "down"
                   for t in rms.show("a", "tunnels"))

    wait_for(old_gone, bound + 2.0, "A to give the dead tunnel up")
    assert time.monotonic() - killed_at <= bound + 1.0
    row = wait_for(lambda: (r := rms.stitch_row("a", sid)) is not None and
                   r["status"] == "up" and r, 15.0, "the stitch to be re-negotiated")
    assert row
    baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=15)


@pytest.mark.alone  # a latency claim (tests/rootutil.py)
def test_tunnel_death_is_detected_within_probe_bound_and_releases(live: Live) -> None:
    lab, rms = live
    reply = _stitch(rms)
    sid = str(reply["stitch_id"])
    wg = rms.show("a", "tunnels")[0]["interface"]
    assert rms.reserved_mbps("t") == 100.0
    # The bound is for a tunnel that works (has answered a probe): a new end that has
    # not yet is given CoreConfig.tunnel_setup_s to come up first (protocol/probes.py).
    wait_for(lambda: [t["state"] for t in rms.show("a", "tunnels")] == ["up"] or None,
             10.0, "A's tunnel to answer its first probe")
    stopped_at = time.monotonic()
    rms.stop("b")  # the far end goes away
    bound = LAB_TIMERS["probe_interval_s"] * (LAB_TIMERS["probe_misses"] + 1)

    def a_released() -> bool:
        row = rms.stitch_row("a", sid)
        return row is not None and row["reserved_mbps"] == 0.0 and \
            all(t["state"] == "down" for t in rms.show("a", "tunnels"))

    wait_for(a_released, bound + 1.0, "A to take the tunnel down")
    detected = time.monotonic() - stopped_at
    assert detected <= bound + 0.5, detected  # + the polling step and process scheduling
    wait_for(lambda: wg not in _interfaces(lab, "a"), 3.0, "A's WireGuard interface to go")
    assert rms.reserved_mbps("a") == 0.0
    # The transit RM's lease runs out the same way: its reservation is released too.
    wait_for(lambda: rms.reserved_mbps("t") == 0.0, bound + 1.0, "T to release")


def test_hostile_datagrams_are_dropped_counted_and_daemon_keeps_serving(live: Live) -> None:
    lab, rms = live
    rms.wait_route("a", 100)
    t_loop = lab.routers["t"].loopback
    a_addr = (lab.routers["a"].loopback, RM_PORT)
    genuine = sniff_udp_payload(lab.routers["a"].ns, lab.link("a", "t").a_dev, t_loop, RM_PORT)
    forged = bytearray(genuine)
    forged[len(forged) // 2] ^= 0x55  # signature no longer matches
    garbage = [b"", b"\x00" * 10, b"\xff" * 3000, b"{" * 200, bytes(range(256)) * 4] * 20
    # From T's address but another port: the kernel's source filter (daemon/transport.py)
    # drops them before they are queued; the daemon never sees them.
    before, kernel_before = _faults(rms), _metric(rms, "udp_socket_drops_total")
    send_from(lab.routers["t"].ns, t_loop, a_addr, [*garbage, bytes(forged), genuine])
    wait_for(lambda: _metric(rms, "udp_socket_drops_total") - kernel_before
             >= len(garbage) + 2, 5.0, "A's kernel to drop the foreign datagrams")
    assert _faults(rms) == before
    # From T's own RM address and port (spoofed): they pass the filter and reach the
    # daemon's checks, which drop and count every one.
    # Every garbage one, the forgery and the replay (but the 3000-byte ones: a raw
    # socket does not fragment).
    expected = send_from(lab.routers["t"].ns, t_loop, a_addr,
                         [*garbage, bytes(forged), genuine], spoof_port=RM_PORT)
    assert expected == len(garbage) + 2 - 20
    wait_for(lambda: _faults(rms) - before >= expected, 5.0, "A to count the hostile datagrams")
    assert "core_exceptions_total{" in rms.show("a", "metrics")
    assert re.search(r"vnstitch_core_exceptions_total\{[^}]*\} 0\b", rms.show("a", "metrics"))
    _stitch(rms)  # still serving: a stitch works, and carries traffic
    baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)


def _metric(rms: LabRouteManagers, name: str) -> int:
    m = re.search(rf"^vnstitch_{name}\{{[^}}]*\}} (\S+)$", rms.show("a", "metrics"), re.M)
    assert m is not None, name
    return int(float(m.group(1)))


def _faults(rms: LabRouteManagers) -> int:
    text = rms.show("a", "metrics")
    return sum(int(float(m.group(1))) for m in
               re.finditer(r"^vnstitch_peer_faults_total\{[^}]*\} (\S+)$", text, re.M))


def test_cleanup_after_lab_down_and_after_a_failed_test(tmp_path: Path) -> None:
    require_root()
    # 1. A test body that fails with a stitch up: everything still goes.
    seen: dict[str, object] = {}
    with pytest.raises(RuntimeError, match="deliberate"), \
            live_lab(tmp_path / "failed") as (lab, rms):
        _stitch(rms)
        baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
        seen["run_id"] = lab.run_id
        wg_failed = {t["interface"] for seg in ("a", "b") for t in rms.show(seg, "tunnels")}
        seen["wg"] = wg_failed
        assert wireguard_go_pids(wg_failed)
        raise RuntimeError("deliberate failure with live tunnels")
    assert substrate.leftovers(str(seen["run_id"])) == \
        {"namespaces": [], "wireguard": [], "processes": []}
    assert wireguard_go_pids(seen["wg"]) == []  # type: ignore[arg-type]
    # Only this run's interfaces: other labs' wireguard-go may run on this host.
    assert live_wireguard_sockets() & seen["wg"] == set()  # type: ignore[operator]
    # 2. `vnstitch lab down ID` while the daemons and their tunnels are running.
    lab = substrate.build()
    try:
        rms = LabRouteManagers(lab, tmp_path / "down")
        rms.start_all()
        _stitch(rms)
        baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
        wg = {t["interface"] for seg in ("a", "b") for t in rms.show(seg, "tunnels")}
        done = subprocess.run([sys.executable, "-m", "vnstitch", "lab", "down", lab.run_id,
                               "--json"], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        for seg in rms.rms:
            rms.stop(seg)  # reap: they were killed with their namespaces
    finally:
        substrate.teardown(lab.run_id)
    assert substrate.leftovers(lab.run_id) == {"namespaces": [], "wireguard": [],
                                               "processes": []}
    assert len(wg) == 2 and wireguard_go_pids(wg) == []
    assert live_wireguard_sockets() & wg == set()


@pytest.mark.alone  # a latency claim (tests/rootutil.py)
def test_lab_demo_json_reports_live_stitch_traffic_and_reroute() -> None:
    require_root()
    done = subprocess.run([sys.executable, "-m", "vnstitch", "lab", "demo", "--json",
                           "--seconds", "2", "--bandwidth", "40", "--pings", "5"],
                          capture_output=True, text=True, timeout=80, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["stitch_up"] is True and result["path"] == "A-T-B"
    assert (result["ping_sent"], result["ping_received"]) == (5, 5)
    assert 0 < result["setup_seconds"] < 5
    assert result["iperf_mbps"] > 0  # traffic flowed (its rate depends on the host's load)
    assert result["encrypted_on_substrate"] is True
    after = {k: result.get(k) for k in ("rerouted_path", "traffic_restored", "gaps",
                                         "renegotiated_seconds", "reserved_after_mbps")}
    assert result["rerouted_path"] == "A-U-B" and result["traffic_restored"] is True, after
    assert result["reserved_after_mbps"]["t"] == 0.0, after  # the transit lease was released
    assert 0 <= result["reroute_seconds"] < 10
    assert not any(result["leftovers"].values())
    assert substrate.leftovers(result["run_id"]) == {"namespaces": [], "wireguard": [],
                                                     "processes": []}
