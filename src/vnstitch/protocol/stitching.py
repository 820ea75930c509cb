"""Negotiation, reservation and tunnel handlers of the core (a mixin over its state).

Theory of operation (message flow for a stitch origin O .. transit T .. target X)::

    O: QUERY  ->  T: QUERY  ->  X           (discovery-guided, bounded fan-out)
    O  <- OFFER  T  <- OFFER  X             (summed latency/cost, bottleneck bw)
    O: HOLD   ->  T: HOLD   ->  X           (admission on every link; O's WG key)
    O  <- HOLD_OK T <- HOLD_OK X            (X's WG key, end-to-end signed)
    O: COMMIT ->  T: COMMIT ->  X           (holds become committed leases)
    O  <- COMMIT_ACK ...                    (stitch ESTABLISHED at O: 3 round trips)
    O: PROBE  ->  ...  -> X, PROBE_REPLY back (tunnel UP; refreshes leases on the path)

A refusal (HOLD_REFUSED) releases holds on its way back and the origin tries the next
feasible offer; timeouts abort along the path. Missed probes take the tunnel DOWN at
the origin, which releases, reports StitchTornDown(renegotiating=True) and queries again;
transit and target release when their lease runs out.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import (
    DataplaneChange,
    FailureReason,
    Output,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
    TunnelStateChanged,
)
from vnstitch.protocol.errors import RemoteProtocolError
from vnstitch.protocol.messages import (
    MAX_PATH,
    Entry,
    Hold,
    HoldOk,
    HoldRefused,
    Message,
    MsgType,
    Offer,
    PathSignal,
    Probe,
    Query,
)
from vnstitch.protocol.negotiation import StitchRequest, StitchState, describe, rank
from vnstitch.protocol.reservation import Reservation, ReservationState
from vnstitch.protocol.tunnels import Tunnel, TunnelState, tunnel_addresses, wg_keypair

if TYPE_CHECKING:
    from vnstitch.protocol.api import Counters, PeerLink
    from vnstitch.protocol.config import CoreConfig, Timers
    from vnstitch.protocol.discovery import Discovery
    from vnstitch.protocol.identity import Identity, TrustStore
    from vnstitch.protocol.reservation import Ledger

_SEEN_QUERIES_MAX = 4096
_NO_SIG = b"\0" * 64


class StitchingMixin:
    # State owned by RouteManagerCore (declared for the type checker).
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

    if TYPE_CHECKING:
        @property
        def counters(self) -> Counters: ...
        def send(self, peer: RouteManagerId, msg: Message, now: float,
                 out: list[Output]) -> None: ...
        def set_timer(self, kind: str, key: str, when: float) -> None: ...
        def cancel_timer(self, kind: str, key: str) -> None: ...
        def timer_due(self, kind: str, key: str) -> float | None: ...
        def stat(self, name: str, n: int = 1) -> None: ...
        def capacity_changed(self, peers: tuple[RouteManagerId, ...], now: float,
                             out: list[Output]) -> None: ...

    # -- path helpers ---------------------------------------------------------------------
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
        t = self.timers_cfg
        return t.probe_interval_s * (t.probe_misses_down + 1)

    def _rto(self, one_way_ms: float) -> float:
        """First retransmission timeout for a path of ``one_way_ms`` summed latency."""
        t = self.timers_cfg
        rtt_s = 2.0 * one_way_ms / 1000.0
        return min(t.retransmit_max_s, max(t.retransmit_min_s, t.retransmit_rtts * rtt_s))

    def _backoff(self, req: StitchRequest) -> float:
        req.rto = min(self.timers_cfg.retransmit_max_s, 2.0 * req.rto)
        return req.rto

    # -- requests -------------------------------------------------------------------------
    def start_request(self, vnid: VNID, constraints: StitchConstraints,
                      now: float) -> tuple[str, list[Output]]:
        out: list[Output] = []
        sid = self.rng.randbytes(6).hex()
        req = StitchRequest(sid, vnid, constraints, now)
        self.requests[sid] = req
        if vnid not in self.discovery.local:
            req.machine.move(StitchState.FAILED)
            out.append(StitchFailed(sid, vnid, FailureReason.LOCAL,
                                    f"VNID {vnid} is not present on this segment", now))
        elif constraints.bandwidth_mbps <= 0 or constraints.hop_limit < 1:
            req.machine.move(StitchState.FAILED)
            out.append(StitchFailed(sid, vnid, FailureReason.LOCAL,
                                    "bandwidth must be > 0 and hop limit >= 1", now))
        else:
            self._send_query(req, now, out)
        return sid, out

    def _send_query(self, req: StitchRequest, now: float, out: list[Output]) -> None:
        req.query_sent_at = now
        req.offers, req.tried, req.refusals, req.decide_at = [], set(), [], None
        for qid in req.query_ids:
            self.query_owner.pop(qid, None)
        req.query_ids = {}
        known = [r for r in self.discovery.routes_to(req.vnid) if r.via is not None]
        # No route known: the query floods, which is expensive and may cross a long path;
        # so at most a few waves in the query time.
        req.rto = self._rto(known[0].entry.latency_ms) if known else \
            self.timers_cfg.query_timeout_s / 3
        self._query_wave(req, now, out)
        self.set_timer("query", req.stitch_id, now + self.timers_cfg.query_timeout_s)

    def _query_wave(self, req: StitchRequest, now: float, out: list[Output]) -> None:
        """Send the query (again). Each wave has a fresh id, so transit RMs' duplicate
        suppression does not stop a retransmission; offers to any wave count."""
        t = self.timers_cfg
        c = req.constraints
        hops = self.discovery.next_hops(req.vnid, {self.me}, c.bandwidth_mbps)[
            :self.timers_cfg.query_fanout]
        # Transit RMs that know no route either pass the query to ``fanout`` neighbours:
        # with no route known here (discovery still converging) a fan-out of one would be
        # a random walk that rarely finds the VN, so such a wave floods as wide as allowed.
        fanout = t.query_fanout if not hops else \
            min(t.query_fanout, t.query_transit_fanout + len(req.query_ids))
        req.query_id = self.rng.randbytes(8)
        req.query_ids[req.query_id] = now
        self.query_owner[req.query_id] = req.stitch_id
        q = Query(req.query_id, req.vnid, c.bandwidth_mbps, c.max_latency_ms, c.max_cost,
                  min(c.hop_limit, MAX_PATH - 1), (self.me,), 0.0, 0.0,
                  self.ledger.rm_available(), fanout)
        for peer in hops or list(self.peers):
            self.send(peer, q, now, out)
        self.set_timer("qrtx", req.stitch_id, now + req.rto)

    def release_request(self, sid: str, now: float, out: list[Output]) -> None:
        req = self.requests.get(sid)
        if req is None or req.state in (StitchState.FAILED, StitchState.RELEASED):
            return
        self._abandon_attempt(req, now, out)
        req.machine.move(StitchState.RELEASED)
        for kind in ("query", "qrtx", "decide", "probe", "prtx"):
            self.cancel_timer(kind, sid)
        out.append(StitchTornDown(sid, req.vnid, FailureReason.LOCAL, False, now))

    def _abandon_attempt(self, req: StitchRequest, now: float, out: list[Output]) -> None:
        """Abort the current attempt along its path and drop its local state."""
        if not req.token:
            return
        token = req.token
        self.cancel_timer("hold", token)
        self.cancel_timer("rtx", token)
        self.cancel_timer("prtx", req.stitch_id)
        req.outstanding = None
        res = self.reservations.get(token)
        if res is not None and res.state in (ReservationState.HELD, ReservationState.COMMITTED):
            self._release(res, now, out)
            self.send(req.path[1], PathSignal(MsgType.ABORT, token, req.path), now, out)
        self._tunnel_down(token, now, out)
        req.token = ""

    # -- timers ---------------------------------------------------------------------------
    def fire_stitching_timer(self, kind: str, key: str, now: float, out: list[Output]) -> None:
        if kind in ("query", "decide"):
            req = self.requests.get(key)
            if req is not None and req.state is StitchState.QUERYING:
                self._decide(req, now, out)
        elif kind == "qrtx":
            req = self.requests.get(key)
            if req is not None and req.state is StitchState.QUERYING and not req.feasible():
                self._backoff(req)
                self._query_wave(req, now, out)
        elif kind == "rtx":
            req = self.requests.get(key.rsplit(".", 1)[0])
            if req is not None and req.token == key and req.outstanding is not None and \
                    req.state in (StitchState.HOLDING, StitchState.COMMITTING):
                self.stat("retransmissions")
                self.send(req.path[1], req.outstanding, now, out)
                self.set_timer("rtx", key, now + self._backoff(req))
        elif kind == "relay":
            self._relay_retransmit(key, now, out)
        elif kind == "prtx":
            self._probe_retransmit(key, now, out)
        elif kind == "hold":
            req = self.requests.get(key.rsplit(".", 1)[0])
            if req is not None and req.token == key:
                req.refusals.append(f"attempt {key} timed out")
                self._abandon_attempt(req, now, out)
                self._next_offer(req, now, out, FailureReason.TIMEOUT)
        elif kind == "resv":
            res = self.reservations.get(key)
            if res is not None and res.state in (ReservationState.HELD,
                                                 ReservationState.COMMITTED):
                res.machine.move(ReservationState.EXPIRED)
                self.ledger.release(key)
                self.capacity_changed(res.links, now, out)
                self._tunnel_down(key, now, out)
        elif kind == "probe":
            self._probe_tick(key, now, out)

    # -- dispatch -------------------------------------------------------------------------
    def dispatch_stitching(self, sender: RouteManagerId, msg: Message, now: float,
                           out: list[Output]) -> None:
        if isinstance(msg, Query):
            self._on_query(sender, msg, now, out)
        elif isinstance(msg, Offer):
            i = self._pos(msg.path, sender, forward=False)
            if i > 0:
                self.send(msg.path[i - 1], msg, now, out)
            else:
                self._on_offer(msg, now, out)
        elif isinstance(msg, Hold):
            self._on_hold(sender, msg, now, out)
        elif isinstance(msg, HoldOk):
            i = self._pos(msg.path, sender, forward=False)
            if i > 0:
                res = self.reservations.get(msg.token)
                if res is not None:
                    res.hold_answer = msg
                    self._relay_done(res)
                self.send(msg.path[i - 1], msg, now, out)
            else:
                self._on_hold_ok(msg, now, out)
        elif isinstance(msg, HoldRefused):
            self._on_refused(sender, msg, now, out)
        elif isinstance(msg, PathSignal):
            self._on_signal(sender, msg, now, out)
        elif isinstance(msg, Probe):
            self._on_probe(sender, msg, now, out)

    # -- query / offer --------------------------------------------------------------------
    def _on_query(self, sender: RouteManagerId, q: Query, now: float,
                  out: list[Output]) -> None:
        if self.me in q.path or q.path[-1] != sender:
            self.stat("query_loop")
            return
        lat, cost = self.discovery.links[sender]
        path = (*q.path, self.me)
        bn = min(q.bottleneck_mbps, self.ledger.available(sender), self.ledger.rm_available())
        q2 = dataclasses.replace(q, path=path, latency_ms=q.latency_ms + lat,
                                 cost=q.cost + cost, bottleneck_mbps=bn)
        vn = self.discovery.local.get(q.vnid)
        if vn is not None:
            comps = tuple(str(c) for c in vn.components)
            self.send(sender, Offer(q.query_id, path, q2.latency_ms, q2.cost, bn, comps),
                      now, out)
            return
        if len(path) - 1 >= q.hop_limit:
            self.stat("query_hop_limit")
            return
        count = self.seen_queries.get(q.query_id, 0)
        if count >= 2:
            return
        if len(self.seen_queries) >= _SEEN_QUERIES_MAX:
            self.seen_queries.pop(next(iter(self.seen_queries)))
        self.seen_queries[q.query_id] = count + 1
        exclude = set(path)
        # Transit RMs follow discovery: the best next hop(s) that can carry the bandwidth
        # (the origin already spread the query over ``query_fanout`` first hops, and widens
        # ``q.fanout`` on retransmission waves); only an RM that knows no route floods. A
        # wide transit fan-out from the start makes every query visit every RM of a large
        # network (path hunting in negotiation).
        fanout = min(q.fanout, self.timers_cfg.query_fanout)
        hops = self.discovery.next_hops(q.vnid, exclude, q.bandwidth_mbps)[:fanout]
        if not hops:
            hops = [p for p in self.peers if p not in exclude][:fanout]
        for peer in hops:
            self.send(peer, q2, now, out)

    def _on_offer(self, offer: Offer, now: float, out: list[Output]) -> None:
        sid = self.query_owner.get(offer.query_id)
        req = self.requests.get(sid) if sid else None
        if req is None or req.state is not StitchState.QUERYING or \
                offer.query_id not in req.query_ids:
            self.stat("late_offer")
            return
        req.offers.append(offer)
        if not req.feasible() or offer not in req.feasible():
            return
        expected = self._expected_best(req)
        if expected is None or (offer.cost, offer.latency_ms) <= (
                expected.cost + 1e-9, expected.latency_ms + 1e-9):
            # Nothing discovery knows can beat it -- or discovery knows no usable route
            # yet (start-up, after a failure): then the query flooded, nothing says a
            # cheaper offer is on its way, and waiting would only delay the stitch.
            self._decide(req, now, out)
        elif req.decide_at is None:
            sent = req.query_ids[offer.query_id]
            grace = self.timers_cfg.offer_grace_rtt * (now - sent)
            # Discovery's best feasible route is the path the query took toward the best
            # next hop, so its offer arrives one round trip of *that* path after the wave
            # went out: wait for it (it is then taken at once, and setup is 3 round trips
            # of the chosen path) rather than a guess; the grace covers jitter, and
            # bounds the wait when that route has gone stale.
            due = sent + 2.0 * expected.latency_ms / 1000.0
            req.decide_at = max(now, due) + grace
            self.set_timer("decide", req.stitch_id, req.decide_at)

    def _expected_best(self, req: StitchRequest) -> Entry | None:
        """The cheapest route discovery knows to ``req.vnid`` that meets every constraint
        (announced bandwidth included): the offer the origin can expect at best."""
        c = req.constraints
        for r in self.discovery.routes_to(req.vnid):
            e = r.entry
            if r.via is not None and e.bandwidth_mbps >= c.bandwidth_mbps and \
                    e.latency_ms <= c.max_latency_ms and e.cost <= c.max_cost and \
                    len(e.path) - 1 <= c.hop_limit:
                return e
        return None

    def _decide(self, req: StitchRequest, now: float, out: list[Output]) -> None:
        self.cancel_timer("decide", req.stitch_id)
        self.cancel_timer("query", req.stitch_id)
        self.cancel_timer("qrtx", req.stitch_id)
        self._next_offer(req, now, out, FailureReason.NO_ROUTE)

    def _next_offer(self, req: StitchRequest, now: float, out: list[Output],
                    fallback: FailureReason) -> None:
        """Hold along the best untried feasible offer, or fail the request."""
        for offer in req.feasible():
            if self._start_hold(req, offer, now, out):
                return
        reason, detail = req.failure()
        if reason is FailureReason.RESERVATION_REFUSED and fallback is FailureReason.TIMEOUT:
            reason = FailureReason.TIMEOUT
        req.machine.move(StitchState.FAILED)
        out.append(StitchFailed(req.stitch_id, req.vnid, reason, detail, now))

    # -- hold -----------------------------------------------------------------------------
    def _start_hold(self, req: StitchRequest, offer: Offer, now: float,
                    out: list[Output]) -> bool:
        req.tried.add(offer.path)
        req.attempt += 1
        token = f"{req.stitch_id}.{req.attempt}"
        bw = req.constraints.bandwidth_mbps
        ok, _, avail = self.ledger.admit(token, (offer.path[1],), bw)
        if not ok:
            req.refusals.append(f"own link to {offer.path[1][:8]} has {avail:g} Mbit/s "
                                f"free, need {bw:g} ({describe(offer)})")
            return False
        req.machine.move(StitchState.HOLDING)
        req.token, req.path = token, offer.path
        req.latency_ms, req.cost = offer.latency_ms, offer.cost
        hold_s = self.timers_cfg.hold_timeout_s
        res = Reservation(token, req.stitch_id, offer.path, 0, bw, now + hold_s)
        # The origin gives up each phase after hold_s; the hops hold twice that, so a hold
        # is still there for a COMMIT sent (or retransmitted) late in the phase.
        self.reservations[token] = res
        private, public = wg_keypair(self.rng)
        own_addr, peer_addr = tunnel_addresses(self.rng)
        tun = self._new_tunnel(token, req.stitch_id, req.vnid, offer.path, origin=True,
                               private=private, public=public, own_addr=own_addr,
                               peer_addr=peer_addr, bw=bw, remote=offer.components)
        local = self.discovery.local[req.vnid]
        hold = Hold(token, req.vnid, offer.path, bw, 2 * hold_s, public, tun.endpoint, own_addr,
                    peer_addr, tuple(str(c) for c in local.components), _NO_SIG)
        hold = dataclasses.replace(hold, keysig=self.identity.sign(hold.key_material()))
        req.outstanding, req.rto = hold, self._rto(offer.latency_ms)
        self.send(offer.path[1], hold, now, out)
        self.set_timer("rtx", token, now + req.rto)
        self.set_timer("hold", token, now + hold_s)
        self.capacity_changed((offer.path[1],), now, out)
        return True

    def _new_tunnel(self, token: str, sid: str, vnid: VNID, path: tuple[RouteManagerId, ...],
                    *, origin: bool, private: bytes, public: bytes, own_addr: str,
                    peer_addr: str, bw: float, remote: tuple[str, ...]) -> Tunnel:
        live = self.tunnels.values()
        ports = {t.listen_port for t in live}
        port = next(p for p in range(self.config.wg_port_base, 65536) if p not in ports)
        classes = {t.class_id for t in live}
        class_id = next(c for c in range(1, 0xfffe) if c not in classes)
        tun = Tunnel(token, sid, vnid, path[-1] if origin else path[0], origin, path,
                     private, public, f"{self.config.underlay_address}:{port}", own_addr,
                     peer_addr, bw, port, class_id, remote)
        self.tunnels[token] = tun
        return tun

    def _on_hold(self, sender: RouteManagerId, h: Hold, now: float, out: list[Output]) -> None:
        i = self._pos(h.path, sender, forward=True)
        target = i == len(h.path) - 1
        links = (sender,) if target else (sender, h.path[i + 1])

        def refuse(reason: str, avail: float) -> None:
            self.send(sender, HoldRefused(h.token, h.path, self.me, reason, avail), now, out)

        old = self.reservations.get(h.token)
        if old is not None:  # a retransmission: same answer, never a second hold
            self.stat("duplicate_hold")
            if old.state not in (ReservationState.HELD, ReservationState.COMMITTED):
                refuse("released", 0.0)
            elif not target:
                if old.hold_answer is not None:
                    self.send(sender, old.hold_answer, now, out)
                elif old.relay is None:  # our own retransmissions gave up: try again
                    self._relay(old, h, now, out)
            elif (tun := self.tunnels.get(h.token)) is not None:
                self.send(sender, self._hold_ok(tun, h), now, out)
            else:
                refuse("released", 0.0)
            return

        if target and h.vnid not in self.discovery.local:
            refuse("no_vn", 0.0)
            return
        if target and not self.trust.verify(h.path[0], h.keysig, h.key_material()):
            refuse("bad_keysig", 0.0)
            return
        ok, at, avail = self.ledger.admit(h.token, links, h.bandwidth_mbps)
        if not ok:
            refuse("bandwidth" if at is not None else "rm_capacity", avail)
            return
        hold_s = min(h.hold_s, 2 * self.timers_cfg.hold_timeout_s)
        sid = h.token.rsplit(".", 1)[0]
        res = Reservation(h.token, sid, h.path, i, h.bandwidth_mbps, now + hold_s)
        self.reservations[h.token] = res
        self.set_timer("resv", h.token, now + hold_s)
        self.capacity_changed(links, now, out)
        if not target:
            self._relay(res, h, now, out)
            return
        private, public = wg_keypair(self.rng)
        tun = self._new_tunnel(h.token, sid, h.vnid, h.path, origin=False, private=private,
                               public=public, own_addr=h.target_addr,
                               peer_addr=h.origin_addr, bw=h.bandwidth_mbps,
                               remote=h.components)
        tun.peer_public, tun.peer_endpoint = h.wg_public, h.endpoint
        self._tunnel_move(tun, TunnelState.KEYS_EXCHANGED, now, out)
        self.send(sender, self._hold_ok(tun, h), now, out)

    def _hold_ok(self, tun: Tunnel, h: Hold) -> HoldOk:
        """The target's answer; Ed25519 is deterministic, so a repeat is byte-identical."""
        ok_msg = HoldOk(h.token, h.path, tun.public_key, tun.endpoint, _NO_SIG)
        return dataclasses.replace(ok_msg, keysig=self.identity.sign(ok_msg.key_material()))

    def _on_hold_ok(self, m: HoldOk, now: float, out: list[Output]) -> None:
        req = self.requests.get(m.token.rsplit(".", 1)[0])
        tun = self.tunnels.get(m.token)
        if req is None or req.token != m.token or req.state is not StitchState.HOLDING or \
                tun is None:
            self.stat("late_hold_ok")
            return
        if not self.trust.verify(m.path[-1], m.keysig, m.key_material()):
            raise RemoteProtocolError("bad_keysig", "HOLD_OK key material")
        tun.peer_public, tun.peer_endpoint = m.wg_public, m.endpoint
        self._tunnel_move(tun, TunnelState.KEYS_EXCHANGED, now, out)
        req.machine.move(StitchState.COMMITTING)
        self.reservations[m.token].machine.move(ReservationState.COMMITTED)
        commit = PathSignal(MsgType.COMMIT, m.token, m.path)
        req.outstanding, req.rto = commit, self._rto(req.latency_ms)
        self.send(m.path[1], commit, now, out)
        self.set_timer("rtx", m.token, now + req.rto)
        self.set_timer("hold", m.token, now + self.timers_cfg.hold_timeout_s)

    def _on_refused(self, sender: RouteManagerId, m: HoldRefused, now: float,
                    out: list[Output]) -> None:
        i = self._pos(m.path, sender, forward=False)
        res = self.reservations.get(m.token)
        if res is not None:
            self._relay_done(res)
        if res is not None and res.state in (ReservationState.HELD, ReservationState.COMMITTED):
            self._release(res, now, out)
        if i > 0:
            self.send(m.path[i - 1], m, now, out)
            return
        req = self.requests.get(m.token.rsplit(".", 1)[0])
        if req is None or req.token != m.token:
            return
        self.cancel_timer("hold", m.token)
        self.cancel_timer("rtx", m.token)
        req.outstanding = None
        self._tunnel_down(m.token, now, out)
        req.token = ""
        req.refusals.append(f"{m.at[:8]} refused ({m.reason}): {m.available_mbps:g} Mbit/s "
                            f"available, need {req.constraints.bandwidth_mbps:g}")
        self._next_offer(req, now, out, FailureReason.RESERVATION_REFUSED)

    # -- hop-by-hop reliability ----------------------------------------------------------
    def _relay(self, res: Reservation, msg: Hold | PathSignal, now: float,
               out: list[Output]) -> None:
        """Pass ``msg`` to the next hop and keep retransmitting it until its answer comes
        back through us, so a loss is repaired on the link where it happened."""
        res.relay = msg
        if isinstance(msg, Hold) or res.relay_rto <= 0:
            # The answer comes back from the target over the rest of the path; our route
            # to *that* copy of the VN estimates its latency (the best route overall may
            # lead to another copy, even back toward the origin, and fired early).
            target = res.path[-1]
            known = self.discovery.routes_to(msg.vnid) if isinstance(msg, Hold) else []
            rest = [r.entry.latency_ms for r in known if r.entry.path[-1] == target]
            res.relay_rto = self._rto(rest[0]) if rest else \
                4 * self.timers_cfg.retransmit_min_s
        res.relay_until = now + self.timers_cfg.hold_timeout_s
        self.send(res.path[res.index + 1], msg, now, out)
        self.set_timer("relay", res.token, now + res.relay_rto)

    def _relay_done(self, res: Reservation) -> None:
        res.relay = None
        self.cancel_timer("relay", res.token)

    def _relay_retransmit(self, token: str, now: float, out: list[Output]) -> None:
        res = self.reservations.get(token)
        if res is None or res.relay is None:
            return
        if now >= res.relay_until or res.state not in (ReservationState.HELD,
                                                       ReservationState.COMMITTED):
            res.relay = None
            return
        self.stat("relay_retransmissions")
        self.send(res.path[res.index + 1], res.relay, now, out)
        res.relay_rto = min(self.timers_cfg.retransmit_max_s, 2 * res.relay_rto)
        self.set_timer("relay", token, now + res.relay_rto)

    def _release(self, res: Reservation, now: float, out: list[Output]) -> None:
        self._relay_done(res)
        res.machine.move(ReservationState.RELEASED)
        self.ledger.release(res.token)
        self.cancel_timer("resv", res.token)
        self.capacity_changed(res.links, now, out)

    # -- commit / abort -------------------------------------------------------------------
    def _on_signal(self, sender: RouteManagerId, m: PathSignal, now: float,
                   out: list[Output]) -> None:
        forward = m.kind is not MsgType.COMMIT_ACK
        i = self._pos(m.path, sender, forward=forward)
        last = i == len(m.path) - 1
        res = self.reservations.get(m.token)
        if m.kind is MsgType.COMMIT_ACK:
            if i > 0:
                if res is not None:
                    res.commit_answer = m
                    self._relay_done(res)
                self.send(m.path[i - 1], m, now, out)
            else:
                self._established(m.token, now, out)
            return
        if m.kind is MsgType.ABORT:
            if res is not None and res.state in (ReservationState.HELD,
                                                 ReservationState.COMMITTED):
                self._release(res, now, out)
            self._tunnel_down(m.token, now, out)
            if not last:
                self.send(m.path[i + 1], m, now, out)
            return
        if res is None or res.state not in (ReservationState.HELD, ReservationState.COMMITTED):
            self.stat("commit_without_hold")
            return
        first = res.state is ReservationState.HELD
        if first:
            res.machine.move(ReservationState.COMMITTED)
        else:  # a retransmitted COMMIT: pass it on / ack again, nothing else changes
            self.stat("duplicate_commit")
        res.expires = now + self._lease()
        self.set_timer("resv", m.token, res.expires)
        if not last:
            if res.commit_answer is not None:
                self.send(sender, res.commit_answer, now, out)
            elif first or res.relay is None:
                self._relay(res, m, now, out)
            return
        tun = self.tunnels.get(m.token)
        if tun is not None and first:
            out.append(DataplaneChange(add=tun.dataplane_objects(self.config.route_metric)))
        self.send(sender, PathSignal(MsgType.COMMIT_ACK, m.token, m.path), now, out)

    def _established(self, token: str, now: float, out: list[Output]) -> None:
        req = self.requests.get(token.rsplit(".", 1)[0])
        tun = self.tunnels.get(token)
        if req is None or req.token != token or req.state is not StitchState.COMMITTING or \
                tun is None:
            self.stat("late_commit_ack")
            return
        self.cancel_timer("hold", token)
        self.cancel_timer("rtx", token)
        req.outstanding = None
        req.machine.move(StitchState.ESTABLISHED)
        req.renegotiating = False
        out.append(StitchEstablished(req.stitch_id, req.vnid, req.path,
                                     req.constraints.bandwidth_mbps, req.latency_ms, req.cost,
                                     req.requested_at, now))
        out.append(DataplaneChange(add=tun.dataplane_objects(self.config.route_metric)))
        self._send_probe(req, tun, now, out)

    # -- tunnels and probes ---------------------------------------------------------------
    def _tunnel_move(self, tun: Tunnel, new: TunnelState, now: float,
                     out: list[Output]) -> None:
        old = tun.machine.move(new)
        out.append(TunnelStateChanged(tun.tunnel_id, tun.peer, old.value, new.value, now))

    def _tunnel_down(self, token: str, now: float, out: list[Output]) -> None:
        tun = self.tunnels.pop(token, None)
        if tun is None or tun.state is TunnelState.DOWN:
            return
        had_dataplane = tun.state is not TunnelState.REQUESTED
        self._tunnel_move(tun, TunnelState.DOWN, now, out)
        if had_dataplane:
            mine = {o.key for o in tun.dataplane_objects(self.config.route_metric)}
            others = {o.key for t in self.tunnels.values()
                      if t.state is not TunnelState.REQUESTED
                      for o in t.dataplane_objects(self.config.route_metric)}
            out.append(DataplaneChange(remove=tuple(sorted(mine - others))))

    def _send_probe(self, req: StitchRequest, tun: Tunnel, now: float,
                    out: list[Output]) -> None:
        tun.outstanding = self.rng.getrandbits(32)
        self.send(req.path[1], Probe(MsgType.PROBE, tun.token, req.path, tun.outstanding, now),
                  now, out)
        self.set_timer("probe", req.stitch_id, now + self.timers_cfg.probe_interval_s)
        req.rto = self._rto(tun.rtt_ms / 2 if tun.rtt_ms is not None else req.latency_ms)
        self.set_timer("prtx", req.stitch_id, now + req.rto)

    def _probe_retransmit(self, sid: str, now: float, out: list[Output]) -> None:
        """No reply yet: probe again (same nonce) within the interval, so one lost
        datagram on a long path is not a missed probe."""
        req = self.requests.get(sid)
        if req is None or req.state is not StitchState.ESTABLISHED:
            return
        tun = self.tunnels.get(req.token)
        if tun is None or tun.outstanding is None:
            return
        self.send(req.path[1], Probe(MsgType.PROBE, tun.token, req.path, tun.outstanding, now),
                  now, out)
        nxt = now + self._backoff(req)
        tick = self.timer_due("probe", sid)
        if tick is None or nxt < tick:
            self.set_timer("prtx", sid, nxt)

    def _probe_tick(self, sid: str, now: float, out: list[Output]) -> None:
        req = self.requests.get(sid)
        if req is None or req.state is not StitchState.ESTABLISHED:
            return
        tun = self.tunnels.get(req.token)
        if tun is None:
            return
        if tun.outstanding is not None:
            tun.misses += 1
            tun.record_probe(False)
            if tun.misses >= self.timers_cfg.probe_misses_down:
                self._renegotiate(req, now, out)
                return
            if tun.state is TunnelState.UP:
                self._tunnel_move(tun, TunnelState.DEGRADED, now, out)
        self._send_probe(req, tun, now, out)

    def _renegotiate(self, req: StitchRequest, now: float, out: list[Output]) -> None:
        self.stat("renegotiations")
        self._abandon_attempt(req, now, out)
        req.machine.move(StitchState.QUERYING)
        req.renegotiating = True
        out.append(StitchTornDown(req.stitch_id, req.vnid, FailureReason.TUNNEL_DOWN, True, now))
        self._send_query(req, now, out)

    def _on_probe(self, sender: RouteManagerId, p: Probe, now: float,
                  out: list[Output]) -> None:
        forward = p.kind is MsgType.PROBE
        i = self._pos(p.path, sender, forward=forward)
        res = self.reservations.get(p.token)
        if forward and res is not None and res.state is ReservationState.COMMITTED:
            res.expires = now + self._lease()
            self.set_timer("resv", p.token, res.expires)
        if forward and i < len(p.path) - 1:
            self.send(p.path[i + 1], p, now, out)
            return
        if not forward and i > 0:
            self.send(p.path[i - 1], p, now, out)
            return
        tun = self.tunnels.get(p.token)
        if tun is None:
            self.stat("probe_unknown_tunnel")
            return
        if forward:  # we are the target: answer and count the tunnel as working
            tun.last_probe_seen = now
            if tun.state in (TunnelState.KEYS_EXCHANGED, TunnelState.DEGRADED):
                self._tunnel_move(tun, TunnelState.UP, now, out)
            self.send(sender, dataclasses.replace(p, kind=MsgType.PROBE_REPLY), now, out)
            return
        if p.nonce != tun.outstanding:
            self.stat("probe_stale_reply")
            return
        tun.outstanding = None
        tun.misses = 0
        tun.record_probe(True)
        tun.rtt_ms = (now - p.sent_at) * 1000.0
        self.cancel_timer("prtx", tun.stitch_id)
        # The first answered probe proves the keys work: UP whatever the loss so far
        # (a lossy path used to keep the tunnel in KEYS_EXCHANGED); then UP <-> DEGRADED.
        if tun.state is TunnelState.KEYS_EXCHANGED or (
                tun.state is TunnelState.DEGRADED and
                tun.loss <= self.timers_cfg.degraded_loss):
            self._tunnel_move(tun, TunnelState.UP, now, out)

    # -- restore --------------------------------------------------------------------------
    def resume_after_restore(self, now: float, out: list[Output]) -> None:
        """Re-arm timers after :meth:`from_state`; unfinished requests query again."""
        for res in self.reservations.values():
            if res.index > 0:
                self.set_timer("resv", res.token, max(res.expires, now + self._lease()))
        objs = [o for t in self.tunnels.values() if t.state is not TunnelState.REQUESTED
                for o in t.dataplane_objects(self.config.route_metric)]
        if objs:
            out.append(DataplaneChange(add=tuple(objs)))
        for req in self.requests.values():
            if req.state is StitchState.ESTABLISHED and req.token in self.tunnels:
                self._send_probe(req, self.tunnels[req.token], now, out)
            elif req.state in (StitchState.QUERYING, StitchState.HOLDING,
                               StitchState.COMMITTING):
                self._abandon_attempt(req, now, out)
                req.machine.state = StitchState.QUERYING
                self._send_query(req, now, out)


__all__ = ["StitchingMixin", "rank"]
