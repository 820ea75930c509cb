"""``vnstitch simulate``: run the Stitching Protocol on a real topology in virtual time.

Theory of operation: the command turns its flags into a :class:`~vnstitch.sim.scenario.Scenario`
(a ``--scenario`` file first, then any flag given explicitly overrides that field), runs
it with :mod:`vnstitch.sim.runner` behind a progress bar over virtual seconds, and prints
the deterministic summary (a table, or one JSON object with ``--json``). ``--report``
writes an HTML (embedded PNG) or PNG report. Wall-clock figures are printed in the table
only, so the JSON of a seed is reproducible byte for byte.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from vnstitch.cli.output import add_json_flag, console, fmt, print_json, progress, table
from vnstitch.sim.parity import parity_rows
from vnstitch.sim.report import write_report
from vnstitch.sim.runner import FactoryMaker, RunResult, default_factory, run
from vnstitch.sim.scenario import Scenario, check_scenario, load_scenario
from vnstitch.sim.traffic_story import (
    ALLOCATION_COLUMNS,
    CLASS_COLUMNS,
    allocation_flow_rows,
    allocation_rows,
    class_rows,
    summary_rows,
)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate", help="simulate Route Managers on a topology (virtual time)",
        description="Run one Stitching Protocol core per segment of a real topology in a "
        "discrete-event simulator with loss and faults, and summarise discovery, stitch "
        "setup, control traffic and the invariants checked.",
    )
    p.add_argument("--topology", help="zoo:NAME | sndlib:NAME | PATH (default zoo:Abilene)")
    p.add_argument("--segments", type=int, metavar="K", help="number of segments (RMs)")
    p.add_argument("--vns", type=int, metavar="N", help="number of virtual networks")
    p.add_argument("--requests", type=int, metavar="R", help="number of stitch requests")
    p.add_argument("--loss", type=float, metavar="P", help="control datagram loss, 0..1")
    p.add_argument("--seed", type=int, metavar="S", help="random seed")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="virtual seconds to run")
    p.add_argument("--scenario", metavar="FILE",
                   help="scenario YAML (or builtin:small|medium|faulty|congestion|abilene-tm"
                   "|allocation|story); flags override it")
    p.add_argument("--report", metavar="OUT", help="write a report: OUT.html or OUT.png")
    add_json_flag(p)
    p.set_defaults(handler=_handler)


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    sc = load_scenario(args.scenario) if args.scenario else Scenario()
    changes: dict[str, Any] = {}
    for flag, name in (("topology", "topology"), ("segments", "segments"), ("seed", "seed"),
                       ("duration", "duration_s")):
        value = getattr(args, flag)
        if value is not None:
            changes[name] = value
    if args.vns is not None:
        changes["vns"] = dataclasses.replace(sc.vns, count=args.vns)
    if args.requests is not None:
        changes["requests"] = dataclasses.replace(sc.requests, count=args.requests)
    if args.loss is not None:
        changes["network"] = dataclasses.replace(sc.network, loss=args.loss)
    sc = dataclasses.replace(sc, **changes)
    check_scenario(sc)
    return sc


def run_simulate(args: argparse.Namespace, factory: FactoryMaker = default_factory) -> int:
    sc = scenario_from_args(args)
    with progress(disable=args.json) as bar:
        task = bar.add_task(f"simulating {sc.duration_s:g} virtual s", total=sc.duration_s)
        result = run(sc, factory, progress=lambda t: bar.update(task, completed=t))
    if args.report:
        write_report(result.simulation, result.summary, args.report,
                     allocation=result.traffic.allocation if result.traffic else None)
    if args.json:
        print_json(result.summary)
        return 0
    render(result, args.report)
    return 0


def render(result: RunResult, report: str | None = None) -> None:
    s = result.summary
    out = console()
    out.print(f"[bold]{s['scenario']}[/]: {s['topology']} in {s['segments']} segments, "
              f"{s['vns']} VNs, {s['duration_s']:g} virtual s, seed {s['seed']}")
    rows: list[tuple[str, object]] = [
        ("discovery convergence (s)", s["convergence_seconds"]),
        ("requests / feasible / committed",
         f"{s['requests']} / {s['feasible_requests']} / {s['committed']}"),
        ("success rate (feasible)", s["success_rate_feasible"]),
        ("failures by reason",
         ", ".join(f"{k}: {v}" for k, v in s["failures_by_reason"].items()) or "none"),
        ("setup median / p95 (ms)", f"{fmt_ms(s['setup_seconds_median'])} / "
                                    f"{fmt_ms(s['setup_seconds_p95'])}"),
        ("setup median / p95 (path RTTs)", f"{fmt(s['setup_rtts_median'] or float('nan'))} / "
                                           f"{fmt(s['setup_rtts_p95'] or float('nan'))}"),
        ("setups within 3 RTT + 5 ms", s["setup_within_3rtt_5ms"]),
        ("repairs (median / max s)", f"{s['repairs']} ({fmt(s['repair_seconds_median'])} / "
                                     f"{fmt(s['repair_seconds_max'])})"),
        ("control msgs per RM per s", s["messages_per_rm_per_second"]),
        ("control bytes per RM per s", s["bytes_per_rm_per_second"]),
        ("reservations peak (Mbit/s, utilisation)",
         f"{fmt(s['reservations_peak_mbps'])} ({fmt(s['reservations_peak_utilisation'])})"),
        ("dropped by peers", ", ".join(f"{k}: {v}" for k, v in s["peer_faults"].items())
         or "none"),
        ("events / wall s", f"{result.simulation.events} / {result.wall_seconds:.2f} s "
                            f"({result.events_per_second:,.0f} ev/s)"),
    ]
    out.print(table("summary", ["measure", "value"], [(k, "-" if v is None else v)
                                                     for k, v in rows]))
    inv = s["invariants"]
    out.print(table("invariants", ["invariant", "checks", "violations"],
                    [(name, d.get("checks", "-"), d["violations"]) for name, d in inv.items()]))
    if "traffic" in s:
        out.print(table("data traffic: congestion and reroute", ["measure", "value"],
                        summary_rows(s["traffic"])))
        out.print(table("data traffic per QoS class", CLASS_COLUMNS, class_rows(s["traffic"])))
    if "allocation" in s:
        out.print(table("predictive allocation", ["measure", "value"],
                        allocation_rows(s["allocation"])))
        out.print(table("allocation per flow", ALLOCATION_COLUMNS,
                        allocation_flow_rows(s["allocation"])))
    if "parity" in s:
        out.print(table("parity summary (the same as vnstitch lab run's)", ["measure", "value"],
                        parity_rows(s["parity"])))
    if report:
        out.print(f"report written to {report}")


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _handler(args: argparse.Namespace) -> int:
    return run_simulate(args)
