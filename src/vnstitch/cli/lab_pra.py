"""``vnstitch lab demo --pra``: options and output of the live PRA story.

Theory of operation: a thin layer over :func:`vnstitch.lab.demo_pra.run_pra_demo`
(options in, a progress bar while it runs, a table or ``--json`` out); kept apart from
:mod:`vnstitch.cli.lab` so that module only dispatches on ``--pra``.
"""

from __future__ import annotations

import argparse
from typing import Any

from vnstitch.cli.output import console, print_json, table
from vnstitch.forecast import MODEL_NAMES


def add_pra_args(dm: argparse.ArgumentParser) -> None:
    dm.add_argument("--pra", action="store_true",
                    help="instead: the live Predictive Resource Allocator story (a CloudWatch "
                         "CPU trace replayed 60x as load on a VN's cgroup instances, a disk-"
                         "write trace into its loop volume, the event loop's lag while the "
                         "model refits)")
    dm.add_argument("--minutes", type=float, default=3.0,
                    help="with --pra: wall minutes to replay (default 3 = 36 rows at 60x)")
    dm.add_argument("--model", choices=MODEL_NAMES, default="lstm",
                    help="with --pra: the compute forecaster (default lstm)")
    dm.add_argument("--net-mbps", type=float, default=20.0,
                    help="with --pra: mean rate (Mbit/s) of the network-trace UDP ramp "
                         "through a lab stitch after the replay; 0 skips it (default 20)")


def run_pra(args: argparse.Namespace) -> int:
    from vnstitch.cli.output import progress  # noqa: PLC0415
    from vnstitch.lab import demo_pra  # noqa: PLC0415
    from vnstitch.lab.netns import LabError  # noqa: PLC0415

    if args.net_mbps < 0:
        raise LabError("lab demo --pra: --net-mbps must be >= 0")
    cfg = demo_pra.PraDemoConfig(minutes=args.minutes, model=args.model,
                                 net_mean_mbps=args.net_mbps)
    cfg.check()
    out = console()
    with progress(disable=args.json) as bar:
        task = bar.add_task("lab demo --pra", total=None)

        def step(name: str, facts: dict[str, Any]) -> None:
            if name in ("replay", "bandwidth ramp"):
                bar.update(task, total=facts["rows"], completed=facts["row"],
                           description=name)
            else:
                bar.update(task, description=name)

        result = demo_pra.run_pra_demo(cfg, step)
    if args.json:
        print_json(result)
        return 0 if not result["left_behind"] else 1
    lvo = result.get("live_vs_offline", {})

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)

    out.print(table("live PRA on the CloudWatch traces", ["metric", "value"], [
        ("compute ramps", f(result["compute_ramps"])),
        ("ramps ready before demand", f(result["compute_ready_before_demand_fraction"])),
        ("storage grown before full", f(result["storage_grown_before_full"])),
        ("loop lag p99 ms while fitting", f(result["loop_lag_p99_ms"])),
        ("loop lag p99 ms otherwise", f(result["loop_lag_p99_ms_without_fit"])),
        ("unserved live / offline", f"{f(lvo.get('live', {}).get('unserved_fraction'))} / "
         f"{f(lvo.get('offline', {}).get('unserved_fraction'))}"),
        ("slack live / offline", f"{f(lvo.get('live', {}).get('slack'))} / "
         f"{f(lvo.get('offline', {}).get('slack'))}"),
        ("bandwidth unserved", f(result["bandwidth_unserved_fraction"])),
        ("left behind", f(len(result["left_behind"])))]))
    return 0 if not result["left_behind"] else 1
