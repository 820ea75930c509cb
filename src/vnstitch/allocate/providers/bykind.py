"""``by-kind``: one provider made of several, each serving the kinds it supports.

Theory of operation: the allocator talks to one :class:`~vnstitch.allocate.providers.
base.Provider`; a Route Manager has bandwidth (``linux``), compute and storage providers.
:class:`ProvidersByKind` routes every call by the key's kind to the provider configured
for it and refuses (never raises) kinds nobody serves, so the same contract holds. Each
result is logged here as well as in the provider that produced it.
"""

from __future__ import annotations

from collections.abc import Mapping

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.providers.base import (
    Provider,
    RequestStatus,
    ResourceKey,
    ResourceKind,
    ScaleResult,
)


class ProvidersByKind:
    """Route by resource kind (see the module docstring)."""

    name = "by-kind"

    def __init__(self, providers: Mapping[ResourceKind, Provider]) -> None:
        for kind, p in providers.items():
            if not p.supports(kind):
                raise AllocateError(f"provider {p.name} does not offer {kind.value}")
        self.providers = dict(providers)
        self.log: list[ScaleResult] = []

    def supports(self, kind: ResourceKind) -> bool:
        return kind in self.providers

    def lead_time(self, kind: ResourceKind) -> float:
        p = self.providers.get(kind)
        return p.lead_time(kind) if p else 0.0

    def limit(self, key: ResourceKey) -> float:
        p = self.providers.get(key.kind)
        return p.limit(key) if p else 0.0

    def request(self, key: ResourceKey, target: float, now: float) -> ScaleResult:
        p = self.providers.get(key.kind)
        if p is None:
            result = ScaleResult(key, target, RequestStatus.REFUSED, now, None,
                                 f"no provider configured for {key.kind.value}")
        else:
            result = p.request(key, target, now)
        self.log.append(result)
        return result

    def available(self, key: ResourceKey, now: float) -> float:
        p = self.providers.get(key.kind)
        return p.available(key, now) if p else 0.0

    def committed(self, key: ResourceKey, now: float) -> float:
        p = self.providers.get(key.kind)
        return p.committed(key, now) if p else 0.0
