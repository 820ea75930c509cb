"""What a Route Manager pays to bring one tunnel end up and down, in the kernel (root).

The simulator's per-Route-Manager costs (:mod:`vnstitch.sim.costs`) come from here. In
a namespace of its own, the Linux driver reconciles the dataplane objects one stitch's
tunnel end has (the ones :meth:`vnstitch.protocol.tunnels.Tunnel.dataplane_objects`
makes: WireGuard interface with its wireguard-go process and peer, VXLAN port over it,
bridge port, flood FDB entry, HTB rate limit, route to the far VN) onto a bridge that
exists (the daemon makes the VN's bridge when it starts), then removes them: ``--runs``
times each, one pass per change as the daemon's reconciler runs it. Named baseline in the
same run: the same pass without the WireGuard interface (VXLAN over a dummy device), so
the share of wireguard-go's start is visible.

Prints the medians and the host's load (these are wall times on a shared machine: the
costs the lab's daemons see at that load). ``--json``: one object.

Usage: ``python benchmarks/tunnel_install.py [--runs N] [--json]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from vnstitch.dataplane import DataplaneState, reconcile
from vnstitch.dataplane.linux import LinuxDataplane
from vnstitch.dataplane.objects import Bridge, DataplaneObject, VxlanPort, WireguardInterface
from vnstitch.lab import netns
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.output import console, print_json, table
from vnstitch.protocol.tunnels import Tunnel, tunnel_addresses, wg_keypair


def tunnel_end(rng: random.Random, k: int) -> tuple[DataplaneObject, ...]:
    """One origin tunnel end's objects, as the protocol core makes them."""
    priv, pub = wg_keypair(rng)
    _, peer_pub = wg_keypair(rng)
    own, peer = tunnel_addresses(rng)
    t = Tunnel(f"bench{k}-{uuid.uuid4().hex[:6]}", f"s{k}", VNID(7), RouteManagerId("far"),
               True, (RouteManagerId("me"), RouteManagerId("far")), priv, pub,
               "10.99.0.1:51820", own, peer, 10.0, 51820 + k, 1 + k, ("172.16.9.0/24",))
    t.peer_public, t.peer_endpoint = peer_pub, "10.99.0.2:51820"
    return t.dataplane_objects(route_metric=5)


def _time(dp: LinuxDataplane, state: DataplaneState) -> float:
    t0 = time.perf_counter()
    reconcile(dp, state)
    return time.perf_counter() - t0


def measure(runs: int, *, wireguard: bool) -> dict[str, float]:
    ns = f"vsbti{uuid.uuid4().hex[:6]}"
    netns.create(ns)
    rng = random.Random(1)
    up: list[float] = []
    down: list[float] = []
    try:
        with LinuxDataplane(ns, owner="bench") as dp:
            base = DataplaneState([Bridge("vn7")])
            if not wireguard:  # the VXLAN port needs a lower device: a veth stands in
                netns.run_in(ns, ["ip", "link", "add", "bdummy", "type", "veth", "peer",
                                  "name", "bdummy2"])
                netns.run_in(ns, ["ip", "link", "set", "bdummy", "up"])
                netns.run_in(ns, ["ip", "addr", "add", "100.64.0.0/31", "dev", "bdummy"])
            reconcile(dp, base)
            for k in range(runs):
                objs = tunnel_end(rng, k)
                if not wireguard:
                    objs = tuple(
                        dataclasses.replace(o, local_ip="100.64.0.0", underlay="bdummy")
                        if isinstance(o, VxlanPort) else o for o in objs
                        if not isinstance(o, WireguardInterface))
                up.append(_time(dp, base.with_objects(add=list(objs))))
                down.append(_time(dp, base))
    finally:
        netns.destroy(ns)
    return {"up_ms_median": round(1000 * statistics.median(up), 1),
            "up_ms_max": round(1000 * max(up), 1),
            "down_ms_median": round(1000 * statistics.median(down), 1),
            "down_ms_max": round(1000 * max(down), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="tunnel ends brought up and "
                    "down (default 10)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("tunnel_install: needs root (network namespaces, wireguard-go)",
              file=sys.stderr)
        return 2
    load = os.getloadavg()
    result: dict[str, Any] = {
        "runs": args.runs,
        "load_average_1m_start": round(load[0], 2),
        "tunnel_end": measure(args.runs, wireguard=True),
        "baseline_no_wireguard": measure(args.runs, wireguard=False),
    }
    result["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print_json(result)
        return 0
    rows = [[name, r["up_ms_median"], r["up_ms_max"], r["down_ms_median"], r["down_ms_max"]]
            for name, r in (("tunnel end", result["tunnel_end"]),
                            ("no WireGuard", result["baseline_no_wireguard"]))]
    console().print(table(f"one tunnel end, {args.runs} runs (load "
                          f"{result['load_average_1m_start']} -> "
                          f"{result['load_average_1m_end']} on {os.cpu_count()} CPUs)",
                          ["pass", "up ms med", "up max", "down ms med", "down max"], rows))
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "src")]
    raise SystemExit(main())
