"""Admission control before signature verification: floods cost little and harm nothing.

Theory of operation. Verifying an Ed25519 signature is the expensive step of receiving a
datagram (tens of microseconds); a flood of forged datagrams that all reach it starves
the event loop and the socket's receive buffer overflows, so genuine HELLOs, probes and
lease refreshes are lost and stitches die. :class:`Admission` decides, from an unverified
:class:`~vnstitch.protocol.codec.Peek` of the header and the source address, whether a
datagram is verified now or dropped, cheapest checks first:

1. what the full decode would refuse anyway (bad magic, unknown sender, wrong recipient,
   size) is dropped without verifying;
2. a configured neighbour's id must come from the address it is configured at (or from
   inside one of our tunnels): a forged id from elsewhere is dropped;
3. the datagram is given a tier: **1** a neighbour's (or tunnel end's) HELLO, PROBE,
   PROBE_REPLY or LEASES whose sequence number is in the receive window (a forger does
   not know the window); **2** any other in-window message; **3** everything else
   (first contact, a restarted peer, forgeries);
4. tier 3 passes a per-source token bucket first (bounded table of sources, least
   recently seen evicted);
5. every tier then draws from one verification budget per second; tier 2 may not take
   the last ``reserve_tier1`` of it, tier 3 not the last ``reserve_tier2`` -- so the
   messages that keep stitches alive are served first even when the budget is spent.

Steps 1-2 (:meth:`Admission.screen`) need only the header and the source address, so a
caller runs them before it unpacks any of the body (``Codec.peek_header``, then
``Codec.peek_body`` and :meth:`Admission.admit`).

Pure: the caller passes ``now`` (seconds) and the set of tunnel peer hosts; the verdict
is a drop reason (counted by the caller) or None.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.codec import Peek
from vnstitch.protocol.messages import MsgType

#: Message types that keep an established stitch alive.
KEEPALIVE_TYPES = frozenset({int(MsgType.HELLO), int(MsgType.PROBE),
                             int(MsgType.PROBE_REPLY), int(MsgType.LEASES)})


@dataclass(frozen=True, slots=True)
class AdmissionConfig:
    verify_per_s: float = 3000.0  # signature verifications per second, all sources
    verify_burst: float = 600.0
    source_per_s: float = 100.0  # tier-3 datagrams per second from one source address
    source_burst: float = 200.0
    max_sources: int = 4096  # per-source buckets kept (least recently seen evicted)
    reserve_tier1: float = 0.25  # share of the burst tier 2 may not take
    reserve_tier2: float = 0.5  # share of the burst tier 3 may not take


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def take(self, now: float, floor: float = 0.0) -> bool:
        """Take one token if at least ``floor`` tokens are left afterwards."""
        self.refill(now)
        if self.tokens - 1.0 < floor:
            return False
        self.tokens -= 1.0
        return True


DEFAULT_ADMISSION = AdmissionConfig()


class Admission:
    """Admission decisions of one Route Manager."""

    def __init__(self, neighbours: Mapping[RouteManagerId, tuple[str, int]],
                 config: AdmissionConfig = DEFAULT_ADMISSION, now: float = 0.0) -> None:
        self.config = config
        self._neighbours = dict(neighbours)
        self._budget = TokenBucket(config.verify_per_s, config.verify_burst, now)
        self._sources: OrderedDict[str, TokenBucket] = OrderedDict()
        self.admitted = [0, 0, 0]  # per tier

    def set_neighbours(self, neighbours: Mapping[RouteManagerId, tuple[str, int]]) -> None:
        """A new neighbour list (config reload); the rate buckets are kept."""
        self._neighbours = dict(neighbours)

    def check(self, peek: Peek, source: tuple[str, int], now: float,
              tunnel_hosts: Collection[str] = ()) -> str | None:
        """None to verify the datagram now, else the reason it is dropped unverified."""
        refused = self.screen(peek, source, tunnel_hosts)
        return refused if refused is not None else self.admit(peek, source, now, tunnel_hosts)

    def screen(self, head: Peek, source: tuple[str, int],
               tunnel_hosts: Collection[str] = ()) -> str | None:
        """Steps 1 and 2 (header and source address), which need neither the body nor
        the clock: a caller drops most forgeries here, before it peeks the body."""
        if head.problem is not None:
            return head.problem
        configured = self._neighbours.get(head.sender) if head.sender is not None else None
        if configured is not None and configured != source and source[0] not in tunnel_hosts:
            return "address_mismatch"
        return None

    def admit(self, peek: Peek, source: tuple[str, int], now: float,
              tunnel_hosts: Collection[str] = ()) -> str | None:
        """Steps 3-5 for a datagram that passed :meth:`screen`: tier, per-source bucket,
        verification budget."""
        known_path = peek.sender in self._neighbours or source[0] in tunnel_hosts
        if peek.in_window and known_path and peek.type_code in KEEPALIVE_TYPES:
            tier, floor = 1, 0.0
        elif peek.in_window:
            tier, floor = 2, self.config.reserve_tier1 * self.config.verify_burst
        else:
            tier, floor = 3, self.config.reserve_tier2 * self.config.verify_burst
            if not self._source_bucket(source[0], now).take(now):
                return "rate_limited"
        if not self._budget.take(now, floor):
            return f"verify_budget_tier{tier}"
        self.admitted[tier - 1] += 1
        return None

    def _source_bucket(self, host: str, now: float) -> TokenBucket:
        bucket = self._sources.get(host)
        if bucket is None:
            if len(self._sources) >= self.config.max_sources:
                self._sources.popitem(last=False)
            bucket = self._sources[host] = TokenBucket(
                self.config.source_per_s, self.config.source_burst, now)
        else:
            self._sources.move_to_end(host)
        return bucket

    @property
    def sources_tracked(self) -> int:
        return len(self._sources)
