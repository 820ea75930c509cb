"""Virtual networks, their components, and stitches between segments.

Theory of operation: a virtual network (VN) is identified by its VNID and lives on one or
more segments; on each segment it exposes *components* -- IP prefixes or endpoints -- that
a stitch makes reachable from the other segments. A :class:`Stitch` is a reserved,
encrypted connection carrying one VNID from an origin segment to a target segment along a
path of segments (transit segments in between). Values are immutable and validated.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from vnstitch.model.errors import ModelError
from vnstitch.model.ids import VNID, SegmentId


class ComponentKind(enum.StrEnum):
    PREFIX = "prefix"
    ENDPOINT = "endpoint"


@dataclass(frozen=True, slots=True, order=True)
class Component:
    """One reachable piece of a VN: an IP prefix (``10.1.0.0/24``) or endpoint address."""

    kind: ComponentKind
    value: str

    @staticmethod
    def parse(text: str) -> Component:
        """``"10.0.0.0/24"`` -> prefix, ``"10.0.0.5"`` -> endpoint; anything else raises."""
        try:
            if "/" in text:
                return Component(ComponentKind.PREFIX, str(ipaddress.ip_network(text)))
            return Component(ComponentKind.ENDPOINT, str(ipaddress.ip_address(text)))
        except ValueError as exc:
            raise ModelError(f"bad virtual network component {text!r}: {exc}") from None

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class VirtualNetwork:
    """A VNID as present on one segment, with the components reachable there."""

    vnid: VNID
    segment: SegmentId
    components: tuple[Component, ...] = ()
    application: str = "default"


@dataclass(frozen=True, slots=True)
class Stitch:
    """A committed connection of ``vnid`` from ``path[0]`` to ``path[-1]``."""

    stitch_id: str
    vnid: VNID
    path: tuple[SegmentId, ...]
    bandwidth_mbps: float

    def __post_init__(self) -> None:
        if len(self.path) < 2:
            raise ModelError(f"stitch {self.stitch_id}: path needs two segments, got {self.path}")
        if len(set(self.path)) != len(self.path):
            raise ModelError(f"stitch {self.stitch_id}: path has a loop {self.path}")
        if not self.bandwidth_mbps > 0:
            raise ModelError(f"stitch {self.stitch_id}: bandwidth must be > 0")

    @property
    def origin(self) -> SegmentId:
        return self.path[0]

    @property
    def target(self) -> SegmentId:
        return self.path[-1]

    @property
    def transit(self) -> tuple[SegmentId, ...]:
        return self.path[1:-1]
