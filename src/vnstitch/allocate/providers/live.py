"""Adapter: the live compute and storage providers from a config section, for a runtime.

Theory of operation
-------------------
A runtime (the Route Manager daemon) that wants the allocator to drive compute and
storage needs the two providers built from its config and routed by kind next to its
bandwidth provider. :func:`parse_live_providers` checks a plain mapping (what a YAML
loader gives) and names every bad field by its dotted path (``providers.compute.vn100.
cpu_cores: must be a number > 0, got 'x'``); unknown fields are errors, so a typo never
falls back to a default. :func:`build_live_providers` makes the providers and returns
them behind one :class:`~vnstitch.allocate.providers.bykind.ProvidersByKind`.

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

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vnstitch.allocate.errors import AllocateError
from vnstitch.allocate.providers.base import Provider, ResourceKind
from vnstitch.allocate.providers.bykind import ProvidersByKind
from vnstitch.allocate.providers.compute import CgroupExecutor, ComputeProvider, Workload
from vnstitch.allocate.providers.storage import GIB, MIB, StorageProvider

_TOP = {"state_dir", "prefix", "hold_s", "compute", "storage"}
_COMPUTE = {"command", "netns", "cpu_cores", "memory_mib", "readiness", "max_instances",
            "start_timeout_s"}
_STORAGE = {"quota_gib"}


@dataclass(frozen=True, slots=True)
class LiveProviderConfig:
    state_dir: Path
    prefix: str = "vnstitch"
    hold_seconds: float = 0.0
    workloads: dict[str, Workload] = field(default_factory=dict)
    volume_quotas_gib: dict[str, float] = field(default_factory=dict)


def _mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise AllocateError(f"{path}: must be a mapping with string keys, got "
                            f"{type(value).__name__}")
    return value


def _fields(value: object, path: str, allowed: set[str],
            required: frozenset[str] = frozenset()) -> Mapping[str, object]:
    m = _mapping(value, path)
    unknown = sorted(set(m) - allowed)
    if unknown:
        raise AllocateError(f"{path}.{unknown[0]}: unknown field (known: "
                            f"{', '.join(sorted(allowed))})")
    missing = sorted(required - set(m))
    if missing:
        raise AllocateError(f"{path}.{missing[0]}: required")
    return m


def _number(value: object, path: str, *, positive: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise AllocateError(f"{path}: must be a number {'> 0' if positive else '>= 0'}, "
                            f"got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _argv(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or \
            not all(isinstance(a, str | int | float) and not isinstance(a, bool)
                    for a in value):
        raise AllocateError(f"{path}: must be a non-empty list of strings (argv), got "
                            f"{value!r}")
    return tuple(str(a) for a in value)


def _string(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise AllocateError(f"{path}: must be a non-empty string, got {value!r}")
    return value


def parse_live_providers(doc: object, where: str = "providers") -> LiveProviderConfig:
    """Check a config section (see the module docstring); bad fields raise
    :class:`AllocateError` naming ``where.path.to.field``."""
    top = _fields(doc, where, _TOP, frozenset({"state_dir"}))
    workloads: dict[str, Workload] = {}
    for vn, spec in _mapping(top.get("compute", {}), f"{where}.compute").items():
        path = f"{where}.compute.{vn}"
        w = _fields(spec, path, _COMPUTE, frozenset({"command"}))
        netns = w.get("netns")
        try:
            workloads[vn] = Workload(
                _argv(w["command"], f"{path}.command"),
                None if netns is None else _string(netns, f"{path}.netns"),
                cpu_quota_cores=_number(w.get("cpu_cores", 0.5), f"{path}.cpu_cores"),
                memory_bytes=int(_number(w.get("memory_mib", 256), f"{path}.memory_mib")
                                 * MIB),
                readiness=None if w.get("readiness") is None else
                _argv(w["readiness"], f"{path}.readiness"),
                start_timeout=_number(w.get("start_timeout_s", 30), f"{path}.start_timeout_s"),
                max_instances=int(_number(w.get("max_instances", 8), f"{path}.max_instances",
                                          positive=False)))
        except AllocateError as exc:
            msg = str(exc)
            raise AllocateError(msg if msg.startswith(where) else f"{path}: {msg}") from None
    quotas: dict[str, float] = {}
    for vn, spec in _mapping(top.get("storage", {}), f"{where}.storage").items():
        path = f"{where}.storage.{vn}"
        s = _fields(spec, path, _STORAGE, frozenset({"quota_gib"}))
        quotas[vn] = _number(s["quota_gib"], f"{path}.quota_gib")
    return LiveProviderConfig(
        Path(_string(top["state_dir"], f"{where}.state_dir")),
        _string(top.get("prefix", "vnstitch"), f"{where}.prefix"),
        _number(top.get("hold_s", 0.0), f"{where}.hold_s", positive=False),
        workloads, quotas)


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
