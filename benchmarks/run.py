"""Run the project's benchmarks from one command.

Usage: ``python benchmarks/run.py [--list] [--all] [NAME ...] [--json] [-- extra args]``.
Each benchmark is a script ``benchmarks/NAME.py`` with its own ``--help`` and
``--json``. ``--list`` prints every benchmark with what it measures, its typical time on
a 2-core machine and whether it needs root. With no names only the *quick* ones run
(no root, about a minute or less); ``--all`` runs every one (root ones are skipped with
a note unless run as root). Each runs in its own process, so peak-memory figures are
not polluted by the previous one. With ``--json`` it prints one JSON object
``{NAME: <that benchmark's JSON>}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Benchmark:
    what: str
    #: Typical wall time on the 2-core development machine (other jobs running).
    typical: str
    root: bool = False
    quick: bool = False


#: Every benchmark script; a test checks this matches the files in ``benchmarks/``.
BENCHMARKS: dict[str, Benchmark] = {
    "sp_codec": Benchmark("Stitching Protocol cost per datagram (decode+verify+handle) vs "
                          "plain msgpack and JSON; messages to converge", "~15 s",
                          quick=True),
    "daemon_stitch": Benchmark("stitch setup over real UDP daemons vs the same cores "
                               "called directly; hostile datagrams dropped per second",
                               "~20 s", quick=True),
    "routing_te": Benchmark("min-MLU TE on Topology Zoo graphs: fast method vs Yen + path "
                            "LP vs the exact arc-LP optimum", "~15 min"),
    "routing_abilene": Benchmark("Abilene matrices replayed in order: static shortest path "
                                 "vs reroute-on-congestion vs per-interval optimum",
                                 "~5 min"),
    "forecast_abilene": Benchmark("forecast accuracy and speed on Abilene, all models and "
                                  "statsforecast references", "~7 min"),
    "allocate_eval": Benchmark("allocation policies on Abilene bandwidth and CloudWatch "
                               "compute traces (issue 6 acceptance)", "~2.5 min"),
    "allocate_hindsight": Benchmark("predictive's training-time choice vs the best in "
                                    "hindsight on the test window", "~3 min"),
    "allocate_provider": Benchmark("allocation scored on what the simulated cloud made "
                                   "usable (boot delays, outage), with a bill", "~3 min"),
    "generalisation": Benchmark("forecasting and allocation on held-out data sets and short "
                                "histories (1-7 days), leave one data set out; --quick "
                                "for a subset", "~8 min --quick, ~40 min full"),
    "forecast_engines": Benchmark("many-series backtests on Abilene: serial vs the local "
                                  "process pool vs a local Ray cluster, equal forecasts",
                                  "~5 min"),
    "sp_scale": Benchmark("Stitching Protocol at 10, 100 and 1,000 Route Managers for 60 "
                          "virtual seconds", "~2 min"),
    "sweep": Benchmark("simulator sweep throughput: one by one vs the local process pool vs "
                       "a local Ray cluster, with per-run results compared", "~3 min"),
    "pra_providers": Benchmark("the allocator driving the live compute (cgroups) and storage "
                               "(loop volumes) providers on replayed CloudWatch traces",
                               "~4 min (3 min replay)", root=True),
    "pra_loop_lag": Benchmark("event-loop lag while the live PRA refits its LSTM: fits in a "
                              "thread (baseline) vs a worker process vs a worker with a "
                              "one-thread budget (niced or SCHED_IDLE), with and without a "
                              "refit in one run", "~11 min (120 s per pool)"),
    "pra_slack": Benchmark("where the live PRA's compute slack comes from: the demo's "
                           "controller replayed in fake time (fit delays, calibration) vs "
                           "the offline evaluation of the same rows", "~2 min"),
    "lab_throughput": Benchmark("TCP throughput in the namespace lab: veth vs VXLAN vs "
                                "VXLAN over WireGuard", "~1 min", root=True),
    "lab_stitch": Benchmark("live Route Managers in the lab: stitch setup, throughput, "
                            "reroute", "~2 min", root=True),
    "qos_live": Benchmark("QoS classes live in the lab's daemons: DSCP video and a "
                          "saturating e-mail flow through one stitch, classes vs one class "
                          "vs no qos", "~5 min", root=True),
    "sim_vs_live": Benchmark("builtin:story on Abilene (5 segments) simulated and live in a "
                             "namespace lab: the same parity summary side by side, with "
                             "wall time and peak memory", "~5 min", root=True),
    "tunnel_install": Benchmark("one tunnel end's dataplane pass (wireguard-go, VXLAN, "
                                "HTB, route) up and down in a namespace, vs the same "
                                "without WireGuard: the simulator's rm_costs", "~30 s",
                                root=True),
    "lab_congestion": Benchmark("live congestion reroute in the lab (cross traffic on A-T, "
                                "video + e-mail flows) vs the same controller in virtual "
                                "time; dampening vs its control; link-cut reroute_s",
                                "~10 min (--runs 5)", root=True),
    "chaos": Benchmark("live lab under attack: forged floods, kill -9 of every role, 1M "
                       "fuzzed datagrams (flags for smaller sizes)", "~25 min", root=True),
}


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in {"run", "__init__"}
                  and not p.stem.startswith("_"))


def listing() -> list[str]:
    """One block per benchmark: name, typical time, root, what it measures."""
    lines = []
    for name, b in BENCHMARKS.items():
        tags = [b.typical] + (["needs root"] if b.root else []) + (["quick"] if b.quick else [])
        lines.append(f"{name}  ({', '.join(tags)})")
        lines.extend(textwrap.wrap(b.what, 78, initial_indent="    ",
                                   subsequent_indent="    "))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*",
                        help="benchmarks to run (default: the quick ones; see --list)")
    parser.add_argument("--list", action="store_true",
                        help="list every benchmark with its typical time and whether it "
                        "needs root, and exit")
    parser.add_argument("--all", action="store_true", help="run every benchmark")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args, extra = parser.parse_known_args(argv)
    if args.list:
        print("\n".join(listing()))
        return 0
    unknown = sorted(set(args.names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; see --list")
    if args.names:
        names = args.names
    elif args.all:
        names = list(BENCHMARKS)
    else:
        names = [n for n, b in BENCHMARKS.items() if b.quick]
    results: dict[str, object] = {}
    code = 0
    for name in names:
        if BENCHMARKS[name].root and os.geteuid() != 0:
            print(f"== {name}: skipped (needs root)", file=sys.stderr, flush=True)
            continue
        cmd = [sys.executable, str(HERE / f"{name}.py"), *extra]
        if args.json:
            proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                code = proc.returncode
                continue
            results[name] = json.loads(proc.stdout)
        else:
            print(f"== {name} ({BENCHMARKS[name].typical})", flush=True)
            code = subprocess.run(cmd, check=False).returncode or code
    if args.json:
        print(json.dumps(results, indent=2))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
