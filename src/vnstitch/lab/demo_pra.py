"""``vnstitch lab demo --pra``: the live Predictive Resource Allocator on real traces.

Theory of operation: one VN (its own network namespace) gets compute and storage from
the live providers, driven by the PRA core (:mod:`vnstitch.control.pra`) through its
asyncio driver (:mod:`vnstitch.daemon.pralive`), exactly as the daemon drives it:

- *compute*: a CloudWatch CPU trace (``cloudwatch/`` under the data directory; 300 s
  rows) replayed ``speedup`` times faster (5 s per row at 60x) as the load on the VN's
  instances: each instance runs the load generator (:mod:`vnstitch.workload.burn`),
  which burns its share of the CPU the trace asks for, under its own cgroup (CPU quota,
  memory limit). The controller measures the offered load every ``interval_s`` and the
  model named by ``model`` (default the LSTM) forecasts it; fits run in a niced worker
  process pinned to one CPU (the CPU budget), refitted every ``refit_every`` intervals.
  The lead time is the compute provider's measured start-up;
- *storage*: a CloudWatch disk-write trace, scaled to ``disk_mib`` over the replay, is
  written into the VN's loop-mounted volume at each row's start; the controller
  forecasts the used MiB (ETS) and grows the volume ahead of it;
- the event loop's lag is probed every 10 ms all along; ``loop_lag_p99_ms`` is the p99
  over the windows in which a fit of ``model`` was running (and, as the control, the
  p99 outside them); the fit pool is started and imports torch first, as the daemon
  does at start (``loop_lag_p99_ms_pool_warmup``: the lag meanwhile);
- ``live_vs_offline`` replays the same CPU rows through ``allocate evaluate``'s
  predictive policy (:func:`~vnstitch.allocate.trace_eval.run_evaluation`, same model,
  newsvendor level, lead and unit) and compares unserved and slack with the live run's
  (ready instances x quota as polled every 50 ms, held between polls, over each row;
  ``live_capacity_at_row_end`` is the same read only at each row's end, which already
  holds what was ordered for the next row).

Then (``net_mean_mbps`` > 0) the bandwidth part, after the compute and storage replay
so its CPU does not load the loop measured above: a network trace replayed as a UDP
ramp through a real stitch in the namespace lab
(:mod:`vnstitch.lab.demo_pra_bandwidth`); ``bandwidth_unserved_fraction`` is its
offered-minus-delivered over offered. Everything made (namespace, cgroups, instances, loop devices,
mounts, files) is removed, then looked for again: ``left_behind`` lists what remains.
Needs root.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import vnstitch
from vnstitch.allocate.evaluate import EvalConfig
from vnstitch.allocate.metrics import tally
from vnstitch.allocate.policy import ApplicationClass, ScalingRules
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
from vnstitch.allocate.trace_eval import run_evaluation
from vnstitch.control.pra import PraConsumer, PraController, PraPolicy
from vnstitch.daemon.pralive import LSTM_MODULES, FitPool, LoopLagProbe, PraRuntime
from vnstitch.errors import VnstitchError
from vnstitch.forecast.data import load_series
from vnstitch.forecast.profiles import load_profiles
from vnstitch.lab import netns as labns
from vnstitch.lab.demo_pra_bandwidth import run_bandwidth, scaled_rates
from vnstitch.lab.netns import LabError

MIB = 2**20
ROW_SECONDS = 300.0
STEPS = ("load traces", "start providers and warm up", "replay", "bandwidth ramp",
         "offline evaluation", "tear down")
StepHook = Callable[[str, dict[str, Any]], None]
#: A real training run per refit (~150 gradient steps), not the few batches the
#: defaults give on ~1600 samples: the lag is measured while this trains.
LSTM_OPTIONS = {"horizon": 8, "max_epochs": 60, "max_batches": 150, "batch_size": 256,
                "patience": 100}


@dataclass(frozen=True, slots=True)
class PraDemoConfig:
    minutes: float = 3.0
    speedup: float = 60.0
    cpu_trace: str = "ec2_cpu_utilization_5f5533.csv"
    cpu_start: int = 2958
    disk_trace: str = "ec2_disk_write_bytes_1ef3de.csv"
    disk_start: int = 2604
    cores_at_100: float = 0.5
    quota: float = 0.03
    disk_mib: float = 96.0
    disk_unit_mib: float = 8.0
    model: str = "lstm"
    interval_s: float = 1.0
    refit_every: int = 30
    cpu_c_under: float = 20.0
    history_rows: int = 300
    net_trace: str = "ec2_network_in_257a54.csv"
    net_start: int = 2000
    #: The traffic ramp's mean rate (the stitch is requested at it); 0: no ramp.
    net_mean_mbps: float = 20.0

    def check(self) -> None:
        if not (self.minutes > 0 and self.speedup > 0 and self.quota > 0 and
                self.disk_mib > 0 and self.disk_unit_mib > 0 and self.interval_s > 0):
            raise LabError("lab demo --pra: minutes, speedup, quota, disk sizes and "
                           "interval must be > 0")


@dataclass(slots=True)
class _Run:
    cfg: PraDemoConfig
    step: float
    demand: list[float]
    writes: list[float]
    demand_file: Path
    t_start: float = math.inf
    used_mib: float = 0.0
    row: int = -1  # the trace row being replayed (-1: warm-up)
    load: tuple[float, ...] = field(default_factory=os.getloadavg)
    compute: ComputeProvider | None = None
    storage: StorageProvider | None = None
    full_steps: int = 0
    ready_at_row_end: list[float] = field(default_factory=list)
    #: (wall time, ready instances): every poll, so capacity is known all through a row
    ready_samples: list[tuple[float, float]] = field(default_factory=list)
    lead_s: list[float] = field(default_factory=list)
    #: (start, end) monotonic of the fit pool's warm-up (spawn, torch import)
    warmup: tuple[float, float] = (0.0, 0.0)


def data_dir() -> Path:
    env = os.environ.get("VNSTITCH_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[4] / "shared" / "data"


def run_pra_demo(cfg: PraDemoConfig, on_step: StepHook | None = None) -> dict[str, Any]:
    """Run the story (see the module docstring); the JSON-ready result."""
    cfg.check()
    hook = on_step or (lambda _s, _f: None)
    if os.geteuid() != 0:
        raise LabError("lab demo --pra: needs root (cgroups, namespaces, loop devices)")
    step = ROW_SECONDS / cfg.speedup
    n_rows = max(2, round(cfg.minutes * 60 / step))
    cw = data_dir() / "cloudwatch"
    cpu = load_series(cw / cfg.cpu_trace).values[:, 0] / 100.0 * cfg.cores_at_100
    disk = load_series(cw / cfg.disk_trace).values[:, 0]
    for name, start, series in (("cpu", cfg.cpu_start, cpu), ("disk", cfg.disk_start, disk)):
        if not cfg.history_rows <= start <= len(series) - n_rows:
            raise LabError(f"lab demo --pra: {name} start row {start} must leave "
                           f"{cfg.history_rows} rows of history and {n_rows} to replay "
                           f"(trace has {len(series)})")
    window = disk[cfg.disk_start:cfg.disk_start + n_rows]
    disk_mib = disk * (cfg.disk_mib / max(float(window.sum()), 1.0))
    hook("load traces", {"rows": n_rows, "row_seconds": step})
    tag = uuid.uuid4().hex[:6]
    prefix, ns = f"vnprad{tag}", f"vstprad{tag}"
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    run = _Run(cfg, step, [float(x) for x in cpu[cfg.cpu_start:cfg.cpu_start + n_rows]],
               [float(x) for x in disk_mib[cfg.disk_start:cfg.disk_start + n_rows]],
               work / "demand")
    run.demand_file.write_text("0")
    # -S skips site (its .pth files cost more CPU than the burner itself): start-up runs
    # under the instance's own small CPU quota, and start-up is the compute lead time.
    # Only when vnstitch is importable without site, i.e. from PYTHONPATH.
    src = str(Path(vnstitch.__file__).resolve().parents[1])
    no_site = ("-S",) if src in os.environ.get("PYTHONPATH", "").split(os.pathsep) else ()
    workload = Workload(
        (sys.executable, *no_site, "-m", "vnstitch.workload.burn", "--demand-file",
         str(run.demand_file), "--ready-file", str(work / "{instance}.ready")),
        ns, cpu_quota_cores=cfg.quota, memory_bytes=64 * MIB,
        readiness=("sh", "-c", f'test -e "{work}/$VNSTITCH_INSTANCE.ready"'),
        max_instances=16)
    executor: CgroupExecutor | None = None
    compute: ComputeProvider | None = None
    storage: StorageProvider | None = None
    result: dict[str, Any] = {}
    made_ns = False
    try:
        labns.create(ns)
        made_ns = True
        executor = CgroupExecutor(prefix=prefix)
        compute = ComputeProvider({"vn": workload}, executor=executor, initial_lead_time=3.0)
        storage = StorageProvider({"vn": 4096.0}, work / "volumes", unit_bytes=MIB,
                                  prefix=prefix)
        run.compute, run.storage = compute, storage
        result = asyncio.run(_story(run, [float(x) for x in cpu[cfg.cpu_start - cfg.history_rows:
                                                           cfg.cpu_start]],
                                    [float(x) for x in disk_mib[cfg.disk_start -
                                                                cfg.history_rows:
                                                                cfg.disk_start]], hook))
        if cfg.net_mean_mbps > 0:
            net = load_series(cw / cfg.net_trace).values[:, 0]
            if not 0 <= cfg.net_start <= len(net) - n_rows:
                raise LabError(f"lab demo --pra: network start row {cfg.net_start} must "
                               f"leave {n_rows} rows to replay (trace has {len(net)})")
            rates = scaled_rates([float(x) for x in net[cfg.net_start:cfg.net_start + n_rows]],
                                 cfg.net_mean_mbps)
            try:
                result["bandwidth"] = run_bandwidth(rates, step, hook)
                result["bandwidth_unserved_fraction"] = \
                    result["bandwidth"]["unserved_fraction"]
            except VnstitchError as exc:  # the compute and storage figures stand
                result["bandwidth"] = {"error": str(exc)}
        hook("offline evaluation", {})
        live = result.pop("_live_tally")
        at_end = result.pop("_live_tally_row_end")
        try:
            result["live_vs_offline"] = _offline(run, cpu, work, live, at_end)
        except VnstitchError as exc:  # the live figures stand without the comparison
            result["live_vs_offline"] = {"error": str(exc)}
    finally:
        t_clean = time.monotonic()
        errors = []
        for closer in (compute, storage):
            try:
                if closer is not None:
                    closer.close()
            except Exception as exc:  # report, keep cleaning
                errors.append(str(exc))
        if made_ns:
            labns.destroy(ns)
        left: list[str] = []
        if executor is not None:
            left += compute_leftovers(executor.layout, prefix)
        left += storage_leftovers(work / "volumes", prefix)
        left += [f"netns {ns}"] if Path(f"/run/netns/{ns}").exists() else []
        shutil.rmtree(work, ignore_errors=True)
        left += [f"dir {work}"] if work.exists() else []
        left += (result.get("bandwidth") or {}).get("left_behind", [])
        result["left_behind"] = left + errors
        result["cleanup_seconds"] = round(time.monotonic() - t_clean, 3)
        hook("tear down", {"left_behind": len(result["left_behind"])})
    return result


async def _story(run: _Run, cpu_hist: list[float], disk_hist: list[float],
                 hook: StepHook) -> dict[str, Any]:
    cfg, step = run.cfg, run.step
    compute, storage = run.compute, run.storage
    assert compute is not None and storage is not None
    ckey = ResourceKey(ResourceKind.COMPUTE, "vn")
    skey = ResourceKey(ResourceKind.STORAGE, "vn")
    router = ProvidersByKind({ResourceKind.COMPUTE: compute, ResourceKind.STORAGE: storage})
    per_row = max(1, round(step / cfg.interval_s))
    profiles = load_profiles()
    policy = PraPolicy(interval_s=cfg.interval_s, season=per_row * 12,
                       refit_every=cfg.refit_every, min_fit=per_row * 12,
                       blend_steps=per_row * 12, fit_timeout_s=60.0,
                       history=per_row * 12 * 12)  # filtering forward holds the GIL
    ctl = PraController(policy, router)
    cpu_app = ApplicationClass("web", cfg.cpu_c_under, resources_per_unit=1.0 / cfg.quota)
    ctl.add(PraConsumer("vn/cpu", ResourceKind.COMPUTE, 100, "vn", cpu_app,
                        profiles["database_access"],
                        ScalingRules(1.0, min_units=1, max_units=16, hold_steps=per_row * 2,
                                     scale_in_window=per_row * 3),
                        model=cfg.model,
                        options=LSTM_OPTIONS if cfg.model == "lstm" else {},
                        prior_level=cpu_hist[-1]))
    ctl.add(PraConsumer("vn/disk", ResourceKind.STORAGE, 100, "vn",
                        ApplicationClass("volume", 1000.0), profiles["database_access"],
                        ScalingRules(cfg.disk_unit_mib, min_units=2, allow_scale_in=False),
                        model="ets", cumulative=True))
    wall = time.time
    # History (source 1) from the rows before the replay, one sample per interval.
    t_hist = wall() - len(cpu_hist) * step
    used = 0.0
    for i, (c, d) in enumerate(zip(cpu_hist, disk_hist, strict=True)):
        used += d
        for j in range(per_row):
            t = t_hist + i * step + j * cfg.interval_s
            ctl.observe("vn/cpu", t, c)
            ctl.observe("vn/disk", t, (used - d) if j == 0 else used)
    offset = used  # the volume starts empty: usage is measured from here
    cpus = os.cpu_count() or 1
    pool = FitPool(1, cpus=(cpus - 1,) if cpus > 1 else ())  # one worker, one CPU
    warm = pool.warm(LSTM_MODULES)  # as the daemon: spawn and import torch before a fit
    probe = LoopLagProbe(time.monotonic)

    def measure(now: float) -> dict[str, float]:
        k = run.row
        out = {"vn/disk": offset + storage.used(skey, now)}
        if k >= 0:
            out["vn/cpu"] = run.demand[k]
        return out

    rt = PraRuntime(ctl, pool, measure=measure, clock=wall)
    probe.start()
    try:
        hook("start providers and warm up", {})
        t_warm = time.monotonic()
        await asyncio.gather(*map(asyncio.wrap_future, warm))
        run.warmup = (t_warm, time.monotonic())
        # Readiness is observed when the provider is polled: poll all along (from the
        # first order on), or start-up -- the compute lead time -- is overstated.
        poller = asyncio.get_running_loop().create_task(_poll(run, rt))
        await rt.tick()  # first order: instances for the prior, the first volume
        async with rt.lock:
            await asyncio.to_thread(compute.wait_ready, ckey, wall, 60.0)
        rt.start()
        run.t_start = wall()
        try:
            await _replay(run, rt, hook)
        finally:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        await rt.stop()
    finally:
        await probe.stop()
        await asyncio.to_thread(pool.close)
    return _results(run, rt, probe)


async def _poll(run: _Run, rt: PraRuntime) -> None:
    """Every 50 ms: observe readiness; each ready instance burns its share of the row."""
    compute = run.compute
    assert compute is not None
    ckey = ResourceKey(ResourceKind.COMPUTE, "vn")
    while True:
        async with rt.lock:
            ready = await asyncio.to_thread(compute.available, ckey, time.time())
        run.ready_samples.append((time.time(), ready))
        cores = run.demand[run.row] if run.row >= 0 else 0.0
        run.demand_file.write_text(f"{cores / ready if ready else 0.0:.6f}")
        await asyncio.sleep(0.05)


async def _replay(run: _Run, rt: PraRuntime, hook: StepHook) -> None:
    wall, step = time.time, run.step
    compute, storage = run.compute, run.storage
    assert compute is not None and storage is not None
    ckey = ResourceKey(ResourceKind.COMPUTE, "vn")
    skey = ResourceKey(ResourceKind.STORAGE, "vn")
    for k, mib in enumerate(run.writes):
        t_k = run.t_start + k * step
        await asyncio.sleep(max(t_k - wall(), 0.0))
        run.row = k  # the poller hands the instances this row's load
        async with rt.lock:
            await asyncio.to_thread(_write_row, run, storage, skey, mib, k)
        await asyncio.sleep(max(t_k + step - 0.05 - wall(), 0.0))
        async with rt.lock:
            run.ready_at_row_end.append(await asyncio.to_thread(compute.available, ckey,
                                                                wall()))
        run.lead_s.append(compute.lead_time(ResourceKind.COMPUTE))
        hook("replay", {"row": k + 1, "rows": len(run.demand)})


def _write_row(run: _Run, storage: StorageProvider, skey: ResourceKey, mib: float,
               k: int) -> None:
    """This row's bytes into the volume, as much as fits; a short write is a full step."""
    vol = storage.volume(skey)
    want = int(mib * MIB)
    if vol is None:
        run.full_steps += want > 0
        return
    st = os.statvfs(vol.mountpoint)
    free = st.f_bavail * st.f_frsize - MIB  # a margin for the file's own metadata
    fits = max(0, min(want, free))
    run.full_steps += fits < want
    if fits:
        with open(vol.mountpoint / f"row{k:05d}", "wb") as f:
            chunk = b"\0" * MIB
            left = fits
            while left > 0:
                left -= f.write(chunk[:min(left, MIB)])
        os.sync()
    run.used_mib += fits / MIB


def _results(run: _Run, rt: PraRuntime, probe: LoopLagProbe) -> dict[str, Any]:
    cfg, step = run.cfg, run.step
    compute, storage = run.compute, run.storage
    assert compute is not None and storage is not None
    ckey = ResourceKey(ResourceKind.COMPUTE, "vn")
    end = run.t_start + len(run.demand) * step
    outcomes = ready_before_demand([i.view() for i in compute.instances(ckey)], run.demand,
                                   cfg.quota, t_start=run.t_start, step=step, end=end)
    fits = rt.fit_windows
    quiet = [(a, b) for a, b in zip([run.warmup[1], *(b for _, b in fits)],
                                    [*(a for a, _ in fits), math.inf], strict=True)]
    live = _live_tally(run)
    cap_end = np.asarray(run.ready_at_row_end[:len(run.demand)]) * cfg.quota
    at_end = tally(np.asarray(run.demand[:cap_end.size])[:, None], cap_end[:, None],
                   ROW_SECONDS)
    return {
        "compute_ramps": len(outcomes),
        "compute_ready_before_demand_fraction":
            sum(outcomes) / len(outcomes) if outcomes else None,
        "storage_grown_before_full": run.full_steps == 0,
        "bandwidth_unserved_fraction": None,
        "loop_lag_p99_ms": probe.p99_ms(fits),
        "loop_lag_p99_ms_without_fit": probe.p99_ms(quiet),
        "loop_lag_p99_ms_pool_warmup": probe.p99_ms([run.warmup]),
        "pool_warmup_seconds": round(run.warmup[1] - run.warmup[0], 2),
        "loop_lag_samples": len(probe.samples),
        "load_average_1m": {"start": run.load[0], "end": os.getloadavg()[0]},
        "step_seconds_p99": float(np.percentile(rt.step_seconds, 99))
        if rt.step_seconds else None,
        "fits": len(fits), "fit_wall_seconds": [round(b - a, 2) for a, b in fits],
        "fit_cpu_seconds": [round(s, 2) for s in rt.fit_seconds],
        "model": cfg.model, "rows": len(run.demand), "row_seconds": step,
        "interval_s": cfg.interval_s, "quota_cores": cfg.quota,
        "startup_seconds": {"mean": float(np.mean(compute.startup_seconds)),
                            "max": float(np.max(compute.startup_seconds)),
                            "n": len(compute.startup_seconds)}
        if compute.startup_seconds else None,
        "storage_full_rows": run.full_steps, "storage_used_mib": round(run.used_mib, 2),
        "storage_volume_mib": storage.available(ResourceKey(ResourceKind.STORAGE, "vn"),
                                                time.time()),
        "storage_resize_seconds_max": max(storage.resize_seconds, default=0.0),
        "allocations": rt.allocations(),
        "decisions_kept": len(rt.decisions),
        "decision_actions": _count(d.get("action", "") for d in rt.decisions),
        "_live_tally": live,
        "_live_tally_row_end": at_end,
    }


def _live_tally(run: _Run, per_row: int = 50) -> Any:
    """Demand against the capacity that was ready *during* each row: the polled ready
    count held between polls, read on ``per_row`` evenly spaced instants of the row.
    (Capacity read only at a row's end already holds what the controller ordered for
    the next row -- its lead window reaches past the row -- and counts that as slack.)"""
    times = [t for t, _ in run.ready_samples]
    grid_d, grid_c = [], []
    for k, d in enumerate(run.demand[:len(run.ready_at_row_end)]):
        for i in range(per_row):
            t = run.t_start + (k + (i + 0.5) / per_row) * run.step
            j = bisect.bisect_right(times, t) - 1
            grid_d.append(d)
            grid_c.append(run.ready_samples[j][1] * run.cfg.quota if j >= 0 else 0.0)
    return tally(np.asarray(grid_d)[:, None], np.asarray(grid_c)[:, None],
                 run.step / per_row)


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[str(x)] = out.get(str(x), 0) + 1
    return out


def _offline(run: _Run, cpu: Any, work: Path, live: Any, at_end: Any) -> dict[str, Any]:
    """The same rows through ``allocate evaluate`` (predictive), next to the live run."""
    cfg = run.cfg
    n = len(run.demand)
    path = work / "cpu_cores.csv"
    rows = cpu[:cfg.cpu_start + n]
    t0 = np.datetime64("2014-01-01T00:00")
    with open(path, "w", encoding="utf-8") as f:
        f.write("timestamp,value\n")
        for i, v in enumerate(rows):
            f.write(f"{t0 + np.timedelta64(int(i * ROW_SECONDS), 's')},{float(v):.9g}\n")
    lead = 1 + math.ceil(max(run.lead_s, default=0.0) / run.step)
    ecfg = EvalConfig(ResourceKind.COMPUTE, season=288, lead=lead, unit=cfg.quota,
                      c_under=cfg.cpu_c_under, policies=("predictive",), test_steps=n,
                      sweep=False)
    model = cfg.model if cfg.model != "lstm" else "ets"
    doc, res = run_evaluation([str(path)], ecfg, model)
    off = res.tallies["predictive"]
    out = {"rows": n, "offline_model": model, "offline_lead_rows": lead,
           "live": {"unserved_fraction": live.unserved_fraction, "slack": live.slack},
           "live_capacity_at_row_end": {"unserved_fraction": at_end.unserved_fraction,
                                        "slack": at_end.slack},
           "offline": {"unserved_fraction": off.unserved_fraction, "slack": off.slack}}
    with contextlib.suppress(ZeroDivisionError):
        out["relative_difference"] = {
            k: (getattr(live, k) - getattr(off, k)) / getattr(off, k)
            if getattr(off, k) else None for k in ("unserved_fraction", "slack")}
    del doc
    return out
