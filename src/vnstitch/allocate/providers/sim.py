"""``sim``: a cloud simulator provider with boot delays, quotas, prices and failures.

Theory of operation
-------------------
Per :class:`ResourceKey` the simulator keeps the usable amount and a list of pending
grants ``(ready_at, amount)``. A scale-out adds a pending grant that becomes usable
``delay`` seconds later (VM boot, volume provisioning, circuit turn-up); a scale-in
first cancels pending grants (newest first), then releases usable capacity at once.
Quotas cap the committed amount per key. A failure schedule makes requests fail inside
given time windows (an API outage) and can destroy usable capacity at given times (VMs
crashing); the allocator sees the loss through :meth:`SimProvider.available` and asks
again. Billing integrates committed capacity (booting capacity is billed, as clouds do)
times the per-hour price. Time only moves forward: every call takes ``now`` and a call
with an earlier ``now`` than a previous one is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.providers.base import (
    RequestStatus,
    ResourceKey,
    ResourceKind,
    ScaleResult,
)


@dataclass(frozen=True, slots=True)
class SimResource:
    """How one kind of resource behaves in the simulated cloud."""

    delay_seconds: float = 0.0
    quota: float = float("inf")  # per key
    price_per_unit_hour: float = 0.0


@dataclass(frozen=True, slots=True)
class Outage:
    """Requests for ``kind`` (all kinds if None) fail in ``[start, end)``."""

    start: float
    end: float
    kind: ResourceKind | None = None


@dataclass(frozen=True, slots=True)
class CapacityLoss:
    """At ``at``, ``amount`` of usable capacity at ``key`` is lost (e.g. VMs crash)."""

    at: float
    key: ResourceKey
    amount: float


@dataclass(slots=True)
class _State:
    usable: float = 0.0
    pending: list[tuple[float, float]] = field(default_factory=list)  # (ready_at, amount)
    billed_until: float | None = None
    cost: float = 0.0

    @property
    def committed(self) -> float:
        return self.usable + sum(a for _, a in self.pending)


class SimProvider:
    """The simulated cloud; see the module docstring."""

    name = "sim"

    def __init__(self, resources: Mapping[ResourceKind, SimResource],
                 outages: Sequence[Outage] = (),
                 losses: Sequence[CapacityLoss] = ()) -> None:
        self.resources = dict(resources)
        self.outages = tuple(outages)
        self._losses = sorted(losses, key=lambda x: x.at)
        self._states: dict[ResourceKey, _State] = {}
        self._now = float("-inf")
        self.log: list[ScaleResult] = []

    def supports(self, kind: ResourceKind) -> bool:
        return kind in self.resources

    def lead_time(self, kind: ResourceKind) -> float:
        return self._spec(kind).delay_seconds

    def limit(self, key: ResourceKey) -> float:
        return self._spec(key.kind).quota

    def _spec(self, kind: ResourceKind) -> SimResource:
        try:
            return self.resources[kind]
        except KeyError:
            raise AllocateError(f"sim provider has no resource kind {kind.value!r}; "
                                f"configured: {sorted(k.value for k in self.resources)}") from None

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise AllocateError(f"sim provider: time went backwards ({now} < {self._now})")
        self._now = now
        while self._losses and self._losses[0].at <= now:
            loss = self._losses.pop(0)
            st = self._settle(loss.key, loss.at)
            st.usable = max(0.0, st.usable - loss.amount)
        for key in self._states:
            self._settle(key, now)

    def _settle(self, key: ResourceKey, now: float) -> _State:
        st = self._states.setdefault(key, _State())
        price = self.resources[key.kind].price_per_unit_hour if key.kind in self.resources else 0
        if st.billed_until is not None and now > st.billed_until:
            # Pending grants that became usable in between are billed the same (booting
            # capacity is billed), so committed x elapsed is exact.
            st.cost += st.committed * price * (now - st.billed_until) / 3600.0
        st.billed_until = now if st.billed_until is None else max(st.billed_until, now)
        ready = [a for t, a in st.pending if t <= now]
        if ready:
            st.usable += sum(ready)
            st.pending = [(t, a) for t, a in st.pending if t > now]
        return st

    def request(self, key: ResourceKey, target: float, now: float) -> ScaleResult:
        if not target >= 0:
            raise AllocateError(f"sim provider: target for {key} must be >= 0, got {target}")
        self._advance(now)
        spec = self.resources.get(key.kind)
        st = self._settle(key, now)
        if spec is None:
            return self._record(key, target, RequestStatus.REFUSED, now, ready_at=None,
                                reason=f"resource kind {key.kind.value} not offered")
        if abs(target - st.committed) <= 1e-9:
            ready = max((t for t, _ in st.pending), default=now)
            return self._record(key, target, RequestStatus.UNCHANGED, now, ready_at=ready,
                                reason="already committed")
        if target > spec.quota + 1e-9:
            return self._record(key, target, RequestStatus.REFUSED, now, ready_at=None,
                                reason=f"quota {spec.quota:g} exceeded")
        o = self.outage_at(key, now)
        if o is not None:
            return self._record(key, target, RequestStatus.FAILED, now, ready_at=None,
                                reason=f"scheduled outage [{o.start:g}, {o.end:g})")
        delta = target - st.committed
        if delta > 0:
            ready_at = now + spec.delay_seconds
            if spec.delay_seconds <= 0:
                st.usable += delta
            else:
                st.pending.append((ready_at, delta))
            reason = f"scale out by {delta:g}, usable at {ready_at:g}"
        else:
            release = -delta
            while release > 1e-12 and st.pending:
                t, a = st.pending.pop()
                take = min(a, release)
                release -= take
                if a - take > 1e-12:
                    st.pending.append((t, a - take))
            st.usable = max(0.0, st.usable - release)
            ready_at = max((t for t, _ in st.pending), default=now)
            reason = f"scale in by {-delta:g}"
        return self._record(key, target, RequestStatus.ACCEPTED, now, ready_at=ready_at,
                            reason=reason)

    def _record(self, key: ResourceKey, target: float, status: RequestStatus, now: float,
                *, ready_at: float | None, reason: str) -> ScaleResult:
        result = ScaleResult(key, target, status, now, ready_at, reason)
        self.log.append(result)
        return result

    def available(self, key: ResourceKey, now: float) -> float:
        self._advance(now)
        return self._settle(key, now).usable

    def outage_at(self, key: ResourceKey, now: float) -> Outage | None:
        """The scheduled outage that fails requests for ``key`` at ``now``, if any."""
        for o in self.outages:
            if o.start <= now < o.end and (o.kind is None or o.kind is key.kind):
                return o
        return None

    def committed(self, key: ResourceKey, now: float) -> float:
        self._advance(now)
        return self._settle(key, now).committed

    def cost(self, now: float) -> float:
        """Money spent on all keys up to ``now`` (committed amount x price x hours)."""
        self._advance(now)
        return sum(st.cost for st in self._states.values())
