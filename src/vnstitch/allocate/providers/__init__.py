"""Capacity providers behind one interface: ``sim`` (cloud simulator), ``linux`` (HTB),
``compute`` (workload instances in cgroups) and ``storage`` (loop-mounted ext4 volumes),
and ``by-kind``, which routes each kind to one of them.

Theory of operation: see :mod:`vnstitch.allocate.providers.base`.
"""

from vnstitch.allocate.providers.base import (
    Provider,
    RequestStatus,
    ResourceKey,
    ResourceKind,
    ScaleResult,
)
from vnstitch.allocate.providers.bykind import ProvidersByKind
from vnstitch.allocate.providers.compute import ComputeProvider, Workload
from vnstitch.allocate.providers.linux import LinuxBandwidthProvider
from vnstitch.allocate.providers.sim import CapacityLoss, Outage, SimProvider, SimResource
from vnstitch.allocate.providers.storage import StorageProvider

__all__ = [
    "CapacityLoss",
    "ComputeProvider",
    "LinuxBandwidthProvider",
    "Outage",
    "Provider",
    "ProvidersByKind",
    "RequestStatus",
    "ResourceKey",
    "ResourceKind",
    "ScaleResult",
    "SimProvider",
    "SimResource",
    "StorageProvider",
    "Workload",
]
