"""Discovery: path-vector VNID Availability with digest keepalives.

Theory of operation. Every RM keeps, per neighbour, the entries that neighbour announced
(``rib_in``) and, per neighbour, what it announced to it (``rib_out``). An entry is keyed
by (VNID, origin RM) and carries the path of RMs it crossed (announcer first, origin
last), the bandwidth still on offer along it, and summed latency and cost. On receipt the
RM adds its own link to the announcer (latency, cost, and caps bandwidth by what the link
still has free), refuses paths that contain itself (no loops), and picks per key the
best candidate (cheapest, then lowest latency, then shortest). Changes to a best route
are queued per neighbour and flushed as UPDATE messages no more often than the minimum
advertisement interval; a route is never announced back to a neighbour on its path
(split horizon), and a route that disappears is withdrawn.

Steady state costs one small message per neighbour per interval: a HELLO carrying a
64-bit digest (sum of per-entry hashes) of ``rib_out``; the neighbour compares it with
the digest of its ``rib_in`` and asks for a full RESYNC only on mismatch. So control
traffic grows with the number of neighbours, not segments; UPDATEs are sent only on
change. A neighbour silent for the hold time (3 intervals) is dropped with all its
entries. Large tables are chunked to fit one datagram, paths compacted (see
:mod:`vnstitch.protocol.messages`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.model.virtual import VirtualNetwork
from vnstitch.protocol.codec import HEADER_LEN, MAX_DATAGRAM, SIGNATURE_LEN
from vnstitch.protocol.errors import ProtocolError
from vnstitch.protocol.grants import OPEN, AccessPolicy
from vnstitch.protocol.messages import (
    MAX_COMPONENTS,
    MAX_ENTRIES,
    Entry,
    Hello,
    Update,
    compact_entry,
)

Key = tuple[VNID, RouteManagerId]
_MASK64 = (1 << 64) - 1
#: Worst-case msgpack bytes of an UPDATE datagram's envelope and fixed fields: outer
#: array (1) + seq (uint64: 9) + timestamp (float64: 9) + type (1) + payload array (1) +
#: announcer (bin8: 2 + 16) + entries and withdrawals array headers (3 each) + sync
#: (uint32: 5) + chunk and chunks (uint16: 3 each) = 56; rounded up.
_UPDATE_OVERHEAD = 58
#: Room for one UPDATE's entries and withdrawals (each counted at its exact packed size).
_UPDATE_BUDGET = MAX_DATAGRAM - HEADER_LEN - SIGNATURE_LEN - _UPDATE_OVERHEAD


def entry_fits(e: Entry) -> bool:
    """Whether ``e`` fits one UPDATE datagram on its own (long paths with many long
    components may not: such a route is not announced, and counted)."""
    # cheap upper bound first: 18 bytes per path id, 3 + UTF-8 bytes per component
    rough = 40 + 18 * len(e.path) + sum(3 + 4 * len(c) for c in e.components)
    return rough <= _UPDATE_BUDGET or \
        len(msgpack.packb(e.to_wire(), use_bin_type=True)) <= _UPDATE_BUDGET


def entry_hash(e: Entry) -> int:
    """BLAKE2b-64 of a canonical text form of the entry (every field; floats by ``repr``,
    which round-trips exactly), cheaper than packing it and the same on every host."""
    text = f"{e.vnid}|{''.join(e.path)}|{e.bandwidth_mbps!r}|{e.latency_ms!r}|" \
           f"{e.cost!r}|{chr(31).join(e.components)}|{int(e.public)}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class Route:
    """The best way this RM knows to a (VNID, origin): ``via`` None means local."""

    via: RouteManagerId | None
    entry: Entry  # as this RM would announce it: path starts with this RM


class _Rib:
    """A key -> entry map with an incrementally maintained digest (each entry's hash is
    kept, so replacing or removing it costs no re-hash) and a per-VNID index."""

    __slots__ = ("by_vnid", "digest", "entries", "hashes")

    def __init__(self) -> None:
        self.entries: dict[Key, Entry] = {}
        self.hashes: dict[Key, int] = {}
        self.by_vnid: dict[VNID, dict[RouteManagerId, Entry]] = {}
        self.digest = 0

    def put(self, key: Key, e: Entry) -> None:
        old = self.hashes.get(key)
        if old is not None:
            if self.entries[key] == e:
                return
            self.digest = (self.digest - old) & _MASK64
        h = entry_hash(e)
        self.entries[key] = e
        self.hashes[key] = h
        self.by_vnid.setdefault(key[0], {})[key[1]] = e
        self.digest = (self.digest + h) & _MASK64

    def pop(self, key: Key) -> Entry | None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.digest = (self.digest - self.hashes.pop(key)) & _MASK64
            per = self.by_vnid[key[0]]
            del per[key[1]]
            if not per:
                del self.by_vnid[key[0]]
        return old


class Discovery:
    """The discovery table of one RM; methods return (peer, message) pairs to send."""

    def __init__(self, me: RouteManagerId, links: dict[RouteManagerId, tuple[float, float]],
                 available: Callable[[RouteManagerId], float], local_offer: Callable[[], float],
                 bandwidth_change_fraction: float = 0.1) -> None:
        self.me = me
        self.links = links  # peer -> (latency_ms, cost)
        self.available = available
        self.local_offer = local_offer
        self.change_fraction = bandwidth_change_fraction
        self.local: dict[VNID, VirtualNetwork] = {}
        self.rib_in: dict[RouteManagerId, _Rib] = {p: _Rib() for p in links}
        self.rib_out: dict[RouteManagerId, _Rib] = {p: _Rib() for p in links}
        self.best: dict[Key, Route] = {}
        self.best_by_vnid: dict[VNID, dict[RouteManagerId, Route]] = {}
        self.pending: dict[RouteManagerId, set[Key]] = {p: set() for p in links}
        #: Per neighbour: the full-sync generation being received, the keys and the chunk
        #: numbers seen of it. Stale keys are removed only once *every* chunk arrived.
        self.sync_seen: dict[RouteManagerId, tuple[int, set[Key], set[int]]] = {}
        #: Neighbours whose full sync arrived incomplete: ask them again (core sends RESYNC).
        self.resync_wanted: set[RouteManagerId] = set()
        self.sync_gen = 0
        self.loops_refused = 0
        self.oversized_refused = 0
        #: Access policy of each hosted VN (set by the core): whether its components are
        #: public (relayed by anyone) ...
        self.policy: Callable[[VNID], AccessPolicy] = lambda _vnid: OPEN
        #: ... and, if not, whether a neighbour is a member that may have them from us.
        self.member: Callable[[RouteManagerId, VNID], bool] = \
            lambda peer, vnid: self.policy(vnid).allows_without_grant(peer)

    # -- local VNs -----------------------------------------------------------------------
    def set_local(self, vn: VirtualNetwork) -> list[Key]:
        if len(vn.components) > MAX_COMPONENTS:
            raise ProtocolError(f"VNID {vn.vnid}: {len(vn.components)} components, the "
                                f"protocol carries at most {MAX_COMPONENTS} per VNID")
        self.local[vn.vnid] = vn
        return self.recompute([(vn.vnid, self.me)])

    def remove_local(self, vnid: VNID) -> list[Key]:
        if self.local.pop(vnid, None) is None:
            return []
        return self.recompute([(vnid, self.me)])

    # -- receiving -----------------------------------------------------------------------
    def on_update(self, peer: RouteManagerId, msg: Update) -> list[Key]:
        rib = self.rib_in[peer]
        touched: list[Key] = []
        for e in msg.entries:
            key = (e.vnid, e.origin)
            if e.path[0] != peer:
                continue  # an announcer always puts itself first; ignore anything else
            rib.put(key, e)
            touched.append(key)
        for key in msg.withdrawals:
            if rib.pop(key) is not None:
                touched.append(key)
        if msg.sync:
            gen, seen, got = self.sync_seen.get(peer, (0, set(), set()))
            if gen != msg.sync:
                seen, got = set(), set()
            seen.update((e.vnid, e.origin) for e in msg.entries)
            got.add(msg.chunk)
            self.sync_seen[peer] = (msg.sync, seen, got)
            if len(got) >= msg.chunks:
                for key in [k for k in rib.entries if k not in seen]:
                    rib.pop(key)
                    touched.append(key)
                del self.sync_seen[peer]
            elif msg.chunk == msg.chunks - 1:
                # A chunk was lost (or is late): keep what we have -- deleting keys
                # "not seen" would drop the lost chunk's routes -- and ask again.
                self.resync_wanted.add(peer)
        return self.recompute(touched)

    def hello_matches(self, peer: RouteManagerId, msg: Hello) -> bool:
        rib = self.rib_in[peer]
        return rib.digest == msg.digest and len(rib.entries) == msg.entries

    def drop_peer(self, peer: RouteManagerId) -> list[Key]:
        """The neighbour went silent: forget everything it told us."""
        rib = self.rib_in[peer]
        touched = list(rib.entries)
        self.sync_seen.pop(peer, None)
        self.resync_wanted.discard(peer)
        self.rib_in[peer] = _Rib()
        self.rib_out[peer] = _Rib()
        return self.recompute(touched)

    # -- route selection -----------------------------------------------------------------
    def _candidate(self, peer: RouteManagerId, e: Entry) -> Entry | None:
        if self.me in e.path:
            self.loops_refused += 1
            return None
        lat, cost = self.links[peer]
        bw = min(e.bandwidth_mbps, self.available(peer))
        return Entry(e.vnid, (self.me, *e.path), bw, e.latency_ms + lat, e.cost + cost,
                     e.components, e.public)

    def recompute(self, keys: list[Key]) -> list[Key]:
        """Re-select the best route of ``keys``; returns the keys whose route changed."""
        changed: list[Key] = []
        for key in dict.fromkeys(keys):
            vnid, origin = key
            new: Route | None = None
            if origin == self.me:
                vn = self.local.get(vnid)
                if vn is not None:
                    comps = tuple(str(c) for c in vn.components)
                    new = Route(None, Entry(vnid, (self.me,), self.local_offer(), 0.0, 0.0,
                                            comps, self.policy(vnid).allow_any))
            else:
                for peer, rib in self.rib_in.items():
                    e = rib.entries.get(key)
                    cand = self._candidate(peer, e) if e is not None else None
                    if cand is not None and (new is None or _rank(cand) < _rank(new.entry)):
                        new = Route(peer, cand)
            old = self.best.get(key)
            if new is None:
                if old is not None:
                    del self.best[key]
                    per = self.best_by_vnid[vnid]
                    del per[origin]
                    if not per:
                        del self.best_by_vnid[vnid]
                    changed.append(key)
            elif old is None or self._significant(old, new):
                self.best[key] = new
                self.best_by_vnid.setdefault(vnid, {})[origin] = new
                changed.append(key)
        for key in changed:
            for pending in self.pending.values():
                pending.add(key)
        return changed

    def _significant(self, old: Route, new: Route) -> bool:
        a, b = old.entry, new.entry
        if (old.via, a.path, a.latency_ms, a.cost, a.components, a.public) != \
                (new.via, b.path, b.latency_ms, b.cost, b.components, b.public):
            return True
        return abs(a.bandwidth_mbps - b.bandwidth_mbps) > self.change_fraction * max(
            a.bandwidth_mbps, 1e-9)

    def refresh_via(self, peer: RouteManagerId) -> list[Key]:
        """Capacity toward ``peer`` changed: re-rate everything learnt from it."""
        keys = list(self.rib_in[peer].entries)
        keys += [(v, self.me) for v in self.local]
        return self.recompute(keys)

    def routes_to(self, vnid: VNID) -> list[Route]:
        """Every best route (one per origin) to ``vnid``, best first."""
        found = self.best_by_vnid.get(vnid)
        return sorted(found.values(), key=lambda r: _rank(r.entry)) if found else []

    def next_hops(self, vnid: VNID, exclude: set[RouteManagerId],
                  min_mbps: float = 0.0) -> list[RouteManagerId]:
        """Neighbours that announced a loop-free route to ``vnid`` that avoids every RM
        in ``exclude`` (a query's path so far: a route back through one of those, e.g.
        to a copy of the VN on the querying segment, only walks the query in circles):
        those whose route (and our link to them) still offers ``min_mbps`` first, each
        group cheapest first."""
        ranked: list[tuple[tuple[bool, float, float, int], RouteManagerId]] = []
        for peer, rib in self.rib_in.items():
            if peer in exclude:
                continue
            short = self.available(peer) < min_mbps
            best: tuple[bool, float, float, int] | None = None
            for e in rib.by_vnid.get(vnid, {}).values():
                if self.me not in e.path and exclude.isdisjoint(e.path):
                    r = (short or e.bandwidth_mbps < min_mbps, *_rank(e))
                    best = r if best is None or r < best else best
            if best is not None:
                ranked.append((best, peer))
        return [p for _, p in sorted(ranked)]

    # -- sending -------------------------------------------------------------------------
    def _announce_to(self, peer: RouteManagerId, key: Key) -> Entry | None:
        route = self.best.get(key)
        if route is None or peer in route.entry.path:
            return None  # split horizon / poisoned: the peer is on the path
        if not entry_fits(route.entry):
            self.oversized_refused += 1
            return None
        e = route.entry
        # Need to know: a VN's components go only to members -- from its host, to the
        # neighbours it admits; a VN open to any RM keeps them (and they are relayed).
        if not e.public and e.components and not (
                route.via is None and self.member(peer, key[0])):
            return Entry(e.vnid, e.path, e.bandwidth_mbps, e.latency_ms, e.cost, (), False)
        return e

    def _still_held(self, key: Key, announced: Entry | None) -> bool:
        """Whether the route we announced as ``announced`` is still in our table."""
        if announced is None or len(announced.path) < 2:
            return False
        rib = self.rib_in.get(announced.path[1])
        e = rib.entries.get(key) if rib is not None else None
        return e is not None and e.path == announced.path[1:]

    def flush(self, peer: RouteManagerId, announce: bool = True) -> tuple[list[Update], bool]:
        """UPDATEs carrying what changed for ``peer`` since the last flush, and whether
        announcements are still held back. With ``announce`` False only withdrawals go
        out (they are never delayed by the advertisement interval: a black hole should
        vanish fast, while batching announcements is what stops path hunting)."""
        keys = self.pending[peer]
        out = self.rib_out[peer]
        entries: list[Entry] = []
        withdrawals: list[Key] = []
        held: set[Key] = set()
        for key in sorted(keys):
            e = self._announce_to(peer, key)
            if e is None and not announce and key in self.best and self._still_held(
                    key, out.entries.get(key)):
                # The route ``peer`` has from us still exists here, it is only no longer
                # our best (that now runs through ``peer``): no black hole and no phantom,
                # so the withdrawal waits with the announcements -- path hunting often
                # brings a route for ``peer`` back within the interval, and it shares
                # their datagram either way.
                held.add(key)
            elif e is None:
                if out.pop(key) is not None:
                    withdrawals.append(key)
            elif not announce:
                held.add(key)
            elif out.entries.get(key) != e:
                out.put(key, e)
                entries.append(e)
        self.pending[peer] = held
        return _chunk(entries, withdrawals, 0), bool(held)

    def full_sync(self, peer: RouteManagerId) -> list[Update]:
        """Everything we announce to ``peer`` (answer to RESYNC), chunked, one generation."""
        self.pending[peer] = set()
        out = _Rib()
        for key in sorted(self.best):
            e = self._announce_to(peer, key)
            if e is not None:
                out.put(key, e)
        self.rib_out[peer] = out
        self.sync_gen += 1
        return _chunk(list(out.entries.values()), [], self.sync_gen)

    def hello(self, peer: RouteManagerId) -> Hello:
        out = self.rib_out[peer]
        return Hello(out.digest, len(out.entries))


def _rank(e: Entry) -> tuple[float, float, int]:
    return (e.cost, e.latency_ms, len(e.path))


def _chunk(entries: list[Entry], withdrawals: list[Key], sync: int) -> list[Update]:
    """Split into UPDATEs that each fit one datagram (at least one when ``sync``).
    Entries go in path order, so neighbours in the list share long path prefixes (the
    wire form sends each path as the prefix it shares with the one before plus the rest);
    each is counted at its exact packed size after its predecessor in the same UPDATE."""
    groups: list[tuple[list[Entry], list[Key]]] = [([], [])]
    size = 0
    prev: tuple[RouteManagerId, ...] = ()
    for e in sorted(entries, key=lambda e: e.path):
        n = len(msgpack.packb(compact_entry(e, prev), use_bin_type=True))
        if groups[-1][0] and (size + n > _UPDATE_BUDGET or len(groups[-1][0]) >= MAX_ENTRIES):
            groups.append(([], []))
            size = 0
            n = len(msgpack.packb(compact_entry(e, ()), use_bin_type=True))
        if n > _UPDATE_BUDGET:
            raise ProtocolError(f"VNID {e.vnid}: one entry of {n} bytes cannot fit a datagram")
        groups[-1][0].append(e)
        size += n
        prev = e.path
    for w in withdrawals:
        # [vnid, origin]: array (1) + vnid (<= 5) + bin8 header (2) + 16 id bytes
        n = 1 + len(msgpack.packb(int(w[0]))) + 2 + 16
        if size + n > _UPDATE_BUDGET or len(groups[-1][1]) >= MAX_ENTRIES * 4:
            groups.append(([], []))
            size = 0
        groups[-1][1].append(w)
        size += n
    if not sync and not groups[0][0] and not groups[0][1]:
        return []
    n = len(groups)
    return [Update(tuple(es), tuple(ws), sync, i if sync else 0, n if sync else 0)
            for i, (es, ws) in enumerate(groups)]
