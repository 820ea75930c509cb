"""``vnstitch demo``: the main job, on built-in data, with no files needed.

Part 1 is a close-up of one stitch: Route Managers in memory on a partitioned built-in
topology converge, then one stitches a VN across a transit segment (three path round
trips). Part 2 runs the simulator's default scenario on Abilene (loss, a transit Route
Manager crash and its repair), prints the story and the summary table, and writes the
HTML report (topology, stitched paths, timeline). Part 3 tells the congestion story of
``builtin:congestion``: a surge congests a link, stitched video and voice keep their
guaranteed rate while e-mail absorbs the shortfall, and the surge is rerouted around.
Part 4 (:mod:`vnstitch.sim.forecast_story`) forecasts a few stitched VNs' traffic from
the application profiles and allocates bandwidth ahead of demand.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vnstitch.cli.output import add_json_flag, console, print_json, table
from vnstitch.protocol.demo import run_demo
from vnstitch.sim.demo import main as sim_demo
from vnstitch.sim.demo import summary_rows
from vnstitch.sim.forecast_story import TABLE_COLUMNS, forecast_and_allocate, story_lines
from vnstitch.sim.forecast_story import table_rows as allocation_rows
from vnstitch.sim.traffic_story import congestion_demo
from vnstitch.sim.traffic_story import summary_rows as traffic_rows


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="the main job: stitch VNs on a built-in topology, fail and repair",
        description="Part 1: partition a built-in topology into segments (one in-memory "
        "Route Manager each, virtual clock), let discovery converge and stitch a VNID "
        "between the two segments farthest apart. Part 2: run the simulator's default "
        "scenario on Abilene (requests, 2% loss, a transit Route Manager crash and "
        "restart), tell the story, print the summary and write an HTML report. Part 3: a "
        "link congests; QoS and reroute. Part 4: forecast three VNs' traffic and replay "
        "the last day through static, reactive and predictive allocation.")
    p.add_argument("--topology", default="zoo:Abilene",
                   help="part 1 topology: zoo:NAME | sndlib:NAME | PATH")
    p.add_argument("--segments", type=int, default=4, help="part 1 Route Managers (default 4)")
    p.add_argument("--bandwidth", type=float, default=1000.0, help="part 1 Mbit/s to reserve")
    p.add_argument("--seed", type=int, default=1, help="part 1 seed")
    p.add_argument("--report", type=Path, default=Path("vnstitch-demo.html"),
                   help="where to write the HTML report (default ./vnstitch-demo.html)")
    p.add_argument("--no-simulation", action="store_true", help="run part 1 only")
    add_json_flag(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    closeup = run_demo(args.topology, args.segments, bandwidth_mbps=args.bandwidth,
                       seed=args.seed)
    ok = "path" in closeup["stitch"]
    sim: dict[str, Any] | None = None
    if not args.no_simulation:
        result, lines, report = sim_demo(args.report)
        sim = {"summary": result.summary, "story": lines, "report": str(report),
               "rows": summary_rows(result.summary)}
        ok = ok and result.summary["overcommit_violations"] == 0
        _, traffic, traffic_story = congestion_demo()
        sim["congestion"] = {"summary": traffic, "story": traffic_story}
        ok = ok and traffic["stitched_guarantee_kept"]
        forecast = forecast_and_allocate()
        sim["forecast"] = {**forecast, "story": story_lines(forecast)}
    if args.json:
        out: dict[str, Any] = {"closeup": closeup}
        if sim is not None:
            out["simulation"] = {k: sim[k] for k in ("summary", "story", "report")}
            out["congestion"] = sim["congestion"]
            out["forecast_allocation"] = sim["forecast"]
        print_json(out)
        return 0 if ok else 1
    _print_closeup(closeup)
    if sim is not None:
        con = console()
        con.rule("Part 2: the default scenario in the simulator")
        for line in sim["story"]:
            con.print(line, markup=False)
        con.print(table("summary", ["measure", "value"], sim["rows"]))
        con.print(f"report: {sim['report']}")
        con.rule("Part 3: a link congests; QoS and reroute")
        for line in sim["congestion"]["story"]:
            con.print(line, markup=False)
        con.print(table("congestion", ["measure", "value"],
                        traffic_rows(sim["congestion"]["summary"])))
        con.rule("Part 4: forecast and allocate ahead of demand")
        for line in sim["forecast"]["story"]:
            con.print(line, markup=False)
        con.print(table("last day, per VN and policy", TABLE_COLUMNS,
                        allocation_rows(sim["forecast"])))
    return 0 if ok else 1


def _print_closeup(r: dict[str, Any]) -> None:
    out = console()
    out.rule("Part 1: one stitch, close up")
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
        return
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
