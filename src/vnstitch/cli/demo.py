"""``vnstitch demo``: the main job, on built-in data, with no files needed.

One story on one network: the built-in Abilene backbone cut into 5 segments, each named
after one of its PoPs, the same cut and names in every part. Part 1 is a close-up of
one stitch: in-memory Route Managers converge, then one stitches a VN across a transit
segment. Part 2 runs the simulator's default scenario on the same segments (requests,
loss, a transit Route Manager crash and its repair) and tells every stitch by id, VN
and bandwidth, and what the crash did to traffic; it writes the HTML report where
``--report`` says (default: a new temporary folder, named in the output). Part 3 tells
the congestion story of ``builtin:congestion`` (:mod:`vnstitch.sim.traffic_story`).
Part 4 (:mod:`vnstitch.sim.forecast_story`) forecasts three stitched VNs' traffic --
real Abilene flows when the shared data is present, else the shipped profiles, and it
says which -- and allocates bandwidth ahead of demand, decision by decision. It ends
with a short summary and what to try next.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
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

WHAT_NEXT = (
    "vnstitch simulate --scenario builtin:faulty   # more faults, any topology",
    "vnstitch allocate evaluate --help             # the allocator on your traces",
    "sudo vnstitch lab demo                        # real kernel tunnels (root)",
    "docs/operate.md                               # a Route Manager of your own",
)


def _segments(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if k < 2:
        raise argparse.ArgumentTypeError(f"{k}: a stitch joins two segments, need K >= 2")
    return k


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="the main job: stitch VNs on a built-in topology, fail and repair",
        description="One story on the built-in Abilene backbone, cut into segments named "
        "after their PoPs. Part 1: Route Managers converge and stitch one VN across a "
        "transit segment. Part 2: the simulator runs 12 stitch requests with 2% message "
        "loss, crashes the busiest transit Route Manager and shows what traffic did. "
        "Part 3: a link congests; QoS and reroute. Part 4: three VNs' traffic is "
        "forecast and their bandwidth allocated ahead of demand.")
    p.add_argument("--topology", default="zoo:Abilene", metavar="SPEC",
                   help="topology for parts 1 and 2: zoo:NAME | sndlib:NAME | PATH "
                   "(default zoo:Abilene)")
    p.add_argument("--segments", type=_segments, default=5, metavar="K",
                   help="segments (one Route Manager each) for parts 1 and 2 (default 5)")
    p.add_argument("--bandwidth", type=float, default=1000.0, metavar="MBPS",
                   help="Mbit/s the part 1 stitch reserves (default 1000)")
    p.add_argument("--seed", type=int, default=1, metavar="N", help="part 1 seed (default 1)")
    p.add_argument("--report", type=Path, default=None, metavar="FILE.html",
                   help="where to write the HTML report (default: report.html in a new "
                   "temporary folder, named in the output)")
    p.add_argument("--no-simulation", action="store_true",
                   help="run part 1 only (a second or two)")
    add_json_flag(p)
    p.set_defaults(handler=_run)


@dataclass
class DemoRun:
    """Everything the demo found: part 1's close-up, and the rest unless skipped."""

    closeup: dict[str, Any]
    sim: dict[str, Any] | None
    ok: bool

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"closeup": self.closeup}
        if self.sim is not None:
            out["simulation"] = {k: self.sim[k] for k in ("summary", "story", "report")}
            out["congestion"] = self.sim["congestion"]
            out["forecast_allocation"] = self.sim["forecast"]
        return out


def default_report() -> Path:
    """report.html in a new temporary folder (never the working folder)."""
    return Path(tempfile.mkdtemp(prefix="vnstitch-demo-")) / "report.html"


def collect(args: argparse.Namespace) -> DemoRun:
    closeup = run_demo(args.topology, args.segments, bandwidth_mbps=args.bandwidth,
                       seed=args.seed)
    ok = "path" in closeup["stitch"]
    if args.no_simulation:
        return DemoRun(closeup, None, ok)
    result, lines, written = sim_demo(args.report or default_report(), args.topology,
                                      args.segments)
    sim: dict[str, Any] = {"summary": result.summary, "story": lines, "report": str(written),
                           "rows": summary_rows(result.summary)}
    ok = ok and result.summary["overcommit_violations"] == 0
    _, traffic, traffic_story = congestion_demo()
    sim["congestion"] = {"summary": traffic, "story": traffic_story}
    ok = ok and traffic["stitched_guarantee_kept"]
    forecast = forecast_and_allocate()
    sim["forecast"] = {**forecast, "story": story_lines(forecast)}
    return DemoRun(closeup, sim, ok)


def render(run: DemoRun) -> None:
    """The story for people, on stdout."""
    _print_closeup(run.closeup)
    if run.sim is not None:
        _print_rest(run.sim)


def _run(args: argparse.Namespace) -> int:
    run = collect(args)
    if args.json:
        print_json(run.as_json())
    else:
        render(run)
    return 0 if run.ok else 1


def _seg(r: dict[str, Any], seg: str) -> str:
    name: str = r["segment_names"].get(seg, seg)
    return name


def _print_closeup(r: dict[str, Any]) -> None:
    out = console()
    out.rule("Part 1: one stitch, close up")
    out.print(f"[bold]{r['topology']}[/] cut into {len(r['rms'])} segments, one Route "
              "Manager each, each segment named after one of its PoPs:")
    out.print(table("Route Managers", ["segment", "PoPs", "RM id", "neighbours"],
                    [(_seg(r, m["segment"]), ", ".join(r["pops"][m["segment"]]),
                      m["rm_id"][:12], ", ".join(_seg(r, n) for n in m["neighbours"]))
                     for m in r["rms"]]))
    origin, target = _seg(r, r["origin"]), _seg(r, r["target"])
    out.print(f"1. VN {r['vnid']} lives on {origin} and {target}; discovery converged "
              f"after {r['converged_after_messages']} signed messages "
              f"({r['converged_after_seconds'] * 1000:.1f} ms virtual time).")
    s = r["stitch"]
    if "path" not in s:
        out.print(f"[red]2. stitch {s['id']} failed: {s['failed']}: {s['detail']}[/]")
        return
    path = [_seg(r, x) for x in s["path"]]
    out.print(f"2. {origin} asks for stitch {s['id']} (VN {r['vnid']}, "
              f"{s['bandwidth_mbps']:g} Mbit/s) to {target}: path {' > '.join(path)} "
              f"(transit {', '.join(path[1:-1]) or 'none'}), {s['latency_ms']:.2f} ms, "
              f"cost {s['cost']:g}.")
    out.print(f"3. Query/offer, hold/commit with key exchange: stitch {s['id']} up in "
              f"{s['setup_seconds'] * 1000:.1f} ms = {s['round_trips']:.2f} path round "
              "trips.")
    out.print(table(f"tunnels of stitch {s['id']} (VXLAN over WireGuard)",
                    ["segment", "state", "peer", "interface", "endpoint", "address", "VNI",
                     "RTT ms"],
                    [(_seg(r, t["segment"]), t["state"], _seg(r, t["peer"]),
                      t["wireguard_interface"], t["endpoint"], t["address"], t["vni"],
                      t["rtt_ms"]) for t in r["tunnels"]]))
    out.print(f"4. Stitch {s['id']} reserves {s['bandwidth_mbps']:g} Mbit/s on every link "
              "of its path: " + "; ".join(
                  f"{_seg(r, seg)} to " + ", ".join(f"{_seg(r, p)} {u:g}"
                                                    for p, u in links.items())
                  for seg, links in r["reservations"].items() if links) + ".")


def _print_rest(sim: dict[str, Any]) -> None:
    con = console()
    con.rule("Part 2: the same segments in the simulator, with a crash")
    for line in sim["story"]:
        con.print(line, markup=False)
    con.print(table("simulation summary", ["measure", "value"], sim["rows"]))
    con.print(f"HTML report (topology, stitched paths, timeline): {sim['report']}",
              markup=False)
    con.rule("Part 3: a link congests; QoS and reroute")
    for line in sim["congestion"]["story"]:
        con.print(line, markup=False)
    con.print(table("congestion", ["measure", "value"],
                    traffic_rows(sim["congestion"]["summary"])))
    con.rule("Part 4: forecast and allocate ahead of demand")
    for line in sim["forecast"]["story"]:
        con.print(line, markup=False)
    con.print(table("last day, per VN and policy", TABLE_COLUMNS,
                    allocation_rows(sim["forecast"]), keys=2))
    con.rule("Summary")
    s, t, f = sim["summary"], sim["congestion"]["summary"], sim["forecast"]
    wins = sum(v["policies"]["predictive"]["cost_at_class_ratio"]
               <= min(p["cost_at_class_ratio"] for p in v["policies"].values())
               for v in f["vns"])
    con.print(f"- {s['committed']} of {s['requests']} stitches committed, "
              f"{s['repairs']} repaired around the crashed Route Manager, no over-commit "
              f"({s['overcommit_violations']} violations).", markup=False)
    moved = t["reroutes"] + t.get("stitch_moves", 0)
    con.print(f"- {t['congestion_resolved_by_reroute']} congestion episode(s) resolved by "
              f"{moved} move(s) of traffic; the stitched classes "
              f"{'kept' if t['stitched_guarantee_kept'] else 'lost'} their guarantee.",
              markup=False)
    con.print(f"- Predictive allocation cost least on {wins} of {len(f['vns'])} VNs "
              f"({'real Abilene traffic' if f['real_data'] else 'profile traffic'}).",
              markup=False)
    con.print("What next:")
    for line in WHAT_NEXT:
        con.print(f"  {line}", markup=False)
