"""A picture of a sweep: each metric against one parameter, one line per group.

Theory of operation. The x axis is one ``group_by`` key (the first one by default);
the remaining ``group_by`` keys make the lines. Each point is a group's mean with its
95% interval as an error bar; one panel per metric (at most four, side by side). Text
values on the x axis (topology names) are placed at even steps in grid order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vnstitch.sweep.errors import SweepError
from vnstitch.sweep.spec import SweepSpec


def plot_groups(spec: SweepSpec, groups: Sequence[dict[str, Any]], out: Path,
                x: str | None = None, metrics: Sequence[str] | None = None) -> None:
    import matplotlib  # noqa: PLC0415  (heavy: only when a plot is asked for)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if not spec.group_by:
        raise SweepError("--plot needs a group_by key to put on the x axis")
    x = x or spec.group_by[0]
    if x not in spec.group_by:
        raise SweepError(f"--plot-x {x!r} is not a group_by key; have {list(spec.group_by)}")
    metrics = list(metrics or spec.metrics[:4])
    lines_by = [k for k in spec.group_by if k != x]
    xs = spec.grid[x]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs)
    pos = {repr(v): (float(v) if numeric else float(i))  # type: ignore[arg-type]
           for i, v in enumerate(xs)}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4),
                             squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        series: dict[str, list[tuple[float, float, float, float]]] = {}
        for g in groups:
            s = g[m]
            if s["mean"] is None:
                continue
            label = ", ".join(f"{k}={g[k]}" for k in lines_by) or spec.name
            lo = s["ci95_low"] if s["ci95_low"] is not None else s["mean"]
            hi = s["ci95_high"] if s["ci95_high"] is not None else s["mean"]
            series.setdefault(label, []).append((pos[repr(g[x])], s["mean"], lo, hi))
        for label, pts in series.items():
            pts.sort()
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts],
                        yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
                        marker="o", capsize=3, label=label)
        ax.set_xlabel(x)
        ax.set_title(m, fontsize=9)
        if not numeric:
            ax.set_xticks(list(pos.values()), [str(v) for v in xs], rotation=20,
                          fontsize=7)
        if len(series) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(f"{spec.name}: mean and 95% interval per group", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
