"""Root test: traffic above a stitch's negotiated bandwidth makes the stitch grow in place.

Four live daemons (linux dataplane) in a namespace lab with an ``allocation:`` section
that grows stitches; A stitches VN 100 to B over A-T-B at 8 Mbit/s, iperf3 sends UDP at
30 Mbit/s from ha1 to hb1. The HTB class on A's VXLAN port caps the tunnel, the loop sees
it saturated and asks the path to grow: the class's ceil -- read back from the kernel --
rises above 8 Mbit/s, every RM on the path reserves the new amount, and the tunnel keeps
carrying traffic throughout. Everything is removed afterwards, even on failure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from tests.daemon.livelab import live_lab
from tests.daemon.test_live_allocation import htb_rate, udp_iperf
from tests.rootutil import require_root
from vnstitch.dataplane import tc
from vnstitch.lab import baseline
from vnstitch.lab.routemgrs import LabRouteManagers, wait_for
from vnstitch.lab.substrate import Lab

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(150)]

NEGOTIATED = 8.0
TRAFFIC = 30.0
ALLOCATION = {"interval_s": 0.5, "hold_steps": 0, "min_mbps": 1, "default_class": "web",
              "grow_after": 2, "grow_headroom": 0.5, "unit_mbps": 1, "grow_holddown_s": 5}

Live = tuple[Lab, LabRouteManagers]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    require_root()
    with live_lab(tmp_path / "rm", allocation=ALLOCATION) as pair:
        yield pair


@pytest.mark.alone  # the daemon's rate samples must be on time (tests/rootutil.py)
def test_traffic_above_the_negotiated_bandwidth_grows_the_stitch(live: Live) -> None:
    lab, rms = live
    rms.wait_route("a", 100)
    reply = rms.stitch("a", 100, NEGOTIATED)
    assert reply["established"], reply
    sid = reply["stitch_id"]
    baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)
    row = wait_for(lambda: (rms.show("a", "status")["allocation"]["stitches"] or [None])[0],
                   5.0, "A's allocation loop to see the tunnel")
    device = str(row["device"])
    with IPRoute(netns=lab.routers["a"].ns) as ipr:
        limits, _ = tc.observe(ipr, ipr.link_lookup(ifname=device)[0], device)
    cid = limits[0].class_id
    assert htb_rate(lab, "a", device, cid)[1] == pytest.approx(NEGOTIATED, rel=1e-3)
    t0 = time.monotonic()
    got = udp_iperf(lab, "ha1", "hb1", TRAFFIC, seconds=8)
    elapsed = time.monotonic() - t0
    rate, ceil = htb_rate(lab, "a", device, cid)
    decisions = [r for r in rms.show("a", "allocations")
                 if str(r.get("action", "")).startswith("resize")]
    print(f"\nHTB 1:{cid:x} on {device}: ceil {NEGOTIATED:g} -> {ceil:g} Mbit/s (rate "
          f"{rate:g}) after {elapsed:.1f} s of UDP at {TRAFFIC:g}; received {got:.2f} Mbit/s")
    for d in decisions:
        print(f"  t={d['now']} {d['action']}: {d['reason']}")
    assert any(d["action"] == "resized" for d in decisions), decisions
    assert ceil > NEGOTIATED * 1.4  # at least one grow of the 50 % headroom
    stitch = rms.stitch_row("a", sid)
    assert stitch is not None and stitch["status"] == "up"
    assert stitch["bandwidth_mbps"] == pytest.approx(ceil, rel=1e-3)
    # every RM on the path (A, T, B) reserved the new amount, and B shapes to it as well
    for seg, links in (("a", 1), ("t", 2), ("b", 1)):  # the transit on both its links
        assert rms.reserved_mbps(seg) == pytest.approx(links * ceil, rel=1e-3), seg
    # hitless: the tunnel never went down on the way
    tunnels = rms.show("a", "tunnels")
    assert [t["state"] for t in tunnels] == ["up"], tunnels
    assert got > NEGOTIATED  # more than the original cap got through
    assert rms.show("a", "status")["dataplane_errors"] == 0
