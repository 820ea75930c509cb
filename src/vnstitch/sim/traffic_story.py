"""Words and tables for the traffic part of a run: CLI rows and the demo's story.

Theory of operation: everything here reads the plain ``traffic`` summary dict of
:func:`vnstitch.sim.traffic.summarise_traffic` (or the :class:`~vnstitch.sim.traffic.
TrafficResult` for the timeline) and returns rows or sentences; printing is the CLI's job.
"""

from __future__ import annotations

from typing import Any

from vnstitch.routing.monitor import ArcState
from vnstitch.sim.runner import run
from vnstitch.sim.scenario import load_scenario
from vnstitch.sim.traffic_model import TrafficResult
from vnstitch.sim.traffic_summary import summarise_traffic

#: Issue 7's bound: congestion rerouted around within this many monitoring intervals.
REROUTE_TARGET_INTERVALS = 3.0


def summary_rows(t: dict[str, Any]) -> list[tuple[str, object]]:
    """Headline rows: congestion, reroutes, dampening, the shortfall and who took it."""
    worst = t["max_intervals_to_reroute"]
    return [
        ("flows / monitoring interval", f"{len(t['flows'])} / {t['interval_s']:g} s "
                                        f"({t['samples']} samples, borrow {t['borrow']})"),
        ("congestion episodes (by reroute / unresolved)",
         f"{len(t['congestion_episodes'])} ({t['congestion_resolved_by_reroute']} / "
         f"{t['congestion_unresolved_at_end']})"),
        ("onset to reroute, worst (intervals)",
         "-" if worst is None else f"{worst:g} (target <= {REROUTE_TARGET_INTERVALS:g})"),
        ("longest congestion, any cause (intervals)", t["max_intervals_congested"] or "-"),
        ("stitches moved around congestion / returned",
         f"{t['stitch_moves']} / {t['stitch_returns']}"),
        ("background reroutes / returns", f"{t['reroutes']} / {t['returns']}"
         + (f" (+{t['allocator_moves']} by the allocator)" if t.get("allocator_moves") else "")),
        ("traffic offered without a stitch (Mbit)", f"{t['unattached_mbit_total']:g}"),
        ("max path changes per flow (min gap s)",
         f"{t['max_path_changes_per_flow']} ({t['min_seconds_between_moves_of_a_flow'] or '-'})"),
        ("stitched classes keep their guarantee",
         f"{t['stitched_guarantee_kept']} ({', '.join(t['stitched_classes'])})"),
        ("shortfall (Mbit) / share on the lowest class",
         f"{t['shortfall_mbit_total']:g} / {t['lowest_class_share_of_shortfall'] or 0:.1%} "
         f"({t['lowest_class']})"),
    ]


def class_rows(t: dict[str, Any]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for name, c in t["classes"].items():
        rows.append((name + (" *" if c["stitched"] else ""), c["priority"],
                     "allocated" if c.get("allocated") else f"{c['guaranteed_mbps']:g}",
                     f"{c['offered_mbit']:g}",
                     f"{c['delivered_mbit']:g}", f"{c['shortfall_mbit']:g}",
                     c["worst_interval_delivered_fraction"], c["seconds_below_guarantee"]))
    return rows


def allocation_rows(a: dict[str, Any]) -> list[tuple[str, object]]:
    """Headline rows of the ``allocation`` summary (:mod:`vnstitch.sim.allocation`)."""
    t, p, sf = a["total"], a["provider"], a["shortfalls"]
    req = p["scale_requests"]
    return [
        ("forecaster / decisions (first at s)",
         f"{a['forecaster']} / {a['decisions']} ({a['first_decision_s']})"),
        ("classes (newsvendor quantile)",
         ", ".join(f"{c} ({v['quantile']})" for c, v in a["classes"].items())),
        ("reserved / offered / delivered (Mbit)",
         f"{t['reserved_mbit']:g} / {t['offered_mbit']:g} / {t['delivered_mbit']:g}"),
        ("unserved / unreserved fraction", f"{t['unserved_fraction']} / "
                                           f"{t['unreserved_fraction']}"),
        ("slack (Mbit, fraction of reserved)", f"{t['slack_mbit']:g} ({t['slack_fraction']})"),
        ("reservation changes (per hour)", f"{t['changes']} ({t['changes_per_hour']})"),
        ("scale requests granted / refused / failed",
         f"{req['granted']} / {req['refused']} / {req['failed']}"),
        ("provider cost (peak extra Mbit/s)", f"{p['cost']:g} ({p['peak_extra_mbps']:g})"),
        ("reroutes by the allocator", len(a["reroutes"])),
        ("shortfalls (link-intervals, max missing Mbit/s)",
         f"{sf['count']} ({'-' if sf['max_missing_mbps'] is None else sf['max_missing_mbps']})"),
        ("decisions logged (kept in JSON)",
         f"{a['decision_log']['count']} ({a['decision_log']['kept']})"),
    ]


def allocation_flow_rows(a: dict[str, Any]) -> list[tuple[object, ...]]:
    return [(name, f"{f['reserved_mbit']:g}", f"{f['offered_mbit']:g}",
             f"{f['delivered_mbit']:g}", f["unserved_fraction"], f["slack_fraction"],
             f["changes"], f["reroutes"], f["final_reservation_mbps"])
            for name, f in a["flows"].items()]


ALLOCATION_COLUMNS = ["flow", "reserved Mbit", "offered Mbit", "delivered Mbit", "unserved",
                      "slack", "changes", "reroutes", "final Mbit/s"]


CLASS_COLUMNS = ["class (* stitched)", "prio", "guaranteed Mbit/s per link", "offered Mbit",
                 "delivered Mbit", "shortfall Mbit", "worst interval delivered",
                 "s below guarantee"]


def story(res: TrafficResult, t: dict[str, Any]) -> list[str]:
    """The congestion story in time order: surge, detection, make-before-break, return."""
    lines = [f"{len(res.flows)} flows in {len(t['classes'])} QoS classes "
             f"({', '.join(t['classes'])}); stitched: {', '.join(t['stitched_classes'])}; "
             f"links sampled every {t['interval_s']:g} s."]
    for f in res.flows:
        path = res.first_paths.get(f.name, f.home if f.group is None else ())
        where = res.name(path) if path else "never attached to a stitch"
        vn = f", VN {f.spec.vn}" if f.spec.vn is not None else ""
        lines.append(f"  {f.name} ({f.qos_class}{vn}, {f.spec.mbps:g} Mbit/s): {where}")
    timeline: list[tuple[float, int, str]] = []
    for ep in res.episodes:
        timeline.append((ep.onset_s, 0, f"{res.link(ep.arc)} offered "
                         f"{ep.peak_offered_util:.0%} of capacity: congestion begins"))
        if ep.resolved_s is not None:
            spent = (ep.resolved_s - ep.onset_s) / res.spec.interval_s
            timeline.append((ep.resolved_s, 3, f"{res.link(ep.arc)} back under "
                             f"{res.spec.monitor.high:.0%}, resolved by {ep.resolved_by} "
                             f"{spent:.2f} intervals after onset"))
    for ev in res.events:
        if ev.new is ArcState.CONGESTED and ev.old is not ArcState.FALLING:
            timeline.append((ev.time, 1, f"monitor: {res.link(ev.arc)} congested "
                             f"({ev.reason})"))
        elif ev.new is ArcState.CLEAR and ev.old is not ArcState.RISING:
            timeline.append((ev.time, 1, f"monitor: {res.link(ev.arc)} clear ({ev.reason})"))
    for m in res.moves:
        timeline.append((m.decided_s, 2, f"{m.kind} {m.flow} ({m.qos_class}): install "
                         f"{res.name(m.new_path)}, shift at {m.effective_s:g} s, remove "
                         f"{res.name(m.old_path)} at {m.removed_s:g} s"))
    for at, _, text in sorted(timeline):
        lines.append(f"{at:7.2f}s  {text}")
    for name, c in t["classes"].items():
        if c["shortfall_mbit"] > 0 or c["stitched"]:
            lines.append(f"  {name}: delivered {c['delivered_fraction']:.1%} of its offered "
                         f"traffic, worst interval {c['worst_interval_delivered_fraction']:.1%}"
                         f", shortfall {c['shortfall_mbit']:g} Mbit")
    return lines


def congestion_demo() -> tuple[TrafficResult, dict[str, Any], list[str]]:
    """``builtin:congestion``, traffic riding the stitches the protocol negotiates: the
    congestion story for ``vnstitch demo``, on built-in data, in a few seconds."""
    sc = load_scenario("builtin:congestion")
    res = run(sc, check_every_step=False).traffic
    assert res is not None
    summary = summarise_traffic(res)
    return res, summary, story(res, summary)
