"""The run summary: one plain, deterministic ``dict`` built from a finished simulation.

Theory of operation: every figure is derived from the metrics collector and the engine's
counters -- never from a wall clock -- and floats are rounded, so two runs with the same
inputs and seed give the same JSON bytes. Keys are listed in a fixed order; the CLI
prints them as a table or as one JSON object.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from vnstitch.sim.metrics import StitchState, _pct, _r

if TYPE_CHECKING:
    from vnstitch.sim.engine import Simulation

#: Setup target of the issue: within 3 path RTTs plus 5 ms.
SETUP_TARGET_RTTS = 3.0
SETUP_TARGET_SLACK_MS = 5.0


def summarise(sim: Simulation, *, name: str = "", duration_s: float | None = None) -> dict[
        str, Any]:
    m = sim.metrics
    duration = sim.now if duration_s is None else duration_s
    n = len(sim.segments)
    recs = list(m.records.values())
    feasible = [r for r in recs if r.feasible]
    committed = [r for r in recs if r.established_at is not None]
    committed_feasible = [r for r in feasible if r.established_at is not None]
    failures: dict[str, int] = {}
    for r in recs:
        if r.established_at is None:
            reason = r.reason if r.state is StitchState.FAILED else "unfinished"
            key = str(reason)
            failures[key] = failures.get(key, 0) + 1
    setups = [r.setup_s for r in committed if r.setup_s is not None]
    rtts = [r.setup_rtts for r in committed if r.setup_rtts is not None]
    within = [
        r for r in committed if r.setup_s is not None and r.path_rtt_ms is not None
        and r.setup_s * 1000.0 <= SETUP_TARGET_RTTS * r.path_rtt_ms + SETUP_TARGET_SLACK_MS
    ]
    repairs = [d for r in recs for d in r.repairs]
    messages = sum(m.sent)
    volume = sum(m.sent_bytes)
    interval = sim.factory.announce_interval_s
    per_rm_s = messages / n / duration if duration > 0 else 0.0
    by_degree: dict[int, list[int]] = {}
    for i, deg in enumerate(m.degree):
        by_degree.setdefault(deg, []).append(m.sent[i])
    intervals = duration / interval if interval > 0 else 0.0
    curve = {
        str(deg): _r(statistics.fmean(v) / intervals if intervals else 0.0, 3)
        for deg, v in sorted(by_degree.items())
    }
    live = sum(1 for r in recs if r.state is StitchState.ESTABLISHED)
    repairing = sum(1 for r in recs if r.state is StitchState.REPAIRING)
    # Came up, later went down for good (repair failed or impossible), not released.
    lost = sum(1 for r in recs if r.state is StitchState.DOWN)
    stale = sum(s for _, s in m.stale_checks)
    return {
        "scenario": name,
        "topology": sim.substrate.name,
        "segments": n,
        "vns": len(sim.hosts),
        "duration_s": _r(duration, 3),
        "seed": sim.seed,
        "events": sim.events,
        "requests": len(recs),
        "feasible_requests": len(feasible),
        "committed": len(committed),
        "committed_feasible": len(committed_feasible),
        "success_rate_feasible": _r(len(committed_feasible) / len(feasible), 4)
        if feasible else None,
        "failures_by_reason": dict(sorted(failures.items())),
        "convergence_seconds": _r(m.convergence_s),
        "setup_seconds_median": _r(statistics.median(setups)) if setups else None,
        "setup_seconds_p95": _r(_pct(setups, 0.95)),
        "setup_rtts_median": _r(statistics.median(rtts), 3) if rtts else None,
        "setup_rtts_p95": _r(_pct(rtts, 0.95), 3),
        "setup_within_3rtt_5ms": _r(len(within) / len(committed), 4) if committed else None,
        "repairs": len(repairs),
        "repair_seconds_median": _r(statistics.median(repairs)) if repairs else None,
        "repair_seconds_max": _r(max(repairs)) if repairs else None,
        "stitches_live_at_end": live,
        "stitches_repairing_at_end": repairing,
        "messages_total": messages,
        "bytes_total": volume,
        "messages_per_rm_per_second": _r(per_rm_s, 4),
        "bytes_per_rm_per_second": _r(volume / n / duration if duration > 0 else 0.0, 2),
        "messages_per_rm_per_announce_interval": _r(per_rm_s * interval, 4),
        "messages_per_rm_per_interval_by_neighbours": curve,
        "reservations_peak_mbps": _r(m.ledger_peak_mbps, 3),
        "reservations_peak_utilisation": _r(m.ledger_peak_util, 4),
        "core_reserved_peak_utilisation": _r(m.core_peak_util, 4),
        "peer_faults": dict(sorted(m.peer_faults.items())),
        "core_errors": dict(sorted(m.core_errors.items())),
        "overcommit_violations": m.overcommit_violations,
        "loops_detected": m.loops_detected,
        "stale_routes_after_hold": stale,
        "stitches_lost": lost,
        "tunnel_violations": m.tunnel_violations,
        "invariants": {
            "no_overcommit": {"checks": m.overcommit_checks,
                              "violations": m.overcommit_violations},
            "no_loop": {"violations": m.loops_detected},
            "no_black_hole_after_hold": {"checks": len(m.stale_checks), "violations": stale},
            "committed_stitch_up_or_repairing": {"checks": m.tunnel_checks,
                                                 "violations": m.tunnel_violations},
        },
    }
