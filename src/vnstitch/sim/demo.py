"""The simulator-based demo: a story of stitching on Abilene, with a failure and repair.

Theory of operation: :func:`run_demo` runs a fixed scenario with the real protocol core
on the built-in Abilene topology (``topohub``; no files): 11 PoPs cut into 5 segments
(the same cut part 1 of ``vnstitch demo`` uses), 6 VNs on two segments each, 12 stitch
requests in the first 15 virtual seconds, 2% control-message loss, then the Route
Manager carrying the most stitches as transit crashes at 20 s and comes back at 55 s.

:func:`story` tells the run from the simulator's stitch records, never from log text:
segments are named after a PoP (:func:`vnstitch.protocol.demo.segment_names`), every
line about a stitch names its id, VN and bandwidth, and the crash is told as what
happened to traffic. A crashed Route Manager is control plane only: the substrate of its
segment keeps forwarding, so the tunnels through it (end to end, VXLAN over WireGuard)
keep carrying traffic. Nobody confirms the reservations on its links any more, and when
its neighbours' leases on them run out (``lease_intervals`` announce intervals after the
last confirmation) they release them and tell the origins, which tear the stitches down
and re-negotiate around it: traffic stops at the teardown and flows again when the new
path's tunnel is up. ``vnstitch demo`` calls :func:`main`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vnstitch.protocol.demo import segment_names
from vnstitch.sim.metrics import StitchRecord
from vnstitch.sim.report import write_report
from vnstitch.sim.runner import RunResult, run
from vnstitch.sim.scenario import parse_scenario

CRASH_AT_S = 20.0
RESTART_AT_S = 55.0

DEMO_SCENARIO = """
name: demo
topology: {topology}
segments: {segments}
seed: 4
duration_s: 60
vns: {{count: 6, segments_per_vn: 2}}
requests: {{count: 12, start_s: 1, end_s: 15, bandwidth_mbps: [50, 500]}}
network: {{loss: 0.02, jitter_ms: 0.3}}
faults:
  - {{at: {crash}, action: crash, segment: busiest-transit}}
  - {{at: {restart}, action: restart, segment: busiest-transit}}
"""


def run_demo(topology: str = "zoo:Abilene", segments: int = 5) -> RunResult:
    text = DEMO_SCENARIO.format(topology=topology, segments=segments, crash=CRASH_AT_S,
                                restart=RESTART_AT_S)
    return run(parse_scenario(text, "built-in demo scenario", None))


@dataclass(frozen=True)
class Line:
    at: float
    text: str


def _lease_seconds(result: RunResult) -> float:
    timers = getattr(result.simulation.factory, "timers", None)
    if timers is not None:
        return float(timers.lease_s)
    return 3.0 * result.simulation.factory.announce_interval_s


def story(result: RunResult) -> list[str]:
    sim = result.simulation
    s = result.summary
    names = segment_names(sim.substrate)
    segs = [names[x] for x in sim.segments]
    g = sim.substrate.graph
    lines = [f"Substrate: {s['topology']} ({g.number_of_nodes()} PoPs, "
             f"{g.number_of_edges()} links), cut into {len(segs)} segments, one Route "
             "Manager each (a segment is named after one of its PoPs):"]
    for k, seg in enumerate(sim.segments):
        pops = sorted(g.nodes[n].get("label", n) for n in sim.substrate.nodes_in(seg))
        nbrs = ", ".join(segs[j] for j in sim.neighbours[k])
        lines.append(f"  {segs[k]}: {', '.join(pops)}  (neighbours {nbrs})")
    for v, hosts in sorted(sim.hosts.items()):
        lines.append(f"  VN {v} lives on {' and '.join(segs[h] for h in sorted(hosts))}")
    lines.append(f"{len(sim.metrics.records)} stitch requests arrive in the first 15 s "
                 "(2% of control messages are lost):")
    events = [Line(e.at, e.text) for e in sim.metrics.log
              if e.kind in ("converged", "fault", "overcommit", "loop", "core_error")]
    recs = [r for r in sim.metrics.records.values() if r.stitch_id and r.feasible]
    for rec in recs:
        events += _stitch_lines(rec, segs)
    for line in sorted(events, key=lambda x: x.at):
        text = line.text
        for k, seg in enumerate(sim.segments):
            text = text.replace(f"Route Manager of {seg} ", f"Route Manager of {segs[k]} ")
        lines.append(f"{line.at:7.3f}s  {text}")
    lines += crash_account(result, segs)
    return lines


def _path(path: Sequence[int], segs: Sequence[str]) -> str:
    return " > ".join(segs[i] for i in path)


def _who(rec: StitchRecord) -> str:
    return f"stitch {rec.stitch_id} (VN {rec.vnid}, {rec.bandwidth_mbps:.0f} Mbit/s)"


def _stitch_lines(rec: StitchRecord, segs: Sequence[str]) -> list[Line]:
    out: list[Line] = []
    if rec.established_at is not None and rec.paths:
        out.append(Line(rec.established_at,
                        f"{_who(rec)} up: {_path(rec.paths[0], segs)}, set up in "
                        f"{(rec.setup_s or 0) * 1000:.0f} ms"))
    if rec.repairs and rec.repaired_at is not None and len(rec.paths) > 1:
        gap = rec.repairs[-1]
        out.append(Line(rec.repaired_at - gap,
                        f"{_who(rec)} torn down ({rec.reason or 'peer lost'}): traffic "
                        "stops; re-negotiating"))
        out.append(Line(rec.repaired_at,
                        f"{_who(rec)} flows again via {_path(rec.paths[-1], segs)} "
                        f"({gap:.2f} s without traffic)"))
    if rec.state.value in ("failed", "down") and rec.ended_at is not None:
        out.append(Line(rec.ended_at, f"{_who(rec)} failed: {rec.reason}"))
    return out


def crash_account(result: RunResult, segs: Sequence[str]) -> list[str]:
    """What the crash did to traffic: when it stopped, when it was detected and why
    then, when it flowed again."""
    sim = result.simulation
    crashed = next((i for i, seg in enumerate(sim.segments)
                    if any(e.kind == "fault" and f"Route Manager of {seg} crashed" in e.text
                           for e in sim.metrics.log)), None)
    if crashed is None:
        return []
    hit = [r for r in sim.metrics.records.values()
           if r.repairs and len(r.paths) > 1 and crashed in r.paths[-2][1:-1]]
    if not hit:
        return [f"The crash of {segs[crashed]} touched no stitch."]
    torn = [r.repaired_at - r.repairs[-1] for r in hit if r.repaired_at is not None]
    back = [r.repaired_at for r in hit if r.repaired_at is not None]
    lease = _lease_seconds(result)
    return [
        f"What the crash of {segs[crashed]}'s Route Manager at {CRASH_AT_S:g} s did to "
        f"the {len(hit)} stitches through it:",
        f"  {CRASH_AT_S:g} s - {min(torn):.2f} s: traffic kept flowing. A Route Manager is "
        "control plane only; the substrate of its segment kept forwarding the tunnels. "
        "What stopped is the confirmation of their reservations on its links.",
        f"  {min(torn):.2f} s: detected, {min(torn) - CRASH_AT_S:.1f} s after the crash: "
        f"its neighbours' leases on those reservations ran out (a lease lives "
        f"{lease:g} s after the last confirmation), so they released them and told the "
        "origins, which tore the stitches down to re-negotiate around it. Traffic "
        "stopped here.",
        f"  {min(back):.2f} s - {max(back):.2f} s: traffic flowed again on new paths, "
        f"{min(r.repairs[-1] for r in hit):.2f} to {max(r.repairs[-1] for r in hit):.2f} s "
        "after each teardown.",
    ]


def main(report: str | Path, topology: str = "zoo:Abilene", segments: int = 5,
         ) -> tuple[RunResult, list[str], Path]:
    result = run_demo(topology, segments)
    lines = story(result)
    path = write_report(result.simulation, result.summary, report, lines)
    return result, lines, path


SUMMARY_ROWS = (
    ("stitches requested / feasible / committed", ("requests", "feasible_requests",
                                                   "committed")),
    ("success rate (feasible requests)", ("success_rate_feasible",)),
    ("failures by reason", ("failures_by_reason",)),
    ("discovery converged after (s)", ("convergence_seconds",)),
    ("setup time, median (s)", ("setup_seconds_median",)),
    ("setup, path round trips (median / p95)", ("setup_rtts_median", "setup_rtts_p95")),
    ("repairs / longest without traffic (s)", ("repairs", "repair_seconds_max")),
    ("messages per RM per second", ("messages_per_rm_per_second",)),
    ("over-commits / loops / stale routes / tunnel faults",
     ("overcommit_violations", "loops_detected", "stale_routes_after_hold",
      "tunnel_violations")),
)


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, object]]:
    """The run's summary as (measure, value) rows in words; ``/`` joins related values."""
    rows: list[tuple[str, object]] = []
    for label, keys in SUMMARY_ROWS:
        values = [summary[k] for k in keys]
        if len(values) == 1:
            rows.append((label, values[0]))
        else:
            rows.append((label, " / ".join(_text(v) for v in values)))
    return rows


def _text(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
