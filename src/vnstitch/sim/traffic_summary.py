"""The ``traffic`` and ``stitches`` sections of the run summary: plain, rounded, stable.

Theory of operation: pure functions of a finished :class:`~vnstitch.sim.traffic.
TrafficResult`. Every commitment id a flow rode (``stitch_ids``) is an ``id`` of the
``stitches`` list (one entry per established path of a stitch; see
:mod:`vnstitch.sim.stitched`). A class's ``shortfall_mbit`` is what its attached flows
lost on the links (HTB's doing); traffic offered while a flow had no stitch is its
``unattached_mbit``, reported apart.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from vnstitch.sim.stitched import StitchLog
from vnstitch.sim.traffic_model import TrafficResult

_EPS = 1e-9


def summarise_stitches(log: StitchLog, segments: list[str]) -> list[dict[str, Any]]:
    """One entry per commitment (established path of a stitch), in commit order."""
    return [{"id": c.id, "vnid": c.vnid, "src": segments[c.path[0]],
             "dst": segments[c.path[-1]], "path": [segments[k] for k in c.path],
             "bandwidth_mbps": _r(c.bandwidth_mbps), "cost": _r(c.cost),
             "committed_s": _r(c.committed_s), "ended_s": _r(c.ended_s),
             "end_reason": c.end_reason} for c in log.all]


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


def summarise_traffic(res: TrafficResult) -> dict[str, Any]:
    """The ``traffic`` section of the run summary: plain, rounded, deterministic."""
    spec, interval = res.spec, res.spec.interval_s
    episodes: list[dict[str, Any]] = []
    for ep in res.episodes:
        spent = None if ep.resolved_s is None else (ep.resolved_s - ep.onset_s) / interval
        episodes.append({
            "link": res.link(ep.arc), "arc": list(ep.arc), "onset_s": _r(ep.onset_s),
            "detected_s": _r(ep.detected_s), "resolved_s": _r(ep.resolved_s),
            "resolved_by": ep.resolved_by, "intervals_to_resolve": _r(spent),
            "on_stitched_path": ep.stitched,
            "peak_offered_utilisation": _r(ep.peak_offered_util, 4)})
    by_reroute = [e["intervals_to_resolve"] for e in episodes if e["resolved_by"] == "reroute"]
    # every episode, however it ended (still hot: until the end of the run)
    spans = [((ep.resolved_s if ep.resolved_s is not None else res.duration_s) - ep.onset_s)
             / interval for ep in res.episodes]
    moves_per_flow: dict[str, list[float]] = {}
    for m in res.moves:
        moves_per_flow.setdefault(m.flow, []).append(m.effective_s)
    gaps = [b - a for ts in moves_per_flow.values() for a, b in itertools.pairwise(ts)]
    classes: dict[str, Any] = {}
    # Shortfall on the links (HTB's doing); unattached traffic is reported apart.
    shortfall = {c: max(0.0, res.offered_mbit[c] - res.unattached_mbit[c]
                        - res.delivered_mbit[c]) for c in res.offered_mbit}
    total_short = sum(shortfall.values())
    # Classes under the allocator have no one guarantee: it follows the reservations.
    allocated = set(spec.allocation.classes) if spec.allocation is not None else set()
    for c in spec.policy.classes:
        worst = [iv.delivered[c.name] / iv.offered[c.name] for iv in res.intervals
                 if iv.offered.get(c.name, 0.0) > _EPS]
        off = res.offered_mbit[c.name]
        classes[c.name] = {
            "priority": c.priority,
            "stitched": c.name in spec.stitched_classes,
            "allocated": c.name in allocated,
            # Under allocation: the static guarantee, which holds until the first decision.
            "guaranteed_mbps": _r(c.guaranteed_mbps), "max_mbps": _r(c.max_mbps),
            "offered_mbit": _r(off, 1), "delivered_mbit": _r(res.delivered_mbit[c.name], 1),
            "shortfall_mbit": _r(shortfall[c.name], 1),
            "unattached_mbit": _r(res.unattached_mbit[c.name], 1),
            "delivered_fraction": _r(res.delivered_mbit[c.name] / off, 4) if off > 0 else None,
            "worst_interval_delivered_fraction": _r(min(worst), 4) if worst else None,
            "seconds_below_guarantee": _r(res.seconds_below_guarantee[c.name]),
        }
    lowest = spec.policy.classes[-1].name
    return {
        "interval_s": interval,
        "borrow": spec.borrow,
        "flows": [{"name": f.name, "vnid": f.spec.vn, "class": f.qos_class,
                   "src": res.labels.get(f.src, f.src), "dst": res.labels.get(f.dst, f.dst),
                   "stitch_ids": list(res.flow_stitches[i]),
                   "offered_mbit": _r(res.flow_offered[i], 1),
                   "delivered_mbit": _r(res.flow_delivered[i], 1),
                   "unattached_seconds": _r(res.unattached_s[i])}
                  for i, f in enumerate(res.flows)],
        "monitor": {"high": spec.monitor.high, "low": spec.monitor.low,
                    "raise_samples": spec.monitor.raise_samples,
                    "clear_samples": spec.monitor.clear_samples},
        "samples": len(res.intervals),
        "max_link_utilisation_sampled": _r(max((iv.max_utilisation for iv in res.intervals),
                                               default=0.0), 4),
        "congestion_episodes": episodes,
        "congestion_resolved_by_reroute": len(by_reroute),
        "congestion_unresolved_at_end": sum(1 for e in episodes if e["resolved_by"] is None),
        "max_intervals_to_reroute": max(by_reroute) if by_reroute else None,
        "max_intervals_congested": _r(max(spans)) if spans else None,
        "reroutes": sum(1 for m in res.moves if m.kind == "reroute"),
        "returns": sum(1 for m in res.moves if m.kind == "return"),
        "stitch_moves": sum(1 for m in res.moves if m.kind == "stitch"),
        "stitch_returns": sum(1 for m in res.moves if m.kind == "stitch-return"),
        "stitch_reoptimisations": sum(1 for m in res.moves if m.kind == "stitch-cheaper"),
        "stitch_renegotiations": [
            {"decided_s": _r(m.decided_s), "kind": m.kind, "old_stitch": m.old_stitch,
             "new_stitch": m.new_stitch, "avoid": m.avoid, "reason": m.reason}
            for m in (res.stitched.moves if res.stitched is not None else [])],
        "congestion_not_avoidable_by_stitching": [
            {"at_s": _r(t), "link": res.link(a), "why": why}
            for t, a, why in (res.stitched.unavoidable if res.stitched is not None else [])],
        "returns_blocked_by_reservation": len(res.returns_blocked),
        "allocator_moves": sum(1 for m in res.moves if m.kind == "allocate"),
        "max_path_changes_per_flow": max((len(v) for v in moves_per_flow.values()), default=0),
        "min_seconds_between_moves_of_a_flow": _r(min(gaps)) if gaps else None,
        "moves": [{"flow": m.flow, "class": m.qos_class, "kind": m.kind,
                   "decided_s": _r(m.decided_s), "effective_s": _r(m.effective_s),
                   "old_path_removed_s": _r(m.removed_s), "old_path": res.name(m.old_path),
                   "new_path": res.name(m.new_path), "reason": m.reason} for m in res.moves],
        "classes": classes,
        "stitched_classes": list(spec.stitched_classes),
        "stitched_guarantee_kept": all(res.seconds_below_guarantee[c] == 0.0
                                       for c in spec.stitched_classes),
        "shortfall_mbit_total": _r(total_short, 1),
        "unattached_mbit_total": _r(sum(res.unattached_mbit.values()), 1),
        "lowest_class": lowest,
        "lowest_class_share_of_shortfall": _r(shortfall[lowest] / total_short, 4)
        if total_short > _EPS else None,
    }
