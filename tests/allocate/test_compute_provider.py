"""The compute provider: the pure planner and layout choice, then root tests on the kernel.

Root tests read limits, membership and namespaces back from the kernel and end with a
check that exactly their own cgroups and processes are gone (unique prefix per test).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.rootutil import fresh_netns, require_root, run_id
from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.providers import (
    ComputeProvider,
    RequestStatus,
    ResourceKey,
    ResourceKind,
    Workload,
)
from vnstitch.allocate.providers.cgroups import (
    Hierarchy,
    choose_layout,
    parse_mountinfo,
    parse_proc_cgroup,
)
from vnstitch.allocate.providers.compute import (
    CgroupExecutor,
    Instance,
    InstanceView,
    Phase,
    plan_scale,
    ready_before_demand,
)
from vnstitch.allocate.providers.leftovers import compute_leftovers

MIB = 2**20
KEY = ResourceKey(ResourceKind.COMPUTE, "vn100")

# This host's layout (v1 cpu/cpuacct/memory plus a cgroup2 mount with hugetlb only) and
# a v2-only host's, as /proc/self/mountinfo shows them.
V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


# -- pure --------------------------------------------------------------------------------

def test_layout_prefers_the_v1_hierarchies_that_carry_the_controllers() -> None:
    own, _ = parse_proc_cgroup("4:memory:/job/7\n2:cpuacct:/\n1:cpu:/\n0::/\n")
    layout = choose_layout(parse_mountinfo(V1_MOUNTINFO), {"hugetlb"}, own, "/")
    assert layout.cpu == Hierarchy(Path("/sys/fs/cgroup/cpu"), 1, "/")
    assert layout.memory.parent == Path("/sys/fs/cgroup/memory/job/7")  # nested in ours
    assert len(layout.hierarchies()) == 3


def test_layout_uses_cgroup2_when_it_carries_cpu_and_memory() -> None:
    layout = choose_layout(parse_mountinfo(V2_MOUNTINFO), {"cpu", "memory", "io"}, {},
                           "/user.slice")
    assert layout.cpu.version == 2 and layout.hierarchies() == (layout.cpu,)
    assert layout.cpu.parent == Path("/sys/fs/cgroup/user.slice")


def test_layout_without_the_controllers_is_refused_with_what_was_found() -> None:
    with pytest.raises(AllocateError, match="hugetlb"):
        choose_layout(parse_mountinfo(V2_MOUNTINFO), {"hugetlb"}, {}, "/")


def view(iid: str, phase: Phase, started: float, ready: float | None = None) -> InstanceView:
    return InstanceView(iid, phase, started, ready)


def test_plan_starts_the_difference() -> None:
    plan = plan_scale([view("a", Phase.READY, 0, 1), view("x", Phase.LOST, 0)], 3, 10, 0)
    assert plan.start == 2 and plan.stop == ()


def test_plan_stops_booting_first_then_newest_ready() -> None:
    insts = [view("a", Phase.READY, 0, 1), view("b", Phase.READY, 2, 3),
             view("c", Phase.STARTING, 5), view("d", Phase.STARTING, 4)]
    assert plan_scale(insts, 1, 10, 0).stop == ("c", "d", "b")


def test_plan_holds_scale_in_until_the_hold_time_passed() -> None:
    insts = [view("a", Phase.READY, 0, 1), view("b", Phase.READY, 0, 8)]
    held = plan_scale(insts, 0, 10, hold_seconds=5)
    assert held.stop == ("a",) and held.held == ("b",) and held.hold_until == 13
    assert plan_scale(insts, 0, 13, hold_seconds=5).stop == ("b", "a")
    assert plan_scale(insts, 2, 10, hold_seconds=5).held == ()  # nothing to stop


def test_instance_phases_refuse_invalid_transitions() -> None:
    inst = Instance("i", "vn", 0.0, proc=None)  # type: ignore[arg-type]
    inst.move(Phase.READY)
    inst.move(Phase.STOPPED)
    with pytest.raises(AllocateError, match="stopped -> ready"):
        inst.move(Phase.READY)


def test_workload_is_validated() -> None:
    with pytest.raises(AllocateError, match="empty command"):
        Workload((), None)
    with pytest.raises(AllocateError, match="memory"):
        Workload(("true",), None, memory_bytes=1024)


# -- root: against the kernel -----------------------------------------------------------

@dataclass
class Setup:
    provider: ComputeProvider
    executor: CgroupExecutor
    netns: str
    prefix: str
    t0: float

    def now(self) -> float:
        return time.monotonic() - self.t0


@pytest.fixture
def setup() -> Iterator[Setup]:
    """A provider for one VN in a fresh namespace; afterwards none of its groups or
    processes may remain, whatever the test did."""
    require_root()
    prefix = f"vstc{run_id()}"
    with fresh_netns("cp") as ns:
        executor = CgroupExecutor(prefix=prefix)
        wl = Workload(("sleep", "600"), ns, cpu_quota_cores=0.2, memory_bytes=24 * MIB)
        s = Setup(ComputeProvider({"vn100": wl}, executor=executor), executor, ns, prefix,
                  time.monotonic())
        try:
            yield s
        finally:
            s.provider.close()
        assert compute_leftovers(executor.layout, prefix) == []


def with_workload(s: Setup, hold: float = 0.0, **changes: object) -> ComputeProvider:
    """Swap the fixture's provider for one with a changed workload (the fixture still
    closes it and checks for leftovers)."""
    s.provider.close()
    wl = replace(s.provider._locations["vn100"].workload, **changes)  # type: ignore[arg-type]
    s.provider = ComputeProvider({"vn100": wl}, executor=s.executor, hold_seconds=hold)
    return s.provider


@pytest.mark.root
def test_limits_membership_and_namespace_read_back_from_the_kernel(setup: Setup) -> None:
    p = setup.provider
    assert p.request(KEY, 2, setup.now()).status is RequestStatus.ACCEPTED
    assert p.wait_ready(KEY, setup.now)
    netns_inode = os.stat(f"/run/netns/{setup.netns}").st_ino
    for inst in p.instances(KEY):
        group = inst.proc.cgroup
        limits = group.limits()
        assert limits.cpu_quota_cores == pytest.approx(0.2)
        assert limits.memory_bytes == 24 * MIB
        pid = inst.proc.popen.pid
        assert group.pids() == {pid}
        assert Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00600\x00"
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == netns_inode
        assert f"/{group.name}" in Path(f"/proc/{pid}/cgroup").read_text()
    assert p.usage(KEY, setup.now()).memory_bytes > 0
    assert len(p.startup_seconds) == 2 and p.lead_time(ResourceKind.COMPUTE) == max(
        p.startup_seconds)


@pytest.mark.root
def test_usage_is_read_back_from_the_cgroups(setup: Setup) -> None:
    p = with_workload(setup, command=("sh", "-c", "while :; do :; done"))
    p.request(KEY, 1, setup.now())
    assert p.wait_ready(KEY, setup.now)
    before = p.usage(KEY, setup.now()).cpu_seconds
    time.sleep(0.3)
    assert p.usage(KEY, setup.now()).cpu_seconds > before  # the busy loop is accounted


@pytest.mark.root
def test_readiness_command_gates_ready_and_is_measured(setup: Setup, tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    p = with_workload(setup, readiness=("test", "-e", str(flag)))
    p.request(KEY, 1, setup.now())
    time.sleep(0.2)
    assert p.available(KEY, setup.now()) == 0 and p.committed(KEY, setup.now()) == 1
    flag.touch()
    assert p.wait_ready(KEY, setup.now)
    assert p.startup_seconds[-1] >= 0.2  # start-up lasted until the readiness passed
    flag.unlink()  # readiness gates start-up only: a ready instance is not re-probed
    assert p.available(KEY, setup.now()) == 1


@pytest.mark.root
def test_an_exited_instance_is_lost_capacity_and_is_replaced_on_request(
        setup: Setup) -> None:
    p = with_workload(setup, command=("sleep", "0.2"))
    p.request(KEY, 1, setup.now())
    time.sleep(0.5)
    assert p.committed(KEY, setup.now()) == 0
    assert [i.phase for i in p.instances(KEY)] == [Phase.LOST]
    assert p.request(KEY, 1, setup.now()).status is RequestStatus.ACCEPTED  # replacement


@pytest.mark.root
def test_scale_in_waits_for_the_hold_time(setup: Setup) -> None:
    p = with_workload(setup, hold=5.0)
    p.request(KEY, 2, 0.0)
    assert p.wait_ready(KEY, lambda: 0.0)
    r = p.request(KEY, 1, 1.0)
    assert r.status is RequestStatus.ACCEPTED and "held until" in r.reason
    assert p.committed(KEY, 2.0) == 2  # still inside the hold time
    assert p.committed(KEY, 6.0) == 1  # the held stop happened at a later call


@pytest.mark.root
def test_a_failed_launch_leaves_nothing_behind(setup: Setup) -> None:
    broken = replace(setup.executor.layout,
                     memory=Hierarchy(Path("/nonexistent-cgroup-mount"), 1, "/"))
    setup.executor.layout = broken
    r = setup.provider.request(KEY, 2, setup.now())
    assert r.status is RequestStatus.FAILED and "cannot create" in r.reason
    assert setup.provider.committed(KEY, setup.now()) == 0
    real = CgroupExecutor(prefix=setup.prefix).layout
    assert compute_leftovers(real, setup.prefix) == []  # cpu/cpuacct groups removed too


@pytest.mark.root
def test_a_command_that_cannot_run_is_lost_not_hung(setup: Setup) -> None:
    p = with_workload(setup, command=("/nonexistent/vnstitch-service",))
    p.request(KEY, 1, setup.now())
    time.sleep(0.3)
    assert p.committed(KEY, setup.now()) == 0
    (inst,) = p.instances(KEY)
    assert inst.phase is Phase.LOST and inst.proc.popen.returncode not in (None, 0)  # reaped


@pytest.mark.root
def test_the_leftover_check_sees_a_group_and_its_process() -> None:
    """Control for the fixture's final check: it does report what it should."""
    require_root()
    prefix = f"vstc{run_id()}"
    executor = CgroupExecutor(prefix=prefix)
    proc = executor.launch("orphan", Workload(("sleep", "600"), None))
    try:
        time.sleep(0.1)
        found = compute_leftovers(executor.layout, prefix)
        assert len([f for f in found if f.startswith("/sys/fs/cgroup")]) == 3
        assert f"process {proc.popen.pid}" in found
    finally:
        executor.stop(proc)
    assert compute_leftovers(executor.layout, prefix) == []


def test_ready_before_demand_judges_each_ramp_against_the_old_capacity() -> None:
    # demand per 5 s step; each instance serves 1.0; the clock starts at t=100
    demand = [1.0, 1.0, 1.5, 1.5, 2.5, 0.5]
    insts = [
        InstanceView("warm", Phase.READY, 90.0, 91.0),  # before the start: no ramp
        InstanceView("early", Phase.READY, 101.0, 102.0),  # ready at 102, needed at 110
        InstanceView("late", Phase.READY, 116.0, 121.0),  # needed at 120 (2.5 > 2), late
        InstanceView("unneeded", Phase.STOPPED, 126.0, 127.0, ended_at=128.0),
    ]
    assert ready_before_demand(insts, demand, 1.0, t_start=100.0, step=5.0,
                               end=130.0) == [True, False, True]
    control = [insts[0], InstanceView("late", Phase.READY, 101.0, 111.0)]
    assert ready_before_demand(control, demand, 1.0, t_start=100.0, step=5.0,
                               end=130.0) == [False]  # ready at 111 > needed at 110


def test_a_ramp_reacting_to_an_excess_already_seen_is_late() -> None:
    demand = [1.0, 1.5, 1.0, 1.0]  # step 1 (105-110) exceeds one instance
    reactive = [InstanceView("a", Phase.READY, 90.0, 91.0),
                InstanceView("b", Phase.READY, 110.5, 111.0)]  # launched after the excess
    assert ready_before_demand(reactive, demand, 1.0, t_start=100.0, step=5.0,
                               end=120.0) == [False]
    ahead = [reactive[0], InstanceView("b", Phase.READY, 103.0, 104.0)]
    assert ready_before_demand(ahead, demand, 1.0, t_start=100.0, step=5.0,
                               end=120.0) == [True]
