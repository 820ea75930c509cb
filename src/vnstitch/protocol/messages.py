"""Stitching Protocol message types and their (validated) wire form.

Theory of operation: each message is a frozen dataclass with ``TYPE`` (a
:class:`MsgType`), ``to_wire()`` returning a plain list (msgpack-able: ints, floats,
str, bytes, lists) and ``from_wire(list)`` which validates every field and raises
:class:`~vnstitch.protocol.errors.RemoteProtocolError` ("malformed") naming the field.
Route Manager ids travel as their 16 raw bytes; a path as one byte string of them. The
envelope (sender, recipient, sequence number, timestamp, signature) is added by
:mod:`vnstitch.protocol.codec`.

Messages that follow a stitch path (QUERY forward, OFFER back, HOLD..COMMIT_ACK, ABORT,
PATH_DOWN, RESIZE..RESIZE_REFUSED, CONGESTION back) carry the whole path; each hop relays
to its neighbour on the path and re-signs, so every datagram is hop-by-hop
authenticated. Key material (HOLD, HOLD_OK) additionally carries an end-to-end Ed25519
signature (``keysig``) by the end that chose it, so a transit Route Manager cannot
substitute a WireGuard key; so does a resize of an established stitch (RESIZE by the
origin, RESIZE_OK by the target: the amount both tunnel ends shape to). PROBE /
PROBE_REPLY travel end to end between the two tunnel ends (no path, no transit RM).
LEASES keeps the reservations two neighbours share alive (see :mod:`vnstitch.protocol.leases`).

UPDATE entries all start with the announcer, so an UPDATE names it once and each entry
carries only how many RMs of its path (after the announcer) it shares with the entry
before it plus the rest: routes a neighbour announces form a tree rooted at it, and
sorted entries share long prefixes (a 25-hop path often costs a few ids, not 25).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.errors import RemoteProtocolError
from vnstitch.protocol.grants import Grant, QueryRefused, Revocations
from vnstitch.protocol.wirefields import (
    MAX_COMPONENT_LEN,
    MAX_COMPONENTS,
    MAX_ENTRIES,
    MAX_PATH,
    MAX_TOKEN_LEN,
    MAX_TOKENS,
    MsgType,
    _bad,
    _bytes,
    _comps,
    _int,
    _list,
    _num,
    _path,
    _rm,
    _str,
    _unpack,
    _vnid,
    wire_path,
    wire_rm,
)

__all__ = [
    "MAX_COMPONENTS",
    "MAX_COMPONENT_LEN",
    "MAX_ENTRIES",
    "MAX_PATH",
    "MAX_TOKENS",
    "MAX_TOKEN_LEN",
    "Grant",
    "MsgType",
    "QueryRefused",
    "Revocations",
    "wire_path",
    "wire_rm",
]

# -- discovery -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One VNID Availability entry: ``path[0]`` is the announcer, ``path[-1]`` the origin."""

    vnid: VNID
    path: tuple[RouteManagerId, ...]
    bandwidth_mbps: float
    latency_ms: float
    cost: float
    components: tuple[str, ...]
    #: The VN admits any Route Manager (``allow: any``): its components may be relayed.
    #: Otherwise only the origin gives them, and only to neighbours it admits (members).
    public: bool = True

    @property
    def origin(self) -> RouteManagerId:
        return self.path[-1]

    def to_wire(self) -> list[Any]:
        return [self.vnid, wire_path(self.path), self.bandwidth_mbps, self.latency_ms,
                self.cost, list(self.components), int(self.public)]

    @classmethod
    def from_wire(cls, p: Any) -> Entry:
        v, path, bw, lat, cost, comps, pub = _unpack(p, 7, "entry")
        return cls(_vnid(v), _path(path, "entry.path"), _num(bw, "entry.bandwidth"),
                   _num(lat, "entry.latency"), _num(cost, "entry.cost"), _comps(comps),
                   bool(_int(pub, "entry.public", 0, 1)))


@dataclass(frozen=True, slots=True)
class Hello:
    """Keepalive + digest of everything the sender currently announces to the recipient,
    and digest + count of the live reservations the two share (the lease refresh)."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    digest: int
    entries: int
    lease_digest: int = 0
    leases: int = 0

    def to_wire(self) -> list[Any]:
        return [self.digest, self.entries, self.lease_digest, self.leases]

    @classmethod
    def from_wire(cls, p: Any) -> Hello:
        d, n, ld, ln = _unpack(p, 4, "hello")
        return cls(_int(d, "digest", 0, (1 << 64) - 1), _int(n, "entries", 0, 1 << 32),
                   _int(ld, "lease_digest", 0, (1 << 64) - 1), _int(ln, "leases", 0, 1 << 32))


@dataclass(frozen=True, slots=True)
class Update:
    """Announced entries and withdrawn (vnid, origin) keys; ``sync`` > 0 marks a full sync
    of generation ``sync`` in ``chunks`` parts (this is part ``chunk``)."""

    TYPE: ClassVar[MsgType] = MsgType.UPDATE
    entries: tuple[Entry, ...]
    withdrawals: tuple[tuple[VNID, RouteManagerId], ...]
    sync: int = 0
    chunk: int = 0
    chunks: int = 0

    def to_wire(self) -> list[Any]:
        announcer = self.entries[0].path[0] if self.entries else None
        prev: tuple[RouteManagerId, ...] = ()
        ents = []
        for e in self.entries:
            if e.path[0] != announcer:
                raise ValueError("every entry of one UPDATE starts with the announcer")
            ents.append(compact_entry(e, prev))
            prev = e.path
        return [wire_rm(announcer) if announcer else b"", ents,
                [[v, wire_rm(o)] for v, o in self.withdrawals], self.sync, self.chunk,
                self.chunks]

    @classmethod
    def from_wire(cls, p: Any) -> Update:
        ann, ents, wds, sync, chunk, chunks = _unpack(p, 6, "update")
        raw = _list(ents, "entries", MAX_ENTRIES)
        entries: list[Entry] = []
        if raw:
            prev: tuple[RouteManagerId, ...] = (_rm(ann, "announcer"),)
            for w in raw:
                e = expand_entry(w, prev)
                entries.append(e)
                prev = e.path
        elif ann != b"":
            raise _bad("announcer", ann)
        withdrawals = []
        for w in _list(wds, "withdrawals", MAX_ENTRIES * 4):
            v, o = _unpack(w, 2, "withdrawal")
            withdrawals.append((_vnid(v), _rm(o, "withdrawal.origin")))
        sync_i = _int(sync, "sync", 0, 1 << 32)
        chunks_i = _int(chunks, "chunks", 0, 1 << 16)
        chunk_i = _int(chunk, "chunk", 0, max(chunks_i - 1, 0))
        return cls(tuple(entries), tuple(withdrawals), sync_i, chunk_i, chunks_i)


def compact_entry(e: Entry, prev: tuple[RouteManagerId, ...]) -> list[Any]:
    """``e`` on the wire after an entry with path ``prev`` (same announcer): the number
    of RMs after the announcer its path shares with ``prev``, then the rest."""
    shared = 0
    limit = min(len(e.path), len(prev))
    while shared + 1 < limit and e.path[shared + 1] == prev[shared + 1]:
        shared += 1
    return [e.vnid, shared, wire_path(e.path[shared + 1:]), _compact_num(e.bandwidth_mbps),
            _compact_num(e.latency_ms), _compact_num(e.cost), list(e.components), int(e.public)]


def _compact_num(x: float) -> float | int:
    """A whole number as an int (1-5 bytes of msgpack instead of 9); read back as float."""
    return int(x) if x.is_integer() and abs(x) < 1 << 53 else x


def expand_entry(w: Any, prev: tuple[RouteManagerId, ...]) -> Entry:
    v, shared, rest, bw, lat, cost, comps, pub = _unpack(w, 8, "entry")
    n = _int(shared, "entry.shared", 0, len(prev) - 1)
    tail = _path(rest, "entry.path", 0) if rest != b"" else ()
    path = (*prev[:n + 1], *tail)
    if len(path) > MAX_PATH or len(set(path)) != len(path):
        raise _bad("entry.path", "too long or repeats a Route Manager")
    return Entry(_vnid(v), path, _num(bw, "entry.bandwidth"), _num(lat, "entry.latency"),
                 _num(cost, "entry.cost"), _comps(comps), bool(_int(pub, "entry.public", 0, 1)))


@dataclass(frozen=True, slots=True)
class Resync:
    """The sender's digest of what it holds from the recipient disagrees: send it all."""

    TYPE: ClassVar[MsgType] = MsgType.RESYNC

    def to_wire(self) -> list[Any]:
        return []

    @classmethod
    def from_wire(cls, p: Any) -> Resync:
        _unpack(p, 0, "resync")
        return cls()


# -- negotiation ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """Path query; ``path`` runs from the origin to the sender; metrics are accumulated
    over the links of ``path`` (the recipient adds the last link)."""

    TYPE: ClassVar[MsgType] = MsgType.QUERY
    query_id: bytes
    vnid: VNID
    bandwidth_mbps: float
    max_latency_ms: float
    max_cost: float
    hop_limit: int
    path: tuple[RouteManagerId, ...]
    latency_ms: float
    cost: float
    bottleneck_mbps: float
    #: How many next hops each transit RM forwards this query to (the origin widens it on
    #: retransmission waves: 1, 2, 3).
    fanout: int = 1
    #: The origin's membership grant for ``vnid`` (:mod:`vnstitch.protocol.grants`).
    grant: Grant | None = None

    def to_wire(self) -> list[Any]:
        return [self.query_id, self.vnid, self.bandwidth_mbps, self.max_latency_ms,
                self.max_cost, self.hop_limit, wire_path(self.path), self.latency_ms,
                self.cost, self.bottleneck_mbps, self.fanout, _grant_wire(self.grant)]

    @classmethod
    def from_wire(cls, p: Any) -> Query:
        qid, v, bw, ml, mc, hl, path, lat, cost, bn, fo, gr = _unpack(p, 12, "query")
        return cls(_bytes(qid, "query_id", 8), _vnid(v), _num(bw, "bandwidth"),
                   _num(ml, "max_latency", True), _num(mc, "max_cost", True),
                   _int(hl, "hop_limit", 1, MAX_PATH - 1), _path(path, "path"),
                   _num(lat, "latency"), _num(cost, "cost"), _num(bn, "bottleneck", True),
                   _int(fo, "fanout", 1, 16), _grant_from(gr))


@dataclass(frozen=True, slots=True)
class Offer:
    """Answer to a query: the full path origin..target and its summed/bottleneck metrics."""

    TYPE: ClassVar[MsgType] = MsgType.OFFER
    query_id: bytes
    path: tuple[RouteManagerId, ...]
    latency_ms: float
    cost: float
    bottleneck_mbps: float
    components: tuple[str, ...]
    #: The target's membership grant: the origin admits targets as targets admit origins.
    grant: Grant | None = None

    def to_wire(self) -> list[Any]:
        return [self.query_id, wire_path(self.path), self.latency_ms, self.cost,
                self.bottleneck_mbps, list(self.components), _grant_wire(self.grant)]

    @classmethod
    def from_wire(cls, p: Any) -> Offer:
        qid, path, lat, cost, bn, comps, gr = _unpack(p, 7, "offer")
        return cls(_bytes(qid, "query_id", 8), _path(path, "path", 2), _num(lat, "latency"),
                   _num(cost, "cost"), _num(bn, "bottleneck", True), _comps(comps),
                   _grant_from(gr))


@dataclass(frozen=True, slots=True)
class Hold:
    """Phase one: hold ``bandwidth_mbps`` on every link of ``path`` for ``hold_s``.
    Carries the origin's tunnel end (WireGuard key, endpoint, addresses), end-to-end
    signed by the origin in ``keysig``."""

    TYPE: ClassVar[MsgType] = MsgType.HOLD
    token: str
    vnid: VNID
    path: tuple[RouteManagerId, ...]
    bandwidth_mbps: float
    hold_s: float
    wg_public: bytes
    endpoint: str
    origin_addr: str
    target_addr: str
    components: tuple[str, ...]
    keysig: bytes
    #: Where the origin takes tunnel probes ("host:port"; "" = its RM id is enough).
    probe_address: str = ""
    #: The origin's membership grant (covered by ``keysig``: a hop cannot swap it).
    grant: Grant | None = None

    def key_material(self) -> bytes:
        return b"|".join([b"hold", self.token.encode(), str(self.vnid).encode(), self.wg_public,
                          self.endpoint.encode(), self.origin_addr.encode(),
                          self.target_addr.encode(), self.probe_address.encode(),
                          self.grant.signature if self.grant is not None else b""])

    def to_wire(self) -> list[Any]:
        return [self.token, self.vnid, wire_path(self.path), self.bandwidth_mbps, self.hold_s,
                self.wg_public, self.endpoint, self.origin_addr, self.target_addr,
                list(self.components), self.keysig, self.probe_address,
                _grant_wire(self.grant)]

    @classmethod
    def from_wire(cls, p: Any) -> Hold:
        tok, v, path, bw, hs, wg, ep, oa, ta, comps, ks, pa, gr = _unpack(p, 13, "hold")
        return cls(_str(tok, "token", MAX_TOKEN_LEN), _vnid(v), _path(path, "path", 2),
                   _num(bw, "bandwidth"), _num(hs, "hold_s"), _bytes(wg, "wg_public", 32),
                   _str(ep, "endpoint", 64), _str(oa, "origin_addr", 40),
                   _str(ta, "target_addr", 40), _comps(comps), _bytes(ks, "keysig", 64),
                   _str(pa, "probe_address", 64), _grant_from(gr))


def _grant_wire(g: Grant | None) -> list[Any]:
    return g.to_wire() if g is not None else []


def _grant_from(v: Any) -> Grant | None:
    return Grant.from_wire(v) if v != [] else None


@dataclass(frozen=True, slots=True)
class HoldOk:
    """The target held its link and answers with its tunnel end (end-to-end signed)."""

    TYPE: ClassVar[MsgType] = MsgType.HOLD_OK
    token: str
    path: tuple[RouteManagerId, ...]
    wg_public: bytes
    endpoint: str
    keysig: bytes
    #: Where the target takes tunnel probes ("host:port"; "" = its RM id is enough).
    probe_address: str = ""

    def key_material(self) -> bytes:
        return b"|".join([b"holdok", self.token.encode(), self.wg_public,
                          self.endpoint.encode(), self.probe_address.encode()])

    def to_wire(self) -> list[Any]:
        return [self.token, wire_path(self.path), self.wg_public, self.endpoint, self.keysig,
                self.probe_address]

    @classmethod
    def from_wire(cls, p: Any) -> HoldOk:
        tok, path, wg, ep, ks, pa = _unpack(p, 6, "hold_ok")
        return cls(_str(tok, "token", MAX_TOKEN_LEN), _path(path, "path", 2),
                   _bytes(wg, "wg_public", 32), _str(ep, "endpoint", 64),
                   _bytes(ks, "keysig", 64), _str(pa, "probe_address", 64))


@dataclass(frozen=True, slots=True)
class HoldRefused:
    """A hop could not hold: ``at`` refused, ``reason`` says why, ``available_mbps`` is
    what it could have given."""

    TYPE: ClassVar[MsgType] = MsgType.HOLD_REFUSED
    token: str
    path: tuple[RouteManagerId, ...]
    at: RouteManagerId
    reason: str
    available_mbps: float

    def to_wire(self) -> list[Any]:
        return [self.token, wire_path(self.path), wire_rm(self.at), self.reason,
                self.available_mbps]

    @classmethod
    def from_wire(cls, p: Any) -> HoldRefused:
        tok, path, at, reason, av = _unpack(p, 5, "hold_refused")
        return cls(_str(tok, "token", MAX_TOKEN_LEN), _path(path, "path", 2), _rm(at, "at"),
                   _str(reason, "reason", 32), _num(av, "available", True))


@dataclass(frozen=True, slots=True)
class PathSignal:
    """COMMIT / COMMIT_ACK / ABORT / PATH_DOWN: a bare signal about ``token`` travelling
    the path (COMMIT and ABORT toward the target, COMMIT_ACK and PATH_DOWN toward the
    origin)."""

    kind: MsgType
    token: str
    path: tuple[RouteManagerId, ...]

    @property
    def TYPE(self) -> MsgType:  # noqa: N802 - mirrors the ClassVar of the other messages
        return self.kind

    def to_wire(self) -> list[Any]:
        return [self.token, wire_path(self.path)]

    @classmethod
    def from_wire_kind(cls, kind: MsgType, p: Any) -> PathSignal:
        tok, path = _unpack(p, 2, kind.name.lower())
        return cls(kind, _str(tok, "token", MAX_TOKEN_LEN), _path(path, "path", 2))


@dataclass(frozen=True, slots=True)
class Probe:
    """Health probe (or its reply) of the tunnel ``token``, sent end to end between the
    tunnel's two ends (never relayed); ``sent_at`` is echoed."""

    kind: MsgType
    token: str
    nonce: int
    sent_at: float

    @property
    def TYPE(self) -> MsgType:  # noqa: N802
        return self.kind

    def to_wire(self) -> list[Any]:
        return [self.token, self.nonce, self.sent_at]

    @classmethod
    def from_wire_kind(cls, kind: MsgType, p: Any) -> Probe:
        tok, nonce, sent = _unpack(p, 3, kind.name.lower())
        return cls(kind, _str(tok, "token", MAX_TOKEN_LEN),
                   _int(nonce, "nonce", 0, (1 << 32) - 1), _num(sent, "sent_at"))


class LeaseOp(enum.IntEnum):
    QUERY = 0  # "our lease digests differ: list the tokens you share with me"
    LIVE = 1  # "I hold these (shared with you): keep them"
    GONE = 2  # "you listed these, I hold none of them: release them"


@dataclass(frozen=True, slots=True)
class Leases:
    """Lease reconciliation between two neighbours (tokens of reservations they share)."""

    TYPE: ClassVar[MsgType] = MsgType.LEASES
    op: LeaseOp
    tokens: tuple[str, ...]

    def to_wire(self) -> list[Any]:
        return [int(self.op), list(self.tokens)]

    @classmethod
    def from_wire(cls, p: Any) -> Leases:
        op, toks = _unpack(p, 2, "leases")
        return cls(LeaseOp(_int(op, "op", 0, 2)),
                   tuple(_str(t, "tokens", MAX_TOKEN_LEN)
                         for t in _list(toks, "tokens", MAX_TOKENS)))


# -- resize of an established stitch (see :mod:`vnstitch.protocol.resize`) -------------


def _amount(mbps: float) -> bytes:
    # float() first: an int on the wire decodes as a float, and the signature must match
    return repr(float(mbps)).encode()


@dataclass(frozen=True, slots=True)
class Resize:
    """RESIZE: the origin asks every hop of ``path`` to change ``token``'s reservation to
    ``bandwidth_mbps`` (resize number ``seq`` of that reservation). RESIZE_OK: the target
    took it, each hop commits it on the way back. Both end-to-end signed (``keysig``) by
    the end that sent them."""

    kind: MsgType
    token: str
    path: tuple[RouteManagerId, ...]
    seq: int
    bandwidth_mbps: float
    keysig: bytes

    @property
    def TYPE(self) -> MsgType:  # noqa: N802
        return self.kind

    def key_material(self) -> bytes:
        return b"|".join([self.kind.name.lower().encode(), self.token.encode(),
                          str(self.seq).encode(), _amount(self.bandwidth_mbps)])

    def to_wire(self) -> list[Any]:
        return [self.token, wire_path(self.path), self.seq, self.bandwidth_mbps, self.keysig]

    @classmethod
    def from_wire_kind(cls, kind: MsgType, p: Any) -> Resize:
        tok, path, seq, bw, ks = _unpack(p, 5, kind.name.lower())
        bw_f = _num(bw, "bandwidth")
        if bw_f <= 0:
            raise _bad("bandwidth", bw)
        return cls(kind, _str(tok, "token", MAX_TOKEN_LEN), _path(path, "path", 2),
                   _int(seq, "seq", 1, (1 << 32) - 1), bw_f, _bytes(ks, "keysig", 64))


@dataclass(frozen=True, slots=True)
class ResizeRefused:
    """A hop (``at``) could not take the new amount; every hop back to the origin drops
    what it had tentatively admitted and keeps the old amount."""

    TYPE: ClassVar[MsgType] = MsgType.RESIZE_REFUSED
    token: str
    path: tuple[RouteManagerId, ...]
    seq: int
    at: RouteManagerId
    reason: str
    available_mbps: float

    def to_wire(self) -> list[Any]:
        return [self.token, wire_path(self.path), self.seq, wire_rm(self.at), self.reason,
                self.available_mbps]

    @classmethod
    def from_wire(cls, p: Any) -> ResizeRefused:
        tok, path, seq, at, reason, av = _unpack(p, 6, "resize_refused")
        return cls(_str(tok, "token", MAX_TOKEN_LEN), _path(path, "path", 2),
                   _int(seq, "seq", 1, (1 << 32) - 1), _rm(at, "at"),
                   _str(reason, "reason", 32), _num(av, "available", True))


@dataclass(frozen=True, slots=True)
class Congestion:
    """``at``, a Route Manager on the path of reservation ``token``, sees the substrate
    link ``link`` (two adjacent RMs of that path) congested: ``severity`` is its measured
    utilisation in per mille (above 1000: more offered than the link carries); ``excess``
    the Mbit/s it carries above the reporter's target (None: not given -- five fields on
    the wire, as an older peer sends). Relayed hop by hop toward the origin (``path[0]``), which may
    renegotiate around the link (:mod:`vnstitch.control.reroute` decides from its own
    stitch's rate whether it is one to move)."""

    TYPE: ClassVar[MsgType] = MsgType.CONGESTION
    token: str
    path: tuple[RouteManagerId, ...]
    at: RouteManagerId
    link: tuple[RouteManagerId, ...]
    severity: int
    excess: int | None = None

    def to_wire(self) -> list[Any]:
        out = [self.token, wire_path(self.path), wire_rm(self.at), wire_path(self.link),
               self.severity]
        return out if self.excess is None else [*out, self.excess]

    @classmethod
    def from_wire(cls, p: Any) -> Congestion:
        fields = _list(p, "congestion", 6)
        if len(fields) < 5:
            raise _bad("congestion", p)
        tok, path, at, link, sev = fields[:5]
        links = _path(link, "link", 2)
        if len(links) != 2:
            raise _bad("link", "a link is two Route Managers")
        return cls(_str(tok, "token", MAX_TOKEN_LEN), _path(path, "path", 2), _rm(at, "at"),
                   links, _int(sev, "severity", 0, 65535),
                   _int(fields[5], "excess", 0, (1 << 32) - 1) if len(fields) == 6 else None)


Message = Hello | Update | Resync | Query | Offer | Hold | HoldOk | HoldRefused | PathSignal | \
    Probe | Leases | Resize | ResizeRefused | QueryRefused | Revocations | Congestion

_SIMPLE: dict[MsgType, Any] = {
    MsgType.HELLO: Hello, MsgType.UPDATE: Update, MsgType.RESYNC: Resync,
    MsgType.QUERY: Query, MsgType.OFFER: Offer, MsgType.HOLD: Hold, MsgType.HOLD_OK: HoldOk,
    MsgType.HOLD_REFUSED: HoldRefused, MsgType.LEASES: Leases,
    MsgType.RESIZE_REFUSED: ResizeRefused, MsgType.QUERY_REFUSED: QueryRefused,
    MsgType.REVOCATIONS: Revocations, MsgType.CONGESTION: Congestion,
}
_SIGNALS = frozenset({MsgType.COMMIT, MsgType.COMMIT_ACK, MsgType.ABORT, MsgType.PATH_DOWN})
_PROBES = frozenset({MsgType.PROBE, MsgType.PROBE_REPLY})
_RESIZES = frozenset({MsgType.RESIZE, MsgType.RESIZE_OK})


def message_from_wire(type_code: Any, payload: Any) -> Message:
    """Build the message of ``type_code`` from ``payload``; RemoteProtocolError if bad."""
    if type(type_code) is not int:
        raise RemoteProtocolError("malformed", f"message type {type_code!r:.20}")
    try:
        kind = MsgType(type_code)
    except ValueError:
        raise RemoteProtocolError("unknown_type", f"message type {type_code}") from None
    if kind in _SIGNALS:
        return PathSignal.from_wire_kind(kind, payload)
    if kind in _PROBES:
        return Probe.from_wire_kind(kind, payload)
    if kind in _RESIZES:
        return Resize.from_wire_kind(kind, payload)
    result: Message = _SIMPLE[kind].from_wire(payload)
    return result
