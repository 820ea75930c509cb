"""Tunnels follow the substrate's routes: the daemon side of :mod:`vnstitch.routing.follow`.

Theory of operation. With the Linux dataplane, :class:`EndpointRunner` checks every
WireGuard peer of the desired state whenever the kernel announces a routing change in
the daemon's namespace (links, addresses, routes, rules, nexthops:
:class:`~vnstitch.dataplane.routewatch.RouteEvents`) and every
``wireguard.follow_check_s`` besides (announcements can be lost under a burst). A check
asks the kernel, in a worker thread, which way each peer's outer packets leave now --
``route get`` with the tunnel's UDP ports, so a path pin counts -- for the configured
endpoint, or for the learned one when the peer is passive; the pure
:class:`~vnstitch.routing.follow.EndpointFollower` compares with the last check and
returns the resets due, which are written over UAPI (:func:`~vnstitch.dataplane.
wireguard_go.uapi_set_endpoint`). Why: wireguard-go keeps sending from the interface
the peer's last packet came in on, so without this a tunnel whose substrate route moved
(a cut, the IGP's reroute, a repair) stays dark until a handshake from the far end
(about 15 s measured in the lab), or until probes tear the stitch down.

Checks never overlap: changes announced during one run it again. Resets are kept
(``show decisions``, kind ``endpoint``) and counted (``endpoint_resets``). A failure
(no netlink, a device just removed) is logged and counted, never raised into the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from vnstitch.daemon.periodic import PeriodicTask
from vnstitch.dataplane import wireguard_go
from vnstitch.dataplane.base import DataplaneError
from vnstitch.dataplane.objects import DataplaneState, WireguardInterface
from vnstitch.dataplane.routewatch import RouteEvents, RouteQuery
from vnstitch.routing.follow import EndpointFollower, ResetEndpoint, SubstrateRoute, TunnelEnd

log = logging.getLogger("vnstitch.daemon.endpoints")

#: After an announcement, wait this long so one burst (an SPF run installs many routes)
#: costs one check.
SETTLE_S = 0.02
DECISIONS_KEPT = 200


def tunnel_peers(state: DataplaneState) -> list[tuple[WireguardInterface, str, str | None]]:
    """(device, peer key, configured endpoint or None when passive) of every peer."""
    return [(o, p.public_key, p.endpoint) for o in state if isinstance(o, WireguardInterface)
            for p in o.peers]


def kernel_routes(query: RouteQuery,
                  peers: list[tuple[WireguardInterface, str, str | None]]
                  ) -> dict[TunnelEnd, SubstrateRoute | None]:
    """Blocking: the route of each peer's outer packets (learned endpoints are read)."""
    learned: dict[str, dict[str, str | None]] = {}
    out: dict[TunnelEnd, SubstrateRoute | None] = {}
    for wg, peer, configured in peers:
        endpoint = configured
        if endpoint is None:
            if wg.name not in learned:
                try:
                    learned[wg.name] = {p.public_key: p.endpoint
                                        for p in wireguard_go.uapi_get(wg.name).peers}
                except DataplaneError:
                    learned[wg.name] = {}
            endpoint = learned[wg.name].get(peer)
        if not endpoint:
            continue  # passive and never heard from: nothing to follow yet
        end = TunnelEnd(wg.name, peer, endpoint, wg.listen_port)
        try:
            out[end] = query.udp(end.host, end.listen_port, end.port)
        except (DataplaneError, ValueError, IndexError):
            out[end] = None
    return out


class EndpointRunner:
    """Watches routing in ``netns``; resets endpoints whose route moved. ``desired``
    gives the dataplane state whose WireGuard peers are followed, ``now`` the daemon's
    clock (decision times), ``metrics`` the daemon's counters."""

    def __init__(self, desired: Callable[[], DataplaneState], now: Callable[[], float],
                 metrics: Counter[str], netns: str | None, check_s: float) -> None:
        self._desired, self._now, self.metrics = desired, now, metrics
        self.netns = netns
        self.check_s = check_s
        self.follower = EndpointFollower()
        self.decisions: deque[dict[str, Any]] = deque(maxlen=DECISIONS_KEPT)
        self.checks = 0
        self._query: RouteQuery | None = None
        self._events: RouteEvents | None = None
        self._wake: asyncio.Event | None = None
        # Woken early by a routing announcement (then settled), else every check_s.
        self._periodic = PeriodicTask("endpoint_check", self.check, check_s,
                                      counters=metrics, sleep=self._wait, logger=log)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        netns = self.netns
        try:
            self._query = RouteQuery(netns)
        except DataplaneError as exc:
            log.warning("endpoints: cannot ask the kernel for routes (%s): not following", exc)
            return
        self._wake = asyncio.Event()
        events = RouteEvents(self._wake.set, netns)
        try:
            events.start(loop)
            self._events = events
        except (DataplaneError, OSError) as exc:
            log.warning("endpoints: no routing announcements (%s): checking every %.1f s",
                        exc, self.check_s)
        self._periodic.start(loop)

    async def stop(self) -> None:
        await self._periodic.stop()
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._query is not None:
            self._query.close()
            self._query = None

    async def _wait(self, timeout: float) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            await asyncio.sleep(SETTLE_S)
        self._wake.clear()

    async def check(self) -> list[ResetEndpoint]:
        """One check now: ask the kernel, decide, reset. Returns the resets made."""
        if self._query is None:
            return []
        peers = tunnel_peers(self._desired())
        routes = await asyncio.to_thread(kernel_routes, self._query, peers)
        self.checks += 1
        resets = self.follower.observe(routes, self._now())
        for r in resets:
            row: dict[str, Any] = {"action": "reset", "subject": r.device,
                                   "reason": r.reason, "now": round(r.now, 3)}
            try:
                await asyncio.to_thread(wireguard_go.uapi_set_endpoint, r.device, r.peer,
                                        r.endpoint)
            except DataplaneError as exc:
                row["error"] = str(exc)
                self.metrics["endpoint_reset_errors"] += 1
                log.warning("endpoints: %s: %s; reset failed: %s", r.device, r.reason, exc)
            else:
                self.metrics["endpoint_resets"] += 1
                log.info("endpoints: %s: %s; endpoint %s written again", r.device, r.reason,
                         r.endpoint)
            self.decisions.append(row)
        return resets

    def status(self) -> dict[str, Any]:
        return {"check_s": self.check_s, "checks": self.checks,
                "events": self._events is not None, "resets": self.follower.resets,
                "last": list(self.decisions)[-3:]}
