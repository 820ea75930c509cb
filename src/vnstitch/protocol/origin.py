"""The origin of a stitch: query, pick an offer, reserve along it, re-negotiate.

Theory of operation (message flow for a stitch origin O .. transit T .. target X)::

    O: QUERY  ->  T: QUERY  ->  X           (discovery-guided, bounded fan-out)
    O  <- OFFER  T  <- OFFER  X             (summed latency/cost, bottleneck bw)
    O: HOLD   ->  T: HOLD   ->  X           (admission on every link; O's WG key)
    O  <- HOLD_OK T <- HOLD_OK X            (X's WG key, end-to-end signed)
    O: COMMIT ->  T: COMMIT ->  X           (holds become committed leases)
    O  <- COMMIT_ACK ...                    (stitch ESTABLISHED at O: 3 round trips)
    O: PROBE  ==========================> X (end to end; tunnel UP on the reply)

The origin spreads each query wave over up to ``query_fanout`` first hops (those with a
route first) and retransmits with a fresh query id and a wider transit fan-out until a
feasible offer arrives. It takes an offer at once when nothing discovery knows can beat
it, else waits until discovery's best route's offer is due. A refusal (HOLD_REFUSED) or a
timeout moves on to the next feasible offer. When the tunnel dies (probes missed) or a hop
reports the path broken (PATH_DOWN, a lease that ran out), the origin releases, reports
``StitchTornDown(renegotiating=True)`` and queries again (break-before-make: the
old path is gone).

Renegotiation around an element (:meth:`start_renegotiation`, asked by a controller that
saw a congested transit segment or adjacency) is make-before-break: a *successor*
request with a fresh stitch id queries and reserves with the element avoided while the
old stitch stays established and carries traffic (both reservations count on shared
links meanwhile). When the successor is established -- committed on every hop, its
tunnel's dataplane objects emitted -- the old stitch is released in the same step (or,
with ``keep_old``, left to the caller to release once the new tunnel carries traffic). If
no path avoids the element the successor fails (``StitchFailed``) and the old stitch is
untouched. Releasing the old stitch while its successor is pending releases both.
"""

from __future__ import annotations

import dataclasses

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.api import (
    DataplaneChange,
    FailureReason,
    Output,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
    StitchTornDown,
)
from vnstitch.protocol.errors import RemoteProtocolError
from vnstitch.protocol.messages import (
    MAX_PATH,
    Entry,
    Hold,
    HoldOk,
    HoldRefused,
    MsgType,
    Offer,
    PathSignal,
    Query,
)
from vnstitch.protocol.negotiation import StitchRequest, StitchState, describe, touches
from vnstitch.protocol.reservation import Reservation, ReservationState
from vnstitch.protocol.stitchbase import NO_SIG, StitchingBase
from vnstitch.protocol.tunnels import (
    TunnelState,
    end_of_another_origin,
    tunnel_addresses,
    wg_keypair,
)


class OriginMixin(StitchingBase):
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
        elif self.config.one_end_per_vnid and (
                other := end_of_another_origin(self.tunnels.values(), vnid, self.me)):
            # Retried like a lost race for capacity: it frees when that stitch goes.
            req.machine.move(StitchState.FAILED)
            out.append(StitchFailed(sid, vnid, FailureReason.RESERVATION_REFUSED,
                                    f"VNID {vnid} already has a tunnel end here for "
                                    f"{other.path[0][:8]}'s stitch {other.stitch_id} "
                                    "(one VXLAN device per VNI)", now))
        else:
            self._send_query(req, now, out)
        return sid, out

    def start_renegotiation(self, sid: str, avoid: frozenset[tuple[RouteManagerId, ...]],
                            now: float, *, keep_old: bool = False
                            ) -> tuple[str, list[Output]]:
        """Make-before-break: a successor of established stitch ``sid`` whose path avoids
        every element of ``avoid`` (``(rm,)``: that segment; ``(a, b)``: that adjacency;
        empty: the best path now, e.g. to return home after congestion cleared).
        Returns the successor's stitch id; its outcome arrives as events (module doc).
        ``keep_old``: leave ``sid`` established when the successor is; the caller then
        releases it (once the new tunnel has carried traffic)."""
        old = self.requests.get(sid)
        new_sid = self.rng.randbytes(6).hex()
        out: list[Output] = []
        if old is None or old.state is not StitchState.ESTABLISHED:
            why = f"stitch {sid} is not established here"
            req = StitchRequest(new_sid, old.vnid if old else VNID(0),
                                old.constraints if old else StitchConstraints(0.0), now)
            req.machine.move(StitchState.FAILED)
            out.append(StitchFailed(new_sid, req.vnid, FailureReason.LOCAL, why, now))
            return new_sid, out
        req = StitchRequest(new_sid, old.vnid, old.constraints, now, avoid=avoid,
                            replaces=sid, keep_replaced=keep_old)
        self.requests[new_sid] = req
        self.stat("renegotiations_around")
        self._send_query(req, now, out)
        return new_sid, out

    def _send_query(self, req: StitchRequest, now: float, out: list[Output]) -> None:
        req.query_sent_at = now
        req.offers, req.tried, req.refusals, req.decide_at = [], set(), [], None
        req.denials, req.denied = [], set()
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
        hops = [h for h in self.discovery.next_hops(req.vnid, {self.me} | {
            e[0] for e in req.avoid if len(e) == 1}, c.bandwidth_mbps)
            if not touches((self.me, h), req.avoid)][:self.timers_cfg.query_fanout]
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
                  self.ledger.rm_available(), fanout, self.grant_for(req.vnid))
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
        for other in list(self.requests.values()):  # a successor still on its way
            if other.replaces == sid and other.state not in (StitchState.ESTABLISHED,
                                                             StitchState.FAILED,
                                                             StitchState.RELEASED):
                self.release_request(other.stitch_id, now, out)

    def _abandon_attempt(self, req: StitchRequest, now: float, out: list[Output], *,
                         hold: bool = False) -> None:
        """Abort the current attempt along its path and drop its local state (``hold``:
        its tunnel end's objects may stay while they carry traffic, heldpaths.py)."""
        self._resize_abandon(req, now, out)
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
        self._tunnel_down(token, now, out, hold=hold)
        req.token = ""

    # -- offers ---------------------------------------------------------------------------
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
            if touches((self.me, *e.path), req.avoid):
                continue
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
        if reason is FailureReason.RESERVATION_REFUSED and fallback in (
                FailureReason.TIMEOUT, FailureReason.PEER_LOST):
            reason = fallback
        req.machine.move(StitchState.FAILED)
        out.append(StitchFailed(req.stitch_id, req.vnid, reason, detail, now))

    # -- hold / commit --------------------------------------------------------------------
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
                    peer_addr, tuple(str(c) for c in local.components), NO_SIG,
                    self.config.probe_address, self.grant_for(req.vnid))
        hold = dataclasses.replace(hold, keysig=self.identity.sign(hold.key_material()))
        req.outstanding, req.rto = hold, self._rto(offer.latency_ms)
        self.send(offer.path[1], hold, now, out)
        self.set_timer("rtx", token, now + req.rto)
        self.set_timer("hold", token, now + hold_s)
        self.capacity_changed((offer.path[1],), now, out)
        return True

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
        tun.peer_probe_address = m.probe_address
        self._tunnel_move(tun, TunnelState.KEYS_EXCHANGED, now, out)
        req.machine.move(StitchState.COMMITTING)
        res = self.reservations[m.token]
        res.machine.move(ReservationState.COMMITTED)
        # Our side of the reservation now lives while path[1] keeps confirming it.
        res.committed_at = now
        res.expires = now + self._lease()
        self.set_timer("resv", m.token, res.expires)
        commit = PathSignal(MsgType.COMMIT, m.token, m.path)
        req.outstanding, req.rto = commit, self._rto(req.latency_ms)
        self.send(m.path[1], commit, now, out)
        self.set_timer("rtx", m.token, now + req.rto)
        self.set_timer("hold", m.token, now + self.timers_cfg.hold_timeout_s)

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
        # After the add, in the same step: the VN bridge never empties, and never has
        # two of this stitch's tunnels at once.
        self._release_held(req.vnid, out, origin=self.me)
        tun.setup_until = now + self.config.tunnel_setup_s
        self._send_probe(req, tun, now, out)
        if req.replaces:  # make-before-break: the successor is up, the old one goes
            old, req.replaces = req.replaces, ""
            if not req.keep_replaced:
                self.release_request(old, now, out)

    def _renegotiate(self, req: StitchRequest, now: float, out: list[Output],
                     reason: FailureReason) -> None:
        self.stat("renegotiations")
        self._abandon_attempt(req, now, out, hold=True)
        req.machine.move(StitchState.QUERYING)
        req.renegotiating = True
        out.append(StitchTornDown(req.stitch_id, req.vnid, reason, True, now))
        self._send_query(req, now, out)

    def _attempt_failed(self, req: StitchRequest, why: str, now: float, out: list[Output],
                        reason: FailureReason) -> None:
        """The current hold/commit attempt cannot finish: abort it, try the next offer."""
        req.refusals.append(why)
        self._abandon_attempt(req, now, out)
        self._next_offer(req, now, out, reason)

    def _refused_at_origin(self, m: HoldRefused, now: float, out: list[Output]) -> None:
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

    def _path_down_at_origin(self, m: PathSignal, now: float, out: list[Output]) -> None:
        """A hop released our reservation (its lease ran out, a neighbour is gone)."""
        req = self.requests.get(m.token.rsplit(".", 1)[0])
        if req is None or req.token != m.token:
            return
        self.stat("path_down")
        if req.state is StitchState.ESTABLISHED:
            self._renegotiate(req, now, out, FailureReason.PEER_LOST)
        elif req.state in (StitchState.HOLDING, StitchState.COMMITTING):
            self._attempt_failed(req, f"attempt {m.token} lost its path", now, out,
                                 FailureReason.PEER_LOST)
