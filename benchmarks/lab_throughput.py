"""Throughput across the namespace lab: plain veth routing vs VXLAN vs VXLAN over WireGuard.

Builds one lab (root), and for each configuration measures TCP throughput host A ->
host B with iperf3 (median of ``--runs``), tearing the lab down at the end:

* ``veth_routed``: the substrate alone -- router A to router B loopback to loopback
  (A-T-B, two forwarding hops), no encapsulation: the ceiling.
* ``vxlan``: VN 100 stitched by hand as plain VXLAN over the substrate (no encryption).
* ``vxlan_wireguard``: VN 100 stitched by hand as VXLAN over wireguard-go (what vnstitch
  deploys).

Usage: ``python benchmarks/lab_throughput.py [--seconds S] [--runs N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from vnstitch.lab import baseline, netns, substrate
from vnstitch.lab.substrate import Lab
from vnstitch.output import console, progress, table


def _iperf_routers(lab: Lab, seconds: float) -> float:
    """iperf3 from router A's loopback to router B's (no tunnel at all)."""
    b = lab.routers["b"]
    srv = netns.popen_in(b.ns, ["iperf3", "-s", "-1", "-p", "5202"])
    try:
        time.sleep(0.2)
        done = netns.run_in(lab.routers["a"].ns,
                            ["iperf3", "-c", b.loopback, "-B", lab.routers["a"].loopback,
                             "-p", "5202", "-t", str(seconds), "-J", "-O", "1"],
                            timeout_s=seconds + 20, check=False)
    finally:
        srv.kill()
        srv.communicate()
    return float(json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"]) / 1e6


def measure(seconds: float, runs: int) -> dict[str, Any]:
    lab = substrate.build()
    results: dict[str, list[float]] = {"veth_routed": [], "vxlan": [], "vxlan_wireguard": []}
    try:
        with progress() as bar:
            task = bar.add_task("iperf3", total=3 * runs)
            for _ in range(runs):
                results["veth_routed"].append(_iperf_routers(lab, seconds))
                bar.advance(task)
            baseline.hand_stitch(lab, encrypted=False)
            baseline.wait_reachable(lab, "ha1", "hb1")
            for _ in range(runs):
                results["vxlan"].append(baseline.iperf(lab, "ha1", "hb1", seconds))
                bar.advance(task)
            baseline.unstitch(lab)
            baseline.hand_stitch(lab)
            baseline.wait_reachable(lab, "ha1", "hb1")
            for _ in range(runs):
                results["vxlan_wireguard"].append(baseline.iperf(lab, "ha1", "hb1", seconds))
                bar.advance(task)
    finally:
        substrate.teardown(lab.run_id)
    med = {k: statistics.median(v) for k, v in results.items()}
    return {
        "seconds": seconds, "runs": runs, "cpus": os.cpu_count(),
        "median_mbps": med, "samples_mbps": results,
        "ratio_wireguard_vs_vxlan": med["vxlan_wireguard"] / med["vxlan"],
        "ratio_wireguard_vs_veth": med["vxlan_wireguard"] / med["veth_routed"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="iperf3 run length")
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("lab_throughput: needs root (network namespaces)", file=sys.stderr)
        return 2
    res = measure(args.seconds, args.runs)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    out = console()
    out.print(table(f"lab TCP throughput, median of {args.runs} x {args.seconds}s iperf3",
                    ["configuration", "Mbit/s", "vs veth"],
                    [(k, v, v / res["median_mbps"]["veth_routed"])
                     for k, v in res["median_mbps"].items()]))
    out.print(f"VXLAN over WireGuard / plain VXLAN = {res['ratio_wireguard_vs_vxlan']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
