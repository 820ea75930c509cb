"""Adapter: the live compute and storage providers from a config section, for a runtime.

Theory of operation
-------------------
A runtime (the Route Manager daemon) that wants the allocator to drive compute and
storage needs the two providers built from its config and routed by kind next to its
bandwidth provider. :class:`LiveProviderConfig` is that config (the daemon's ``pra:
providers:`` section, whose schema is :class:`vnstitch.daemon.pra_model.ProvidersSection`);
:func:`build_live_providers` makes the providers and returns them behind one
:class:`~vnstitch.allocate.providers.bykind.ProvidersByKind`.

Example (YAML)::

    providers:
      state_dir: /var/lib/vnstitch/volumes
      prefix: rm-a
      hold_s: 60
      compute:
        vn100: {command: [/usr/bin/my-service, --port, "8080"], netns: vn100,
                cpu_cores: 0.5, memory_mib: 256, readiness: [curl, -sf, localhost:8080],
                max_instances: 8, start_timeout_s: 30}
      storage:
        vn100: {quota_gib: 100}

Both providers block (readiness probes run subprocesses; a resize takes a fraction of
a second, more offline): a runtime calls them, or the allocator step that calls them,
off its event loop, e.g. in one worker thread (they are not thread-safe, so one). Call
``close()`` on both at shutdown; they stop every instance and remove every volume made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vnstitch.allocate.providers.base import Provider, ResourceKind
from vnstitch.allocate.providers.bykind import ProvidersByKind
from vnstitch.allocate.providers.compute import CgroupExecutor, ComputeProvider, Workload
from vnstitch.allocate.providers.storage import GIB, StorageProvider


@dataclass(frozen=True, slots=True)
class LiveProviderConfig:
    state_dir: Path
    prefix: str = "vnstitch"
    hold_seconds: float = 0.0
    workloads: dict[str, Workload] = field(default_factory=dict)
    volume_quotas_gib: dict[str, float] = field(default_factory=dict)


def build_live_providers(cfg: LiveProviderConfig,
                         others: Mapping[ResourceKind, Provider] | None = None,
                         ) -> tuple[ProvidersByKind, ComputeProvider | None,
                                    StorageProvider | None]:
    """The providers ``cfg`` asks for, routed by kind with ``others`` (e.g. bandwidth);
    also returned one by one so the caller can ``close()`` them."""
    routes: dict[ResourceKind, Provider] = dict(others or {})
    compute = storage = None
    if cfg.workloads:
        compute = ComputeProvider(cfg.workloads, hold_seconds=cfg.hold_seconds,
                                  executor=CgroupExecutor(prefix=cfg.prefix))
        routes[ResourceKind.COMPUTE] = compute
    if cfg.volume_quotas_gib:
        storage = StorageProvider(cfg.volume_quotas_gib, cfg.state_dir, unit_bytes=GIB,
                                  prefix=cfg.prefix)
        routes[ResourceKind.STORAGE] = storage
    return ProvidersByKind(routes), compute, storage
