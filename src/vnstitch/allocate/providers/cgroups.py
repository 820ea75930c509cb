"""Control groups for compute instances: find the layout, create, limit, read, remove.

Theory of operation
-------------------
Linux offers the ``cpu`` and ``memory`` controllers either on cgroup v1 hierarchies (one
mount per controller or per co-mounted group, e.g. ``/sys/fs/cgroup/cpu``) or on the
unified cgroup v2 hierarchy. A kernel can show both at once: the host this was built on
mounts ``cpu``, ``cpuacct`` and ``memory`` as v1 hierarchies and a cgroup2 mount at
``/sys/fs/cgroup/unified`` that carries only ``hugetlb``. A controller lives in exactly
one of them, so :func:`detect_layout` reads ``/proc/self/mountinfo`` (which mounts
exist, v1 mount options name their controllers) and the cgroup2 mount's
``cgroup.controllers`` and picks, per controller, where it really is: **v1 wherever a v1
hierarchy carries cpu/memory (as here), v2 only when the unified mount carries both**.
CPU time comes from ``cpuacct`` on v1 (``cpuacct.usage``, ns) and ``cpu.stat``
(``usage_usec``) on v2.

Each instance gets its own group ``<parent>/<name>`` in every hierarchy it needs. The
parent defaults to the caller's own group in that hierarchy (``/proc/self/cgroup``), so
instances stay inside whatever limits the caller already runs under (delegation, as
systemd does it) rather than escaping to the root. Limits: v1 ``cpu.cfs_period_us`` /
``cpu.cfs_quota_us`` and ``memory.limit_in_bytes``; v2 ``cpu.max`` and ``memory.max``.
Removal kills every process in the group (SIGKILL, repeated until ``cgroup.procs`` is
empty: v1 has no ``cgroup.kill``) and removes the directories. This module touches the
kernel; the parsing functions are pure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vnstitch.allocate.errors import AllocateError

CPU_PERIOD_US = 100_000


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """Where one controller lives: a mount point, the version, and the caller's group."""

    mount: Path
    version: int  # 1 or 2
    own: str  # the caller's group path in this hierarchy ("/..."), from /proc/self/cgroup

    @property
    def parent(self) -> Path:
        return self.mount / self.own.lstrip("/")


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """Per controller (``cpu``, ``cpuacct``, ``memory``) the hierarchy that carries it."""

    cpu: Hierarchy
    cpuacct: Hierarchy  # on v2 the same as cpu
    memory: Hierarchy

    def describe(self) -> str:
        return ", ".join(f"{n}: v{h.version} at {h.mount}" for n, h in
                         (("cpu", self.cpu), ("cpuacct", self.cpuacct), ("memory", self.memory)))

    def hierarchies(self) -> tuple[Hierarchy, ...]:
        """The distinct hierarchies an instance needs a group in."""
        out: list[Hierarchy] = []
        for h in (self.cpu, self.cpuacct, self.memory):
            if h not in out:
                out.append(h)
        return tuple(out)


def parse_mountinfo(text: str) -> list[tuple[Path, str, frozenset[str]]]:
    """Cgroup mounts in ``/proc/self/mountinfo`` text: (mount point, fstype, options)."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
            continue
        opts = frozenset(rfields[2].split(",")) | frozenset(fields[5].split(","))
        out.append((Path(fields[4].replace("\\040", " ")), rfields[0], opts))
    return out


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """``/proc/self/cgroup``: v1 controller -> group path, and the v2 group (``0::``)."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2 = path
        for c in controllers.split(","):
            if c:
                v1[c] = path
    return v1, v2


def choose_layout(mounts: list[tuple[Path, str, frozenset[str]]], v2_controllers: set[str],
                  own_v1: Mapping[str, str], own_v2: str | None) -> CgroupLayout:
    """The pure decision behind :func:`detect_layout` (see the module docstring)."""
    v1: dict[str, Hierarchy] = {}
    v2_mount: Path | None = None
    for mount, fstype, opts in mounts:
        if fstype == "cgroup2":
            v2_mount = v2_mount or mount
            continue
        for c in ("cpu", "cpuacct", "memory"):
            if c in opts and c not in v1:
                v1[c] = Hierarchy(mount, 1, own_v1.get(c, "/"))
    if all(c in v1 for c in ("cpu", "cpuacct", "memory")):
        return CgroupLayout(v1["cpu"], v1["cpuacct"], v1["memory"])
    if v2_mount is not None and {"cpu", "memory"} <= v2_controllers:
        h = Hierarchy(v2_mount, 2, own_v2 or "/")
        return CgroupLayout(h, h, h)
    have = sorted(v1) + [f"{c} (v2)" for c in sorted(v2_controllers)]
    raise AllocateError("cgroups: need the cpu, cpuacct and memory controllers on v1 "
                        "hierarchies or cpu and memory on the cgroup2 mount; found "
                        f"{', '.join(have) or 'none'}")


def detect_layout(proc: Path = Path("/proc/self")) -> CgroupLayout:
    """Read this host's cgroup mounts and pick a layout (see the module docstring)."""
    mounts = parse_mountinfo((proc / "mountinfo").read_text())
    v2_controllers: set[str] = set()
    for mount, fstype, _ in mounts:
        if fstype == "cgroup2":
            with contextlib.suppress(OSError):
                v2_controllers = set((mount / "cgroup.controllers").read_text().split())
            break
    own_v1, own_v2 = parse_proc_cgroup((proc / "cgroup").read_text())
    return choose_layout(mounts, v2_controllers, own_v1, own_v2)


@dataclass(frozen=True, slots=True)
class Limits:
    cpu_quota_cores: float  # CPU time per wall second (0.5 = half a core)
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_seconds: float  # cumulative CPU time of every process that ran in the group
    memory_bytes: int  # current memory charged to the group


class Cgroup:
    """One instance's group in every hierarchy of a layout."""

    def __init__(self, layout: CgroupLayout, name: str) -> None:
        if not name or "/" in name or name.startswith("."):
            raise AllocateError(f"cgroups: bad group name {name!r}")
        self.layout = layout
        self.name = name

    def path(self, h: Hierarchy) -> Path:
        return h.parent / self.name

    def paths(self) -> tuple[Path, ...]:
        return tuple(self.path(h) for h in self.layout.hierarchies())

    def exists(self) -> bool:
        return any(p.exists() for p in self.paths())

    def create(self, limits: Limits) -> None:
        """Make the groups and set the limits; on any error remove what was made."""
        try:
            for h in self.layout.hierarchies():
                if h.version == 2:
                    _enable_v2_controllers(h.parent)
                self.path(h).mkdir()
            self._set_limits(limits)
        except OSError as exc:
            self.remove()
            raise AllocateError(f"cgroups: cannot create {self.name}: {exc}") from exc

    def _set_limits(self, limits: Limits) -> None:
        quota = max(1000, round(limits.cpu_quota_cores * CPU_PERIOD_US))
        cpu, mem = self.path(self.layout.cpu), self.path(self.layout.memory)
        if self.layout.cpu.version == 1:
            (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (cpu / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
        limit_file = "memory.limit_in_bytes" if self.layout.memory.version == 1 else "memory.max"
        (mem / limit_file).write_text(str(int(limits.memory_bytes)))

    def procs_files(self) -> tuple[Path, ...]:
        return tuple(p / "cgroup.procs" for p in self.paths())

    def limits(self) -> Limits:
        """The limits as the kernel holds them (read back, not remembered)."""
        cpu, mem = self.path(self.layout.cpu), self.path(self.layout.memory)
        if self.layout.cpu.version == 1:
            quota = int((cpu / "cpu.cfs_quota_us").read_text())
            period = int((cpu / "cpu.cfs_period_us").read_text())
        else:
            q, p = (cpu / "cpu.max").read_text().split()
            quota, period = (-1 if q == "max" else int(q)), int(p)
        cores = float("inf") if quota < 0 else quota / period
        limit_file = "memory.limit_in_bytes" if self.layout.memory.version == 1 else "memory.max"
        raw = (mem / limit_file).read_text().strip()
        return Limits(cores, 2**63 - 1 if raw == "max" else int(raw))

    def usage(self) -> Usage:
        acct, mem = self.path(self.layout.cpuacct), self.path(self.layout.memory)
        if self.layout.cpuacct.version == 1:
            cpu_s = int((acct / "cpuacct.usage").read_text()) / 1e9
            mem_b = int((mem / "memory.usage_in_bytes").read_text())
        else:
            stat = dict(line.split() for line in (acct / "cpu.stat").read_text().splitlines())
            cpu_s = int(stat["usage_usec"]) / 1e6
            mem_b = int((mem / "memory.current").read_text())
        return Usage(cpu_s, mem_b)

    def pids(self) -> set[int]:
        out: set[int] = set()
        for f in self.procs_files():
            try:
                out.update(int(x) for x in f.read_text().split())
            except OSError:
                continue
        return out

    def remove(self, timeout: float = 5.0, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> None:
        """Kill every process in the group and remove its directories (idempotent)."""
        deadline = clock() + timeout
        while True:
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if clock() > deadline:
                raise AllocateError(f"cgroups: {self.name}: processes {sorted(pids)} "
                                    f"survive SIGKILL after {timeout:g} s")
            sleep(0.01)
        errors = []
        for p in self.paths():
            for _ in range(200):  # a killed task leaves the group a moment after it died
                try:
                    p.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if clock() > deadline:
                        errors.append(f"{p}: {exc}")
                        break
                    sleep(0.01)
        if errors:
            raise AllocateError(f"cgroups: cannot remove {self.name}: {'; '.join(errors)}")


def _enable_v2_controllers(parent: Path) -> None:
    control = parent / "cgroup.subtree_control"
    enabled = set(control.read_text().split())
    missing = {"cpu", "memory"} - enabled
    if missing:
        control.write_text(" ".join(f"+{c}" for c in sorted(missing)))
