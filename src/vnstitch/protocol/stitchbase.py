"""The state the stitching handlers share, declared once, and their small common helpers.

Theory of operation. :class:`~vnstitch.protocol.core.RouteManagerCore` owns all state
(requests, reservations, tunnels, the ledger, discovery, timers). Its stitching logic is
split by role into mixins -- the origin (:mod:`~vnstitch.protocol.origin`), every RM on
a path (:mod:`~vnstitch.protocol.pathhops`), lease upkeep between neighbours
(:mod:`~vnstitch.protocol.leases`), the tunnel ends' health probes
(:mod:`~vnstitch.protocol.probes`) and in-place resizes
(:mod:`~vnstitch.protocol.resize`) -- composed in :mod:`~vnstitch.protocol.stitching`.
This base declares, for the type checker, the state and the methods one role calls on
another; at run time the core supplies them. The helpers here are the timing rules all
roles use: retransmission timeouts from a path's latency and the reservation lease.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.errors import RemoteProtocolError
from vnstitch.protocol.timers import TimerKind

if TYPE_CHECKING:
    from vnstitch.protocol.api import Counters, FailureReason, Output, PeerLink
    from vnstitch.protocol.config import CoreConfig, Timers
    from vnstitch.protocol.discovery import Discovery
    from vnstitch.protocol.grants import Grant
    from vnstitch.protocol.heldpaths import HeldPath
    from vnstitch.protocol.identity import Identity, TrustStore
    from vnstitch.protocol.messages import HoldRefused, Message, PathSignal
    from vnstitch.protocol.negotiation import StitchRequest
    from vnstitch.protocol.reservation import Ledger, Reservation
    from vnstitch.protocol.tunnels import Tunnel, TunnelState

#: Signature placeholder of a message about to be end-to-end signed.
NO_SIG = b"\0" * 64


class StitchingBase:
    # State owned by RouteManagerCore.
    me: RouteManagerId
    config: CoreConfig
    timers_cfg: Timers
    identity: Identity
    trust: TrustStore
    rng: random.Random
    peers: dict[RouteManagerId, PeerLink]
    ledger: Ledger
    discovery: Discovery
    requests: dict[str, StitchRequest]
    query_owner: dict[bytes, str]
    seen_queries: dict[bytes, int]
    reservations: dict[str, Reservation]
    tunnels: dict[str, Tunnel]
    held: dict[str, HeldPath]  # given-up paths' tunnel ends still in the kernel

    if TYPE_CHECKING:
        # -- provided by the core
        @property
        def counters(self) -> Counters: ...
        def send(self, peer: RouteManagerId, msg: Message, now: float, out: list[Output], *,
                 address: str = "", tunnel_address: str = "") -> None: ...
        def set_timer(self, kind: TimerKind | str, key: str, when: float) -> None: ...
        def cancel_timer(self, kind: TimerKind | str, key: str) -> None: ...
        def timer_due(self, kind: TimerKind | str, key: str) -> float | None: ...
        def stat(self, name: str, n: int = 1) -> None: ...
        def capacity_changed(self, peers: tuple[RouteManagerId, ...], now: float,
                             out: list[Output]) -> None: ...

        # -- provided by one role, used by another
        def _release(self, res: Reservation, now: float, out: list[Output]) -> None: ...
        def _tear_down_path(self, res: Reservation, now: float, out: list[Output],
                            skip: RouteManagerId | None = None) -> None: ...
        def _tunnel_down(self, token: str, now: float, out: list[Output], *,
                         hold: bool = False) -> None: ...
        def _hold(self, tun: Tunnel, now: float) -> bool: ...
        def _release_held(self, vnid: VNID, out: list[Output],
                          origin: RouteManagerId | None = None) -> None: ...
        def _objects_in_use(self) -> set[str]: ...
        def _lease_kept_by_datapath(self, res: Reservation, due: float, now: float,
                                    out: list[Output]) -> bool: ...
        def _tunnel_move(self, tun: Tunnel, new: TunnelState, now: float,
                         out: list[Output]) -> None: ...
        def _new_tunnel(self, token: str, sid: str, vnid: VNID,
                        path: tuple[RouteManagerId, ...], *, origin: bool, private: bytes,
                        public: bytes, own_addr: str, peer_addr: str, bw: float,
                        remote: tuple[str, ...]) -> Tunnel: ...
        def _send_probe(self, req: StitchRequest, tun: Tunnel, now: float,
                        out: list[Output]) -> None: ...
        def _established(self, token: str, now: float, out: list[Output]) -> None: ...
        def _attempt_failed(self, req: StitchRequest, why: str, now: float,
                            out: list[Output], reason: FailureReason) -> None: ...
        def _renegotiate(self, req: StitchRequest, now: float, out: list[Output],
                         reason: FailureReason) -> None: ...
        def _next_offer(self, req: StitchRequest, now: float, out: list[Output],
                        fallback: FailureReason) -> None: ...
        def _refused_at_origin(self, m: HoldRefused, now: float, out: list[Output]) -> None: ...
        def _path_down_at_origin(self, m: PathSignal, now: float,
                                 out: list[Output]) -> None: ...
        def _resize_abandon(self, req: StitchRequest, now: float,
                            out: list[Output]) -> None: ...
        def grant_for(self, vnid: VNID) -> Grant | None: ...

    # -- helpers --------------------------------------------------------------------------
    def _pos(self, path: tuple[RouteManagerId, ...], sender: RouteManagerId,
             forward: bool) -> int:
        """This RM's index on ``path``; the sender must be the neighbour it came from."""
        try:
            i = path.index(self.me)
        except ValueError:
            raise RemoteProtocolError("path_mismatch", "not on the path") from None
        j = i - 1 if forward else i + 1
        if not 0 <= j < len(path) or path[j] != sender:
            raise RemoteProtocolError("path_mismatch", "sender is not the previous hop")
        return i

    def _lease(self) -> float:
        return self.timers_cfg.lease_s

    def _forget_later(self, res: Reservation, now: float) -> None:
        """Drop an ended reservation once nothing can still ask about it: a retransmitted
        HOLD/COMMIT stops within two hold timeouts, a neighbour's LEASES query within a
        lease. Until then it answers duplicates ("released") instead of re-admitting."""
        t = self.timers_cfg
        self.set_timer(TimerKind.RESERVATION, res.token, now + 2.0 * t.hold_timeout_s + t.lease_s)

    def _rto(self, one_way_ms: float) -> float:
        """First retransmission timeout for a path of ``one_way_ms`` summed latency."""
        t = self.timers_cfg
        rtt_s = 2.0 * one_way_ms / 1000.0
        return min(t.retransmit_max_s, max(t.retransmit_min_s, t.retransmit_rtts * rtt_s))

    def _backoff(self, req: StitchRequest) -> float:
        req.rto = min(self.timers_cfg.retransmit_max_s, 2.0 * req.rto)
        return req.rto
