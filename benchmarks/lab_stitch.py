"""Live Route Managers in the namespace lab: stitch setup, throughput, reroute (needs root).

Three measurements, each against a named baseline in the same run:

* ``setup``: time from a stitch request (A's control socket, VN 100 on B) to the first
  ping reply delivered end to end (a ``ping -D`` stream every 20 ms is running),
  median of ``--setups`` fresh stitches (each released and its kernel objects gone
  before the next). Also the daemon's own request -> established time.
* ``throughput``: iperf3 ha1 -> hb1 through the daemon-made stitch (reservation well
  above what wireguard-go carries, so the HTB class does not bind) vs the same
  VXLAN over WireGuard configured by hand (``vnstitch.lab.baseline.stitch_state``),
  median of ``--runs``; the ratio daemon / hand.
* ``reroute``: cut the A-T link under a ping stream; time until traffic flows again
  through the stitch the Route Managers re-negotiated via U, and the delivery outage,
  on ``--reroutes`` fresh labs; baseline: the hand-made stitch, where only the kernel's
  static routes fail over (no protocol at all).

Usage: ``python benchmarks/lab_stitch.py [--setups N] [--runs N] [--reroutes N]
[--seconds S] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from vnstitch.lab import baseline, substrate
from vnstitch.lab.demo import GAP_S, reroute, stitch_and_measure
from vnstitch.lab.routemgrs import LabRouteManagers, PingStream, fast_arp, wait_for
from vnstitch.lab.substrate import Lab
from vnstitch.output import console, progress, table

Tick = Callable[[], None]


def _wg_links(lab: Lab, seg: str) -> list[str]:
    with IPRoute(netns=lab.routers[seg].ns) as ipr:
        return [str(m.get_attr("IFLA_IFNAME")) for m in ipr.get_links()
                if str(m.get_attr("IFLA_IFNAME")).startswith("wg")]


def _live_lab(tmp: Path, capacity_mbps: float) -> tuple[Lab, LabRouteManagers]:
    lab = substrate.build()
    try:
        fast_arp(lab)
        rms = LabRouteManagers(lab, tmp / lab.run_id, capacity_mbps=capacity_mbps)
        rms.start_all()
        rms.wait_route("a", 100)
    except BaseException:
        substrate.teardown(lab.run_id)
        raise
    return lab, rms


def _close(lab: Lab, rms: LabRouteManagers) -> None:
    try:
        for seg in rms.rms:
            rms.stop(seg)
    finally:
        substrate.teardown(lab.run_id)


def setup_and_throughput(tmp: Path, setups: int, runs: int, seconds: float,
                         tick: Tick) -> dict[str, Any]:
    lab, rms = _live_lab(tmp, capacity_mbps=10_000)
    first_packet: list[float] = []
    established: list[float] = []
    daemon_mbps: list[float] = []
    hand_mbps: list[float] = []
    try:
        for _ in range(setups):
            m = stitch_and_measure(lab, rms, 50.0)
            if not m["stitch_up"] or m["setup_seconds"] is None:
                raise RuntimeError(f"stitch did not carry traffic: {m}")
            first_packet.append(m["setup_seconds"])
            established.append(m["stitch_established_seconds"])
            rms.request("a", {"cmd": "release", "stitch_id": m["stitch_id"]})
            wait_for(lambda: not _wg_links(lab, "a") and not _wg_links(lab, "b"), 10.0,
                     "the released stitch's interfaces to go")
            tick()
        m = stitch_and_measure(lab, rms, 1000.0)
        for _ in range(runs):
            daemon_mbps.append(baseline.iperf(lab, "ha1", "hb1", seconds))
            tick()
        rms.request("a", {"cmd": "release", "stitch_id": m["stitch_id"]})
        for seg in rms.rms:  # hand the lab over to the hand-made stitch
            rms.stop(seg)
            rms.purge_dataplane(seg)
        baseline.hand_stitch(lab)
        baseline.wait_reachable(lab, "ha1", "hb1")
        for _ in range(runs):
            hand_mbps.append(baseline.iperf(lab, "ha1", "hb1", seconds))
            tick()
    finally:
        _close(lab, rms)
    return {
        "first_packet_s": first_packet, "established_s": established,
        "median_first_packet_s": statistics.median(first_packet),
        "median_established_s": statistics.median(established),
        "daemon_mbps": daemon_mbps, "hand_mbps": hand_mbps,
        "median_daemon_mbps": statistics.median(daemon_mbps),
        "median_hand_mbps": statistics.median(hand_mbps),
        "throughput_ratio": statistics.median(daemon_mbps) / statistics.median(hand_mbps),
    }


def reroute_daemon(tmp: Path) -> dict[str, Any]:
    lab, rms = _live_lab(tmp, capacity_mbps=1000)
    try:
        m = stitch_and_measure(lab, rms, 50.0)
        return reroute(lab, rms, m["stitch_id"])
    finally:
        _close(lab, rms)


def reroute_hand() -> dict[str, Any]:
    """The baseline: a hand-made stitch; only the kernel's static routes fail over."""
    lab = substrate.build()
    try:
        fast_arp(lab)
        baseline.hand_stitch(lab)
        baseline.wait_reachable(lab, "ha1", "hb1")
        with PingStream(lab, "ha1", "hb1") as stream:
            time.sleep(0.5)
            cut_at = time.time()
            substrate.cut_link(lab, "a", "t")
            time.sleep(3.0)
            stopped_at = time.time()
        gaps = stream.gaps_after(cut_at, GAP_S)
        restored = bool(stream.replies) and stopped_at - stream.replies[-1] < 0.5
        return {"traffic_restored": restored,
                "reroute_seconds": (gaps[-1][1] - cut_at if gaps else 0.0) if restored else None,
                "outage_seconds": sum(b - a for a, b in gaps) if restored else None}
    finally:
        substrate.teardown(lab.run_id)


def _median(values: list[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def measure(setups: int, runs: int, reroutes: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vnstitch-bench-") as d, progress() as bar:
        tmp = Path(d)
        task = bar.add_task("lab stitch", total=setups + 2 * runs + 2 * reroutes)

        def tick() -> None:
            bar.advance(task)

        st = setup_and_throughput(tmp, setups, runs, seconds, tick)
        daemon_rr: list[dict[str, Any]] = []
        hand_rr: list[dict[str, Any]] = []
        for _ in range(reroutes):
            daemon_rr.append(reroute_daemon(tmp))
            tick()
            hand_rr.append(reroute_hand())
            tick()
    return {
        "setups": setups, "runs": runs, "reroutes": reroutes, "iperf_seconds": seconds,
        "cpus": os.cpu_count(), **st,
        "reroute_daemon": daemon_rr, "reroute_hand": hand_rr,
        "median_reroute_s": _median([r["reroute_seconds"] for r in daemon_rr]),
        "median_renegotiated_s": _median([r["renegotiated_seconds"] for r in daemon_rr]),
        "median_outage_s": _median([r["outage_seconds"] for r in daemon_rr]),
        "median_hand_reroute_s": _median([r["reroute_seconds"] for r in hand_rr]),
        "median_hand_outage_s": _median([r["outage_seconds"] for r in hand_rr]),
        "rerouted_paths": [r["rerouted_path"] for r in daemon_rr],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", type=int, default=10, help="stitch setups (median)")
    parser.add_argument("--runs", type=int, default=3, help="iperf3 runs per configuration")
    parser.add_argument("--reroutes", type=int, default=3, help="link cuts (fresh labs)")
    parser.add_argument("--seconds", type=float, default=3.0, help="iperf3 run length")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("lab_stitch: needs root (network namespaces, wireguard-go)", file=sys.stderr)
        return 2
    if min(args.setups, args.runs, args.reroutes) < 1 or args.seconds <= 0:
        print("lab_stitch: counts must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    res = measure(args.setups, args.runs, args.reroutes, args.seconds)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    out = console()
    out.print(table(f"stitch setup, median of {args.setups}", ["measure", "seconds"], [
        ("request -> first packet end to end", res["median_first_packet_s"]),
        ("request -> established (daemon)", res["median_established_s"])]))
    out.print(table(f"throughput, median of {args.runs} x {args.seconds}s iperf3",
                    ["stitch", "Mbit/s"], [
                        ("daemon-made (VXLAN over wireguard-go)", res["median_daemon_mbps"]),
                        ("hand-configured (baseline.stitch_state)", res["median_hand_mbps"]),
                        ("ratio daemon / hand", res["throughput_ratio"])]))
    out.print(table(f"reroute after cutting A-T, median of {args.reroutes}",
                    ["measure", "Route Managers", "hand stitch (kernel only)"], [
                        ("cut -> traffic flows again s", res["median_reroute_s"],
                         res["median_hand_reroute_s"]),
                        ("delivery outage s", res["median_outage_s"],
                         res["median_hand_outage_s"]),
                        ("cut -> stitch re-negotiated s", res["median_renegotiated_s"], None)]))
    out.print(f"re-negotiated paths: {res['rerouted_paths']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
