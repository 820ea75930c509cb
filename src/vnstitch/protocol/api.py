"""The sans-I/O contract of one Route Manager core: its inputs, actions and events.

Theory of operation: a Route Manager core is a plain object driven by three kinds of
input -- a datagram from a peer, a local request, a timer firing -- each given the
current time ``now`` (seconds, float, from whatever clock the driver owns). Every input
returns a list of :data:`Output`: *actions* the driver must carry out (send bytes to a
peer, change the dataplane) and *events* that report what happened (for logs, metrics,
the simulator's statistics). The core never opens a socket, sleeps or reads a clock; the
same core runs in unit tests, in the discrete-event simulator and in the live daemon.

Peers are addressed by :data:`~vnstitch.model.ids.RouteManagerId`; the driver maps ids
to transport addresses (UDP ``host:port`` in the daemon, a segment in the simulator).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from vnstitch.dataplane.objects import DataplaneObject
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.model.virtual import VirtualNetwork

# -- actions: the driver must do these --------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send ``payload`` (an encoded, signed SP message) to the peer ``destination``.

    ``address`` is set for end-to-end tunnel probes, whose destination (the other end
    of a tunnel) is usually not a neighbour: the "host:port" that end said it takes
    probes at ("" if it gave none; drivers that route by RM id ignore it). For probes
    ``tunnel_address`` is that end's address *inside* the tunnel: a driver that can send
    through the tunnel (the daemon on a real dataplane) sends there, to the port of
    ``address``, so the probe tests the tunnel itself, not only the far RM."""

    destination: RouteManagerId
    payload: bytes
    address: str = ""
    tunnel_address: str = ""


@dataclass(frozen=True, slots=True)
class DataplaneChange:
    """Add (or replace, by key) ``add`` and remove the objects keyed ``remove``."""

    add: tuple[DataplaneObject, ...] = ()
    remove: tuple[str, ...] = ()


# -- events: things that happened ------------------------------------------------------


class FailureReason(enum.StrEnum):
    """Why a stitch request did not (or no longer does) succeed."""

    NO_ROUTE = "no_route"  # nobody announced / offered the VNID
    BANDWIDTH = "bandwidth"  # offers exist but none carries the bandwidth
    LATENCY = "latency"
    COST = "cost"
    HOP_LIMIT = "hop_limit"
    RESERVATION_REFUSED = "reservation_refused"  # lost the race for capacity
    TIMEOUT = "timeout"  # a phase timed out (query, hold, key exchange)
    TUNNEL_DOWN = "tunnel_down"  # health probes failed
    PEER_LOST = "peer_lost"
    LOCAL = "local"  # refused locally (unknown VNID on this segment, bad request)
    NOT_AUTHORISED = "not_authorised"  # the target's access policy refused this origin


@dataclass(frozen=True, slots=True)
class AccessRefused:
    """This RM (the target) refused ``origin``'s ``kind`` (``query``, ``hold``,
    ``resize``) for ``vnid`` -- or tore an ``established`` stitch down -- because of
    ``cause`` (``no_grant``, ``bad_signature``, ``expired``, ``revoked``, ...)."""

    origin: RouteManagerId
    vnid: VNID
    kind: str
    cause: str
    now: float


@dataclass(frozen=True, slots=True)
class StitchEstablished:
    stitch_id: str
    vnid: VNID
    path: tuple[RouteManagerId, ...]
    bandwidth_mbps: float
    latency_ms: float
    cost: float
    requested_at: float
    now: float


@dataclass(frozen=True, slots=True)
class StitchFailed:
    stitch_id: str
    vnid: VNID
    reason: FailureReason
    detail: str
    now: float


@dataclass(frozen=True, slots=True)
class StitchTornDown:
    stitch_id: str
    vnid: VNID
    reason: FailureReason
    renegotiating: bool
    now: float


@dataclass(frozen=True, slots=True)
class StitchResized:
    """Outcome of ``resize_stitch`` (at the origin): ``ok`` with the stitch now at
    ``new_mbps`` end to end, or not (``reason``: ``bandwidth``, ``rm_capacity``,
    ``released``, ``bad_keysig``, ``timeout``, ``torn_down``, ``in_progress``,
    ``not_established``, ``local``) with every hop still at ``old_mbps``. No outage either
    way. ``reason`` is ``resized`` on success, ``settled`` when a shrink that timed out
    was confirmed later."""

    stitch_id: str
    old_mbps: float
    new_mbps: float
    ok: bool
    reason: str
    now: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TunnelStateChanged:
    tunnel_id: str
    peer: RouteManagerId
    old: str
    new: str
    now: float


@dataclass(frozen=True, slots=True)
class PeerFault:
    """A datagram was dropped (bad signature, replay, malformed, ...). Counted, not raised."""

    source: object
    reason: str
    now: float


@dataclass(frozen=True, slots=True)
class RouteChanged:
    """The discovery table gained, changed or lost the best route to ``vnid``."""

    vnid: VNID
    via: tuple[RouteManagerId, ...] | None  # None: withdrawn / aged out
    now: float


@dataclass(frozen=True, slots=True)
class CongestionReported:
    """At the origin of ``stitch_id``: ``reporter`` (a RM on its path, this RM itself
    for its own links) sees ``link`` (two adjacent RMs of the path) at ``utilisation``
    (1.0 = the link's capacity), carrying ``excess_mbps`` above the reporter's target
    (None: not given). The controller decides whether to move the stitch."""

    stitch_id: str
    vnid: VNID
    link: tuple[RouteManagerId, RouteManagerId]
    utilisation: float
    reporter: RouteManagerId
    now: float
    excess_mbps: float | None = None


Action = SendDatagram | DataplaneChange
Event = StitchEstablished | StitchFailed | StitchTornDown | StitchResized | \
    TunnelStateChanged | PeerFault | RouteChanged | AccessRefused | CongestionReported
Output = Action | Event


@dataclass(frozen=True, slots=True)
class StitchConstraints:
    """What the requester needs from a path to a remote VNID."""

    bandwidth_mbps: float
    max_latency_ms: float = float("inf")
    max_cost: float = float("inf")
    hop_limit: int = 16


@dataclass(frozen=True, slots=True)
class PeerLink:
    """A neighbouring Route Manager and the substrate link capacity between the two."""

    peer: RouteManagerId
    capacity_mbps: float
    latency_ms: float
    cost: float = 1.0


@dataclass(slots=True)
class Counters:
    """Drop and traffic counters a core keeps (exported as metrics by the daemon)."""

    sent: int = 0
    sent_bytes: int = 0
    received: int = 0
    received_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    #: Datagrams sent, by message type name ("HELLO", "PROBE", ...).
    sent_by_type: dict[str, int] = field(default_factory=dict)
    #: Protocol events counted by name ("datapath_held", "lease_expired", ...).
    events: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


# -- typed read-only views of a core's tables (for controllers, control sockets) ----------


@dataclass(frozen=True, slots=True)
class StitchView:
    """A stitch this RM originated: its state, committed path, bandwidth and the
    path's cost (the sum of the link costs, as discovery sums them; 0 until an offer
    is taken)."""

    stitch_id: str
    vnid: VNID
    state: str
    path: tuple[RouteManagerId, ...]
    bandwidth_mbps: float
    cost: float = 0.0


@dataclass(frozen=True, slots=True)
class TunnelView:
    """This RM's end of one stitch's tunnel: the devices it uses and its health."""

    tunnel_id: str
    stitch_id: str
    vnid: VNID
    peer: RouteManagerId
    origin: bool
    state: str
    path: tuple[RouteManagerId, ...]
    bandwidth_mbps: float
    vxlan_device: str
    wg_device: str
    class_id: int
    rtt_ms: float | None
    loss: float


@dataclass(frozen=True, slots=True)
class RouteView:
    """One learned route to ``vnid`` (one per origin): ``via`` None means local.
    ``cost`` and ``latency_ms`` are summed over the path's links from this RM, as an
    offer along that path would sum them (so a stitch's cost compares with it)."""

    vnid: VNID
    via: RouteManagerId | None
    path: tuple[RouteManagerId, ...]
    bandwidth_mbps: float
    #: What the announcements carried (empty for a VN this RM is no member of).
    components: tuple[str, ...] = ()
    cost: float = 0.0
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class LinkUsageView:
    """How much of one neighbour link the core has reserved (held or committed)."""

    peer: RouteManagerId
    reserved_mbps: float
    capacity_mbps: float


class RouteManagerViews(Protocol):
    """Read-only tables and the one typed control call a controller needs from a core."""

    def stitch_views(self) -> list[StitchView]: ...

    def tunnel_views(self) -> list[TunnelView]: ...

    def tunnel_objects(self, tunnel_id: str) -> tuple[DataplaneObject, ...]:
        """The dataplane objects this RM's end of ``tunnel_id`` has (or will have once its
        stitch is established: known from key exchange on); () for an unknown tunnel."""
        ...

    def route_views(self) -> list[RouteView]:
        """Every best route (one per VNID and origin), remote and local."""
        ...

    def link_usage_views(self) -> list[LinkUsageView]: ...

    def resize_stitch(self, stitch_id: str, bandwidth_mbps: float,
                      now: float) -> list[Output]:
        """Resize a stitch originated here in place; the outcome is a StitchResized."""
        ...

    def renegotiate_stitch(self, stitch_id: str, avoid: frozenset[tuple[RouteManagerId, ...]],
                           now: float, *, keep_old: bool = False
                           ) -> tuple[str, list[Output]]:
        """Make-before-break: a successor of ``stitch_id`` avoiding every element of
        ``avoid`` (empty: the best path now); returns the successor's id. ``keep_old``:
        the caller releases the old stitch (else it goes when the successor is up)."""
        ...

    def report_congestion(self, neighbour: RouteManagerId, utilisation: float,
                          now: float, *, excess_mbps: float | None = None) -> list[Output]:
        """The link to ``neighbour`` is congested, carrying ``excess_mbps`` above this
        RM's target: tell the origins of the stitches crossing it
        (:mod:`vnstitch.protocol.congestion`)."""
        ...


class RouteManagerCoreAPI(Protocol):
    """What drivers (tests, simulator, daemon) rely on; the core implements it."""

    @property
    def rm_id(self) -> RouteManagerId: ...

    @property
    def counters(self) -> Counters: ...

    def start(self, now: float) -> list[Output]:
        """First announcements and timers; call once before anything else."""
        ...

    def receive(self, datagram: bytes, source: object, now: float) -> list[Output]:
        """Handle one datagram; never raises on bad bytes (they become PeerFault)."""
        ...

    def request_stitch(
        self, vnid: VNID, constraints: StitchConstraints, now: float
    ) -> tuple[str, list[Output]]:
        """Ask for connectivity to ``vnid``; returns the new stitch id and outputs."""
        ...

    def release_stitch(self, stitch_id: str, now: float) -> list[Output]: ...

    def add_local_vn(self, vn: VirtualNetwork, now: float) -> list[Output]:
        """A VNID became present on this segment (triggers an announcement)."""
        ...

    def remove_local_vn(self, vnid: VNID, now: float) -> list[Output]:
        """A VNID left this segment (triggers a withdrawal)."""
        ...

    def next_timer(self) -> float | None:
        """Absolute time of the earliest pending timer, or None."""
        ...

    def handle_timer(self, now: float) -> list[Output]:
        """Fire every timer due at or before ``now``."""
        ...
