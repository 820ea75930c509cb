"""Feeds the core the received bytes of the tunnel ends it holds (protocol/heldpaths.py).

Theory of operation. While the core holds a given-up path's tunnel end in the kernel
(its far Route Manager stopped answering, the tunnel may still work), it needs to know
whether traffic from the far end still arrives on it. Every half probe interval, while
the core holds any end, :class:`HeldPathSampler` reads each held end's WireGuard
interface's received bytes through the dataplane driver (in a worker thread for a
kernel driver, as the reconciler and the allocation loop do) and passes them to
``core.datapath_rx``; the core decides, and its outputs are executed like any other. A
device that is missing, or a driver without counters, reports nothing: the held end then
goes after the probes' detection bound, exactly as if it had not been held. Only a
kernel driver samples: the in-memory one has no traffic to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from vnstitch.daemon.periodic import PeriodicTask
from vnstitch.dataplane.base import CountingDriver, DataplaneError
from vnstitch.model.ids import VNID
from vnstitch.protocol.api import Output

if TYPE_CHECKING:
    from vnstitch.daemon.runtime import RouteManagerDaemon

log = logging.getLogger("vnstitch.daemon")


@runtime_checkable
class HoldsPaths(Protocol):
    """A core that holds given-up paths' tunnel ends (protocol/heldpaths.py)."""

    def held_interfaces(self) -> dict[str, str]: ...
    def datapath_rx(self, token: str, rx_bytes: int, now: float) -> list[Output]: ...
    def release_held_paths(self, vnid: VNID, now: float) -> list[Output]: ...


def read_rx(driver: object, devices: Mapping[str, str]) -> dict[str, int]:
    """token -> received bytes of its device, for the devices the driver can count."""
    if not isinstance(driver, CountingDriver):
        return {}
    out: dict[str, int] = {}
    for token, dev in devices.items():
        with contextlib.suppress(DataplaneError):
            out[token] = driver.counters(dev).rx_bytes
    return out


class HeldPathSampler:
    def __init__(self, daemon: RouteManagerDaemon) -> None:
        self.daemon = daemon
        self._periodic = PeriodicTask(
            "held_sample", self.tick, daemon.config.timers.probe_interval_s / 2,
            counters=daemon.metrics, logger=log)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.daemon.offloads_dataplane:
            self._periodic.start(loop)

    async def stop(self) -> None:
        await self._periodic.stop()

    async def tick(self) -> None:
        """Report each held end's received bytes to the core (a core without held
        paths: nothing to do)."""
        d = self.daemon
        core = d.core
        if not isinstance(core, HoldsPaths):
            return
        devices = core.held_interfaces()
        if not devices:
            return
        rx = await asyncio.to_thread(read_rx, d.driver, devices)
        now = d.now()
        for token, value in rx.items():
            d.execute(core.datapath_rx(token, value, now))
