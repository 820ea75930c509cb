"""The simulator-based demo: a story of stitching on Abilene, with a failure and repair.

Theory of operation: :func:`run_demo` runs a fixed scenario with the real protocol core
on the built-in Abilene topology (``topohub``; no files, no arguments): 11 PoPs cut into
5 segments, 6 VNs on two segments each, 12 stitch requests in the first 15 virtual
seconds, 2% control-message loss, then the Route Manager carrying the most stitches as
transit crashes at 20 s (its neighbours' leases on its reservations run out, the
origins re-negotiate around it) and comes back at 55 s. :func:`story` turns the run's event log
into readable sentences; the CLI prints them with the summary table and writes the
report (topology, stitched paths, timeline). ``vnstitch demo`` can call :func:`main`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vnstitch.sim.report import write_report
from vnstitch.sim.runner import RunResult, run
from vnstitch.sim.scenario import parse_scenario

DEMO_SCENARIO = """
name: demo
topology: zoo:Abilene
segments: 5
seed: 4
duration_s: 60
vns: {count: 6, segments_per_vn: 2}
requests: {count: 12, start_s: 1, end_s: 15, bandwidth_mbps: [50, 500]}
network: {loss: 0.02, jitter_ms: 0.3}
faults:
  - {at: 20, action: crash, segment: busiest-transit}
  - {at: 55, action: restart, segment: busiest-transit}
"""


def run_demo() -> RunResult:
    return run(parse_scenario(DEMO_SCENARIO, "built-in demo scenario", None))


def story(result: RunResult) -> list[str]:
    sim = result.simulation
    s = result.summary
    segs = sim.segments
    lines = [f"Substrate: {s['topology']} ({sim.substrate.graph.number_of_nodes()} PoPs, "
             f"{sim.substrate.graph.number_of_edges()} links), cut into {len(segs)} "
             "segments, one Route Manager each:"]
    for k, seg in enumerate(segs):
        pops = sorted(sim.substrate.graph.nodes[n].get("label", n)
                      for n in sim.substrate.nodes_in(seg))
        nbrs = ", ".join(segs[j] for j in sim.neighbours[k])
        lines.append(f"  {seg}: {', '.join(pops)}  (neighbours {nbrs})")
    for v, hosts in sorted(sim.hosts.items()):
        lines.append(f"  VN {v} lives on {' and '.join(segs[h] for h in sorted(hosts))}")
    for e in sim.metrics.log:
        # metrics speak in RM indices; say segment names
        text = re.sub(r"seg (\d+)->(\d+)",
                      lambda m: f"{segs[int(m[1])]} -> {segs[int(m[2])]}", e.text)
        text = re.sub(r"(from|of) seg (\d+) ", lambda m: f"{m[1]} {segs[int(m[2])]} ", text)
        if e.kind in ("converged", "established", "failed", "fault", "torn_down", "repaired",
                      "stale", "tunnel", "overcommit", "loop", "core_error"):
            lines.append(f"{e.at:7.3f}s  {_names(text, segs)}")
    return lines


def _names(text: str, segs: Sequence[str]) -> str:
    if " via [" not in text:
        return text
    head, rest = text.split(" via [", 1)
    inner, tail = rest.split("]", 1)
    path = " > ".join(segs[int(x)] for x in inner.split(", ") if x.strip().isdigit())
    return f"{head} via {path}{tail}"


def main(report: str | Path = "vnstitch-demo.html") -> tuple[RunResult, list[str], Path]:
    result = run_demo()
    lines = story(result)
    path = write_report(result.simulation, result.summary, report, lines)
    return result, lines, path


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, object]]:
    keys = ["requests", "feasible_requests", "committed", "success_rate_feasible",
            "failures_by_reason", "convergence_seconds", "setup_seconds_median",
            "setup_rtts_median", "setup_rtts_p95", "repairs", "repair_seconds_max",
            "messages_per_rm_per_second", "overcommit_violations", "loops_detected",
            "stale_routes_after_hold", "tunnel_violations"]
    return [(k, summary[k]) for k in keys]
