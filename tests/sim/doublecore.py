"""A small test double of a Route Manager core, used to test the engine on its own.

It honours the sans-I/O contract with a toy path-vector protocol in JSON: every interval
each core sends its whole table to each neighbour; routes whose path contains the
receiver are refused; entries age out after a hold time. A stitch request sends a setup
message hop by hop along the best path, each hop reserving bandwidth on the link to the
next; the target acknowledges straight to the origin. No signatures, no repair: the real
core is tested with the real protocol; this only exercises the simulator's machinery.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vnstitch.model.ids import VNID, RouteManagerId, SegmentId, route_manager_id
from vnstitch.model.virtual import VirtualNetwork
from vnstitch.protocol.api import (
    Counters,
    FailureReason,
    Output,
    PeerLink,
    RouteChanged,
    RouteManagerCoreAPI,
    SendDatagram,
    StitchConstraints,
    StitchEstablished,
    StitchFailed,
)
from vnstitch.sim.cores import LinkUsage

INTERVAL = 1.0
HOLD = 3.0
TIMEOUT = 2.0


@dataclass
class DoubleCore:
    rm: RouteManagerId
    peers: dict[RouteManagerId, PeerLink]
    rng: random.Random
    local: dict[VNID, VirtualNetwork] = field(default_factory=dict)
    #: per VNID, per (neighbour, host at the end of the path): path and expiry
    routes: dict[VNID, dict[tuple[str, str], tuple[tuple[str, ...], float]]] = field(
        default_factory=dict)
    best: dict[VNID, tuple[str, ...]] = field(default_factory=dict)
    reserved: dict[RouteManagerId, float] = field(default_factory=dict)
    pending: dict[str, tuple[VNID, float, float]] = field(default_factory=dict)
    established: set[str] = field(default_factory=set)
    next_announce: float = 0.0
    seq: int = 0
    _counters: Counters = field(default_factory=Counters)

    @property
    def rm_id(self) -> RouteManagerId:
        return self.rm

    @property
    def counters(self) -> Counters:
        return self._counters

    def _send(self, to: str, msg: dict[str, object]) -> SendDatagram:
        return SendDatagram(RouteManagerId(to), json.dumps(msg).encode())

    def _announce(self) -> list[Output]:
        table = [[v, [self.rm]] for v in sorted(self.local)]
        for v, cands in sorted(self.routes.items()):
            per_host: dict[str, tuple[str, ...]] = {}
            for (_, host), (p, _) in cands.items():
                if host not in per_host or (len(p), p) < (len(per_host[host]), per_host[host]):
                    per_host[host] = p
            table += [[v, [self.rm, *p]] for _, p in sorted(per_host.items())]
        return [self._send(p, {"t": "ann", "from": self.rm, "routes": table})
                for p in sorted(self.peers)]

    def start(self, now: float) -> list[Output]:
        self.next_announce = now + self.rng.random() * INTERVAL
        return []

    def _recompute(self, now: float) -> list[Output]:
        out: list[Output] = []
        for v in sorted(set(self.routes) | set(self.best)):
            cands = {n: pe for n, pe in self.routes.get(v, {}).items() if pe[1] > now}
            self.routes[v] = cands
            new = min((p for p, _ in cands.values()), key=lambda p: (len(p), p), default=None)
            if new != self.best.get(v):
                if new is None:
                    del self.best[v]
                else:
                    self.best[v] = new
                out.append(RouteChanged(v, None if new is None else tuple(
                    RouteManagerId(x) for x in new), now))
        return out

    def receive(self, datagram: bytes, source: object, now: float) -> list[Output]:
        msg = json.loads(datagram)
        t = msg["t"]
        if t == "ann":
            for cands in self.routes.values():  # a full table replaces the sender's last
                for key in [k for k in cands if k[0] == msg["from"]]:
                    del cands[key]
            for v, path in msg["routes"]:
                if self.rm in path:
                    continue
                self.routes.setdefault(VNID(v), {})[(msg["from"], path[-1])] = (
                    tuple(path), now + HOLD)
            return self._recompute(now)
        if t == "setup":
            path, k = msg["path"], msg["k"]
            if k == len(path) - 1:
                return [self._send(path[0], {"t": "ack", "sid": msg["sid"], "path": path})]
            nxt = RouteManagerId(path[k + 1])
            link = self.peers.get(nxt)
            if link is None or self.reserved.get(nxt, 0.0) + msg["bw"] > link.capacity_mbps:
                return [self._send(path[0], {"t": "nack", "sid": msg["sid"]})]
            self.reserved[nxt] = self.reserved.get(nxt, 0.0) + msg["bw"]
            return [self._send(path[k + 1], {**msg, "k": k + 1})]
        entry = self.pending.pop(msg["sid"], None)
        if entry is None:
            return []
        v, bw, at = entry
        if t == "ack":
            self.established.add(msg["sid"])
            return [StitchEstablished(msg["sid"], v, tuple(msg["path"]), bw, 0.0, 0.0, at, now)]
        return [StitchFailed(msg["sid"], v, FailureReason.RESERVATION_REFUSED, "nack", now)]

    def request_stitch(self, vnid: VNID, constraints: StitchConstraints,
                       now: float) -> tuple[str, list[Output]]:
        self.seq += 1
        sid = f"{self.rm[:6]}-{self.seq}"
        path = self.best.get(vnid)
        if vnid not in self.local:
            return sid, [StitchFailed(sid, vnid, FailureReason.LOCAL, "not here", now)]
        if path is None:
            return sid, [StitchFailed(sid, vnid, FailureReason.NO_ROUTE, "unknown", now)]
        self.pending[sid] = (vnid, constraints.bandwidth_mbps, now)
        msg = {"t": "setup", "sid": sid, "path": [self.rm, *path], "k": 0,
               "bw": constraints.bandwidth_mbps}
        return sid, self.receive(json.dumps(msg).encode(), None, now)

    def release_stitch(self, stitch_id: str, now: float) -> list[Output]:
        return []

    def add_local_vn(self, vn: VirtualNetwork, now: float) -> list[Output]:
        self.local[vn.vnid] = vn
        return []

    def remove_local_vn(self, vnid: VNID, now: float) -> list[Output]:
        self.local.pop(vnid, None)
        return []

    def next_timer(self) -> float | None:
        return self.next_announce

    def handle_timer(self, now: float) -> list[Output]:
        if now < self.next_announce:
            return []
        self.next_announce = now + INTERVAL
        out = self._recompute(now)
        for sid, (v, _bw, at) in list(self.pending.items()):
            if now - at > TIMEOUT:
                del self.pending[sid]
                out.append(StitchFailed(sid, v, FailureReason.TIMEOUT, "no answer", now))
        return out + self._announce()


class DoubleFactory:
    """Builds :class:`DoubleCore` instances for :class:`~vnstitch.sim.engine.Simulation`."""

    announce_interval_s = INTERVAL
    hold_time_s = HOLD

    def identity(self, segment: SegmentId) -> RouteManagerId:
        return route_manager_id(hashlib.sha256(segment.encode()).hexdigest()[:32])

    def build(self, segment: SegmentId, peers: Sequence[PeerLink],
              seed: int) -> RouteManagerCoreAPI:
        return DoubleCore(self.identity(segment), {p.peer: p for p in peers},
                          random.Random(seed))

    def export_state(self, core: RouteManagerCoreAPI) -> object:
        assert isinstance(core, DoubleCore)
        return dict(core.local)

    def restore(self, segment: SegmentId, peers: Sequence[PeerLink], state: object,
                seed: int) -> RouteManagerCoreAPI:
        core = self.build(segment, peers, seed)
        assert isinstance(core, DoubleCore) and isinstance(state, dict)
        core.local.update(state)
        return core

    repair_bound_s = HOLD + TIMEOUT

    def tunnel_states(self, core: RouteManagerCoreAPI) -> Mapping[str, str]:
        assert isinstance(core, DoubleCore)
        return {sid: "up" for sid in core.established}

    def link_usage(self, core: RouteManagerCoreAPI) -> Sequence[LinkUsage]:
        assert isinstance(core, DoubleCore)
        return [LinkUsage(p, core.reserved.get(p, 0.0), link.capacity_mbps)
                for p, link in core.peers.items()]
