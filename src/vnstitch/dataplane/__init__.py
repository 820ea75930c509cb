"""Dataplane: desired-state objects, the pure diff, and drivers (``memory``, ``linux``).

Theory of operation: see :mod:`vnstitch.dataplane.objects` (state and ``plan``) and
:mod:`vnstitch.dataplane.base` (driver interface and ``reconcile``).
"""

from vnstitch.dataplane.base import (
    CountingDriver,
    DataplaneDriver,
    DataplaneError,
    DeviceCounters,
    reconcile,
)
from vnstitch.dataplane.memory import MemoryDataplane
from vnstitch.dataplane.objects import (
    Bridge,
    BridgePort,
    DataplaneObject,
    DataplaneState,
    FdbEntry,
    Op,
    OpKind,
    RateLimit,
    Route,
    U32Filter,
    VxlanPort,
    WireguardInterface,
    WireguardPeer,
    plan,
)

__all__ = [
    "Bridge",
    "BridgePort",
    "CountingDriver",
    "DataplaneDriver",
    "DataplaneError",
    "DataplaneObject",
    "DataplaneState",
    "DeviceCounters",
    "FdbEntry",
    "MemoryDataplane",
    "Op",
    "OpKind",
    "RateLimit",
    "Route",
    "U32Filter",
    "VxlanPort",
    "WireguardInterface",
    "WireguardPeer",
    "plan",
    "reconcile",
]
