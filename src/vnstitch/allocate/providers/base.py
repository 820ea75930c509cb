"""The provider interface: where the allocator's requests for capacity go.

Theory of operation
-------------------
A provider owns amounts of capacity at *locations*: bandwidth on a substrate link,
compute (VMs) or storage (GB) in a segment, each named by a :class:`ResourceKey`.
Requests are declarative -- "the amount at this key should be X" -- which makes them
idempotent: asking twice for the same amount changes nothing and says so
(:attr:`RequestStatus.UNCHANGED`). Growing may take time (``lead_time``: a VM boots, a
volume is provisioned); shrinking takes effect at once. A provider never raises for
refusals that are part of normal operation (quota exhausted, an outage on its failure
schedule): it returns :attr:`RequestStatus.REFUSED` / :attr:`RequestStatus.FAILED` with
the reason, and keeps every result in ``log``. Every method takes ``now`` (seconds); no
provider reads a clock. Implementations: :mod:`~vnstitch.allocate.providers.sim` and
:mod:`~vnstitch.allocate.providers.linux`; one contract test runs on both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class ResourceKind(enum.StrEnum):
    BANDWIDTH = "bandwidth"  # Mbit/s on a substrate link
    COMPUTE = "compute"  # VMs in a segment
    STORAGE = "storage"  # GB in a segment


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    kind: ResourceKind
    location: str  # link id ("A->B") for bandwidth, segment id otherwise

    def __str__(self) -> str:
        return f"{self.kind.value}@{self.location}"


class RequestStatus(enum.StrEnum):
    ACCEPTED = "accepted"  # the amount will be (or is) in place at ``ready_at``
    UNCHANGED = "unchanged"  # already requested exactly this amount; nothing done
    REFUSED = "refused"  # beyond quota/capacity or unsupported; nothing done
    FAILED = "failed"  # the provider failed (e.g. scheduled outage); nothing done


@dataclass(frozen=True, slots=True)
class ScaleResult:
    key: ResourceKey
    target: float
    status: RequestStatus
    now: float
    ready_at: float | None  # when the full amount is usable; None if not accepted
    reason: str

    @property
    def ok(self) -> bool:
        return self.status in (RequestStatus.ACCEPTED, RequestStatus.UNCHANGED)


@runtime_checkable
class Provider(Protocol):
    """Capacity at locations, scaled on request (see the module docstring)."""

    name: str
    log: list[ScaleResult]

    def supports(self, kind: ResourceKind) -> bool: ...

    def lead_time(self, kind: ResourceKind) -> float:
        """Seconds from an accepted scale-out to usable capacity."""
        ...

    def limit(self, key: ResourceKey) -> float:
        """The most this provider will ever grant at ``key`` (quota or link capacity)."""
        ...

    def request(self, key: ResourceKey, target: float, now: float) -> ScaleResult: ...

    def available(self, key: ResourceKey, now: float) -> float:
        """Capacity usable at ``now`` (excludes what is still booting)."""
        ...

    def committed(self, key: ResourceKey, now: float) -> float:
        """Capacity requested and not released (usable now or booting)."""
        ...
