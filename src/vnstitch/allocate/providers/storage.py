"""``storage``: per-VN volumes as loop-mounted ext4 filesystems, grown online.

Theory of operation
-------------------
The amount at ``ResourceKey(STORAGE, location)`` is the space that location's volume
offers for data, in ``unit_bytes`` (GiB by default): what ``statvfs`` reports as the
filesystem's size (ext4 keeps its journal, inode tables and bitmaps out of it). The
device is therefore larger than the amount by the filesystem's own overhead, which is
measured, not assumed: a volume is made or resized to the amount plus an estimate (the
current overhead, or mke2fs's journal rule plus 1/32 for a new one), then ``statvfs``
is read and the device grown again while it falls short. A request is declarative;
:func:`plan_resize` (pure) turns (current amount, bytes in use, target) into one action
with a reason:

* ``create`` when there is no volume and the target is > 0,
* ``grow`` when the target is larger (online: ext4 grows mounted; offline where the
  process lacks CAP_SYS_RESOURCE, see :func:`~vnstitch.allocate.providers.loopfs.
  can_grow_online` -- the result's reason says which),
* ``shrink`` when it is smaller but still holds what is in use and no less than the
  filesystem's own minimum (``resize2fs -P``; offline: a short unmount, see
  :mod:`~vnstitch.allocate.providers.loopfs`),
* ``release`` (target 0) only when the volume holds no more than a fresh, empty one,
* ``refuse`` a shrink or release below what is used -- the provider never destroys data
  to meet a target -- and sizes below :data:`MIN_BYTES` or above the location's quota.

Volumes live under ``state_dir`` (backing ``<prefix>-<location>.img``, mount point
``<prefix>-mnt/<prefix>-<location>``, under a shared bind mount so that unmounts reach
the copies in instances' mount namespaces). ``committed`` is the accepted amount;
``available`` is read back from the kernel on every call: the amount if ``statvfs``
confirms at least that much room for data, else what ``statvfs`` says. Usage is
``statvfs`` too (blocks in use). Resizes are synchronous and take what they take: the
executor's clock (injected) times each create/grow, ``ready_at`` is the request's
``now`` plus that time, and ``lead_time`` is the largest recent one. Failures of the
tools become ``FAILED`` results with the tool's message; the volume is left consistent
and mounted. :meth:`StorageProvider.close` destroys every volume it made.
"""

from __future__ import annotations

import contextlib
import enum
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.providers import loopfs
from vnstitch.allocate.providers.base import (
    RequestStatus,
    ResourceKey,
    ResourceKind,
    ScaleResult,
)

MIB = 2**20
GIB = 2**30
MIN_BYTES = 8 * MIB  # below this ext4 with a journal is not worth having


class ResizeAction(enum.Enum):
    NONE = "none"
    CREATE = "create"
    GROW = "grow"
    SHRINK = "shrink"
    RELEASE = "release"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class ResizePlan:
    action: ResizeAction
    size: int  # bytes the volume will have
    reason: str


def plan_resize(current: int | None, used: int, empty_used: int, target: int,
                quota: int, *, smallest: int = 0) -> ResizePlan:
    """What to do to make a volume of ``current`` bytes (None: no volume) ``target``
    bytes, given ``used`` bytes in use, ``empty_used`` in use when it was new and
    ``smallest``, the least the filesystem can shrink to (``resize2fs -P``: data plus
    the metadata and journal that must stay)."""
    have = current or 0
    if target == have:
        return ResizePlan(ResizeAction.NONE, have, "already this size")
    if target > quota:
        return ResizePlan(ResizeAction.REFUSE, have, f"quota {_mib(quota)} exceeded")
    if target == 0:
        if used > empty_used:
            return ResizePlan(ResizeAction.REFUSE, have,
                              f"will not release: {_mib(used - empty_used)} of data in use")
        return ResizePlan(ResizeAction.RELEASE, 0, "volume empty: released")
    if target < MIN_BYTES:
        return ResizePlan(ResizeAction.REFUSE, have,
                          f"{_mib(target)} is below the smallest volume ({_mib(MIN_BYTES)})")
    if current is None:
        return ResizePlan(ResizeAction.CREATE, target, f"new volume of {_mib(target)}")
    if target > have:
        return ResizePlan(ResizeAction.GROW, target, f"grow {_mib(have)} -> {_mib(target)}")
    if target < max(used, smallest):
        return ResizePlan(ResizeAction.REFUSE, have, f"will not shrink to {_mib(target)}: "
                          f"{_mib(used)} in use (the filesystem needs at least "
                          f"{_mib(max(used, smallest))})")
    return ResizePlan(ResizeAction.SHRINK, target, f"shrink offline {_mib(have)} -> "
                      f"{_mib(target)} ({_mib(used)} in use)")


def _mib(n: int) -> str:
    return f"{n / MIB:.4g} MiB"


@dataclass(slots=True)
class _Entry:
    volume: loopfs.Volume
    empty_used: int
    amount: int  # bytes for data, as accepted


def journal_guess(size: int) -> int:
    """mke2fs's default journal size for a filesystem of ``size`` bytes (4 KiB blocks)."""
    blocks = size // BLOCK_ALIGN
    for limit, journal in ((32768, 1024), (256 * 1024, 4096), (512 * 1024, 8192),
                           (4096 * 1024, 16384), (8192 * 1024, 32768)):
        if blocks < limit:
            return journal * BLOCK_ALIGN
    return 262144 * BLOCK_ALIGN


class StorageProvider:
    """One loop-mounted ext4 volume per location; see the module docstring."""

    name = "storage"

    def __init__(self, quotas: Mapping[str, float], state_dir: Path, *,
                 unit_bytes: int = GIB, prefix: str = "vnstitch",
                 clock: Callable[[], float] = time.monotonic, history: int = 20) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise AllocateError(f"storage: prefix {prefix!r} must be [A-Za-z0-9_.-]+")
        if unit_bytes < BLOCK_ALIGN or unit_bytes % BLOCK_ALIGN:
            raise AllocateError(f"storage: unit_bytes must be a multiple of {BLOCK_ALIGN}")
        loopfs.check_tools()
        self.online = loopfs.can_grow_online()
        self.quotas = {loc: float(q) for loc, q in quotas.items()}
        self.state_dir = Path(state_dir)
        self.unit = unit_bytes
        self.prefix = prefix
        self.clock = clock
        self._history = history
        self._volumes: dict[str, _Entry] = {}
        self._shared_root = False  # mount_root made shared by this provider
        self._made_root = False  # ... by bind-mounting it onto itself
        self.resize_seconds: list[float] = []  # every create/grow, in order
        self.log: list[ScaleResult] = []

    def paths(self, location: str) -> tuple[Path, Path]:
        """(backing file, mount point) of a location's volume."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", location)
        name = f"{self.prefix}-{safe}"
        return self.state_dir / f"{name}.img", self.mount_root / name

    @property
    def mount_root(self) -> Path:
        """The shared mount under which the volumes are mounted (see
        :func:`~vnstitch.allocate.providers.loopfs.ensure_shared`)."""
        return self.state_dir / f"{self.prefix}-mnt"

    # -- the provider interface ------------------------------------------------------
    def supports(self, kind: ResourceKind) -> bool:
        return kind is ResourceKind.STORAGE

    def lead_time(self, kind: ResourceKind) -> float:
        recent = self.resize_seconds[-self._history:]
        return max(recent) if recent and kind is ResourceKind.STORAGE else 0.0

    def limit(self, key: ResourceKey) -> float:
        return self.quotas.get(key.location, 0.0) if key.kind is ResourceKind.STORAGE else 0.0

    def request(self, key: ResourceKey, target: float, now: float) -> ScaleResult:
        if not target >= 0:
            raise AllocateError(f"storage provider: target for {key} must be >= 0, got {target}")
        if key.kind is not ResourceKind.STORAGE:
            return self._record(key, target, RequestStatus.REFUSED, now, ready_at=None,
                                reason="storage provider manages storage volumes only")
        if key.location not in self.quotas:
            return self._record(key, target, RequestStatus.REFUSED, now, ready_at=None,
                                reason=f"no volume quota configured for {key.location}")
        want = _align(target * self.unit)
        entry = self._volumes.get(key.location)
        if entry is not None and not loopfs.mounted_here(entry.volume):
            return self._record(key, target, RequestStatus.FAILED, now, ready_at=None,
                                reason=f"volume {entry.volume.device} is not mounted at "
                                f"{entry.volume.mountpoint}")
        used = loopfs.used_bytes(entry.volume.mountpoint) if entry else 0
        # resize2fs -P only when a shrink is on the table (it reads the whole bitmap); it
        # counts the filesystem's whole size, so take its overhead off to compare amounts.
        smallest = 0
        if entry is not None and 0 < want < entry.amount:
            smallest = loopfs.min_bytes(entry.volume.device) - self._overhead(entry)
        plan = plan_resize(entry.amount if entry else None, used,
                           entry.empty_used if entry else 0, want,
                           _align(self.quotas[key.location] * self.unit), smallest=smallest)
        if plan.action is ResizeAction.NONE:
            return self._record(key, target, RequestStatus.UNCHANGED, now, ready_at=now,
                                reason=plan.reason)
        if plan.action is ResizeAction.REFUSE:
            return self._record(key, target, RequestStatus.REFUSED, now, ready_at=None,
                                reason=plan.reason)
        t0 = self.clock()
        try:
            if plan.action is ResizeAction.CREATE:
                backing, mnt = self.paths(key.location)
                if not self._shared_root:
                    self._made_root = loopfs.ensure_shared(self.mount_root)
                    self._shared_root = True
                vol = loopfs.create(backing, mnt, _align_up(
                    want + journal_guess(want) + want // 32 + MIB))
                entry = self._volumes[key.location] = _Entry(vol, loopfs.used_bytes(mnt), 0)
                self._fit(entry, want)
            elif entry is not None and plan.action is ResizeAction.GROW:
                loopfs.grow(entry.volume, _align_up(want + self._overhead(entry)
                                                    + (want - entry.amount) // 32),
                            online=self.online)
                self._fit(entry, want)
            elif entry is not None and plan.action is ResizeAction.SHRINK:
                loopfs.shrink(entry.volume, _align_up(want + self._overhead(entry)))
                self._fit(entry, want)
            elif entry is not None and plan.action is ResizeAction.RELEASE:
                self._drop(key.location)
                self._release_root_if_idle()
        except (AllocateError, OSError) as exc:
            if plan.action is ResizeAction.CREATE:
                with contextlib.suppress(AllocateError):  # else close() tries again
                    if key.location in self._volumes:
                        self._drop(key.location)
                    self._release_root_if_idle()
            elif entry is not None:  # keep only what the kernel still confirms
                entry.amount = min(entry.amount, self._capacity(entry))
            return self._record(key, target, RequestStatus.FAILED, now, ready_at=None,
                                reason=f"{plan.reason}: {exc}")
        took = self.clock() - t0
        if plan.action in (ResizeAction.CREATE, ResizeAction.GROW):
            self.resize_seconds.append(took)
        mode = ""
        if plan.action is ResizeAction.GROW:
            mode = " online" if self.online else " offline (no CAP_SYS_RESOURCE)"
        return self._record(key, target, RequestStatus.ACCEPTED, now, ready_at=now + took,
                            reason=f"{plan.reason}{mode} in {took:.3g} s")

    def _overhead(self, entry: _Entry) -> int:
        """Device bytes the filesystem keeps for itself (journal, inode tables, ...)."""
        return loopfs.device_bytes(entry.volume.device) - self._capacity(entry)

    @staticmethod
    def _capacity(entry: _Entry) -> int:
        """statvfs room for data -- 0 unless the volume is what is mounted there (an
        unmounted mount point would report its parent filesystem)."""
        return loopfs.capacity_bytes(entry.volume.mountpoint) \
            if loopfs.mounted_here(entry.volume) else 0

    def _fit(self, entry: _Entry, want: int, tries: int = 4) -> None:
        """Grow the device until statvfs offers ``want`` bytes for data."""
        for _ in range(tries):
            have = self._capacity(entry)
            if have >= want:
                entry.amount = want
                return
            short = want - have
            loopfs.grow(entry.volume, _align_up(loopfs.device_bytes(entry.volume.device)
                                                + short + short // 32), online=self.online)
        raise AllocateError(f"storage: {entry.volume.device}: still short of "
                            f"{_mib(want)} after {tries} resizes")

    def _drop(self, location: str) -> None:
        loopfs.destroy(self._volumes[location].volume)
        del self._volumes[location]

    def available(self, key: ResourceKey, now: float) -> float:
        entry = self._entry(key)
        if entry is None:
            return 0.0
        return min(entry.amount, self._capacity(entry)) / self.unit

    def committed(self, key: ResourceKey, now: float) -> float:
        entry = self._entry(key)
        return entry.amount / self.unit if entry else 0.0

    # -- beyond the interface ----------------------------------------------------------
    def used(self, key: ResourceKey, now: float) -> float:
        """Space in use on the volume (statvfs, metadata excluded), in units."""
        entry = self._entry(key)
        if entry is None or not loopfs.mounted_here(entry.volume):
            return 0.0
        return loopfs.used_bytes(entry.volume.mountpoint) / self.unit

    def volume(self, key: ResourceKey) -> loopfs.Volume | None:
        entry = self._entry(key)
        return entry.volume if entry else None

    def close(self) -> None:
        """Unmount, detach and delete every volume this provider made (idempotent)."""
        errors = []
        for loc, entry in list(self._volumes.items()):
            try:
                loopfs.destroy(entry.volume)
                del self._volumes[loc]
            except AllocateError as exc:
                errors.append(str(exc))
        try:
            self._release_root_if_idle()
        except AllocateError as exc:
            errors.append(str(exc))
        if errors:
            raise AllocateError("; ".join(errors))

    def _release_root_if_idle(self) -> None:
        if self._shared_root and not self._volumes:
            if self._made_root:
                loopfs.release_shared(self.mount_root)
            self._made_root = self._shared_root = False

    def _entry(self, key: ResourceKey) -> _Entry | None:
        return self._volumes.get(key.location) if key.kind is ResourceKind.STORAGE else None

    def _record(self, key: ResourceKey, target: float, status: RequestStatus, now: float,
                *, ready_at: float | None, reason: str) -> ScaleResult:
        result = ScaleResult(key, target, status, now, ready_at, reason)
        self.log.append(result)
        return result


BLOCK_ALIGN = loopfs.BLOCK


def _align(n: float) -> int:
    """Bytes rounded to whole filesystem blocks (a volume is a whole number of blocks)."""
    return round(n / BLOCK_ALIGN) * BLOCK_ALIGN


def _align_up(n: int) -> int:
    return -(-n // BLOCK_ALIGN) * BLOCK_ALIGN
