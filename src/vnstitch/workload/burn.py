"""A CPU burner: busy-loop a duty cycle per interval, as a trace or a driver says.

Theory of operation
-------------------
Every ``--interval`` seconds the burner decides how many cores it should use this
interval (:func:`duty`) and spins until it has used ``cores x interval`` seconds of CPU
time (its own, ``time.process_time``) or the interval is over, whichever comes first,
then sleeps the rest. Counting CPU time rather than wall time makes it burn what the
trace says on a busy host too; one thread, so at most one core. The instance's cgroup
quota caps it further, which is the point: demand above the quota is throttled, i.e.
unserved.
The demand comes from either

* ``--demand-file PATH``: a number of cores, rewritten by a driver at any time (read
  each interval; a missing or unreadable file means 0) -- the benchmark writes each
  instance's share of the traced demand there; or
* ``--trace CSV``: a CloudWatch-style ``timestamp,value`` series of CPU percent, replayed
  ``--speedup`` times faster from row ``--start`` (``value / 100 x --cores-at-100``).

``--ready-file PATH`` is created once the burner is running, for a readiness command
(``test -e PATH``); ``{instance}`` in PATH stands for ``$VNSTITCH_INSTANCE``, which the
compute provider sets for each instance, so one command line serves every instance.
Run as ``python -m vnstitch.workload.burn``. The clocks and the sleep are injected into
:func:`run`, so the loop is testable without waiting.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def duty(cores: float, interval: float) -> tuple[float, float]:
    """(busy, idle) seconds of one interval for ``cores`` (clamped to [0, 1] core)."""
    busy = min(max(cores, 0.0), 1.0) * interval
    return busy, interval - busy


def read_demand(path: Path) -> float:
    try:
        value = float(path.read_text().strip() or 0.0)
    except (OSError, ValueError):
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0  # NaN, negatives: nothing


def trace_demand(values: Sequence[float], step_seconds: float, speedup: float,
                 cores_at_100: float, start: int = 0) -> Callable[[float], float]:
    """Cores demanded ``elapsed`` wall seconds into a replay of ``values`` (percent)."""
    def at(elapsed: float) -> float:
        i = start + int(elapsed * speedup // step_seconds)
        return values[min(i, len(values) - 1)] / 100.0 * cores_at_100
    return at


def run(demand: Callable[[float], float], interval: float, *, duration: float | None,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
        sleep: Callable[[float], None] = time.sleep) -> float:
    """Burn until ``duration`` (None: forever); returns the CPU seconds burned."""
    t0 = clock()
    burned = 0.0
    while duration is None or clock() - t0 < duration:
        start, cpu0 = clock(), cpu_clock()
        busy, _ = duty(demand(start - t0), interval)
        while cpu_clock() - cpu0 < busy and clock() - start < interval:
            pass
        burned += cpu_clock() - cpu0
        left = interval - (clock() - start)
        if left > 0:
            sleep(left)
    return burned


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vnstitch.workload.burn",
                                 description="Burn the CPU a trace or a driver says.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--demand-file", type=Path, metavar="PATH",
                     help="file holding the cores to burn now (re-read every interval)")
    src.add_argument("--trace", type=Path, metavar="CSV",
                     help="CloudWatch-style timestamp,value CSV of CPU percent to replay")
    ap.add_argument("--speedup", type=float, default=60.0,
                    help="replay the trace this many times faster (default 60)")
    ap.add_argument("--start", type=int, default=0, help="first trace row to replay")
    ap.add_argument("--cores-at-100", type=float, default=1.0,
                    help="cores that 100%% in the trace means (default 1)")
    ap.add_argument("--interval", type=float, default=0.1,
                    help="seconds per duty cycle (default 0.1)")
    ap.add_argument("--duration", type=float, default=None,
                    help="stop after this many seconds (default: run until killed)")
    ap.add_argument("--ready-file", type=Path, metavar="PATH",
                    help="create this file once burning, for a readiness command "
                    "({instance} = $VNSTITCH_INSTANCE)")
    args = ap.parse_args(argv)
    if args.interval <= 0 or args.speedup <= 0 or args.cores_at_100 < 0:
        ap.error("--interval and --speedup must be > 0, --cores-at-100 >= 0")
    if args.demand_file is not None:
        path: Path = args.demand_file
        demand: Callable[[float], float] = lambda _elapsed: read_demand(path)  # noqa: E731
    else:
        from vnstitch.errors import VnstitchError  # noqa: PLC0415  (only for a trace)
        from vnstitch.forecast.data import load_series  # noqa: PLC0415
        try:
            data = load_series(args.trace)
        except (OSError, VnstitchError) as exc:
            print(f"burn: {args.trace}: {exc}", file=sys.stderr)
            return 2
        demand = trace_demand([float(x) for x in data.values[:, 0]], data.step_seconds,
                              args.speedup, args.cores_at_100, args.start)
    if args.ready_file is not None:
        instance = os.environ.get("VNSTITCH_INSTANCE", "instance")
        Path(str(args.ready_file).replace("{instance}", instance)).touch()
    with contextlib.suppress(KeyboardInterrupt):
        run(demand, args.interval, duration=args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
