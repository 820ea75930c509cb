"""What every Route Manager on a stitch path does: forward queries, hold, commit, abort.

Theory of operation. Path-following messages are relayed hop by hop: each RM checks it
is on the path and that the datagram came from its neighbour on the path, acts, and
passes the message on, re-signed. A QUERY follows discovery's best next hop(s) (only an
RM that knows no route floods); the RM that hosts the VN answers with an OFFER that
retraces the path. A HOLD is admitted on both of this RM's links of the path (or
refused, releasing holds on the way back); the target answers HOLD_OK with its tunnel
end. COMMIT turns holds into leased reservations; COMMIT_ACK returns to the origin.

Loss is repaired on the link where it happened: an RM that passed a HOLD or COMMIT on
retransmits it to the next hop (backing off) until the answer comes back through it, and
answers a retransmitted request from the answer it saw. ABORT (toward the target) and
PATH_DOWN (toward the origin) release along the path: the origin aborts what it gives
up; a hop whose reservation lease ran out tells both ends (:mod:`~vnstitch.protocol.leases`).
"""

from __future__ import annotations

import dataclasses

from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.api import DataplaneChange, Output
from vnstitch.protocol.grants import NOT_AUTHORISED, QueryRefused
from vnstitch.protocol.membership import MembershipMixin
from vnstitch.protocol.messages import Hold, HoldOk, HoldRefused, MsgType, Offer, PathSignal, Query
from vnstitch.protocol.reservation import Reservation, ReservationState
from vnstitch.protocol.stitchbase import NO_SIG
from vnstitch.protocol.tunnels import (
    VNID_IN_USE,
    Tunnel,
    TunnelState,
    end_of_another_origin,
    wg_keypair,
)

_SEEN_QUERIES_MAX = 4096


class PathHopMixin(MembershipMixin):
    # -- query ----------------------------------------------------------------------------
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
            if not self.authorise(q.path[0], q.vnid, q.grant, kind="query", now=now, out=out).ok:
                self.send(sender, QueryRefused(q.query_id, path, self.me, NOT_AUTHORISED),
                          now, out)
                return
            comps = tuple(str(c) for c in vn.components)
            self.send(sender, Offer(q.query_id, path, q2.latency_ms, q2.cost, bn, comps,
                                    self.grant_for(q.vnid)), now, out)
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

    # -- hold -----------------------------------------------------------------------------
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
        if target and self.config.one_end_per_vnid and end_of_another_origin(
                self.tunnels.values(), h.vnid, h.path[0]) is not None:
            self.stat(VNID_IN_USE)
            refuse(VNID_IN_USE, 0.0)
            return
        if target and not self.trust.verify(h.path[0], h.keysig, h.key_material()):
            refuse("bad_keysig", 0.0)
            return
        access = self.authorise(h.path[0], h.vnid, h.grant, kind="hold", now=now,
                                out=out) if target else None
        if access is not None and not access.ok:
            refuse(NOT_AUTHORISED, 0.0)
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
        if access is None:
            self._relay(res, h, now, out)
            return
        self.admit(h.token, h.vnid, h.path[0], access)
        private, public = wg_keypair(self.rng)
        tun = self._new_tunnel(h.token, sid, h.vnid, h.path, origin=False, private=private,
                               public=public, own_addr=h.target_addr,
                               peer_addr=h.origin_addr, bw=h.bandwidth_mbps,
                               remote=h.components)
        tun.peer_public, tun.peer_endpoint = h.wg_public, h.endpoint
        tun.peer_probe_address = h.probe_address
        self._tunnel_move(tun, TunnelState.KEYS_EXCHANGED, now, out)
        self.send(sender, self._hold_ok(tun, h), now, out)

    def _hold_ok(self, tun: Tunnel, h: Hold) -> HoldOk:
        """The target's answer; Ed25519 is deterministic, so a repeat is byte-identical."""
        ok_msg = HoldOk(h.token, h.path, tun.public_key, tun.endpoint, NO_SIG,
                        self.config.probe_address)
        return dataclasses.replace(ok_msg, keysig=self.identity.sign(ok_msg.key_material()))

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
        if m.reason == NOT_AUTHORISED and req is not None and req.token == m.token:
            req.denials.append(f"{m.at[:8]} refused the hold: {m.reason} (VNID {req.vnid})")
            req.denied.add(m.at)
        self._refused_at_origin(m, now, out)

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
        self._forget_later(res, now)
        self.capacity_changed(res.links, now, out)

    # -- commit / abort / path down -------------------------------------------------------
    def _on_signal(self, sender: RouteManagerId, m: PathSignal, now: float,
                   out: list[Output]) -> None:
        forward = m.kind in (MsgType.COMMIT, MsgType.ABORT)
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
        if m.kind in (MsgType.ABORT, MsgType.PATH_DOWN):
            if res is not None and res.state in (ReservationState.HELD,
                                                 ReservationState.COMMITTED):
                self._release(res, now, out)
            if m.kind is MsgType.ABORT:  # the target's end may be held (heldpaths.py)
                self._tunnel_down(m.token, now, out, hold=True)
                if not last:
                    self.send(m.path[i + 1], m, now, out)
            elif i > 0:
                self.send(m.path[i - 1], m, now, out)
            else:
                self._path_down_at_origin(m, now, out)
            return
        if res is None or res.state not in (ReservationState.HELD, ReservationState.COMMITTED):
            self.stat("commit_without_hold")
            return
        first = res.state is ReservationState.HELD
        if first:
            res.machine.move(ReservationState.COMMITTED)
            res.committed_at = now
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
            # An end held for the same origin's stitch of this VN stays until this one
            # carries the origin's first probe (probes.py): the origin may still abandon
            # the attempt, and the held end may be all that carries the VN meanwhile.
            out.append(DataplaneChange(add=tun.dataplane_objects(self.config.route_metric)))
        self.send(sender, PathSignal(MsgType.COMMIT_ACK, m.token, m.path), now, out)

    def _tear_down_path(self, res: Reservation, now: float, out: list[Output],
                        skip: RouteManagerId | None = None) -> None:
        """Our part of ``res`` is gone (lease ran out, a neighbour said it holds none):
        release it and tell both ends -- PATH_DOWN toward the origin, ABORT toward the
        target (not to ``skip``, the neighbour that already knows)."""
        if res.state in (ReservationState.HELD, ReservationState.COMMITTED):
            self._release(res, now, out)
        self._tunnel_down(res.token, now, out, hold=True)  # kept if it works (heldpaths)
        i, path = res.index, res.path
        if i == 0:
            self._path_down_at_origin(PathSignal(MsgType.PATH_DOWN, res.token, path), now, out)
            return
        if path[i - 1] != skip:
            self.send(path[i - 1], PathSignal(MsgType.PATH_DOWN, res.token, path), now, out)
        if i < len(path) - 1 and path[i + 1] != skip:
            self.send(path[i + 1], PathSignal(MsgType.ABORT, res.token, path), now, out)
