"""Root test: the ``qos:`` section live in four real daemons, read back from the kernel.

A namespace lab with every Route Manager configured with a video/e-mail policy, A's and
T's ends of the A-T link as owned substrate interfaces. A stitches VN 100 to B at
20 Mbit/s; then ``routemgr show qos`` (the control socket, kernel counters) shows

* the stitch's VXLAN port on A split into the policy's classes, capped at 20 Mbit/s, and
  under a DSCP-34 video flow plus an e-mail flow above the stitch's bandwidth the video
  class drops nothing while the e-mail class drops (kernel class counters);
* the A-T link's classes, with the tunnel's WireGuard packets counted in VN 100's class
  (matched by the tunnel's UDP source port);

``show metrics`` (what ``/metrics`` serves) carries the same kernel counters per class
and summed per stitch, and passes ``promtool check metrics``;
and ``show routes`` shows the stitched prefix at VN 100's priority band, below an OSPF
route to the same prefix added to A's namespace, with the kernel choosing the stitch.
Everything is removed afterwards, even on failure.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.livelab import live_lab
from tests.rootutil import require_root
from vnstitch.lab import baseline, netns
from vnstitch.lab.routemgrs import LabRouteManagers, wait_for
from vnstitch.lab.substrate import Lab
from vnstitch.routing.table import SUBSTRATE_METRIC, stitch_route_metric

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(150)]

QOS: dict[str, Any] = {
    "link_mbps": 100,
    "classes": [{"name": "video", "priority": 0, "guaranteed_mbps": 60, "max_mbps": 100},
                {"name": "email", "priority": 3, "guaranteed_mbps": 5, "max_mbps": 100}],
    "applications": [{"name": "tv", "class": "video", "dscp": [34]},
                     {"name": "vn100", "class": "video", "vnid": 100}],
    "stitching_priority": {"default": 10, "vnids": {100: 12}},
}
STITCH_MBPS = 20.0
Live = tuple[Lab, LabRouteManagers]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    require_root()
    with live_lab(tmp_path / "rm", qos=QOS, qos_links={frozenset("at"): 50.0}) as pair:
        yield pair


def _flows(lab: Lab) -> None:
    """4 Mbit/s of DSCP-34 video and 30 Mbit/s of e-mail from ha1 to hb1 for 3 s."""
    dst = lab.host("hb1").ip
    servers = [netns.popen_in(lab.host("hb1").ns, ["iperf3", "-s", "-1", "-p", str(p)])
               for p in (5301, 5302)]
    try:
        time.sleep(0.3)  # the servers' listen
        clients = [netns.popen_in(lab.host("ha1").ns, [
            "iperf3", "-c", dst, "-p", str(port), "-u", "-b", f"{mbps}M", "-l", "1000",
            "-t", "3", "-J", *extra], stdout=subprocess.PIPE)
            for port, mbps, extra in ((5301, 4, ["-S", str(34 << 2)]), (5302, 30, []))]
        for c in clients:
            out, _ = c.communicate(timeout=30)
            json.loads(out)  # iperf3 finished its run
    finally:
        for s in servers:
            s.kill()
            s.communicate()


def _metric(text: str, name: str, *labels: str) -> float:
    found = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line.startswith(name + "{") and all(x in line for x in labels)]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_qos_classes_and_priority_bands_live(live: Live) -> None:
    lab, rms = live
    rms.wait_route("a", 100)
    reply = rms.stitch("a", 100, STITCH_MBPS)
    assert reply["established"], reply
    baseline.wait_reachable(lab, "ha1", "hb1", timeout_s=10)

    def applied() -> list[dict[str, Any]] | None:  # the daemon's reconcile has run
        rows: list[dict[str, Any]] = rms.show("a", "qos")
        on_tunnel = any(str(r["device"]).startswith("vx") for r in rows)
        return rows if on_tunnel and all(r["bytes"] is not None for r in rows) else None

    rows = wait_for(applied, 10.0, "A's QoS classes in the kernel")
    tunnel = [r for r in rows if str(r["device"]).startswith("vx")]
    assert {r["class"] for r in tunnel} == {"video", "email"}
    assert all(r["ceil_mbps"] == STITCH_MBPS for r in tunnel)
    link = {r["class"]: r for r in rows if r["device"] == lab.link("a", "t").a_dev}
    assert link["video"]["rate_mbps"] == 30.0 and link["email"]["rate_mbps"] == 2.5

    _flows(lab)
    after = {(r["device"], r["class"]): r for r in rms.show("a", "qos")}
    print(json.dumps(list(after.values())))
    vx = str(tunnel[0]["device"])
    video, email = after[(vx, "video")], after[(vx, "email")]
    print(f"tunnel end: video {video}, email {email}")
    assert video["packets"] >= 1000 and video["drops"] == 0
    assert email["drops"] > 1000  # 30 Mbit/s into a 20 Mbit/s stitch
    wg_video = after[(lab.link("a", "t").a_dev, "video")]
    assert wg_video["packets"] >= video["packets"]  # the tunnel's packets, by source port

    # /metrics (the same scrape through the control socket) carries the kernel's class
    # counters, and per stitch its tunnel end's classes summed; promtool accepts it.
    text = str(rms.show("a", "metrics"))
    check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    on_vx = f'device="{vx}"'
    email_drops = _metric(text, "vnstitch_qos_class_drops_total", on_vx, 'class="email"')
    assert email_drops >= email["drops"]  # read after show qos: the counter only grows
    assert _metric(text, "vnstitch_qos_class_drops_total", on_vx, 'class="video"') == 0
    assert _metric(text, "vnstitch_qos_class_bytes_total", on_vx, 'class="video"') \
        >= video["bytes"] > 0
    sid = f'stitch_id="{reply["stitch_id"]}"'
    assert _metric(text, "vnstitch_stitch_sent_bytes_total", sid) >= \
        video["bytes"] + email["bytes"]
    assert _metric(text, "vnstitch_stitch_dropped_packets_total", sid) >= email["drops"]

    # The substrate's own route to the same prefix (as the IGP would install it).
    prefix = "192.168.100.0/24"
    peer = lab.link("a", "t").b_addr.split("/")[0]
    netns.run_in(lab.routers["a"].ns, ["ip", "route", "add", prefix, "via", peer, "proto",
                                       "ospf", "metric", str(SUBSTRATE_METRIC)])
    routes = [r for r in rms.show("a", "routes") if r["where"] == "stitched"
              and r["prefix"] == prefix]
    assert len(routes) == 1, routes
    row = routes[0]
    print(f"route: {row}")
    assert row["metric"] == row["kernel_metric"] == stitch_route_metric(12)
    assert row["substrate_metric"] == SUBSTRATE_METRIC
    assert row["kernel_metric"] < row["substrate_metric"] and row["chosen_device"] == "vn100"
