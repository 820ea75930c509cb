"""An in-memory network of Route Manager cores for tests and the demo (deterministic).

Theory of operation: one core per segment of a partitioned :class:`Substrate`; every
pair of neighbouring segments is a :class:`~vnstitch.protocol.api.PeerLink` whose
capacity and latency come from ``Substrate.segment_adjacencies()``. Datagrams are
delivered after the link's one-way latency (optionally lost with probability ``loss``,
drawn from the seeded RNG); timers fire in time order on a virtual clock. Dataplane
changes are applied to a per-RM :class:`DataplaneState` so tests can inspect them. An
optional ``check`` callback runs after every step (the no-over-commit invariant).
Datagrams between RMs that are not neighbours (end-to-end tunnel probes) take the
lowest-latency chain of uncut neighbour links, and are lost when there is none.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import msgpack

from vnstitch.dataplane.objects import DataplaneState
from vnstitch.model.ids import RouteManagerId, SegmentId
from vnstitch.model.substrate import Substrate
from vnstitch.model.virtual import VirtualNetwork
from vnstitch.protocol.api import DataplaneChange, Event, Output, PeerLink, SendDatagram
from vnstitch.protocol.codec import HEADER_LEN, SIGNATURE_LEN
from vnstitch.protocol.config import CoreConfig, Timers
from vnstitch.protocol.core import RouteManagerCore
from vnstitch.protocol.identity import Identity, TrustStore


@dataclass(order=True)
class _Delivery:
    at: float
    seq: int
    dest: RouteManagerId = field(compare=False)
    src: RouteManagerId = field(compare=False)
    payload: bytes = field(compare=False)


def message_type(datagram: bytes) -> int:
    """The message type code inside a (trusted, well-formed) datagram of ours."""
    body = msgpack.unpackb(datagram[HEADER_LEN:-SIGNATURE_LEN], raw=False)
    return int(body[2])


class InMemoryNetwork:
    """N cores wired by their segment adjacencies, on a virtual clock."""

    def __init__(self, substrate: Substrate, vns: Mapping[SegmentId, Sequence[VirtualNetwork]]
                 = {}, *, seed: int = 0, loss: float = 0.0, timers: Timers | None = None,
                 capacity_scale: float = 1.0,
                 configure: Callable[[CoreConfig, Mapping[SegmentId, RouteManagerId]],
                                     CoreConfig] | None = None) -> None:
        """``configure`` may amend each core's config (access policies, grants: it gets
        every segment's RM id)."""
        self.rng = random.Random(seed)
        self.loss = loss
        self.now = 0.0
        self.segments = substrate.segments()
        self.identities = {s: Identity.from_rng(self.rng) for s in self.segments}
        self.rm_of = {s: i.rm_id for s, i in self.identities.items()}
        self.segment_of = {rm: s for s, rm in self.rm_of.items()}
        trust = TrustStore(i.public_bytes for i in self.identities.values())
        peers: dict[SegmentId, list[PeerLink]] = {s: [] for s in self.segments}
        self.latency: dict[tuple[RouteManagerId, RouteManagerId], float] = {}
        for adj in substrate.segment_adjacencies():
            a, b = self.rm_of[adj.a], self.rm_of[adj.b]
            cap = adj.capacity_mbps * capacity_scale
            cost = min(link.cost for link in adj.links)
            peers[adj.a].append(PeerLink(b, cap, adj.latency_ms, cost))
            peers[adj.b].append(PeerLink(a, cap, adj.latency_ms, cost))
            self.latency[(a, b)] = self.latency[(b, a)] = adj.latency_ms / 1000.0
        self.cores: dict[RouteManagerId, RouteManagerCore] = {}
        for i, s in enumerate(self.segments):
            cfg = CoreConfig(s, tuple(peers[s]), tuple(vns.get(s, ())),
                             underlay_address=f"192.0.2.{i + 1}", timers=timers or Timers())
            if configure is not None:
                cfg = configure(cfg, self.rm_of)
            self.cores[self.rm_of[s]] = RouteManagerCore(
                cfg, self.identities[s], trust, random.Random(self.rng.getrandbits(64)))
        self.queue: list[_Delivery] = []
        self._seq = 0
        self.events: list[tuple[float, RouteManagerId, Event]] = []
        self.dataplane: dict[RouteManagerId, DataplaneState] = {
            rm: DataplaneState() for rm in self.cores}
        self.delivered = 0
        self.sent = 0
        self.cut: set[frozenset[RouteManagerId]] = set()
        self.check: Callable[[InMemoryNetwork], None] | None = None
        #: Optional filter: (source, destination, message type code) -> drop this datagram?
        self.drop: Callable[[RouteManagerId, RouteManagerId, int], bool] | None = None

    def core(self, segment: SegmentId) -> RouteManagerCore:
        return self.cores[self.rm_of[segment]]

    # -- driving -------------------------------------------------------------------------
    def start(self) -> None:
        for rm, core in self.cores.items():
            self.process(rm, core.start(self.now))

    def process(self, rm: RouteManagerId, outputs: list[Output]) -> None:
        for o in outputs:
            if isinstance(o, SendDatagram):
                self.sent += 1
                link = frozenset((rm, o.destination))
                if link in self.cut or (self.loss and self.rng.random() < self.loss):
                    continue
                if self.drop is not None and self.drop(rm, o.destination,
                                                       message_type(o.payload)):
                    continue
                delay = self.latency.get((rm, o.destination))
                if delay is None:
                    delay = self._path_latency(rm, o.destination)
                    if delay is None:
                        continue
                self._seq += 1
                heapq.heappush(self.queue, _Delivery(self.now + delay, self._seq,
                                                     o.destination, rm, o.payload))
            elif isinstance(o, DataplaneChange):
                self.dataplane[rm] = self.dataplane[rm].with_objects(o.add, o.remove)
            else:
                self.events.append((self.now, rm, o))

    def _path_latency(self, a: RouteManagerId, b: RouteManagerId) -> float | None:
        """Lowest latency (s) from ``a`` to ``b`` over uncut neighbour links, or None."""
        best = {a: 0.0}
        todo = [(0.0, a)]
        while todo:
            d, x = heapq.heappop(todo)
            if x == b:
                return d
            if d > best[x]:
                continue
            for (p, q), lat in self.latency.items():
                if p != x or frozenset((p, q)) in self.cut:
                    continue
                if d + lat < best.get(q, float("inf")):
                    best[q] = d + lat
                    heapq.heappush(todo, (d + lat, q))
        return None

    def next_time(self) -> float | None:
        times = [t for c in self.cores.values() if (t := c.next_timer()) is not None]
        if self.queue:
            times.append(self.queue[0].at)
        return min(times) if times else None

    def step(self) -> bool:
        """Run the earliest delivery or timer; False when nothing is pending."""
        t = self.next_time()
        if t is None:
            return False
        self.now = max(self.now, t)
        if self.queue and self.queue[0].at <= t:
            d = heapq.heappop(self.queue)
            self.delivered += 1
            self.process(d.dest, self.cores[d.dest].receive(d.payload, d.src, self.now))
        else:
            for rm, core in self.cores.items():
                nt = core.next_timer()
                if nt is not None and nt <= t:
                    self.process(rm, core.handle_timer(self.now))
        if self.check is not None:
            self.check(self)
        return True

    def run_until(self, t: float) -> None:
        while (nt := self.next_time()) is not None and nt <= t:
            self.step()
        self.now = max(self.now, t)

    def converge(self, limit_s: float = 60.0) -> int:
        """Step until no discovery update is in flight or pending; returns datagrams sent."""
        while self.now < limit_s and (self.queue or any(
                k[0] == "flush" for c in self.cores.values() for k in c.timers)):
            self.step()
        return self.sent

    def events_of(self, kind: type) -> list[tuple[float, RouteManagerId, Event]]:
        return [e for e in self.events if isinstance(e[2], kind)]

    def check_no_overcommit(self) -> None:
        for core in self.cores.values():
            core.ledger.check_invariant()
