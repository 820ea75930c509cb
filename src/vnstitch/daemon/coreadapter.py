"""What the daemon needs from a Route Manager core beyond the sans-I/O API, and how to make one.

Theory of operation: :class:`~vnstitch.protocol.api.RouteManagerCoreAPI` covers inputs
and outputs; a daemon additionally has to build a core from its config, key and saved
state, snapshot it (``snapshot()``: the core's ``export_state`` as bytes), and know the
last sequence number the core put on the wire so it can persist a high-water mark
*before* sending; its tables and resize call come through the typed
:class:`~vnstitch.protocol.api.RouteManagerViews`. :class:`DaemonCore` states those
needs; :class:`CoreSetup` carries everything a factory gets. The real factory
(:func:`protocol_core_factory`) is a thin adapter over ``vnstitch.protocol``; tests pass
their own factory. The dataplane driver is chosen here too (``memory`` or ``linux``), so
the runtime never imports the Linux driver unless asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from vnstitch.daemon.config import DaemonConfig
from vnstitch.daemon.identity import KeyInfo
from vnstitch.dataplane.base import DataplaneDriver
from vnstitch.dataplane.memory import MemoryDataplane
from vnstitch.dataplane.objects import Bridge, BridgePort, DataplaneObject
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import RouteManagerCoreAPI, RouteManagerViews
from vnstitch.protocol.tunnels import bridge_name as tunnel_bridge_name


class DaemonCore(RouteManagerCoreAPI, RouteManagerViews, Protocol):
    def snapshot(self) -> bytes:
        """The core's exported state as bytes; the factory rebuilds the core from it."""
        ...

    @property
    def last_sequence(self) -> int:
        """The highest sequence number the core has put in a message so far."""
        ...


@dataclass(frozen=True, slots=True)
class CoreSetup:
    config: DaemonConfig
    key: KeyInfo
    exported_state: bytes | None  # None on first start
    sequence_floor: int  # every number the core uses must be above this
    now: float


CoreFactory = Callable[[CoreSetup], DaemonCore]


def protocol_core_factory(setup: CoreSetup) -> DaemonCore:
    """Build the real Stitching Protocol core (``vnstitch.protocol``)."""
    # Imported here because protocoladapter imports CoreSetup from this module.
    from vnstitch.daemon.protocoladapter import build  # noqa: PLC0415

    core: DaemonCore = build(setup)
    return core


def bridge_name(vnid: int) -> str:
    """Name of the bridge that joins a VN's local host ports and its VXLAN ports.

    It is the core's name for the same bridge, so the core's tunnel objects and the
    daemon's host ports meet on one bridge.
    """
    return tunnel_bridge_name(VNID(vnid))


def local_objects(config: DaemonConfig) -> list[DataplaneObject]:
    """Dataplane objects the daemon owns for its local VNs (bridge + host ports)."""
    objs: list[DataplaneObject] = []
    for vn in config.local_vns:
        if not vn.host_ports:
            continue
        br = bridge_name(vn.vnid)
        objs.append(Bridge(br))
        objs.extend(BridgePort(br, port) for port in vn.host_ports)
    return objs


def make_driver(config: DaemonConfig) -> DataplaneDriver:
    """The dataplane driver named in ``config.dataplane.driver``."""
    if config.dataplane.driver == "memory":
        ports = [p for vn in config.local_vns for p in vn.host_ports]
        ports += config.qos.devices if config.qos is not None else ()
        return MemoryDataplane(external_ports=ports)
    # Only the linux driver needs pyroute2 and the kernel, so load it only when chosen.
    from vnstitch.dataplane.linux import LinuxDataplane  # noqa: PLC0415

    # The owner tag keeps two RMs sharing a namespace (or a lab host) off each other's links.
    return LinuxDataplane(netns=config.dataplane.netns, owner=f"rm-{config.segment}",
                          shaped=config.qos.devices if config.qos is not None else ())
