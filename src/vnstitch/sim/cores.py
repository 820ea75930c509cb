"""What the simulator needs from a Route Manager core implementation, beyond the contract.

Theory of operation: the simulator drives cores only through
:class:`~vnstitch.protocol.api.RouteManagerCoreAPI`. Building one, persisting and restoring
its state across a crash, and reading its reservations for the over-commit invariant are
implementation specific, so they go through a :class:`CoreFactory` the caller passes in.
:mod:`vnstitch.sim.protocol_cores` adapts the real Stitching Protocol core; tests may
pass a small double. Identities are fixed before any core is built, because each core
must know its neighbours' ids (and, for the real core, their public keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from vnstitch.model.ids import RouteManagerId, SegmentId
from vnstitch.protocol.api import PeerLink, RouteManagerCoreAPI


@dataclass(frozen=True, slots=True)
class LinkUsage:
    """How much of one neighbour link a core has reserved (held or committed)."""

    peer: RouteManagerId
    reserved_mbps: float
    capacity_mbps: float


class CoreFactory(Protocol):
    """Builds, persists and inspects the cores of one simulation."""

    @property
    def announce_interval_s(self) -> float:
        """Period of the cores' availability announcements."""
        ...

    @property
    def hold_time_s(self) -> float:
        """How long a discovery entry lives without a refresh."""
        ...

    def identity(self, segment: SegmentId) -> RouteManagerId:
        """The id of the RM of ``segment`` (called for every segment before any build)."""
        ...

    def build(
        self, segment: SegmentId, peers: Sequence[PeerLink], seed: int
    ) -> RouteManagerCoreAPI:
        """A fresh core for ``segment`` with these neighbours and seeded randomness."""
        ...

    def export_state(self, core: RouteManagerCoreAPI) -> object:
        """What the core persists (all that survives a crash)."""
        ...

    def restore(
        self, segment: SegmentId, peers: Sequence[PeerLink], state: object, seed: int
    ) -> RouteManagerCoreAPI:
        """A core restarted from ``state`` (its in-memory rest is lost)."""
        ...

    def link_usage(self, core: RouteManagerCoreAPI) -> Sequence[LinkUsage]:
        """Reserved vs capacity on each of the core's neighbour links."""
        ...

    def tunnel_states(self, core: RouteManagerCoreAPI) -> Mapping[str, str]:
        """Stitch id -> state of its tunnel at this (origin) end: "up", "degraded", ..."""
        ...

    @property
    def repair_bound_s(self) -> float:
        """Longest a stitch through a failed transit may take to be re-negotiated."""
        ...
