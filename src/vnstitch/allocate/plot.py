"""Plots of an allocation evaluation: allocation over time and the trade-off curves.

Theory of operation: :func:`write_plot` draws one PNG from a pooled
:class:`~vnstitch.allocate.evaluate.TraceResult`: demand vs every policy's allocation
(summed over series, most variable file) and each policy's unserved-vs-slack curve from
the sweep of its quantile, target or headroom. matplotlib loads only when called.
"""

from __future__ import annotations

import numpy as np

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.evaluate import EvalConfig, TraceResult, sweep_names


def write_plot(res: TraceResult, cfg: EvalConfig, out: str, title: str) -> None:
    """Allocation over time (summed over series) and the trade-off curves, as one PNG."""
    # matplotlib loads only when a plot is asked for (the CLI imports every subcommand).
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), dpi=80)
    if res.demand_total is not None:
        steps = np.arange(res.demand_total.size)
        ax1.plot(steps, res.demand_total, color="black", lw=1.4, label="demand")
        for name, alloc in res.alloc_total.items():
            ax1.plot(steps, alloc, lw=0.9, label=name)
        ax1.set_xlabel("test step")
        ax1.set_ylabel(f"{cfg.resource.value} (summed over series)")
        ax1.set_title("demand vs allocation (most variable file)")
        ax1.legend(fontsize=7, loc="upper right")
    markers = {"predictive": "o", "reactive": "s", "static": "^"}
    for name in sweep_names(cfg.policies):
        if name not in res.curves:
            continue
        pts = sorted(res.points(name), key=lambda p: p.slack)
        ax2.plot([p.slack for p in pts], [max(p.unserved, 1e-6) for p in pts],
                 marker=markers.get(name, "."), ms=4, lw=1.2, label=name)
    for name in ("static-peak", "static-p95", "oracle"):
        if name in res.tallies:
            t = res.tallies[name]
            ax2.plot([t.slack], [max(t.unserved_fraction, 1e-6)], marker="x", ms=8, ls="",
                     label=name)
    ax2.set_xscale("symlog", linthresh=0.1)
    ax2.set_yscale("log")
    ax2.set_xlabel("slack  Σmax(0,a−d)/Σd")
    ax2.set_ylabel("unserved  Σmax(0,d−a)/Σd")
    ax2.set_title("trade-off (sweep of quantile / target / headroom)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as exc:
        raise AllocateError(f"--plot {out}: cannot write: {exc}") from None
    finally:
        plt.close(fig)
