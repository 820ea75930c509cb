"""Loop-mounted ext4 volumes: create, grow online, shrink offline, measure, destroy.

Theory of operation
-------------------
A volume is a sparse backing file (only written blocks take disk space), attached to a
loop device (``losetup --find --show``), formatted ext4 (4 KiB blocks, no reserved
blocks, so the whole size is usable) and mounted. Growing extends the file, tells the
loop driver (``losetup --set-capacity``) and grows the mounted filesystem with
``resize2fs`` (ext4 grows online). Online growth needs ``CAP_SYS_RESOURCE`` (the ext4
resize ioctl checks it); where the process lacks it (:func:`can_grow_online`: a container
whose bounding set drops it, like the one this was built in) growth is done offline
instead: unmount, check (``e2fsck -f``), ``resize2fs``, mount -- correct, but the volume
is unmounted for that moment, and callers say which mode they used. ext4 cannot shrink
while mounted, so shrinking is always offline: unmount, check, shrink the filesystem,
then the device, then the file, and mount again; if any step fails the volume is put
back at its old size and mounted. Sizes are read back from the kernel, never
remembered: the filesystem size from the superblock (block count x block size, read
through the loop device), the usage from ``statvfs`` (blocks in use, metadata
excluded). Every function here runs commands or syscalls; the decisions live in
:mod:`~vnstitch.allocate.providers.storage`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vnstitch.allocate.errors import AllocateError

BLOCK = 4096
CAP_SYS_RESOURCE = 24
_TOOLS = ("losetup", "mkfs.ext4", "resize2fs", "e2fsck", "mount", "umount")


@dataclass(frozen=True, slots=True)
class Volume:
    backing: Path
    device: str  # /dev/loopN
    mountpoint: Path


def check_tools() -> None:
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        raise AllocateError(f"storage: missing commands {missing} (install e2fsprogs, "
                            "util-linux, mount)")


def _run(*argv: str, timeout: float = 120.0) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AllocateError(f"storage: {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        msg = (done.stderr or done.stdout).strip().splitlines()
        raise AllocateError(f"storage: {' '.join(argv[:2])}: exit {done.returncode}: "
                            f"{msg[-1] if msg else 'no message'}")
    return done.stdout


def _set_file_size(path: Path, size: int) -> None:
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.truncate(size)


def ensure_shared(root: Path) -> bool:
    """Make ``root`` a shared mount (bind-mounting it onto itself first if it is not a
    mount point); True if this call created the bind mount.

    Why: a process that enters a network namespace through ``ip netns exec`` (the compute
    provider's instances) gets its own mount namespace, a copy of ours. Under a private
    parent -- ``/`` is private on this host -- the copy of a volume's mount stays there
    after we unmount ours, the filesystem stays in use and ``e2fsck``/``resize2fs`` refuse
    it. Mounted under a shared root, unmounts propagate to those copies (``ip netns exec``
    makes them slaves), as ``ip netns`` itself does for ``/run/netns``.
    """
    root.mkdir(parents=True, exist_ok=True)
    made = False
    if not is_mounted(root):
        _run("mount", "--bind", str(root), str(root))
        made = True
    try:
        _run("mount", "--make-shared", str(root))
    except AllocateError:
        if made:
            _quiet("umount", str(root))
        raise
    return made


def release_shared(root: Path) -> None:
    """Undo :func:`ensure_shared` (the bind mount) and remove the empty directory."""
    if is_mounted(root):
        _run("umount", str(root))
    _rmdir(root)


def create(backing: Path, mountpoint: Path, size: int) -> Volume:
    """A new volume of ``size`` bytes; on failure everything made here is removed."""
    if backing.exists():
        raise AllocateError(f"storage: backing file {backing} already exists")
    backing.parent.mkdir(parents=True, exist_ok=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    device = None
    try:
        _set_file_size(backing, size)
        device = _run("losetup", "--find", "--show", str(backing)).strip()
        _run("mkfs.ext4", "-q", "-F", "-b", str(BLOCK), "-m", "0", "-E", "nodiscard",
             "-L", mountpoint.name[:16], device)
        _run("mount", "-t", "ext4", device, str(mountpoint))
        return Volume(backing, device, mountpoint)
    except AllocateError:
        if device is not None:
            _quiet("losetup", "-d", device)
        backing.unlink(missing_ok=True)
        _rmdir(mountpoint)
        raise


def can_grow_online(status: str | None = None) -> bool:
    """Whether this process holds CAP_SYS_RESOURCE (``/proc/self/status`` CapEff)."""
    if status is None:
        status = Path("/proc/self/status").read_text()
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def grow(vol: Volume, size: int, *, online: bool) -> None:
    """Extend file, device and filesystem to ``size`` bytes; mounted if ``online``."""
    _set_file_size(vol.backing, size)
    _run("losetup", "--set-capacity", vol.device)
    if online:
        _run("resize2fs", vol.device, f"{size // 1024}K")
        return
    _run("umount", str(vol.mountpoint))
    try:
        _run("e2fsck", "-f", "-y", vol.device)
        _run("resize2fs", vol.device, f"{size // 1024}K")
    finally:
        _run("mount", "-t", "ext4", vol.device, str(vol.mountpoint))


def shrink(vol: Volume, size: int) -> None:
    """Offline (ext4 cannot shrink mounted): unmount, check, shrink, mount again.

    On failure the filesystem is left at whatever size it has (it is consistent: resize2fs
    either finished or did nothing), the device and file cover it, and it is mounted.
    """
    old = device_bytes(vol.device)
    _run("umount", str(vol.mountpoint))
    try:
        _run("e2fsck", "-f", "-y", vol.device)
        _run("resize2fs", vol.device, f"{size // 1024}K")
        _set_file_size(vol.backing, size)
        _run("losetup", "--set-capacity", vol.device)
    except AllocateError:
        if device_bytes(vol.device) < old:
            _set_file_size(vol.backing, old)
            _quiet("losetup", "--set-capacity", vol.device)
        raise
    finally:
        _run("mount", "-t", "ext4", vol.device, str(vol.mountpoint))


def destroy(vol: Volume) -> None:
    """Unmount, detach, delete; every step is tried, missing objects are fine."""
    errors = []
    if is_mounted(vol.mountpoint):
        try:
            _run("umount", str(vol.mountpoint))
        except AllocateError as exc:
            errors.append(str(exc))
    if vol.device in devices_of(vol.backing):
        try:
            _run("losetup", "-d", vol.device)
        except AllocateError as exc:
            errors.append(str(exc))
    if not errors:
        vol.backing.unlink(missing_ok=True)
        _rmdir(vol.mountpoint)
    if errors:
        raise AllocateError("; ".join(errors))


def fs_bytes(device: str) -> int:
    """The filesystem's size from its superblock (block count x block size)."""
    with open(device, "rb") as f:
        sb = os.pread(f.fileno(), 1024, 1024)
    if len(sb) < 1024 or struct.unpack_from("<H", sb, 0x38)[0] != 0xEF53:
        raise AllocateError(f"storage: {device}: no ext4 superblock")
    lo, log_block = struct.unpack_from("<I", sb, 4)[0], struct.unpack_from("<I", sb, 24)[0]
    incompat = struct.unpack_from("<I", sb, 0x60)[0]
    hi = struct.unpack_from("<I", sb, 0x150)[0] if incompat & 0x80 else 0  # 64bit feature
    return int(((hi << 32) | lo) * (1024 << log_block))


def min_bytes(device: str) -> int:
    """The smallest size the filesystem can shrink to (``resize2fs -P``), in bytes."""
    out = _run("resize2fs", "-P", device)
    try:
        return int(out.rsplit(":", 1)[1]) * BLOCK
    except (IndexError, ValueError):
        raise AllocateError(f"storage: resize2fs -P {device}: unexpected output "
                            f"{out.strip()!r}") from None


def device_bytes(device: str) -> int:
    name = Path(device).name
    return int(Path(f"/sys/block/{name}/size").read_text()) * 512


def capacity_bytes(mountpoint: Path) -> int:
    """Room for data: the filesystem's size as ``statvfs`` reports it (ext4 leaves its
    journal, inode tables and bitmaps out)."""
    st = os.statvfs(mountpoint)
    return int(st.f_blocks * st.f_frsize)


def used_bytes(mountpoint: Path) -> int:
    st = os.statvfs(mountpoint)
    return int((st.f_blocks - st.f_bfree) * st.f_frsize)


def mounted_here(vol: Volume) -> bool:
    """Whether the volume's device is what is mounted at its mount point."""
    try:
        return os.stat(vol.mountpoint).st_dev == os.stat(vol.device).st_rdev
    except OSError:
        return False


def is_mounted(mountpoint: Path) -> bool:
    target = str(mountpoint.resolve()) if mountpoint.exists() else str(mountpoint)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def devices_of(backing: Path) -> list[str]:
    """Loop devices attached to ``backing`` (``losetup -j``)."""
    if shutil.which("losetup") is None:
        return []
    out = subprocess.run(["losetup", "-j", str(backing)], capture_output=True, text=True,
                         check=False).stdout
    return [line.split(":", 1)[0] for line in out.splitlines() if line.strip()]


def _quiet(*argv: str) -> None:
    subprocess.run(argv, capture_output=True, check=False)


def _rmdir(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
