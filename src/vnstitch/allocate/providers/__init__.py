"""Capacity providers behind one interface: ``sim`` (cloud simulator) and ``linux`` (HTB).

Theory of operation: see :mod:`vnstitch.allocate.providers.base`.
"""

from vnstitch.allocate.providers.base import (
    Provider,
    RequestStatus,
    ResourceKey,
    ResourceKind,
    ScaleResult,
)
from vnstitch.allocate.providers.linux import LinuxBandwidthProvider
from vnstitch.allocate.providers.sim import CapacityLoss, Outage, SimProvider, SimResource

__all__ = [
    "CapacityLoss",
    "LinuxBandwidthProvider",
    "Outage",
    "Provider",
    "RequestStatus",
    "ResourceKey",
    "ResourceKind",
    "ScaleResult",
    "SimProvider",
    "SimResource",
]
