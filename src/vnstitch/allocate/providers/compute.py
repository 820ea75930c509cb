"""``compute``: a VN's workload as instances in its namespace, each in its own cgroup.

Theory of operation
-------------------
A :class:`Workload` says, per location (a VN's segment), what one instance is: a command
(e.g. a service binary), the network namespace it runs in, its CPU quota and memory limit
and optionally a readiness command. The amount at ``ResourceKey(COMPUTE, location)`` is
the number of instances. Requests are declarative; the provider keeps the target per
location and reconciles toward it on every call:

* :func:`plan_scale` (pure) compares the live instances with the target and returns a
  :class:`ScalePlan`: how many to start, which to stop (booting ones first, then the
  newest ready ones -- the same order as :mod:`~vnstitch.allocate.providers.sim`), and
  which must wait because they have run for less than ``hold_seconds`` since they became
  ready (scale-in waits for the hold time; the plan says until when, and a later call
  performs the stop).
* :class:`CgroupExecutor` (the thin, kernel-touching part) starts an instance as
  ``sh`` -> its own groups (:mod:`~vnstitch.allocate.providers.cgroups`: the cgroup layout
  this kernel offers, v1 here, v2 where cpu/memory are unified) -> ``ip netns exec NS`` ->
  the command, all one PID, so the workload and every child it forks are limited and
  accounted from their first instruction. It probes an instance (running = the process
  has exec'd the configured command, per ``/proc/PID/cmdline``; ready = running and the
  readiness command, run inside the namespace, exits 0; once ready, only whether the
  process is alive is checked -- no subprocess per call), stops it (kill the process
  group and every task in the groups, remove the groups) and reads usage back from the
  groups (CPU time, memory).

Start-up is measured: the executor's clock (injected; ``time.monotonic`` by default) from
launch until the probe first sees the instance ready. ``lead_time`` reports the largest
of the recent measurements (``initial_lead_time`` before the first), so a caller that
plans ``lead_time`` ahead has capacity running when the forecast demand arrives. The
measurement's resolution is how often the caller calls ``available``/``committed``
(those calls probe). Caller time (``now``) is assumed to advance like the executor's
clock (the daemon passes loop time): an instance's ready time is its launch ``now`` plus
its measured start-up. An instance that exits or misses ``start_timeout`` is lost
capacity (like a crashed VM): it is cleaned up and ``committed`` drops, so the next
request for the same target starts a replacement (``UNCHANGED`` only when the live count
already equals the target). :meth:`ComputeProvider.close` stops everything.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.providers.base import (
    RequestStatus,
    ResourceKey,
    ResourceKind,
    ScaleResult,
)
from vnstitch.allocate.providers.cgroups import Cgroup, CgroupLayout, Limits, Usage, detect_layout

#: ``sh`` writes its own PID into each group's ``cgroup.procs`` (arguments before ``--``),
#: then execs the rest: the workload starts inside its groups, under the same PID.
_ENTER = ('p=$$; while [ "$1" != -- ]; do echo "$p" > "$1" || exit 111; shift; done; '
          'shift; exec "$@"')


@dataclass(frozen=True, slots=True)
class Workload:
    """What one instance at a location is (see the module docstring)."""

    command: tuple[str, ...]
    netns: str | None
    cpu_quota_cores: float = 0.5
    memory_bytes: int = 256 * 2**20
    readiness: tuple[str, ...] | None = None  # argv; env VNSTITCH_INSTANCE, VNSTITCH_PID
    start_timeout: float = 30.0
    max_instances: int = 8

    def __post_init__(self) -> None:
        if not self.command:
            raise AllocateError("compute workload: empty command")
        if not 0.001 <= self.cpu_quota_cores <= 1024:
            raise AllocateError(f"compute workload: cpu quota {self.cpu_quota_cores} cores "
                                "outside 0.001..1024")
        if self.memory_bytes < 4 * 2**20:
            raise AllocateError(f"compute workload: memory limit {self.memory_bytes} B is "
                                "below 4 MiB")
        if self.max_instances < 0 or self.start_timeout <= 0:
            raise AllocateError("compute workload: max_instances must be >= 0 and "
                                "start_timeout > 0")


class Phase(enum.Enum):
    STARTING = "starting"  # launched, not yet seen ready
    READY = "ready"  # running (and the readiness command passed)
    STOPPED = "stopped"  # stopped on request
    LOST = "lost"  # exited on its own, failed to start or missed start_timeout


_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.STARTING: frozenset({Phase.READY, Phase.STOPPED, Phase.LOST}),
    Phase.READY: frozenset({Phase.STOPPED, Phase.LOST}),
    Phase.STOPPED: frozenset(),
    Phase.LOST: frozenset(),
}


@dataclass(frozen=True, slots=True)
class InstanceView:
    """What the planner needs to know about an instance."""

    id: str
    phase: Phase
    started_at: float  # caller time of the launch
    ready_at: float | None  # caller time it became ready (launch + measured start-up)
    ended_at: float | None = None  # caller time it was stopped or found lost


@dataclass(frozen=True, slots=True)
class ScalePlan:
    start: int
    stop: tuple[str, ...]
    held: tuple[str, ...]  # would be stopped, but still inside their hold time
    hold_until: float | None  # when the first held instance may be stopped


def plan_scale(instances: Sequence[InstanceView], target: int, now: float,
               hold_seconds: float) -> ScalePlan:
    """Start/stop decisions toward ``target`` live instances (pure; module docstring)."""
    live = [i for i in instances if i.phase in (Phase.STARTING, Phase.READY)]
    if target >= len(live):
        return ScalePlan(target - len(live), (), (), None)
    excess = len(live) - target
    booting = sorted((i for i in live if i.phase is Phase.STARTING),
                     key=lambda i: (i.started_at, i.id), reverse=True)
    ready = sorted((i for i in live if i.phase is Phase.READY),
                   key=lambda i: (i.ready_at or 0.0, i.id), reverse=True)
    stop: list[str] = []
    held: list[InstanceView] = []
    for inst in booting + ready:
        if len(stop) == excess:
            break
        if inst.ready_at is not None and now < inst.ready_at + hold_seconds:
            held.append(inst)
            continue
        stop.append(inst.id)
    held = held[:excess - len(stop)]
    until = min((i.ready_at or 0.0) + hold_seconds for i in held) if held else None
    return ScalePlan(0, tuple(stop), tuple(i.id for i in held), until)


def ready_before_demand(instances: Sequence[InstanceView], demand: Sequence[float],
                        per_instance: float, *, t_start: float, step: float,
                        end: float) -> list[bool]:
    """Per scale-out after ``t_start`` (instances in launch order): was the new instance
    ready before the demand first exceeded what the instances live before it could serve?

    ``demand[j]`` holds over ``[t_start + j*step, t_start + (j+1)*step)``. The *old
    capacity* is the instances launched earlier (same-batch siblings included), not
    ended by this launch and ready at some point; it has been in place since the last
    change to that set (an old instance becoming ready or another ending; ``t_start`` at
    the latest). The demand's first excess over it is searched from then -- so a launch
    that reacts to an excess already seen is late -- until the new instance ended (or
    ``end``); a ramp the demand never needed counts as ready. Pure: measurement only.
    """
    out = []
    for i, inst in enumerate(instances):
        launch = inst.started_at
        if launch < t_start:
            continue
        earlier = instances[:i]
        old = [o for o in earlier if o.started_at <= launch and o.ready_at is not None and
               (o.ended_at is None or o.ended_at > launch)]
        changes = [o.ready_at for o in old if o.ready_at is not None and o.ready_at <= launch]
        changes += [o.ended_at for o in earlier if o.ended_at is not None and
                    o.ended_at <= launch]
        since = max([t_start, *changes])
        stop = inst.ended_at if inst.ended_at is not None else end
        capacity = len(old) * per_instance
        exceeded = next((max(t_start + j * step, since) for j in range(len(demand))
                         if t_start + (j + 1) * step > since and t_start + j * step < stop
                         and demand[j] > capacity + 1e-9), None)
        out.append(exceeded is None or
                   (inst.ready_at is not None and inst.ready_at <= exceeded))
    return out


@dataclass(slots=True)
class _Process:
    """A launched instance as the executor knows it."""

    cgroup: Cgroup
    popen: subprocess.Popen[bytes]
    launched: float  # executor clock


class CgroupExecutor:
    """Launch, probe, stop and measure instances on this kernel (module docstring)."""

    def __init__(self, layout: CgroupLayout | None = None, *, prefix: str = "vnstitch",
                 clock: Callable[[], float] = time.monotonic, probe_timeout: float = 2.0) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise AllocateError(f"compute: cgroup prefix {prefix!r} must be [A-Za-z0-9_.-]+")
        self.layout = layout if layout is not None else detect_layout()
        self.prefix = prefix
        self.clock = clock
        self.probe_timeout = probe_timeout
        ip = shutil.which("ip")
        if ip is None:
            raise AllocateError("compute: the ip command (iproute2) is not installed")
        self.ip = ip

    def group_name(self, instance_id: str) -> str:
        return f"{self.prefix}-{re.sub(r'[^A-Za-z0-9_.-]', '_', instance_id)}"

    def _in_netns(self, netns: str | None, argv: Sequence[str]) -> list[str]:
        return [self.ip, "netns", "exec", netns, *argv] if netns else list(argv)

    def launch(self, instance_id: str, workload: Workload) -> _Process:
        group = Cgroup(self.layout, self.group_name(instance_id))
        group.create(Limits(workload.cpu_quota_cores, workload.memory_bytes))
        argv = ["sh", "-c", _ENTER, "sh", *map(str, group.procs_files()), "--",
                *self._in_netns(workload.netns, workload.command)]
        env = dict(os.environ, VNSTITCH_INSTANCE=instance_id)
        try:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        except OSError as exc:
            group.remove()
            raise AllocateError(f"compute: cannot launch {instance_id}: {exc}") from exc
        return _Process(group, popen, self.clock())

    def probe(self, proc: _Process, workload: Workload, instance_id: str) -> Phase:
        """STARTING, READY or LOST (exited), as the kernel shows it now."""
        if proc.popen.poll() is not None:
            return Phase.LOST
        try:
            with open(f"/proc/{proc.popen.pid}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")[:-1]
        except OSError:
            return Phase.LOST
        if [c.decode(errors="replace") for c in cmdline] != list(workload.command):
            return Phase.STARTING  # still in sh / ip netns exec
        if workload.readiness is None:
            return Phase.READY
        env = dict(os.environ, VNSTITCH_INSTANCE=instance_id,
                   VNSTITCH_PID=str(proc.popen.pid))
        try:
            rc = subprocess.run(self._in_netns(workload.netns, workload.readiness),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env,
                                timeout=self.probe_timeout, check=False).returncode
        except (OSError, subprocess.TimeoutExpired):
            return Phase.STARTING
        return Phase.READY if rc == 0 else Phase.STARTING

    def alive(self, proc: _Process) -> bool:
        """Whether the instance's process still runs (no subprocess: cheap)."""
        return proc.popen.poll() is None

    def stop(self, proc: _Process) -> None:
        """Kill the instance and everything in its groups; remove the groups."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        try:
            proc.cgroup.remove()
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)

    def usage(self, proc: _Process) -> Usage:
        return proc.cgroup.usage()


@dataclass(slots=True)
class Instance:
    id: str
    location: str
    started_at: float
    proc: _Process
    phase: Phase = Phase.STARTING
    ready_at: float | None = None
    startup_seconds: float | None = None
    ended_at: float | None = None  # caller time it was stopped or found lost

    def move(self, to: Phase) -> None:
        if to not in _TRANSITIONS[self.phase]:
            raise AllocateError(f"compute: instance {self.id}: no transition "
                                f"{self.phase.value} -> {to.value}")
        self.phase = to

    def view(self) -> InstanceView:
        return InstanceView(self.id, self.phase, self.started_at, self.ready_at,
                            self.ended_at)


@dataclass(slots=True)
class _Location:
    workload: Workload
    target: int = 0
    instances: list[Instance] = field(default_factory=list)
    serial: int = 0

    def live(self) -> list[Instance]:
        return [i for i in self.instances if i.phase in (Phase.STARTING, Phase.READY)]


class ComputeProvider:
    """Instances of each location's workload; see the module docstring."""

    name = "compute"

    def __init__(self, workloads: Mapping[str, Workload], *,
                 executor: CgroupExecutor | None = None, hold_seconds: float = 0.0,
                 initial_lead_time: float = 1.0, history: int = 20) -> None:
        if hold_seconds < 0 or initial_lead_time < 0:
            raise AllocateError("compute: hold_seconds and initial_lead_time must be >= 0")
        self.executor = executor if executor is not None else CgroupExecutor()
        self.hold_seconds = hold_seconds
        self.initial_lead_time = initial_lead_time
        self._history = history
        self._locations = {loc: _Location(w) for loc, w in workloads.items()}
        self.startup_seconds: list[float] = []  # every measured start-up, in order
        self.log: list[ScaleResult] = []

    # -- the provider interface ------------------------------------------------------
    def supports(self, kind: ResourceKind) -> bool:
        return kind is ResourceKind.COMPUTE

    def lead_time(self, kind: ResourceKind) -> float:
        if kind is not ResourceKind.COMPUTE:
            return 0.0
        recent = self.startup_seconds[-self._history:]
        return max(recent) if recent else self.initial_lead_time

    def limit(self, key: ResourceKey) -> float:
        loc = self._locations.get(key.location)
        return float(loc.workload.max_instances) if key.kind is ResourceKind.COMPUTE and loc \
            else 0.0

    def request(self, key: ResourceKey, target: float, now: float) -> ScaleResult:
        if not target >= 0:
            raise AllocateError(f"compute provider: target for {key} must be >= 0, got {target}")
        if key.kind is not ResourceKind.COMPUTE:
            return self._record(key, target, RequestStatus.REFUSED, now, ready_at=None,
                                reason="compute provider manages compute instances only")
        loc = self._locations.get(key.location)
        if loc is None:
            return self._record(key, target, RequestStatus.REFUSED, now, ready_at=None,
                                reason=f"no workload configured for {key.location}")
        if target != int(target):
            return self._record(key, target, RequestStatus.REFUSED, now, ready_at=None,
                                reason=f"compute targets are whole instances, got {target:g}")
        if target > loc.workload.max_instances:
            return self._record(key, target, RequestStatus.REFUSED, now, ready_at=None,
                                reason=f"quota {loc.workload.max_instances} instances exceeded")
        self._observe(loc, now)
        n = int(target)
        live = loc.live()
        if n == len(live):
            loc.target = n
            ready = max((i.started_at + self.lead_time(key.kind) for i in live
                         if i.phase is Phase.STARTING), default=now)
            return self._record(key, target, RequestStatus.UNCHANGED, now, ready_at=ready,
                                reason=f"{n} instance(s) already live")
        plan = plan_scale([i.view() for i in loc.instances], n, now, self.hold_seconds)
        started: list[Instance] = []
        try:
            for _ in range(plan.start):
                started.append(self._launch(key.location, loc, now))
        except AllocateError as exc:
            for inst in started:  # nothing done: undo this request's launches
                self._end(loc, inst, Phase.STOPPED, now)
            return self._record(key, target, RequestStatus.FAILED, now, ready_at=None,
                                reason=str(exc))
        loc.target = n
        stopped = self._stop(loc, plan.stop, now)
        parts = []
        if started:
            parts.append(f"started {', '.join(i.id for i in started)} (lead "
                         f"{self.lead_time(key.kind):.3g} s)")
        if stopped:
            parts.append(f"stopped {', '.join(stopped)}")
        if plan.held:
            parts.append(f"{len(plan.held)} held until {plan.hold_until:g} (hold time)")
        ready_at = now + self.lead_time(key.kind) if started else now
        return self._record(key, target, RequestStatus.ACCEPTED, now, ready_at=ready_at,
                            reason="; ".join(parts))

    def available(self, key: ResourceKey, now: float) -> float:
        loc = self._checked(key, now)
        return float(sum(i.phase is Phase.READY for i in loc.instances)) if loc else 0.0

    def committed(self, key: ResourceKey, now: float) -> float:
        loc = self._checked(key, now)
        return float(len(loc.live())) if loc else 0.0

    # -- beyond the interface ----------------------------------------------------------
    def instances(self, key: ResourceKey) -> list[Instance]:
        loc = self._locations.get(key.location)
        return list(loc.instances) if loc and key.kind is ResourceKind.COMPUTE else []

    def usage(self, key: ResourceKey, now: float) -> Usage:
        """CPU time and memory of the live instances, read from their cgroups."""
        loc = self._checked(key, now)
        cpu, mem = 0.0, 0
        for inst in loc.live() if loc else []:
            try:
                u = self.executor.usage(inst.proc)
            except OSError:
                continue  # removed between the probe and this read
            cpu += u.cpu_seconds
            mem += u.memory_bytes
        return Usage(cpu, mem)

    def wait_ready(self, key: ResourceKey, now: Callable[[], float], timeout: float = 30.0,
                   interval: float = 0.02) -> bool:
        """Block (tests, benchmarks: never on an event loop) until every live instance at
        ``key`` is ready; ``now()`` gives caller time. False on timeout."""
        deadline = self.executor.clock() + timeout
        while self.executor.clock() < deadline:
            if self.available(key, now()) >= self.committed(key, now()):
                return True
            time.sleep(interval)
        return False

    def close(self, now: float | None = None) -> None:
        """Stop every instance of every location (idempotent)."""
        errors = []
        for loc in self._locations.values():
            loc.target = 0
            for inst in loc.live():
                try:
                    self._end(loc, inst, Phase.STOPPED, now)
                except AllocateError as exc:
                    errors.append(str(exc))
        if errors:
            raise AllocateError("; ".join(errors))

    # -- internals -------------------------------------------------------------------
    def _checked(self, key: ResourceKey, now: float) -> _Location | None:
        loc = self._locations.get(key.location) if key.kind is ResourceKind.COMPUTE else None
        if loc is not None:
            self._observe(loc, now)
        return loc

    def _launch(self, location: str, loc: _Location, now: float) -> Instance:
        loc.serial += 1
        iid = f"{location}-{loc.serial}"
        proc = self.executor.launch(iid, loc.workload)
        inst = Instance(iid, location, now, proc)
        loc.instances.append(inst)
        return inst

    def _observe(self, loc: _Location, now: float) -> None:
        """Probe booting instances (fully) and ready ones (alive only: the readiness
        command gates start-up, it is not a health check), then perform scale-ins whose
        hold ended."""
        for inst in loc.live():
            if inst.phase is Phase.READY:
                alive = self.executor.alive(inst.proc)
                phase = Phase.READY if alive else Phase.LOST
            else:
                phase = self.executor.probe(inst.proc, loc.workload, inst.id)
            if phase is Phase.LOST:
                self._end(loc, inst, Phase.LOST, now)
            elif phase is Phase.READY and inst.phase is Phase.STARTING:
                took = self.executor.clock() - inst.proc.launched
                inst.startup_seconds = took
                inst.ready_at = inst.started_at + took
                inst.move(Phase.READY)
                self.startup_seconds.append(took)
            elif inst.phase is Phase.STARTING and \
                    self.executor.clock() - inst.proc.launched > loc.workload.start_timeout:
                self._end(loc, inst, Phase.LOST, now)
        if len(loc.live()) > loc.target:
            plan = plan_scale([i.view() for i in loc.instances], loc.target, now,
                              self.hold_seconds)
            self._stop(loc, plan.stop, now)
        # Forget finished instances beyond a short tail (their groups are already gone).
        done = [i for i in loc.instances if i.phase in (Phase.STOPPED, Phase.LOST)]
        if len(done) > 64:
            drop = {id(i) for i in done[:-64]}
            loc.instances = [i for i in loc.instances if id(i) not in drop]

    def _stop(self, loc: _Location, ids: Sequence[str], now: float) -> list[str]:
        wanted = set(ids)
        out = []
        for inst in loc.live():
            if inst.id in wanted:
                self._end(loc, inst, Phase.STOPPED, now)
                out.append(inst.id)
        return out

    def _end(self, loc: _Location, inst: Instance, phase: Phase,
             now: float | None = None) -> None:
        inst.move(phase)
        inst.ended_at = now
        self.executor.stop(inst.proc)

    def _record(self, key: ResourceKey, target: float, status: RequestStatus, now: float,
                *, ready_at: float | None, reason: str) -> ScaleResult:
        result = ScaleResult(key, target, status, now, ready_at, reason)
        self.log.append(result)
        return result
