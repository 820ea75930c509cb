"""The storage provider: the pure resize plan, then root tests with real loop volumes.

Root tests read sizes back from the kernel (device size in /sys/block, the superblock
through ``dumpe2fs``, statvfs) and end with a check that exactly their own backing
files, loop devices and mounts are gone (unique prefix per test).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.rootutil import fresh_netns, require_root, run_id
from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.providers import (
    ComputeProvider,
    RequestStatus,
    ResourceKey,
    ResourceKind,
    StorageProvider,
    Workload,
    loopfs,
)
from vnstitch.allocate.providers.compute import CgroupExecutor
from vnstitch.allocate.providers.leftovers import compute_leftovers, storage_leftovers
from vnstitch.allocate.providers.storage import MIB, ResizeAction, plan_resize

KEY = ResourceKey(ResourceKind.STORAGE, "vn100")
Q = 1024 * MIB


# -- pure --------------------------------------------------------------------------------

@pytest.mark.parametrize(("current", "used", "target", "action"), [
    (None, 0, 64 * MIB, ResizeAction.CREATE),
    (64 * MIB, MIB, 64 * MIB, ResizeAction.NONE),
    (64 * MIB, MIB, 128 * MIB, ResizeAction.GROW),
    (64 * MIB, MIB, 32 * MIB, ResizeAction.SHRINK),
    (64 * MIB, 40 * MIB, 32 * MIB, ResizeAction.REFUSE),  # below what is used
    (64 * MIB, 40 * MIB, 0, ResizeAction.REFUSE),  # release would destroy data
    (64 * MIB, MIB, 0, ResizeAction.RELEASE),  # as empty as when it was new
    (None, 0, 4 * MIB, ResizeAction.REFUSE),  # too small for ext4
    (64 * MIB, MIB, 2 * Q, ResizeAction.REFUSE),  # quota
])
def test_plan_resize(current: int | None, used: int, target: int,
                     action: ResizeAction) -> None:
    plan = plan_resize(current, used, MIB, target, Q)
    assert plan.action is action and plan.reason


def test_a_refused_shrink_says_how_much_is_in_use() -> None:
    plan = plan_resize(64 * MIB, 40 * MIB, MIB, 32 * MIB, Q)
    assert plan.reason == ("will not shrink to 32 MiB: 40 MiB in use (the filesystem "
                           "needs at least 40 MiB)")
    tight = plan_resize(64 * MIB, 40 * MIB, MIB, 44 * MIB, Q, smallest=48 * MIB)
    assert tight.action is ResizeAction.REFUSE and "at least 48 MiB" in tight.reason


def test_online_growth_needs_cap_sys_resource() -> None:
    assert loopfs.can_grow_online("CapEff:\t000001ffffffffff\n")
    assert not loopfs.can_grow_online("CapEff:\t000001fffeffffff\n")  # bit 24 dropped


# -- root: against the kernel -----------------------------------------------------------

@pytest.fixture
def provider(tmp_path: Path) -> Iterator[StorageProvider]:
    """A provider with its own prefix; afterwards nothing of it may remain."""
    require_root()
    prefix = f"vsts{run_id()}"
    p = StorageProvider({"vn100": 512.0}, tmp_path, unit_bytes=MIB, prefix=prefix)
    try:
        yield p
    finally:
        p.close()
    assert storage_leftovers(tmp_path, prefix) == []


def dumpe2fs_bytes(device: str) -> int:
    out = subprocess.run(["dumpe2fs", "-h", device], capture_output=True, text=True,
                         check=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return int(fields["Block count"]) * int(fields["Block size"])


@pytest.mark.root
def test_sizes_read_back_from_the_kernel(provider: StorageProvider) -> None:
    assert provider.request(KEY, 48, 0.0).status is RequestStatus.ACCEPTED
    vol = provider.volume(KEY)
    assert vol is not None
    device = loopfs.device_bytes(vol.device)
    room = os.statvfs(vol.mountpoint).f_blocks * 4096
    assert 48 * MIB <= room < device <= 48 * MIB + 8 * MIB  # data + ext4's own overhead
    assert dumpe2fs_bytes(vol.device) == device == loopfs.fs_bytes(vol.device)
    assert os.stat(vol.backing).st_blocks * 512 < 48 * MIB  # sparse
    assert loopfs.is_mounted(vol.mountpoint) and loopfs.mounted_here(vol)
    assert provider.available(KEY, 0.0) == provider.committed(KEY, 0.0) == 48


@pytest.mark.root
def test_growth_keeps_the_data_and_usage_is_statvfs(provider: StorageProvider) -> None:
    provider.request(KEY, 32, 0.0)
    vol = provider.volume(KEY)
    assert vol is not None
    data = os.urandom(MIB) * 12
    (vol.mountpoint / "blob").write_bytes(data)
    os.sync()
    assert provider.used(KEY, 1.0) == pytest.approx(12, abs=0.5)
    r = provider.request(KEY, 160, 2.0)
    assert r.status is RequestStatus.ACCEPTED and "grow 32 MiB -> 160 MiB" in r.reason
    assert dumpe2fs_bytes(vol.device) == loopfs.device_bytes(vol.device) > 160 * MIB
    assert os.statvfs(vol.mountpoint).f_blocks * 4096 >= 160 * MIB
    assert provider.available(KEY, 3.0) == 160
    assert (vol.mountpoint / "blob").read_bytes() == data
    assert provider.lead_time(ResourceKind.STORAGE) == max(provider.resize_seconds)


@pytest.mark.root
def test_shrink_below_usage_is_refused_and_changes_nothing(
        provider: StorageProvider) -> None:
    provider.request(KEY, 64, 0.0)
    vol = provider.volume(KEY)
    assert vol is not None
    (vol.mountpoint / "blob").write_bytes(b"\1" * (40 * MIB))
    os.sync()
    r = provider.request(KEY, 32, 1.0)
    assert r.status is RequestStatus.REFUSED
    assert r.reason.startswith("will not shrink to 32 MiB: 40.02 MiB in use (the filesystem")
    assert provider.request(KEY, 40, 2.0).status is RequestStatus.REFUSED  # 40.02 used
    assert provider.request(KEY, 0, 2.0).status is RequestStatus.REFUSED
    size = dumpe2fs_bytes(vol.device)
    assert provider.committed(KEY, 2.0) == 64 and loopfs.mounted_here(vol)
    r = provider.request(KEY, 48, 3.0)
    assert r.status is RequestStatus.ACCEPTED, r.reason  # above usage
    assert dumpe2fs_bytes(vol.device) <= size - 12 * MIB
    assert 48 * MIB <= os.statvfs(vol.mountpoint).f_blocks * 4096 < 50 * MIB
    assert (vol.mountpoint / "blob").stat().st_size == 40 * MIB


@pytest.mark.root
def test_a_failed_create_leaves_nothing_behind(
        provider: StorageProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    real = loopfs._run

    def failing_mkfs(*argv: str, timeout: float = 120.0) -> str:
        if argv[0] == "mkfs.ext4":  # fail after the loop device was attached
            raise AllocateError("storage: mkfs.ext4: injected failure")
        return real(*argv, timeout=timeout)

    monkeypatch.setattr(loopfs, "_run", failing_mkfs)
    r = provider.request(KEY, 32, 0.0)
    assert r.status is RequestStatus.FAILED and "injected" in r.reason
    assert provider.committed(KEY, 0.0) == 0
    assert storage_leftovers(provider.state_dir, provider.prefix) == []


@pytest.mark.root
def test_the_leftover_check_sees_a_volume(tmp_path: Path) -> None:
    """Control for the fixture's final check: it does report what it should."""
    require_root()
    prefix = f"vsts{run_id()}"
    vol = loopfs.create(tmp_path / f"{prefix}-x.img",
                        tmp_path / f"{prefix}-mnt" / f"{prefix}-x", 16 * MIB)
    try:
        found = storage_leftovers(tmp_path, prefix)
        assert str(vol.backing) in found and f"{vol.device} on {vol.backing}" in found
        assert f"mount {vol.mountpoint}" in found
    finally:
        loopfs.destroy(vol)
        (tmp_path / f"{prefix}-mnt").rmdir()
    assert storage_leftovers(tmp_path, prefix) == []


@pytest.mark.root
def test_offline_resizes_work_while_instances_run_in_namespaces(
        provider: StorageProvider) -> None:
    """An instance entering a namespace copies our mounts into its own mount namespace;
    under the shared mount root the volume's unmount reaches that copy, so e2fsck and
    resize2fs can still have the device (before the shared root they refused it)."""
    prefix = f"vstc{run_id()}"
    with fresh_netns("sp") as ns:
        provider.request(KEY, 32, 0.0)
        executor = CgroupExecutor(prefix=prefix)
        compute = ComputeProvider({"vn100": Workload(("sleep", "600"), ns, 0.05, 16 * MIB)},
                                  executor=executor)
        ckey = ResourceKey(ResourceKind.COMPUTE, "vn100")
        try:
            compute.request(ckey, 1, 0.0)
            assert compute.wait_ready(ckey, lambda: 0.0)
            (inst,) = compute.instances(ckey)
            vol = provider.volume(KEY)
            assert vol is not None
            theirs = Path(f"/proc/{inst.proc.popen.pid}/mountinfo").read_text()
            assert str(vol.mountpoint) in theirs  # the copy exists
            grown = provider.request(KEY, 64, 1.0)
            shrunk = provider.request(KEY, 40, 2.0)
            assert grown.status is RequestStatus.ACCEPTED, grown.reason
            assert shrunk.status is RequestStatus.ACCEPTED, shrunk.reason
            assert provider.available(KEY, 3.0) == 40
        finally:
            compute.close()
        assert compute_leftovers(executor.layout, prefix) == []
