"""Report of a simulation: topology with stitched paths, a timeline, the summary.

Theory of operation: one matplotlib figure (Agg backend, no display) with two panels.
Left: the substrate drawn at its geographic coordinates (a seeded spring layout when a
node lacks them), nodes coloured by segment, each segment's Route Manager home node
ringed, and every stitch that was ever established drawn along the substrate paths
between the homes of its segment path. Right: a timeline of requests (set-up time as a
segment from request to establishment, failures as crosses), repairs and faults, with
discovery convergence marked. ``.png`` writes the figure; ``.html`` embeds it (base64)
with the summary table and the event log, so the report is one self-contained file.
With an allocation run (:mod:`vnstitch.sim.allocation`) the HTML also gets one panel per
allocated flow -- measured offered rate per interval against the reservation in force --
and the per-flow allocation table.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
import networkx as nx

from vnstitch.sim.errors import SimError

if TYPE_CHECKING:
    from vnstitch.sim.allocation import AllocationResult
    from vnstitch.sim.engine import Simulation


def _positions(sim: Simulation) -> dict[str, tuple[float, float]]:
    g = sim.substrate.graph
    if all(d.get("lat") is not None and d.get("lon") is not None for _, d in g.nodes(data=True)):
        return {n: (float(d["lon"]), float(d["lat"])) for n, d in g.nodes(data=True)}
    return {n: (float(x), float(y)) for n, (x, y) in
            nx.spring_layout(g, seed=1, weight=None).items()}


def figure_png(sim: Simulation, summary: dict[str, Any]) -> bytes:
    g = sim.substrate.graph
    pos = _positions(sim)
    fig, (ax_map, ax_time) = plt.subplots(1, 2, figsize=(15, 6.5),
                                          gridspec_kw={"width_ratios": [1.1, 1]})
    cmap = plt.get_cmap("tab20")
    seg_colour = {s: cmap(k % 20) for k, s in enumerate(sim.segments)}
    for a, b in g.edges:
        ax_map.plot([pos[a][0], pos[b][0]], [pos[a][1], pos[b][1]], color="#bbbbbb", lw=0.8,
                    zorder=1)
    xs = [pos[n][0] for n in g.nodes]
    ys = [pos[n][1] for n in g.nodes]
    ax_map.scatter(xs, ys, s=18, zorder=3,
                   c=[seg_colour[g.nodes[n]["segment"]] for n in g.nodes])
    homes = [sim.net.homes[s] for s in sim.segments]
    ax_map.scatter([pos[h][0] for h in homes], [pos[h][1] for h in homes], s=90,
                   facecolors="none", edgecolors="black", linewidths=1.2, zorder=4)
    if len(sim.segments) <= 40:
        for s in sim.segments:
            h = sim.net.homes[s]
            ax_map.annotate(s, pos[h], fontsize=7, xytext=(4, 4), textcoords="offset points")
    drawn = 0
    for rec in sim.metrics.records.values():
        for path in rec.paths[-2:]:
            if drawn >= 300:
                break
            colour = "tab:red" if rec.repairs else "tab:blue"
            for a, b in itertools.pairwise(path):
                ha, hb = sim.net.homes[sim.segments[a]], sim.net.homes[sim.segments[b]]
                try:
                    nodes = nx.shortest_path(g, ha, hb, weight="latency_ms")
                except nx.NetworkXNoPath:
                    continue
                ax_map.plot([pos[n][0] for n in nodes], [pos[n][1] for n in nodes],
                            color=colour, lw=2.2, alpha=0.35, zorder=2)
            drawn += 1
    ax_map.set_title(f"{summary['topology']}: {len(sim.segments)} segments, stitched paths "
                     "(blue; red = repaired)")
    ax_map.set_xticks([])
    ax_map.set_yticks([])

    recs = sorted(sim.metrics.records.values(), key=lambda r: r.requested_at)
    for k, rec in enumerate(recs):
        if rec.established_at is not None:
            ax_time.plot([rec.requested_at, rec.established_at], [k, k], color="tab:blue", lw=2)
            end = rec.ended_at if rec.ended_at is not None else sim.now
            ax_time.plot([rec.established_at, end], [k, k], color="tab:blue", lw=0.6,
                         alpha=0.5)
        else:
            ax_time.plot([rec.requested_at], [k], marker="x", color="tab:orange")
    for entry in sim.metrics.log:
        if entry.kind == "fault":
            ax_time.axvline(entry.at, color="tab:red", lw=1, ls="--")
            ax_time.annotate(entry.text, (entry.at, len(recs) * 0.98), rotation=90, fontsize=7,
                             va="top", ha="right", color="tab:red")
        elif entry.kind == "repaired":
            ax_time.axvline(entry.at, color="tab:green", lw=0.6, alpha=0.6)
    conv = summary.get("convergence_seconds")
    if conv is not None:
        ax_time.axvline(conv, color="black", lw=1)
        ax_time.annotate("discovery converged", (conv, 0), fontsize=7, rotation=90,
                         va="bottom", ha="right")
    ax_time.set_xlim(0, sim.now)
    ax_time.set_xlabel("virtual time (s)")
    ax_time.set_ylabel("stitch request (by arrival)")
    ax_time.set_title("timeline: set-up (thick), lifetime (thin), failures (x), faults (red)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def allocation_png(alloc: AllocationResult) -> bytes:
    """Offered (measured per interval) vs reserved (step, in force after each decision)."""
    n = max(1, len(alloc.flows))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n), squeeze=False, sharex=True)
    for ax, name in zip(axes[:, 0], alloc.flows, strict=True):
        ends = [t for t, _ in alloc.offered]
        ax.step(ends, [v[name] for _, v in alloc.offered], where="pre", color="tab:blue",
                label="offered (interval mean)")
        ax.step([t for t, _ in alloc.reservations], [v[name] for _, v in alloc.reservations],
                where="post", color="tab:red", label="reserved")
        for t, _, _, _ in alloc.shortfalls:
            ax.axvline(t, color="tab:orange", lw=0.5, alpha=0.3)
        ax.set_ylabel(f"{name} Mbit/s")
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("virtual time (s); orange: a link short at that decision")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _allocation_html(alloc: AllocationResult, summary: dict[str, Any]) -> str:
    flows = summary.get("allocation", {}).get("flows", {})
    cols = ["reserved_mbit", "offered_mbit", "delivered_mbit", "unserved_fraction",
            "slack_fraction", "changes", "reroutes"]
    head = "".join(f"<th>{c}</th>" for c in ["flow", *cols])
    rows = "".join("<tr><td>" + html.escape(name) + "</td>" + "".join(
        f"<td>{html.escape(str(f.get(c)))}</td>" for c in cols) + "</tr>"
        for name, f in flows.items())
    png = base64.b64encode(allocation_png(alloc)).decode()
    return (f"<h2>Predictive allocation</h2><img alt='reserved vs offered' "
            f"style='max-width:100%' src='data:image/png;base64,{png}'>"
            f"<table><tr>{head}</tr>{rows}</table>")


def write_report(sim: Simulation, summary: dict[str, Any], out: str | Path,
                 story: list[str] | None = None,
                 allocation: AllocationResult | None = None) -> Path:
    """Write ``out`` (.html with the PNG embedded, or .png) and return its path."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".png"):
        raise SimError(f"report {out}: name must end in .html or .png")
    png = figure_png(sim, summary)
    try:
        if suffix == ".png":
            path.write_bytes(png)
            return path
        rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
            for k, v in summary.items() if not isinstance(v, dict))
        lines = story if story is not None else [
            f"{e.at:8.3f}s  {e.text}" for e in sim.metrics.log
            if e.kind in ("fault", "converged", "failed", "repaired", "torn_down", "stale",
                          "overcommit", "loop")][:400]
        body = "\n".join(html.escape(x) for x in lines)
        page = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>vnstitch simulation: {html.escape(str(summary.get('scenario')))}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 10px;"
            "border-bottom:1px solid #eee}pre{background:#f6f6f6;padding:1em}</style>"
            "</head><body>"
            f"<h1>vnstitch simulation: {html.escape(str(summary.get('scenario')))}</h1>"
            f"<img alt='topology and timeline' style='max-width:100%' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
            f"<h2>Summary</h2><table>{rows}</table>"
            + (_allocation_html(allocation, summary) if allocation is not None else "") +
            f"<h2>What happened</h2><pre>{body}</pre></body></html>")
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise SimError(f"report {out}: cannot write: {exc.strerror or exc}") from None
    return path
