"""What the compute and storage providers left on the kernel, by name prefix.

Theory of operation: a test or benchmark names its providers' objects with a unique
prefix (others run on the same host at the same time), so these read-only checks look
only at cgroups, processes inside them, loop devices, mounts and files carrying that
prefix and never at anybody else's. An empty list means nothing was left behind.
"""

from __future__ import annotations

from pathlib import Path

from vnstitch.allocate.providers import loopfs
from vnstitch.allocate.providers.cgroups import CgroupLayout


def compute_leftovers(layout: CgroupLayout, prefix: str) -> list[str]:
    """Cgroups named ``prefix-*`` and processes still inside such a group."""
    out = [str(p) for h in layout.hierarchies() for p in h.parent.glob(f"{prefix}-*")]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            text = (proc / "cgroup").read_text()
        except OSError:
            continue  # exited while we looked
        if f"/{prefix}-" in text:
            out.append(f"process {proc.name}")
    return out


def storage_leftovers(state_dir: Path, prefix: str) -> list[str]:
    """Backing files, loop devices and mounts of volumes named ``prefix-*``."""
    out: list[str] = []
    for backing in state_dir.glob(f"{prefix}-*.img"):
        out.append(str(backing))
        out.extend(f"{dev} on {backing}" for dev in loopfs.devices_of(backing))
    with open("/proc/self/mountinfo") as f:
        out.extend(f"mount {line.split()[4]}" for line in f
                   if Path(line.split()[4]).name.startswith(f"{prefix}-"))
    out.extend(str(m) for m in state_dir.glob(f"{prefix}-mnt"))
    out.extend(str(m) for m in state_dir.glob(f"{prefix}-mnt/{prefix}-*"))
    return out
