"""A small test double of the Route Manager core, for daemon tests before/beside the real one.

It speaks a toy protocol with real Ed25519 signatures: JSON body + 64-byte signature.
Messages: ``hello`` (periodic; lists local VNIDs; doubles as tunnel probe),
``stitch_req`` / ``stitch_ok`` (one-hop stitch to the peer announcing the VNID). Bad
bytes, unknown senders, forged signatures and replays become ``PeerFault`` events.
A peer silent for ``probe_interval_s * probe_misses`` takes its tunnels and stitches down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vnstitch.daemon.coreadapter import CoreSetup, bridge_name
from vnstitch.dataplane.objects import (
    BridgePort,
    DataplaneObject,
    FdbEntry,
    VxlanPort,
    WireguardInterface,
    WireguardPeer,
)
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.model.virtual import VirtualNetwork
from vnstitch.protocol.api import (
    Counters,
    DataplaneChange,
    FailureReason,
    LinkUsageView,
    Output,
    PeerFault,
    RouteChanged,
    RouteView,
    SendDatagram,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
    StitchResized,
    StitchTornDown,
    StitchView,
    TunnelStateChanged,
    TunnelView,
)


@dataclass
class _Stitch:
    stitch_id: str
    vnid: int
    peer: str
    bandwidth: float
    state: str = "requested"
    requested_at: float = 0.0


@dataclass
class FakeCore:
    setup: CoreSetup
    counters_: Counters = field(default_factory=Counters)
    seq: int = 0
    seen: dict[str, int] = field(default_factory=dict)
    local: set[int] = field(default_factory=set)
    routes: dict[int, str] = field(default_factory=dict)
    last_heard: dict[str, float] = field(default_factory=dict)
    stitches: dict[str, _Stitch] = field(default_factory=dict)
    next_hello: float = 0.0
    counter: int = 0

    def __post_init__(self) -> None:
        self.seq = self.setup.sequence_floor
        self.trust = {rm: Ed25519PublicKey.from_public_bytes(k)
                      for rm, k in self.setup.config.trust.items()}
        if self.setup.exported_state:
            st = json.loads(self.setup.exported_state)
            self.counter = st["counter"]
            self.stitches = {k: _Stitch(**v) for k, v in st["stitches"].items()}
            for s in self.stitches.values():  # a restart gives peers a fresh probe budget
                self.last_heard[s.peer] = self.setup.now

    # -- the API --------------------------------------------------------------------------

    @property
    def rm_id(self) -> RouteManagerId:
        return self.setup.key.rm_id

    @property
    def counters(self) -> Counters:
        return self.counters_

    @property
    def last_sequence(self) -> int:
        return self.seq

    def snapshot(self) -> bytes:
        return json.dumps({"counter": self.counter, "stitches": {
            k: vars(v) for k, v in self.stitches.items()}}).encode()

    def start(self, now: float) -> list[Output]:
        self.next_hello = now
        return self.handle_timer(now)

    def _send(self, peer: str, body: dict[str, Any], now: float) -> SendDatagram:
        self.seq += 1
        data = json.dumps({"src": self.rm_id, "seq": self.seq, "ts": now, **body}).encode()
        return SendDatagram(RouteManagerId(peer), data + self.setup.key.private_key.sign(data))

    def _hello_all(self, now: float) -> list[Output]:
        return [self._send(p.rm_id, {"t": "hello", "vnids": sorted(self.local)}, now)
                for p in self.setup.config.peers]

    def receive(self, datagram: bytes, source: object, now: float) -> list[Output]:
        self.counters_.received += 1
        if len(datagram) < 65 or len(datagram) > 4096:
            return [PeerFault(source, "size", now)]
        body, sig = datagram[:-64], datagram[-64:]
        try:
            msg = json.loads(body)
            src = str(msg["src"])
            seq = int(msg["seq"])
        except (ValueError, KeyError, TypeError):
            self.counters_.drop("malformed")
            return [PeerFault(source, "malformed", now)]
        key = self.trust.get(RouteManagerId(src))
        if key is None:
            self.counters_.drop("unknown_sender")
            return [PeerFault(source, "unknown_sender", now)]
        try:
            key.verify(sig, body)
        except InvalidSignature:
            self.counters_.drop("bad_signature")
            return [PeerFault(source, "bad_signature", now)]
        if seq <= self.seen.get(src, 0):
            self.counters_.drop("replay")
            return [PeerFault(source, "replay", now)]
        self.seen[src] = seq
        self.last_heard[src] = now
        return self._handle(src, msg, now)

    def _handle(self, src: str, msg: dict[str, Any], now: float) -> list[Output]:
        out: list[Output] = []
        if msg["t"] == "hello":
            for v in msg["vnids"]:
                if self.routes.get(v) != src:
                    self.routes[v] = src
                    out.append(RouteChanged(VNID(v), (RouteManagerId(src),), now))
        elif msg["t"] == "stitch_req":
            new = _Stitch(msg["sid"], msg["vnid"], src, msg["bw"], "up", now)
            self.stitches[new.stitch_id] = new
            out += self._tunnel_up(new, now)
            out.append(self._send(src, {"t": "stitch_ok", "sid": new.stitch_id}, now))
        elif msg["t"] == "stitch_ok":
            s = self.stitches.get(msg["sid"])
            if s is not None and s.state == "requested":
                s.state = "up"
                out += self._tunnel_up(s, now)
                out.append(StitchEstablished(s.stitch_id, VNID(s.vnid), (
                    self.rm_id, RouteManagerId(src)), s.bandwidth, 1.0, 1.0, s.requested_at, now))
        return out

    def _objects(self, s: _Stitch) -> list[DataplaneObject]:
        wg = f"wg{s.stitch_id[-6:]}"
        vx = f"vx{s.stitch_id[-6:]}"
        peer = WireguardPeer("A" * 43 + "=", None, ("10.255.0.0/24",))
        return [WireguardInterface(wg, "B" * 43 + "=", 51820, "10.255.0.1/24", (peer,)),
                VxlanPort(vx, s.vnid, "10.255.0.1", wg), BridgePort(bridge_name(s.vnid), vx),
                FdbEntry(vx, "10.255.0.2")]

    def _tunnel_up(self, s: _Stitch, now: float) -> list[Output]:
        return [DataplaneChange(add=tuple(self._objects(s))),
                TunnelStateChanged(f"t-{s.stitch_id}", RouteManagerId(s.peer), "requested", "up",
                                   now)]

    def _tunnel_down(self, s: _Stitch, now: float) -> list[Output]:
        s.state = "down"
        return [DataplaneChange(remove=tuple(o.key for o in self._objects(s))),
                TunnelStateChanged(f"t-{s.stitch_id}", RouteManagerId(s.peer), "up", "down", now),
                StitchTornDown(s.stitch_id, VNID(s.vnid), FailureReason.TUNNEL_DOWN, False, now)]

    def request_stitch(self, vnid: VNID, constraints: StitchConstraints, now: float
                       ) -> tuple[str, list[Output]]:
        self.counter += 1
        sid = f"{self.rm_id[:8]}-{self.counter:06d}"
        peer = self.routes.get(int(vnid))
        if peer is None:
            return sid, [StitchFailed(sid, vnid, FailureReason.NO_ROUTE, "nobody offers it", now)]
        self.stitches[sid] = _Stitch(sid, int(vnid), peer, constraints.bandwidth_mbps,
                                     "requested", now)
        return sid, [self._send(peer, {"t": "stitch_req", "sid": sid, "vnid": int(vnid),
                                       "bw": constraints.bandwidth_mbps}, now)]

    def release_stitch(self, stitch_id: str, now: float) -> list[Output]:
        s = self.stitches.get(stitch_id)
        return [] if s is None or s.state != "up" else self._tunnel_down(s, now)

    def add_local_vn(self, vn: VirtualNetwork, now: float) -> list[Output]:
        self.local.add(int(vn.vnid))
        return list(self._hello_all(now))

    def remove_local_vn(self, vnid: VNID, now: float) -> list[Output]:
        self.local.discard(int(vnid))
        return list(self._hello_all(now))

    def _probe_at(self) -> float:
        t = self.setup.config.timers
        return t.probe_interval_s * t.probe_misses

    def next_timer(self) -> float | None:
        deadlines = [self.next_hello]
        for s in self.stitches.values():
            if s.state == "up" and s.peer in self.last_heard:
                deadlines.append(self.last_heard[s.peer] + self._probe_at())
        return min(deadlines)

    def handle_timer(self, now: float) -> list[Output]:
        out: list[Output] = []
        if now >= self.next_hello:
            out += self._hello_all(now)
            self.next_hello = now + self.setup.config.timers.probe_interval_s
        for s in self.stitches.values():
            heard = self.last_heard.get(s.peer)
            if s.state == "up" and heard is not None and now >= heard + self._probe_at():
                out += self._tunnel_down(s, now)
        return out

    # -- typed views ------------------------------------------------------------------------
    def stitch_views(self) -> list[StitchView]:
        me = RouteManagerId(self.rm_id)
        return [StitchView(s.stitch_id, VNID(s.vnid), s.state, (me, RouteManagerId(s.peer)),
                           s.bandwidth) for s in self.stitches.values()]

    def tunnel_objects(self, tunnel_id: str) -> tuple[DataplaneObject, ...]:
        return ()

    def tunnel_views(self) -> list[TunnelView]:
        return [TunnelView(f"t-{s.stitch_id}", s.stitch_id, VNID(s.vnid),
                           RouteManagerId(s.peer), True, s.state,
                           (self.rm_id, RouteManagerId(s.peer)), s.bandwidth,
                           f"vx{s.stitch_id[-6:]}", f"wg{s.stitch_id[-6:]}", 1, None, 0.0)
                for s in self.stitches.values() if s.state == "up"]

    def route_views(self) -> list[RouteView]:
        return [RouteView(VNID(v), RouteManagerId(peer), (RouteManagerId(peer),), 0.0)
                for v, peer in sorted(self.routes.items())]

    def link_usage_views(self) -> list[LinkUsageView]:
        return []

    def resize_stitch(self, stitch_id: str, bandwidth_mbps: float,
                      now: float) -> list[Output]:
        return [StitchResized(stitch_id, 0.0, bandwidth_mbps, False, "local", now,
                              "this core cannot resize stitches")]

    def renegotiate_stitch(self, stitch_id: str, avoid: frozenset[tuple[RouteManagerId, ...]],
                           now: float, *, keep_old: bool = False
                           ) -> tuple[str, list[Output]]:
        del avoid, keep_old
        return stitch_id, [StitchFailed(stitch_id, VNID(0), FailureReason.LOCAL,
                                        "this core cannot renegotiate", now)]

    def report_congestion(self, neighbour: RouteManagerId, utilisation: float,
                          now: float, *, excess_mbps: float | None = None) -> list[Output]:
        del neighbour, utilisation, now, excess_mbps
        return []


def fake_core_factory(setup: CoreSetup) -> FakeCore:
    return FakeCore(setup)
