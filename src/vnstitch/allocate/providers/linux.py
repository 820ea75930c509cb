"""``linux``: bandwidth reservations as HTB classes, through a dataplane driver.

Theory of operation
-------------------
Each substrate link this Route Manager reserves on maps to one HTB class on the device
that carries it (``classes``: link id -> (device, class id)). A request sets the desired
:class:`~vnstitch.dataplane.objects.RateLimit` for that class (guaranteed ``rate`` = the
reservation, ``ceil`` = the link capacity so idle capacity can still be borrowed) and
reconciles the driver: the pure ``plan`` diff makes the request idempotent (the same
amount twice yields no ops, reported ``UNCHANGED``); amount 0 removes the class. The
provider is a thin driver: it works the same on :class:`~vnstitch.dataplane.MemoryDataplane`
(tests, simulator) and the Linux driver (pyroute2, tc HTB). HTB changes apply at once,
so ``lead_time`` is 0. Compute and storage are not this provider's business: such
requests are refused with that reason. Driver errors become ``FAILED`` results.
"""

from __future__ import annotations

from collections.abc import Mapping

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.providers.base import (
    RequestStatus,
    ResourceKey,
    ResourceKind,
    ScaleResult,
)
from vnstitch.dataplane import DataplaneDriver, DataplaneError, RateLimit, reconcile


class LinuxBandwidthProvider:
    """Bandwidth as HTB classes; see the module docstring."""

    name = "linux"

    def __init__(self, driver: DataplaneDriver, classes: Mapping[str, tuple[str, int]],
                 link_capacity_mbps: Mapping[str, float]) -> None:
        missing = sorted(set(classes) - set(link_capacity_mbps))
        if missing:
            raise AllocateError(f"linux provider: no capacity given for link(s) {missing}")
        for link, (_, class_id) in classes.items():
            if not 1 <= class_id <= 0xFFFE:
                raise AllocateError(f"linux provider: link {link}: HTB class id {class_id} "
                                    "outside 1..0xfffe")
        self.driver = driver
        self.classes = dict(classes)
        self.capacity = dict(link_capacity_mbps)
        self.log: list[ScaleResult] = []

    def supports(self, kind: ResourceKind) -> bool:
        return kind is ResourceKind.BANDWIDTH

    def lead_time(self, kind: ResourceKind) -> float:
        return 0.0

    def limit(self, key: ResourceKey) -> float:
        if key.kind is not ResourceKind.BANDWIDTH:
            return 0.0
        return self.capacity.get(key.location, 0.0)

    def _current(self, key: ResourceKey) -> RateLimit | None:
        if key.kind is not ResourceKind.BANDWIDTH or key.location not in self.classes:
            return None
        device, class_id = self.classes[key.location]
        obj = self.driver.observe().get(f"rate:{device}:{class_id}")
        return obj if isinstance(obj, RateLimit) else None

    def request(self, key: ResourceKey, target: float, now: float) -> ScaleResult:
        if not target >= 0:
            raise AllocateError(f"linux provider: target for {key} must be >= 0, got {target}")
        if key.kind is not ResourceKind.BANDWIDTH:
            return self._record(key, target, RequestStatus.REFUSED, now,
                                "linux provider manages bandwidth only")
        if key.location not in self.classes:
            return self._record(key, target, RequestStatus.REFUSED, now,
                                f"no HTB class configured for link {key.location}")
        capacity = self.capacity[key.location]
        if target > capacity + 1e-9:
            return self._record(key, target, RequestStatus.REFUSED, now,
                                f"link capacity {capacity:g} Mbit/s exceeded")
        device, class_id = self.classes[key.location]
        observed = self.driver.observe()
        if target <= 0:
            desired = observed.with_objects(remove=[f"rate:{device}:{class_id}"])
        else:
            desired = observed.with_objects(
                add=[RateLimit(device, class_id, rate_mbps=float(target), ceil_mbps=capacity)])
        try:
            ops = reconcile(self.driver, desired)
        except DataplaneError as exc:
            return self._record(key, target, RequestStatus.FAILED, now, f"dataplane: {exc}")
        if not ops:
            return self._record(key, target, RequestStatus.UNCHANGED, now, "already in place")
        return self._record(key, target, RequestStatus.ACCEPTED, now,
                            "; ".join(str(op) for op in ops))

    def _record(self, key: ResourceKey, target: float, status: RequestStatus, now: float,
                reason: str) -> ScaleResult:
        ready = now if status in (RequestStatus.ACCEPTED, RequestStatus.UNCHANGED) else None
        result = ScaleResult(key, target, status, now, ready, reason)
        self.log.append(result)
        return result

    def available(self, key: ResourceKey, now: float) -> float:
        current = self._current(key)
        return current.rate_mbps if current is not None else 0.0

    def committed(self, key: ResourceKey, now: float) -> float:
        return self.available(key, now)
