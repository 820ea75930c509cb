"""The Route Manager core: one sans-I/O object implementing ``RouteManagerCoreAPI``.

Theory of operation. The core owns the codec (signing, replay), the discovery table,
the admission ledger, the origin's stitch requests, every reservation it takes part in
and the tunnel ends it terminates. Inputs (datagram, request, timer) are each handled to
completion and return a list of outputs; nothing here does I/O or reads a clock, and all
randomness (keys, ids, nonces, jitter) comes from the injected ``random.Random``, so a
seeded run is reproducible.

Only neighbours may talk to an RM, with one exception: the tunnel health probes, which
travel end to end between the two tunnel ends (the codec still checks their signature
and the probe handler that the sender is the other end of that tunnel). Discovery is
handled here; the stitching roles live in :mod:`vnstitch.protocol.stitching` (mixins
over this state) to keep modules small; persistence in :meth:`export_state` /
:meth:`from_state`. Each HELLO also carries the lease digest of the reservations the two
neighbours share (:mod:`vnstitch.protocol.leases`).
"""

from __future__ import annotations

import json
import random
from typing import Any, Self

from vnstitch.dataplane.objects import DataplaneObject
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.model.virtual import Component, VirtualNetwork
from vnstitch.protocol.api import (
    Counters,
    DataplaneChange,
    LinkUsageView,
    Output,
    PeerFault,
    RouteChanged,
    RouteView,
    SendDatagram,
    StitchConstraints,
    StitchView,
    TunnelView,
)
from vnstitch.protocol.codec import Codec
from vnstitch.protocol.config import CoreConfig
from vnstitch.protocol.discovery import Discovery, Key
from vnstitch.protocol.errors import ProtocolError, RemoteProtocolError
from vnstitch.protocol.heldpaths import HeldPath
from vnstitch.protocol.identity import Identity, TrustStore
from vnstitch.protocol.membership import export_admitted, restore_admitted
from vnstitch.protocol.messages import Hello, Message, Probe, Resync, Update
from vnstitch.protocol.negotiation import StitchRequest
from vnstitch.protocol.reservation import Ledger, Reservation, ReservationState
from vnstitch.protocol.resize import ResizeAttempt
from vnstitch.protocol.stitching import StitchingMixin
from vnstitch.protocol.timers import TimerKind
from vnstitch.protocol.tunnels import Tunnel, TunnelState

STATE_VERSION = 1


def encode_state(state: dict[str, Any]) -> bytes:
    """The one on-disk form of :meth:`RouteManagerCore.export_state`: canonical JSON (sorted
    keys), what the daemon stores and what the simulator keeps across a crash."""
    return json.dumps(state, sort_keys=True).encode()


def decode_state(data: bytes) -> dict[str, Any]:
    """:func:`encode_state`'s bytes back to the plain state; refuses what is not one."""
    try:
        state = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"saved core state is unreadable: {exc}") from None
    if not isinstance(state, dict):
        raise ProtocolError("saved core state is not a JSON object")
    return state


class RouteManagerCore(StitchingMixin):
    """One Route Manager's protocol logic (see the module docstring)."""

    def __init__(self, config: CoreConfig, identity: Identity, trust: TrustStore,
                 rng: random.Random) -> None:
        self.config = config
        self.identity = identity
        self.trust = trust
        self.rng = rng
        self.timers_cfg = config.timers
        self.me = identity.rm_id
        self.codec = Codec(identity, trust)
        self._counters = Counters()
        self.peers = {p.peer: p for p in config.peers}
        self.ledger = Ledger({p.peer: p.capacity_mbps for p in config.peers},
                             config.total_offered())
        self.discovery = Discovery(
            self.me, {p.peer: (p.latency_ms, p.cost) for p in config.peers},
            self.ledger.available, self.ledger.rm_available,
            config.timers.bandwidth_change_fraction)
        for vn in config.local_vns:
            self.discovery.set_local(vn)
        self.timers: dict[tuple[TimerKind, str], float] = {}
        self.last_heard: dict[RouteManagerId, float] = {}
        #: Neighbours dropped for silence; hearing one again triggers a two-way resync.
        self.lost_peers: set[RouteManagerId] = set()
        #: When announcements last went to each neighbour (the MRAI runs from there).
        self.last_flush: dict[RouteManagerId, float] = {}
        #: When any UPDATE (withdrawals too) last went to each neighbour.
        self.last_update: dict[RouteManagerId, float] = {}
        self.requests: dict[str, StitchRequest] = {}
        self.query_owner: dict[bytes, str] = {}
        self.seen_queries: dict[bytes, int] = {}
        self.reservations: dict[str, Reservation] = {}
        self.tunnels: dict[str, Tunnel] = {}
        self.held: dict[str, HeldPath] = {}
        self._restored_held: list[dict[str, Any]] = []
        self.resizes: dict[str, ResizeAttempt] = {}
        self.stats: dict[str, int] = self._counters.events  # exported as counters.events
        self._restored = False
        self._restored_resizes: list[list[Any]] = []
        self.init_membership()

    # -- API properties ------------------------------------------------------------------
    @property
    def rm_id(self) -> RouteManagerId:
        return self.me

    @property
    def counters(self) -> Counters:
        return self._counters

    def stat(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    # -- sending and timers --------------------------------------------------------------
    def send(self, peer: RouteManagerId, msg: Message, now: float, out: list[Output], *,
             address: str = "", tunnel_address: str = "") -> None:
        payload = self.codec.encode(peer, msg, now)
        c = self._counters
        c.sent += 1
        c.sent_bytes += len(payload)
        name = msg.TYPE.name
        c.sent_by_type[name] = c.sent_by_type.get(name, 0) + 1
        out.append(SendDatagram(peer, payload, address, tunnel_address))

    # Timer kinds are TimerKind members; a name is accepted (and checked) so roles that
    # still spell kinds as strings keep working.
    def set_timer(self, kind: TimerKind | str, key: str, when: float) -> None:
        self.timers[(TimerKind.of(kind), key)] = when

    def cancel_timer(self, kind: TimerKind | str, key: str) -> None:
        self.timers.pop((TimerKind.of(kind), key), None)

    def timer_due(self, kind: TimerKind | str, key: str) -> float | None:
        return self.timers.get((TimerKind.of(kind), key))

    def next_timer(self) -> float | None:
        return min(self.timers.values()) if self.timers else None

    def handle_timer(self, now: float) -> list[Output]:
        out: list[Output] = []
        while True:
            due = sorted((t, k) for k, t in self.timers.items() if t <= now)
            if not due:
                return out
            for _, key in due:
                if self.timers.get(key, now + 1) > now:
                    continue  # rescheduled or cancelled by an earlier timer in this batch
                del self.timers[key]
                self._fire(key[0], key[1], now, out)

    def _fire(self, kind: TimerKind, key: str, now: float, out: list[Output]) -> None:
        if kind == TimerKind.HELLO:
            self._hello_tick(now, out)
        elif kind == TimerKind.FLUSH:
            self._flush(RouteManagerId(key), now, out)
        elif kind == TimerKind.EXPIRE:
            self._expire(RouteManagerId(key), now, out)
        else:
            self.fire_stitching_timer(kind, key, now, out)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, now: float) -> list[Output]:
        out: list[Output] = []
        for peer in self.peers:
            self.last_flush[peer] = now
            for upd in self.discovery.full_sync(peer):
                self.send(peer, upd, now, out)
        self._schedule_hello(now)
        if self._restored:
            self.resume_after_restore(now, out)
            self.resume_resizes(self._restored_resizes, now, out)
        return out

    def _schedule_hello(self, now: float) -> None:
        jitter = 1.0 + self.rng.uniform(-0.1, 0.1)
        self.set_timer(TimerKind.HELLO, "", now + self.timers_cfg.announce_interval_s * jitter)

    def _hello_tick(self, now: float, out: list[Output]) -> None:
        for peer in self.peers:
            h = self.discovery.hello(peer)
            self.send(peer, Hello(h.digest, h.entries, *self.lease_summary(peer)), now, out)
        self.membership_tick(now, out)
        self._schedule_hello(now)

    def _heard(self, peer: RouteManagerId, now: float, out: list[Output]) -> None:
        """Note ``peer`` is alive. The expiry timer is (re)armed lazily: when it fires it
        moves itself to last-heard + hold, so it costs one timer per hold time, and a
        silent neighbour is dropped exactly at last-heard + hold."""
        self.last_heard[peer] = now
        if (TimerKind.EXPIRE, peer) not in self.timers:
            self.set_timer(TimerKind.EXPIRE, peer, now + self.timers_cfg.hold_time_s)
        if peer in self.lost_peers:
            # Back after we dropped it (partition healed, it restarted): both sides
            # forgot what they had told each other, so resync the full table both ways.
            self.lost_peers.discard(peer)
            self.stat("peer_back")
            for upd in self.discovery.full_sync(peer):
                self.send(peer, upd, now, out)
            self.send(peer, Resync(), now, out)

    def _expire(self, peer: RouteManagerId, now: float, out: list[Output]) -> None:
        heard = self.last_heard.get(peer)
        if heard is None:
            return
        due = heard + self.timers_cfg.hold_time_s
        if due > now:
            self.set_timer(TimerKind.EXPIRE, peer, due)
            return
        del self.last_heard[peer]
        self.lost_peers.add(peer)
        self.stat("peer_lost")
        self.routes_changed(self.discovery.drop_peer(peer), now, out)

    # -- receiving -----------------------------------------------------------------------
    def receive(self, datagram: bytes, source: object, now: float) -> list[Output]:
        out: list[Output] = []
        self._counters.received += 1
        self._counters.received_bytes += len(datagram)
        try:
            sender, msg = self.codec.decode(datagram, now)
            if sender not in self.peers:
                if not isinstance(msg, Probe):
                    raise RemoteProtocolError("not_neighbour", sender)
                self._on_probe(sender, msg, now, out)
                return out
            self._heard(sender, now, out)
            self._dispatch(sender, msg, now, out)
        except RemoteProtocolError as exc:
            self._counters.drop(exc.reason)
            out.append(PeerFault(source, exc.reason, now))
        return out

    def _dispatch(self, sender: RouteManagerId, msg: Message, now: float,
                  out: list[Output]) -> None:
        if isinstance(msg, Hello):
            if not self.discovery.hello_matches(sender, msg):
                self.stat("resync_requested")
                self.send(sender, Resync(), now, out)
            self.on_hello_leases(sender, msg, now, out)
        elif isinstance(msg, Update):
            self.routes_changed(self.discovery.on_update(sender, msg), now, out)
            if sender in self.discovery.resync_wanted:
                self.discovery.resync_wanted.discard(sender)
                self.stat("resync_incomplete")
                self.send(sender, Resync(), now, out)
        elif isinstance(msg, Resync):
            for upd in self.discovery.full_sync(sender):
                self.send(sender, upd, now, out)
        else:
            self.dispatch_stitching(sender, msg, now, out)

    # -- discovery plumbing --------------------------------------------------------------
    def routes_changed(self, keys: list[Key], now: float, out: list[Output]) -> None:
        if not keys:
            return
        for vnid, _origin in keys:
            best = self.discovery.routes_to(vnid)
            out.append(RouteChanged(vnid, best[0].entry.path if best else None, now))
        gap = self.timers_cfg.withdrawal_interval_s
        for peer in self.peers:
            if (TimerKind.FLUSH, peer) not in self.timers:
                self.set_timer(TimerKind.FLUSH, peer,
                               max(now, self.last_update.get(peer, -gap) + gap))

    def _flush(self, peer: RouteManagerId, now: float, out: list[Output]) -> None:
        """Per-neighbour MRAI (BGP style): announcements to ``peer`` at most every
        ``min_advertisement_interval_s`` -- everything that changed meanwhile goes in one
        batch, intermediate best paths are never sent -- withdrawals at once."""
        mrai = self.timers_cfg.min_advertisement_interval_s
        next_announce = self.last_flush.get(peer, -mrai) + mrai
        announce = now >= next_announce
        updates, held = self.discovery.flush(peer, announce)
        if announce and (not updates or any(u.entries for u in updates)):
            # withdrawals held with the batch do not open a new interval: a route
            # arriving right after them still goes at once
            self.last_flush[peer] = now
        if updates:
            self.last_update[peer] = now
        for upd in updates:
            self.send(peer, upd, now, out)
        if held:
            self.set_timer(TimerKind.FLUSH, peer, next_announce)

    def capacity_changed(self, peers: tuple[RouteManagerId, ...], now: float,
                         out: list[Output]) -> None:
        keys: list[Key] = []
        for peer in peers:
            keys += self.discovery.refresh_via(peer)
        self.routes_changed(keys, now, out)

    # -- local VNs -----------------------------------------------------------------------
    def add_local_vn(self, vn: VirtualNetwork, now: float) -> list[Output]:
        out: list[Output] = []
        self.routes_changed(self.discovery.set_local(vn), now, out)
        return out

    def remove_local_vn(self, vnid: VNID, now: float) -> list[Output]:
        out: list[Output] = []
        self.routes_changed(self.discovery.remove_local(vnid), now, out)
        return out

    # -- introspection for tests and the simulator ---------------------------------------
    def link_usage(self) -> dict[RouteManagerId, tuple[float, float]]:
        """Per neighbour link: (reserved Mbit/s, capacity Mbit/s)."""
        return self.ledger.usage()

    # -- typed views (RouteManagerViews) ---------------------------------------------------
    def stitch_views(self) -> list[StitchView]:
        return [StitchView(r.stitch_id, r.vnid, r.state.value, r.path,
                           r.constraints.bandwidth_mbps, r.cost)
                for r in self.requests.values()]

    def tunnel_views(self) -> list[TunnelView]:
        return [TunnelView(t.tunnel_id, t.stitch_id, t.vnid, t.peer, t.origin, t.state.value,
                           t.path, t.bandwidth_mbps, t.vxlan_name, t.wg_name, t.class_id,
                           t.rtt_ms, t.loss) for t in self.tunnels.values()]

    def tunnel_objects(self, tunnel_id: str) -> tuple[DataplaneObject, ...]:
        for t in self.tunnels.values():
            if t.tunnel_id == tunnel_id and t.state is not TunnelState.REQUESTED:
                return t.dataplane_objects(self.config.route_metric)
        return ()

    def route_views(self) -> list[RouteView]:
        return [RouteView(r.entry.vnid, r.via, r.entry.path, r.entry.bandwidth_mbps,
                          r.entry.components, r.entry.cost, r.entry.latency_ms)
                for vnid in sorted(self.discovery.best_by_vnid)
                for r in self.discovery.routes_to(vnid)]

    def link_usage_views(self) -> list[LinkUsageView]:
        return [LinkUsageView(peer, used, cap) for peer, (used, cap) in self.link_usage().items()]

    def request(self, stitch_id: str) -> StitchRequest | None:
        return self.requests.get(stitch_id)

    def active_tunnels(self) -> list[Tunnel]:
        return [t for t in self.tunnels.values() if t.state is not TunnelState.DOWN]

    # -- persistence ---------------------------------------------------------------------
    def export_state(self) -> dict[str, Any]:
        """Plain (msgpack/JSON-able) state that must survive a restart."""
        live = (ReservationState.HELD, ReservationState.COMMITTED)
        return {
            "version": STATE_VERSION,
            "rm_id": self.me,
            "codec": self.codec.export_state(),
            "local_vns": [{"vnid": int(vn.vnid), "segment": vn.segment,
                           "components": [str(c) for c in vn.components],
                           "application": vn.application}
                          for vn in self.discovery.local.values()],
            "reservations": [r.to_dict() for r in self.reservations.values()
                             if r.state in live],
            "tunnels": [t.to_dict() for t in self.active_tunnels()],
            "held": self.export_held(),
            "stitches": [r.to_dict() for r in self.requests.values()],
            "resizes": self.export_resizes(),
            "admitted": export_admitted(self),
        }

    @classmethod
    def from_state(cls, config: CoreConfig, identity: Identity, trust: TrustStore,
                   rng: random.Random, state: dict[str, Any]) -> Self:
        """A core restored from :meth:`export_state`; call ``start(now)`` next."""
        core = cls(config, identity, trust, rng)
        core.codec.restore_state(state.get("codec", {}))
        for d in state.get("local_vns", []):
            core.discovery.set_local(VirtualNetwork(
                VNID(int(d["vnid"])), d["segment"],
                tuple(Component.parse(c) for c in d["components"]), d["application"]))
        for d in state.get("reservations", []):
            r = Reservation.from_dict(d)
            core.reservations[r.token] = r
            core.ledger.admit(r.token, r.links, r.bandwidth_mbps)
        for d in state.get("tunnels", []):
            t = Tunnel.from_dict(d)
            core.tunnels[t.token] = t
        for d in state.get("stitches", []):
            req = StitchRequest.from_dict(d)
            core.requests[req.stitch_id] = req
        core._restored_resizes = list(state.get("resizes", []))
        core._restored_held = list(state.get("held", []))
        restore_admitted(core, state.get("admitted", []))
        core._restored = True
        return core

    # -- request API (implemented in the mixin, re-exposed here for the Protocol) --------
    def request_stitch(self, vnid: VNID, constraints: StitchConstraints,
                       now: float) -> tuple[str, list[Output]]:
        return self.start_request(vnid, constraints, now)

    def renegotiate_stitch(self, stitch_id: str, avoid: frozenset[tuple[RouteManagerId, ...]],
                           now: float, *, keep_old: bool = False
                           ) -> tuple[str, list[Output]]:
        return self.start_renegotiation(stitch_id, avoid, now, keep_old=keep_old)

    def release_stitch(self, stitch_id: str, now: float) -> list[Output]:
        out: list[Output] = []
        self.release_request(stitch_id, now, out)
        return out

    def dataplane_objects(self) -> list[DataplaneChange]:
        """Everything live tunnels want, as one change (used after a restore)."""
        objs = [o for t in self.active_tunnels()
                if t.state is not TunnelState.REQUESTED
                for o in t.dataplane_objects(self.config.route_metric)]
        objs += [o for h in self.held.values()
                 for o in h.tunnel.dataplane_objects(self.config.route_metric)]
        return [DataplaneChange(add=tuple(objs))] if objs else []


