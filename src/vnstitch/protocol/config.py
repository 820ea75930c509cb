"""Configuration of one Route Manager core: identity-independent settings and timers.

Theory of operation: plain frozen dataclasses with documented defaults (PROTOCOL.md
lists the same numbers; a test checks they agree). Times are seconds, bandwidth Mbit/s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vnstitch.model.ids import VNID, SegmentId
from vnstitch.model.virtual import VirtualNetwork
from vnstitch.protocol.api import PeerLink
from vnstitch.protocol.grants import AccessPolicy, Grant
from vnstitch.routing.table import stitch_route_metric


@dataclass(frozen=True, slots=True)
class Timers:
    #: Period of HELLO (digest keepalive) to every neighbour.
    announce_interval_s: float = 10.0
    #: Entries (and the neighbour) age out after this many silent intervals.
    hold_intervals: int = 3
    #: Minimum time between two batches of announcements to the same neighbour (MRAI, as
    #: in BGP): changes meanwhile are batched and only the latest best path is sent, which
    #: stops path hunting from flooding the network on start-up and after failures.
    min_advertisement_interval_s: float = 0.5
    #: Minimum time between two UPDATEs carrying only withdrawals (not held by the MRAI).
    withdrawal_interval_s: float = 0.05
    #: Give up collecting offers after this long without a feasible one.
    query_timeout_s: float = 3.0
    #: First retransmission of an unanswered QUERY/HOLD/COMMIT/PROBE after this many
    #: estimated path round trips (from discovery's or the offer's path latency) ...
    retransmit_rtts: float = 2.0
    #: ... but never sooner than this ...
    retransmit_min_s: float = 0.05
    #: ... and backing off (doubling) to at most this between two retransmissions.
    retransmit_max_s: float = 0.5
    #: After the first feasible offer that is not provably best, wait until the offer of
    #: discovery's best route is due, plus this fraction of the first offer's round trip.
    offer_grace_rtt: float = 0.5
    #: A hold not committed within this time is released everywhere.
    hold_timeout_s: float = 3.0
    #: A reservation lives this many announce intervals after the neighbours it shares
    #: with last confirmed it (their HELLO lease digests agree, or a LEASES list names
    #: it); then it is released and the rest of the path told (ABORT / PATH_DOWN).
    lease_intervals: float = 3.0
    #: Period of tunnel health probes (origin -> target, end to end).
    probe_interval_s: float = 2.0
    #: Consecutive missed probes after which a tunnel is DOWN.
    probe_misses_down: int = 3
    #: Longest the origin keeps a given-up path's tunnel end in the kernel while traffic
    #: from the far end still arrives on it (protocol/heldpaths.py).
    datapath_hold_s: float = 120.0
    #: Loss over the recent probes above which an UP tunnel is DEGRADED.
    degraded_loss: float = 0.25
    #: The origin sends a query to at most this many neighbours (those with a route first).
    query_fanout: int = 3
    #: A transit RM forwards it to at most this many (its best next hops for the VNID).
    query_transit_fanout: int = 1
    #: Re-announce a route only when its offered bandwidth moved by more than this.
    bandwidth_change_fraction: float = 0.1

    @property
    def hold_time_s(self) -> float:
        return self.announce_interval_s * self.hold_intervals

    @property
    def lease_s(self) -> float:
        return self.announce_interval_s * self.lease_intervals


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """What a Route Manager needs to know about its own segment and neighbours."""

    segment: SegmentId
    peers: tuple[PeerLink, ...]
    local_vns: tuple[VirtualNetwork, ...] = ()
    #: Underlay address WireGuard listens on (the other end's endpoint points here).
    underlay_address: str = "192.0.2.1"
    wg_port_base: int = 51820
    #: Bandwidth this segment offers to stitches in total (None: sum of peer links).
    offered_mbps: float | None = None
    #: Kernel metric of the routes to stitched prefixes: the stitching-priority table's
    #: default band (:mod:`vnstitch.routing.table`), below the substrate's own routes.
    route_metric: int = field(default_factory=stitch_route_metric)
    #: Where this RM takes end-to-end tunnel probes ("host:port"), told to the other end
    #: of each tunnel; "" when the driver maps RM ids to addresses itself (simulator).
    probe_address: str = ""
    timers: Timers = field(default_factory=Timers)
    #: Who may stitch into each hosted VN (:mod:`vnstitch.protocol.grants`); a VN not
    #: listed is open to every trusted RM (the daemon always lists its VNs explicitly).
    access: Mapping[VNID, AccessPolicy] = field(default_factory=dict)
    #: Membership grants this RM presents when it asks for stitches into their VNs.
    grants: tuple[Grant, ...] = ()
    #: Refuse a second origin's tunnel end for a VNID here (``vnid_in_use``): a Linux
    #: namespace holds one VXLAN device per VNI. The daemon sets it; the simulator's
    #: idealised dataplane has no such limit and leaves it off.
    one_end_per_vnid: bool = False
    #: The origin keeps a given-up path's tunnel end in the kernel while the far end's
    #: traffic still arrives on it (:mod:`vnstitch.protocol.heldpaths`). The daemon sets
    #: it (it reports the interface counters); the simulator has no kernel objects.
    hold_datapath: bool = False
    #: A new tunnel end that has not answered a probe yet is still coming up for this
    #: long after its stitch is established (a kernel dataplane applies its devices in
    #: a worker thread and starts a wireguard-go per tunnel -- seconds on a loaded
    #: host -- and the first WireGuard handshake follows): its missed probes do not
    #: count until then. The daemon sets it for a kernel dataplane; 0 in the simulator.
    tunnel_setup_s: float = 0.0

    def total_offered(self) -> float:
        if self.offered_mbps is not None:
            return self.offered_mbps
        return sum(p.capacity_mbps for p in self.peers)
