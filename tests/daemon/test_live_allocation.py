"""Root test: real traffic through a stitch raises the HTB rate the allocation loop sets.

Four live daemons (linux dataplane) in a namespace lab with an ``allocation:`` section;
A stitches VN 100 to B at 50 Mbit/s, iperf3 sends UDP at 20 Mbit/s from ha1 to hb1, and
the HTB class on A's VXLAN port -- read back from the kernel -- rises from the minimum
toward the traffic's rate. Everything is removed afterwards, even on failure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from tests.daemon.livelab import live_lab
from tests.rootutil import require_root
from vnstitch.dataplane import tc
from vnstitch.lab import baseline, netns
from vnstitch.lab.routemgrs import LabRouteManagers, wait_for
from vnstitch.lab.substrate import Lab

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(120)]

NEGOTIATED = 50.0
TRAFFIC = 20.0
ALLOCATION = {"interval_s": 0.5, "hold_steps": 0, "min_mbps": 1, "default_class": "web"}

Live = tuple[Lab, LabRouteManagers]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    require_root()
    with live_lab(tmp_path / "rm", allocation=ALLOCATION) as pair:
        yield pair


def htb_rate(lab: Lab, seg: str, device: str, class_id: int) -> tuple[float, float]:
    """(rate, ceil) in Mbit/s of HTB class 1:class_id on ``device``, from the kernel."""
    with IPRoute(netns=lab.routers[seg].ns) as ipr:
        idx = ipr.link_lookup(ifname=device)[0]
        limits, _ = tc.observe(ipr, idx, device)
    found = [r for r in limits if r.class_id == class_id]
    assert found, limits
    return found[0].rate_mbps, found[0].ceil_mbps


def udp_iperf(lab: Lab, client: str, server: str, mbps: float, seconds: float) -> float:
    """Send UDP at ``mbps`` for ``seconds``; the receiver's Mbit/s."""
    srv = netns.popen_in(lab.host(server).ns, ["iperf3", "-s", "-1", "-p", "5202"])
    try:
        time.sleep(0.2)
        done = netns.run_in(lab.host(client).ns,
                            ["iperf3", "-c", lab.host(server).ip, "-p", "5202", "-u",
                             "-b", f"{mbps:g}M", "-t", str(seconds), "-J"],
                            timeout_s=seconds + 20, check=False)
    finally:
        srv.kill()
        srv.communicate()
    data = json.loads(done.stdout)
    return float(data["end"]["sum"]["bits_per_second"]) / 1e6


@pytest.mark.alone  # the daemon's rate samples must be on time (tests/rootutil.py)
def test_traffic_raises_the_htb_rate_from_the_minimum(live: Live) -> None:
    lab, rms = live
    rms.wait_route("a", 100)
    reply = rms.stitch("a", 100, NEGOTIATED)
    assert reply["established"], reply
    baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)

    def stitch_row() -> dict[str, object] | None:
        rows = rms.show("a", "status")["allocation"]["stitches"]
        return rows[0] if rows else None

    row = wait_for(stitch_row, 5.0, "A's allocation loop to see the tunnel")
    device = str(row["device"])
    with IPRoute(netns=lab.routers["a"].ns) as ipr:
        idx = ipr.link_lookup(ifname=device)[0]
        limits, _ = tc.observe(ipr, idx, device)
    assert len(limits) == 1
    cid = limits[0].class_id
    # Idle tunnel: the loop brings the class down to the minimum (ceil stays negotiated).
    wait_for(lambda: htb_rate(lab, "a", device, cid)[0] <= 1.0 or None, 10.0,
             "the HTB rate to reach the 1 Mbit/s minimum")
    before = htb_rate(lab, "a", device, cid)
    assert before[1] == pytest.approx(NEGOTIATED, rel=1e-3)
    got = udp_iperf(lab, "ha1", "hb1", TRAFFIC, seconds=6)
    after = htb_rate(lab, "a", device, cid)
    decisions = [r for r in rms.show("a", "allocations") if r.get("subject") == row["stitch_id"]]
    print(f"\nHTB 1:{cid:x} on {device}: before rate={before[0]:g} ceil={before[1]:g}; "
          f"after rate={after[0]:g} ceil={after[1]:g}; iperf3 UDP received {got:.2f} Mbit/s")
    for d in decisions[-4:]:
        print(f"  t={d['now']} measured={d['measured_mbps']} forecast={d['forecast_mbps']} "
              f"q={d['quantile']:.3f} reserved={d['amount_mbps']} {d['action']}")
    assert got > 0  # its rate depends on the host's load; the HTB class follows it
    assert before[0] <= 1.0
    assert min(got, TRAFFIC) * 0.8 <= after[0] <= NEGOTIATED, after
    assert after[1] == pytest.approx(NEGOTIATED, rel=1e-3)
    # The daemon never lost its dataplane to a second writer.
    assert rms.show("a", "status")["dataplane_errors"] == 0
