"""Congestion reroute live in the lab vs the same controller in virtual time (needs root).

Three parts, each against a named baseline or control in the same run:

* ``lab``: ``vnstitch lab demo --congestion`` (:func:`vnstitch.lab.congestion.run`) on
  ``--runs`` fresh labs: cross traffic congests A-T under a stitched video + e-mail
  pair; median (and min/max) of the onset -> detected, onset -> first packet on the new
  path, video loss in the move, delivered fractions, and whether the kernel counters
  showed the new path carrying the stitch before the old one went quiet;
* ``virtual``: the same story -- the same link capacity, stitch, flows and cross traffic
  as a fluid model in virtual time -- through the same pure pieces the daemon uses (the
  hysteresis :class:`~vnstitch.routing.monitor.CongestionMonitor` at the daemon's
  sampling interval and :class:`~vnstitch.control.reroute.StitchMover`), with the
  protocol's renegotiation taken as instantaneous: the decisions (detected, reroute,
  path) side by side with the lab's. It is the daemon's decision logic (the simulator's
  controllers call the same :mod:`vnstitch.control.reroute`) without the kernel;
* ``dampening``: an oscillating cross load (on 1 s, off 1 s) for 60 virtual seconds
  through the same pieces, with the daemon's dampening (hold-down, hysteresis) vs a
  control with dampening off (no hold-down, no hysteresis, return at once): moves
  counted;
* ``link_cut``: ``vnstitch lab demo`` on ``--runs`` fresh labs: ``reroute_s`` (A-T cut
  -> the stitch up via U with no delivery gap after it), median over the runs whose
  stitch was on A-T-B before the cut (sometimes it settles on A-U-B first).

Usage: ``python benchmarks/lab_congestion.py [--runs N] [--no-cut] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

from vnstitch.control.reroute import RerouteRules, StitchMover
from vnstitch.daemon.config import CongestionConfig
from vnstitch.output import console, progress, table
from vnstitch.routing.monitor import ArcState, CongestionMonitor, MonitorConfig

LAB_KEYS = ("congestion_detected_s", "rerouted_s", "reroute_seconds",
            "video_loss_during_reroute", "video_delivered_fraction",
            "email_delivered_fraction", "route_metric_stitched", "route_metric_substrate")


def _median(values: list[Any]) -> float | None:
    xs = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return statistics.median(xs) if xs else None


def virtual_story(*, link_mbps: float = 40.0, stitch_mbps: float = 20.0,
                  cross_mbps: float = 40.0, onset_s: float = 3.0, congest_s: float = 8.0,
                  rules: RerouteRules | None = None, monitor: MonitorConfig | None = None,
                  interval_s: float = 0.2) -> dict[str, Any]:
    """The lab story as a fluid model in virtual time (module docstring)."""
    cfg = CongestionConfig()
    mon = CongestionMonitor(monitor or MonitorConfig(cfg.high, cfg.low, cfg.raise_samples,
                                                     cfg.clear_samples))
    mover = StitchMover(rules or RerouteRules(cfg.holddown_s, cfg.min_reports,
                                              cfg.report_window_s, cfg.return_after_s))
    sid, path, link = "s0", "A-T-B", ("A", "T")
    out: dict[str, Any] = {"path_before": path, "congestion_detected_s": None,
                           "reroute_s": None, "moves": 0}
    t, n = 0.0, 0
    while t < onset_s + congest_s + 20.0:
        cross = cross_mbps if onset_s <= t < onset_s + congest_s else 0.0
        on_at = path == "A-T-B"
        util = ((stitch_mbps if on_at else 0.0) + cross) / link_mbps
        # Over capacity the fluid's queue drops, as the kernel's does: the daemon's
        # link watch then raises at once (queue drops corroborate the bytes).
        over = {link: "the queue drops"} if util > 1.0 else None
        for ev in mon.observe(t, {link: util}, at_once=over):
            if ev.new is ArcState.CONGESTED and out["congestion_detected_s"] is None:
                out["congestion_detected_s"] = round(t - onset_s, 3)
        acts = []
        if mon.state(link) is ArcState.CONGESTED and on_at:
            acts = mover.congested(t, sid, link, util, "A")[0]
        acts += mover.step(t, {sid: 2.0 if on_at else 4.0})[0]
        for a in acts:
            n += 1
            new = f"s{n}"
            mover.moved(t, sid, new, 2.0 if on_at else 4.0)
            sid, path = new, ("A-U-B" if a.around else "A-T-B")
            out["moves"] += 1
            if a.around and out["reroute_s"] is None:
                out["reroute_s"] = round(t - onset_s, 3)
                out["path_after"] = path
        t = round(t + interval_s, 6)
    out["path_final"] = path
    return out


def oscillating(dampened: bool, seconds: float = 60.0, period_s: float = 2.0) -> int:
    """Moves under a cross load that is on half of every period (virtual time)."""
    cfg = CongestionConfig()
    if dampened:
        mon = CongestionMonitor(MonitorConfig(cfg.high, cfg.low, cfg.raise_samples,
                                              cfg.clear_samples))
        mover = StitchMover(RerouteRules(cfg.holddown_s, cfg.min_reports,
                                         cfg.report_window_s, cfg.return_after_s))
    else:  # the control: no hysteresis, no hold-down, one report moves, return at once
        mon = CongestionMonitor(MonitorConfig(0.8, 0.79, 1, 1))
        mover = StitchMover(RerouteRules(0.0, 1, 0.2, 0.0))
    sid, on_at, n, t = "s0", True, 0, 0.0
    link = ("A", "T")
    while t < seconds:
        cross = 40.0 if (t % period_s) < period_s / 2 else 0.0
        util = ((20.0 if on_at else 0.0) + cross) / 40.0
        mon.observe(t, {link: util})
        acts = []
        if mon.state(link) is ArcState.CONGESTED and on_at:
            acts = mover.congested(t, sid, link, util, "A")[0]
        acts += mover.step(t, {sid: 2.0 if on_at else 4.0})[0]
        for a in acts:
            n += 1
            mover.moved(t, sid, f"s{n}", 2.0 if on_at else 4.0)
            sid, on_at = f"s{n}", not a.around
        t = round(t + 0.2, 6)
    return n


def link_cut_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and max ``reroute_s`` over the runs whose stitch really crossed A-T (the
    protocol sometimes settles on A-U-B first; a cut of A-T then measures nothing)."""
    valid = [r["reroute_s"] for r in runs if r["path"] == "A-T-B" and r["reroute_s"] is not None]
    return {"runs": runs, "valid_runs": len(valid), "median_reroute_s": _median(valid),
            "max_reroute_s": max(valid, default=None)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5,
                    help="fresh labs per live measurement, median reported (default 5)")
    ap.add_argument("--no-cut", action="store_true", help="skip the link-cut runs")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = ap.parse_args(argv)
    if args.runs < 1:
        print("lab_congestion: --runs must be >= 1", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("lab_congestion: needs root (network namespaces, wireguard-go)", file=sys.stderr)
        return 2
    from vnstitch.lab import congestion, demo  # noqa: PLC0415

    result: dict[str, Any] = {"runs": args.runs, "load_average_1m": os.getloadavg()[0]}
    lab_runs: list[dict[str, Any]] = []
    cut_runs: list[dict[str, Any]] = []
    total = args.runs * (1 if args.no_cut else 2)
    with progress(disable=args.json) as bar:
        task = bar.add_task("lab runs", total=total)
        for _ in range(args.runs):
            r = congestion.run()
            lab_runs.append({k: r.get(k) for k in (*LAB_KEYS, "path_before", "path_after",
                                                   "old_path_quiet_s", "make_before_break")})
            bar.advance(task)
        if not args.no_cut:
            for _ in range(args.runs):
                r = demo.run_demo()
                cut_runs.append({k: r.get(k) for k in ("path", "rerouted_path", "reroute_s",
                                                       "renegotiated_seconds",
                                                       "outage_seconds")})
                bar.advance(task)
    result["lab"] = {"runs": lab_runs, "median": {k: _median([r[k] for r in lab_runs])
                                                 for k in LAB_KEYS},
                     "make_before_break": sum(1 for r in lab_runs if r["make_before_break"]),
                     "moved_to_u": sum(1 for r in lab_runs if r["path_after"] == "A-U-B")}
    result["virtual"] = virtual_story()
    result["dampening"] = {"dampened_moves": oscillating(True),
                           "undamped_moves": oscillating(False), "seconds": 60.0,
                           "period_s": 2.0}
    if cut_runs:
        result["link_cut"] = link_cut_summary(cut_runs)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    _print(result)
    return 0


def _fmt(v: Any) -> str:
    return "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))


def _print(result: dict[str, Any]) -> None:
    out = console()
    med, virt = result["lab"]["median"], result["virtual"]
    rows = [("onset -> congestion detected s", _fmt(med["congestion_detected_s"]),
             _fmt(virt["congestion_detected_s"])),
            ("onset -> traffic on the new path s", _fmt(med["rerouted_s"]),
             _fmt(virt["reroute_s"])),
            ("path after", f"{result['lab']['moved_to_u']}/{result['runs']} via U",
             virt.get("path_after", "-")),
            ("make-before-break (kernel counters)",
             f"{result['lab']['make_before_break']}/{result['runs']}", "(instant)"),
            ("video loss in the move", _fmt(med["video_loss_during_reroute"]), "-"),
            ("video delivered (congestion)", _fmt(med["video_delivered_fraction"]), "-"),
            ("e-mail delivered (congestion)", _fmt(med["email_delivered_fraction"]), "-"),
            ("route metric stitched / substrate",
             f"{_fmt(med['route_metric_stitched'])} / {_fmt(med['route_metric_substrate'])}",
             "-")]
    out.print(table(f"congestion reroute: lab (median of {result['runs']}) vs virtual time",
                    ["figure", "lab", "virtual"], rows))
    d = result["dampening"]
    out.print(table("oscillating load, 60 virtual s", ["controller", "moves"],
                    [("dampening (hold-down, 2 reports, hysteresis)", d["dampened_moves"]),
                     ("control: dampening off", d["undamped_moves"])]))
    if "link_cut" in result:
        c = result["link_cut"]
        out.print(table("link cut A-T", ["figure", "value"],
                        [("runs with the stitch on A-T-B", c["valid_runs"]),
                         ("median reroute_s", _fmt(c["median_reroute_s"])),
                         ("max reroute_s", _fmt(c["max_reroute_s"]))]))


if __name__ == "__main__":
    sys.exit(main())
