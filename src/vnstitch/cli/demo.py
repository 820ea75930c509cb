"""``vnstitch demo``: Route Managers in memory stitch a VN across a transit segment."""

from __future__ import annotations

import argparse
from typing import Any

from vnstitch.cli.output import add_json_flag, console, print_json, table
from vnstitch.protocol.demo import run_demo


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run Route Managers in memory and stitch a VN across a transit segment",
        description="Partition a built-in topology into segments (one in-memory Route "
        "Manager each, virtual clock), let discovery converge, stitch a VNID between the "
        "two segments farthest apart and report what happened.")
    p.add_argument("--topology", default="zoo:Abilene", help="zoo:NAME | sndlib:NAME | PATH")
    p.add_argument("--segments", type=int, default=4, help="Route Managers (default 4)")
    p.add_argument("--bandwidth", type=float, default=1000.0, help="Mbit/s to reserve")
    p.add_argument("--seed", type=int, default=1)
    add_json_flag(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    r = run_demo(args.topology, args.segments, bandwidth_mbps=args.bandwidth, seed=args.seed)
    if args.json:
        print_json(r)
        return 0 if "path" in r["stitch"] else 1
    out = console()
    out.print(f"[bold]{r['topology']}[/] split into {len(r['rms'])} segments, one Route "
              "Manager each:")
    out.print(table("Route Managers", ["segment", "RM id", "substrate nodes", "neighbours"],
                    [(m["segment"], m["rm_id"][:12], len(m["nodes"]),
                      ", ".join(m["neighbours"])) for m in r["rms"]]))
    out.print(f"1. VNID {r['vnid']} lives on {r['origin']} and {r['target']}; discovery "
              f"converged after {r['converged_after_messages']} signed messages "
              f"({r['converged_after_seconds'] * 1000:.1f} ms virtual time).")
    s = r["stitch"]
    if "path" not in s:
        out.print(f"[red]2. stitch failed: {s['failed']}: {s['detail']}[/]")
        return 1
    out.print(f"2. {r['origin']} asked for {s['bandwidth_mbps']:g} Mbit/s to VNID "
              f"{r['vnid']}: path {' -> '.join(s['path'])} (transit "
              f"{', '.join(s['path'][1:-1]) or 'none'}), {s['latency_ms']:.2f} ms, cost "
              f"{s['cost']:g}.")
    out.print(f"3. Query/offer, hold/commit with key exchange: established in "
              f"{s['setup_seconds'] * 1000:.1f} ms = {s['round_trips']:.2f} path round trips.")
    out.print(table("Tunnels (VXLAN over WireGuard)", ["segment", "state", "peer", "interface",
                                                       "endpoint", "address", "VNI", "RTT ms"],
                    [(t["segment"], t["state"], t["peer"], t["wireguard_interface"],
                      t["endpoint"], t["address"], t["vni"], t["rtt_ms"] or "-")
                     for t in r["tunnels"]]))
    out.print("4. Reserved bandwidth per RM and neighbour: " + "; ".join(
        f"{seg}: " + ", ".join(f"{p} {u:g}" for p, u in links.items())
        for seg, links in r["reservations"].items() if links))
    return 0
