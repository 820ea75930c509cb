"""Benchmark: the allocator driving the live compute and storage providers (root).

A real CloudWatch EC2 CPU trace is replayed 60x faster (one 300 s row = 5 s) as the load
on a VN's instances: each instance is the CPU burner (``python -m
vnstitch.workload.burn``) in the VN's network namespace under its own cgroup (CPU quota,
memory limit); the driver writes each ready instance's share of the traced demand to a
file the burners read. A disk-write trace, scaled to ``--disk-mib`` over the window, is
written into the VN's loop-mounted ext4 volume as storage growth. Two VNs replay the same
traces side by side, each through the same :class:`~vnstitch.allocate.allocator.
Allocator` and providers:

* ``predictive`` -- newsvendor quantile of an ``--model`` forecast (ETS by default) at
  the lead time: ``1 + ceil(measured start-up / step)`` steps for compute (the demand
  of the step now starting is already running; the next one is the first a new
  instance can be ready for); for storage the usage ``--disk-lead`` steps ahead (the
  running sum of the increments' quantiles), so a volume is grown before the writes of
  the next few steps, not only the next one (bursts in the disk trace are far above a
  one-step quantile; see the report);
* ``reactive`` (the named baseline) -- the last observed value (storage: the usage
  plus the last step's writes), no headroom, lead 1: a threshold autoscaler.

Before the clock starts each VN gets the capacity its policy plans for the first step
and waits for it (warm-up; start-up times measured there set the lead). Then every
step: forecast from the history so far, ``Allocator.step``, set the load, write the
step's bytes (only what fits: a full volume is recorded), and poll the providers every
``--poll`` seconds (polling is what observes readiness). Reported per VN:
``compute_ramps`` (instances launched after warm-up), ``compute_ready_before_demand_
fraction`` (ramps whose instance was ready before the demand first exceeded the capacity
of the instances live before it, counted from when that capacity was in place, so a
reaction to an excess already seen is late; a ramp the demand never needed counts as
ready: :func:`~vnstitch.allocate.providers.compute.ready_before_demand`), CPU demanded
and burned (read back from the cgroups), ``compute_short_steps`` (steps whose demand
exceeded the ready instances' quota at the step's start), ``storage_grown_before_full``
(no step found too little free space for its writes), start-up times, and
``left_behind``: cgroups, processes, loop devices, mounts, files and namespaces of this
run that remain after cleanup (must be empty). Table, or ``--json``. Needs root; data
from ``$VNSTITCH_DATA`` or ``../shared/data``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vnstitch.allocate.allocator import Allocator, Consumer, QuantileForecast
from vnstitch.allocate.policy import DENSE_LEVELS, ApplicationClass, ScalingRules
from vnstitch.allocate.providers import (
    ComputeProvider,
    ProvidersByKind,
    ResourceKey,
    ResourceKind,
    StorageProvider,
    Workload,
)
from vnstitch.allocate.providers.compute import CgroupExecutor, ready_before_demand
from vnstitch.allocate.providers.leftovers import compute_leftovers, storage_leftovers
from vnstitch.forecast.base import make_forecaster
from vnstitch.forecast.data import load_series
from vnstitch.lab import netns as labns
from vnstitch.output import console, progress, table

MIB = 2**20
STEP = 300.0  # seconds per CloudWatch row
POLICIES = ("predictive", "reactive")
CPU_CLASS = ApplicationClass("web", c_under=20.0)  # q = 0.952
# A full volume fails writes: far dearer than a MiB of idle space for a step.
DISK_CLASS = ApplicationClass("volume", c_under=1000.0)


def data_dir() -> Path:
    env = os.environ.get("VNSTITCH_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class VN:
    policy: str
    location: str
    netns: str
    demand_file: Path
    cpu_hist: list[float]  # cores per step, history then the replay so far
    incr_hist: list[float]  # MiB written per step, likewise
    used_mib: float = 0.0
    full_steps: int = 0
    burned: dict[str, float] = field(default_factory=dict)  # last cgroup CPU s per instance
    steps: list[dict[str, float]] = field(default_factory=list)

    @property
    def ckey(self) -> ResourceKey:
        return ResourceKey(ResourceKind.COMPUTE, self.location)

    @property
    def skey(self) -> ResourceKey:
        return ResourceKey(ResourceKind.STORAGE, self.location)


def quantile_forecast(model: str, history: list[float], horizon: int,
                      cumulative_from: float | None = None) -> QuantileForecast:
    """DENSE_LEVELS quantiles ``horizon`` steps ahead; with ``cumulative_from`` the
    forecast is of increments and is returned as that level plus their running sum."""
    hist = np.asarray(history[-576:], dtype=np.float64)  # two days of 5-minute rows
    fc = make_forecaster(model, 288).fit(hist).predict(horizon, quantiles=DENSE_LEVELS)
    vals = np.stack([np.maximum(fc.quantiles[q][:, 0], 0.0) for q in DENSE_LEVELS])
    if cumulative_from is not None:
        vals = cumulative_from + np.cumsum(vals, axis=1)
    return QuantileForecast(DENSE_LEVELS, vals)


def last_value(value: float, horizon: int) -> QuantileForecast:
    return QuantileForecast((0.5,), np.full((1, horizon), float(value)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0,
                    help="wall minutes to replay (default 3 = 36 trace rows at 60x)")
    ap.add_argument("--speedup", type=float, default=60.0, help="replay speed (default 60)")
    ap.add_argument("--cpu-trace", default="ec2_cpu_utilization_5f5533.csv",
                    help="CloudWatch CPU CSV under cloudwatch/ (default %(default)s)")
    ap.add_argument("--cpu-start", type=int, default=2958,
                    help="first replayed row of the CPU trace (default %(default)s)")
    ap.add_argument("--disk-trace", default="ec2_disk_write_bytes_1ef3de.csv",
                    help="CloudWatch disk-write CSV under cloudwatch/ (default %(default)s)")
    ap.add_argument("--disk-start", type=int, default=2604,
                    help="first replayed row of the disk trace (default %(default)s)")
    ap.add_argument("--cores-at-100", type=float, default=0.5,
                    help="cores that 100%% CPU in the trace means (default 0.5)")
    ap.add_argument("--quota", type=float, default=0.03,
                    help="CPU quota per instance in cores (default 0.03)")
    ap.add_argument("--disk-mib", type=float, default=96.0,
                    help="MiB the disk trace writes over the window (default 96)")
    ap.add_argument("--disk-unit-mib", type=float, default=8.0,
                    help="volume growth step in MiB (default 8)")
    ap.add_argument("--disk-lead", type=int, default=6,
                    help="steps of forecast usage the volume is grown ahead of "
                    "(default 6; a grow itself takes well under one step)")
    ap.add_argument("--cpu-c-under", type=float, default=CPU_CLASS.c_under,
                    help="cost of a unit of unserved CPU relative to an idle one "
                    f"(newsvendor; default {CPU_CLASS.c_under:g})")
    ap.add_argument("--model", default="ets", help="forecaster for predictive (default ets)")
    ap.add_argument("--poll", type=float, default=0.05,
                    help="seconds between provider polls (default 0.05)")
    ap.add_argument("--decisions", action="store_true",
                    help="print every allocator decision to stderr as it is made")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("pra_providers: needs root (cgroups, namespaces, loop devices)", file=sys.stderr)
        return 2
    step = STEP / args.speedup
    n_steps = max(2, round(args.minutes * 60 / step))
    cw = data_dir() / "cloudwatch"
    try:
        cpu = load_series(cw / args.cpu_trace).values[:, 0] / 100.0 * args.cores_at_100
        disk = load_series(cw / args.disk_trace).values[:, 0]
    except Exception as exc:  # a data problem is a one-line message, not a traceback
        print(f"pra_providers: {exc}", file=sys.stderr)
        return 2
    for name, start, series in (("cpu", args.cpu_start, cpu), ("disk", args.disk_start, disk)):
        if not 300 <= start <= len(series) - n_steps:
            print(f"pra_providers: --{name}-start must leave 300 rows of history and "
                  f"{n_steps} to replay (trace has {len(series)})", file=sys.stderr)
            return 2
    window = disk[args.disk_start:args.disk_start + n_steps]
    mib_per_byte = args.disk_mib / max(float(window.sum()), 1.0)
    disk_mib = disk * mib_per_byte
    demand = [float(x) for x in cpu[args.cpu_start:args.cpu_start + n_steps]]
    writes = [float(x) for x in disk_mib[args.disk_start:args.disk_start + n_steps]]

    run = uuid.uuid4().hex[:6]
    prefix = f"vnpra{run}"
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    namespaces = [f"vstpra{p[0]}{run}" for p in POLICIES]
    vns = [VN(p, f"vn-{p}", ns, work / f"{p}.demand",
              [float(x) for x in cpu[:args.cpu_start]],
              [float(x) for x in disk_mib[:args.disk_start]])
           for p, ns in zip(POLICIES, namespaces, strict=True)]
    workloads = {}
    for vn in vns:
        vn.demand_file.write_text("0")
        workloads[vn.location] = Workload(
            (sys.executable, "-m", "vnstitch.workload.burn", "--demand-file",
             str(vn.demand_file), "--ready-file", str(work / "{instance}.ready")),
            vn.netns, cpu_quota_cores=args.quota, memory_bytes=64 * MIB,
            readiness=("sh", "-c", f'test -e "{work}/$VNSTITCH_INSTANCE.ready"'),
            max_instances=16)
    created: list[str] = []
    compute: ComputeProvider | None = None
    storage: StorageProvider | None = None
    executor: CgroupExecutor | None = None
    result: dict[str, Any] = {}
    try:
        for ns in namespaces:
            labns.create(ns)
            created.append(ns)
        executor = CgroupExecutor(prefix=prefix)
        compute = ComputeProvider(workloads, executor=executor, initial_lead_time=1.0)
        storage = StorageProvider({vn.location: 4096.0 for vn in vns}, work / "volumes",
                                  unit_bytes=MIB, prefix=prefix)
        router = ProvidersByKind({ResourceKind.COMPUTE: compute,
                                  ResourceKind.STORAGE: storage})
        result = replay(args, vns, compute=compute, storage=storage, router=router,
                        demand=demand, writes=writes, step=step)
    finally:
        t_clean = time.monotonic()
        errors = []
        for closer in (compute, storage):
            try:
                if closer is not None:
                    closer.close()
            except Exception as exc:  # report, keep cleaning
                errors.append(str(exc))
        for ns in created:
            labns.destroy(ns)
        left: list[str] = []
        if executor is not None:
            left += compute_leftovers(executor.layout, prefix)
        left += storage_leftovers(work / "volumes", prefix)
        left += [f"netns {ns}" for ns in namespaces if Path(f"/run/netns/{ns}").exists()]
        shutil.rmtree(work, ignore_errors=True)
        result["left_behind"] = left + errors
        result["cleanup_seconds"] = time.monotonic() - t_clean
    result["command"] = " ".join(["python", "benchmarks/pra_providers.py", *(argv or sys.argv[1:])])
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if not result["left_behind"] else 1
    print_table(result)
    return 0 if not result["left_behind"] else 1


def replay(args: argparse.Namespace, vns: list[VN], *, compute: ComputeProvider,
           storage: StorageProvider, router: ProvidersByKind, demand: list[float],
           writes: list[float], step: float) -> dict[str, Any]:
    t0 = time.monotonic()

    def now() -> float:
        return time.monotonic() - t0

    # Demand is in cores; an instance serves ``quota`` of them.
    cpu_class = ApplicationClass(CPU_CLASS.name, args.cpu_c_under,
                                 resources_per_unit=1.0 / args.quota)

    def consumers(lead: int) -> list[Consumer]:
        out = []
        for vn in vns:
            c_lead = lead if vn.policy == "predictive" else 1
            out.append(Consumer(f"{vn.location}/cpu", ResourceKind.COMPUTE, cpu_class,
                                ScalingRules(1.0, min_units=1, max_units=16, hold_steps=2,
                                             scale_in_window=3),
                                lead_steps=c_lead, segment=vn.location))
            out.append(Consumer(f"{vn.location}/disk", ResourceKind.STORAGE, DISK_CLASS,
                                ScalingRules(args.disk_unit_mib, min_units=2,
                                             allow_scale_in=False),
                                lead_steps=args.disk_lead if vn.policy == "predictive"
                                else 1, segment=vn.location))
        return out

    def decide(alloc: Allocator, at: float) -> None:
        fcs = {}
        for vn in vns:
            c_lead = alloc.consumers[f"{vn.location}/cpu"].lead_steps
            if vn.policy == "predictive":
                fcs[f"{vn.location}/cpu"] = quantile_forecast(args.model, vn.cpu_hist, c_lead)
                fcs[f"{vn.location}/disk"] = quantile_forecast(
                    args.model, vn.incr_hist, args.disk_lead, cumulative_from=vn.used_mib)
            else:
                fcs[f"{vn.location}/cpu"] = last_value(vn.cpu_hist[-1], c_lead)
                # what the VN wanted to write last step, again (not the capped usage)
                fcs[f"{vn.location}/disk"] = last_value(vn.used_mib + vn.incr_hist[-1], 1)
        keys = [k for vn in vns for k in (vn.ckey, vn.skey)]
        rep = alloc.step(at, fcs, {k: router.available(k, at) for k in keys})
        if args.decisions:
            for d in rep.decisions:
                print(f"{at:7.2f} {d.subject:24} {d.action:18} {d.amount:6.3g} {d.reason}",
                      file=sys.stderr)

    def set_load(cores: float) -> None:
        for vn in vns:
            ready = compute.available(vn.ckey, now())
            share = cores / ready if ready else 0.0
            vn.demand_file.write_text(f"{share:.6f}")
            for inst in compute.instances(vn.ckey):
                if inst.phase.value in ("starting", "ready"):
                    with contextlib.suppress(OSError):  # stopped since the phase was read
                        vn.burned[inst.id] = compute.executor.usage(inst.proc).cpu_seconds

    # Warm-up: capacity for the first step, measured start-ups set the lead.
    warm = Allocator(consumers(2), router)
    decide(warm, now())
    for vn in vns:
        compute.wait_ready(vn.ckey, now, timeout=60)
    lead = 1 + math.ceil(compute.lead_time(ResourceKind.COMPUTE) / step)
    alloc = Allocator(consumers(lead), router)
    t_start = now()
    with progress(disable=args.json) as bar:
        task = bar.add_task("replay", total=len(demand))
        for k, (cores, mib) in enumerate(zip(demand, writes, strict=True)):
            t_k = t_start + k * step
            while now() < t_k:
                time.sleep(min(args.poll, t_k - now()))
            if k > 0:
                decide(alloc, now())
            set_load(cores)
            for vn in vns:
                write_step(storage, vn, mib, k)
                vn.steps.append({"t": now(), "demand": cores,
                                 "ready": compute.available(vn.ckey, now()),
                                 "committed": compute.committed(vn.ckey, now()),
                                 "volume_mib": storage.available(vn.skey, now()),
                                 "used_mib": vn.used_mib})
            end = t_start + (k + 1) * step
            while now() < end - 1e-3:
                time.sleep(min(args.poll, max(end - now(), 0.0)))
                set_load(cores)  # readiness observed -> the share follows at once
            for vn in vns:
                vn.cpu_hist.append(cores)  # observed once its step is over
            bar.advance(task)
    t_end = now()
    out: dict[str, Any] = {
        "cpu_trace": args.cpu_trace, "cpu_start": args.cpu_start,
        "disk_trace": args.disk_trace, "disk_start": args.disk_start,
        "steps": len(demand), "step_seconds": step, "speedup": args.speedup,
        "quota_cores": args.quota, "model": args.model, "lead_steps": lead,
        "cpu_quantile": cpu_class.quantile,
        "disk_mib": args.disk_mib, "disk_unit_mib": args.disk_unit_mib,
        "disk_lead_steps": args.disk_lead,
        "startup_seconds": {"mean": float(np.mean(compute.startup_seconds)),
                            "max": float(np.max(compute.startup_seconds)),
                            "n": len(compute.startup_seconds)},
        "storage_resize_seconds_max": max(storage.resize_seconds, default=0.0),
        "storage_online_growth": storage.online,
        "policies": {}}
    for vn in vns:
        outcomes = ready_before_demand([i.view() for i in compute.instances(vn.ckey)],
                                       demand, args.quota, t_start=t_start, step=step,
                                       end=t_end)
        ready_steps = [s["ready"] for s in vn.steps]
        short = sum(s["demand"] > s["ready"] * args.quota + 1e-9 for s in vn.steps)
        out["policies"][vn.policy] = {
            "compute_ramps": len(outcomes),
            "compute_ready_before_demand_fraction":
                sum(outcomes) / len(outcomes) if outcomes else 1.0,
            "cpu_demanded_core_seconds": sum(demand) * step,
            "cpu_burned_core_seconds": sum(vn.burned.values()),
            "instance_steps": float(sum(ready_steps)),
            "compute_short_steps": short,
            "storage_grown_before_full": vn.full_steps == 0,
            "storage_full_steps": vn.full_steps,
            "storage_final_mib": vn.steps[-1]["volume_mib"],
            "storage_used_mib": vn.used_mib,
        }
    return out


def write_step(storage: StorageProvider, vn: VN, mib: float, k: int) -> None:
    """Write this step's bytes to the VN's volume, as much as fits; record a full one."""
    vol = storage.volume(vn.skey)
    want = int(mib * MIB)
    if vol is None:
        vn.full_steps += want > 0
        vn.incr_hist.append(0.0)
        return
    st = os.statvfs(vol.mountpoint)
    free = st.f_bavail * st.f_frsize - MIB  # keep a margin for the file's own metadata
    fits = max(0, min(want, free))
    if fits < want:
        vn.full_steps += 1
    if fits:
        with open(vol.mountpoint / f"step{k:05d}", "wb") as f:
            chunk = b"\0" * MIB
            left = fits
            while left > 0:
                left -= f.write(chunk[:min(left, MIB)])
        os.sync()
    vn.used_mib += fits / MIB
    vn.incr_hist.append(mib)  # demand history is what the VN wanted to write


def print_table(result: dict[str, Any]) -> None:
    if "policies" not in result:
        console().print(f"run failed; left behind: {result.get('left_behind')}")
        return
    rows = []
    for name, m in result["policies"].items():
        rows.append([name, m["compute_ramps"], m["compute_ready_before_demand_fraction"],
                     m["cpu_burned_core_seconds"] / m["cpu_demanded_core_seconds"],
                     m["compute_short_steps"], m["instance_steps"],
                     "yes" if m["storage_grown_before_full"] else "no",
                     m["storage_final_mib"]])
    su = result["startup_seconds"]
    con = console()
    con.print(table(
        f"{result['cpu_trace']} + {result['disk_trace']}: {result['steps']} steps of "
        f"{result['step_seconds']:g} s, quota {result['quota_cores']:g} core, lead "
        f"{result['lead_steps']} steps (start-up mean {su['mean']:.3f} s, max "
        f"{su['max']:.3f} s)",
        ["policy", "ramps", "ready first", "CPU served", "short", "inst-steps",
         "disk ok", "vol MiB"], rows))
    left = result["left_behind"]
    con.print(f"left behind: {', '.join(left) if left else 'nothing'} "
              f"(cleanup {result['cleanup_seconds']:.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
