"""Who may stitch into a VN here: access policies, owner-signed grants, revocation lists.

Theory of operation. Each VN hosted on a segment has an :class:`AccessPolicy`: ``any``
(every trusted Route Manager may stitch, as before membership existed), a list of RM ids
allowed without a grant, and the VN owner's Ed25519 public key. The owner -- an operator
key, not a Route Manager -- signs :class:`Grant` statements "RM ``member`` belongs to VN
``vnid`` until ``expires`` (serial ``serial``)". A member presents its grant in every
QUERY and HOLD; the target checks it alone (:func:`check_access`): the owner's signature
over every field, the VN, that the presenter *is* the member (the origin of the path,
whose end-to-end HOLD signature covers the grant), the expiry, and that the serial is not
on the owner's :class:`RevocationList`. Revocation lists are owner-signed, versioned
(a higher version replaces a lower one) and carried between Route Managers in
announcements (REVOCATIONS, see :mod:`vnstitch.protocol.membership`); an entry can be
dropped by the owner once the grant it revokes has expired, so lists stay short.

Everything here is pure: times are the caller's ``now`` (wall-clock seconds, as grant
expiries are), keys come from the caller. Refusals all carry one wire reason,
``not_authorised``; :class:`AccessDecision` keeps the precise cause for logs.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey

from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.errors import ProtocolError
from vnstitch.protocol.wirefields import (
    MsgType,
    _bytes,
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

#: The one reason a refused QUERY / HOLD / RESIZE carries on the wire.
NOT_AUTHORISED = "not_authorised"
#: Most revoked serials one list carries (it must fit one datagram with its signature).
MAX_REVOKED = 56
_GRANT_TAG = b"vnstitch-grant-v1"
_REVOCATION_TAG = b"vnstitch-revocations-v1"


def _verify(owner: bytes, signature: bytes, data: bytes) -> bool:
    try:
        VerifyKey(owner).verify(data, signature)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        return False
    return True


class OwnerKey:
    """A VN owner's signing key (32-byte Ed25519 seed)."""

    __slots__ = ("_key", "public_bytes")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ProtocolError(f"an owner key seed is 32 bytes, got {len(seed)}")
        self._key = SigningKey(seed)
        self.public_bytes: bytes = bytes(self._key.verify_key)

    def sign(self, data: bytes) -> bytes:
        signature: bytes = self._key.sign(data).signature
        return signature

    def grant(self, vnid: VNID, member: RouteManagerId, expires: float, serial: int) -> Grant:
        unsigned = Grant(vnid, member, float(expires), serial, b"")
        return Grant(vnid, member, float(expires), serial, self.sign(unsigned.material()))

    def revocations(self, vnid: VNID, version: int,
                    revoked: Iterable[tuple[int, float]]) -> RevocationList:
        entries = tuple(sorted((int(s), float(e)) for s, e in revoked))
        if len(entries) > MAX_REVOKED:
            raise ProtocolError(f"VNID {vnid}: {len(entries)} revoked grants, a list carries "
                                f"at most {MAX_REVOKED} (drop the expired ones)")
        unsigned = RevocationList(vnid, self.public_bytes, version, entries, b"")
        return RevocationList(vnid, self.public_bytes, version, entries,
                              self.sign(unsigned.material()))


@dataclass(frozen=True, slots=True)
class Grant:
    """The owner's statement that ``member`` belongs to ``vnid`` until ``expires``."""

    vnid: VNID
    member: RouteManagerId
    expires: float
    serial: int
    signature: bytes

    def material(self) -> bytes:
        return b"|".join([_GRANT_TAG, str(int(self.vnid)).encode(), self.member.encode(),
                          repr(float(self.expires)).encode(), str(self.serial).encode()])

    def signed_by(self, owner: bytes) -> bool:
        return _verify(owner, self.signature, self.material())

    def to_wire(self) -> list[Any]:
        return [self.vnid, wire_rm(self.member), self.expires, self.serial, self.signature]

    @classmethod
    def from_wire(cls, p: Any) -> Grant:
        v, member, expires, serial, sig = _unpack(p, 5, "grant")
        return cls(_vnid(v, "grant.vnid"), _rm(member, "grant.member"),
                   _num(expires, "grant.expires"), _int(serial, "grant.serial", 0, 1 << 53),
                   _bytes(sig, "grant.signature", 64))

    def to_json(self) -> dict[str, Any]:
        return {"vnid": int(self.vnid), "member": self.member, "expires": self.expires,
                "serial": self.serial,
                "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_json(cls, d: Any) -> Grant:
        """A grant read from a file; ProtocolError naming the bad field."""
        if not isinstance(d, dict):
            raise ProtocolError("a grant is a JSON object")
        try:
            member = RouteManagerId(str(d["member"]))
            bytes.fromhex(member)
            g = cls(VNID(int(d["vnid"])), member, float(d["expires"]), int(d["serial"]),
                    base64.b64decode(str(d["signature"]), validate=True))
        except KeyError as exc:
            raise ProtocolError(f"grant: missing field {exc.args[0]}") from None
        except (ValueError, TypeError, binascii.Error) as exc:
            raise ProtocolError(f"grant: bad field: {exc}") from None
        if len(member) != 32 or len(g.signature) != 64:
            raise ProtocolError("grant: member must be 32 hex digits, signature 64 bytes")
        return g


@dataclass(frozen=True, slots=True)
class RevocationList:
    """The owner's list of revoked grant serials of ``vnid`` (each with the expiry of the
    grant it revokes), version ``version``; signed by ``owner``."""

    vnid: VNID
    owner: bytes
    version: int
    entries: tuple[tuple[int, float], ...]
    signature: bytes

    @property
    def serials(self) -> frozenset[int]:
        return frozenset(s for s, _ in self.entries)

    def material(self) -> bytes:
        body = ",".join(f"{s}:{e!r}" for s, e in self.entries).encode()
        return b"|".join([_REVOCATION_TAG, str(int(self.vnid)).encode(), self.owner,
                          str(self.version).encode(), body])

    def valid(self) -> bool:
        return _verify(self.owner, self.signature, self.material())

    def to_wire(self) -> list[Any]:
        return [self.vnid, self.owner, self.version, [[s, e] for s, e in self.entries],
                self.signature]

    @classmethod
    def from_wire(cls, p: Any) -> RevocationList:
        v, owner, version, entries, sig = _unpack(p, 5, "revocations")
        ents = []
        for w in _list(entries, "revocations.entries", MAX_REVOKED):
            s, e = _unpack(w, 2, "revocations.entry")
            ents.append((_int(s, "revocations.serial", 0, 1 << 53),
                         _num(e, "revocations.expires")))
        return cls(_vnid(v, "revocations.vnid"), _bytes(owner, "revocations.owner", 32),
                   _int(version, "revocations.version", 0, 1 << 53), tuple(ents),
                   _bytes(sig, "revocations.signature", 64))

    def to_json(self) -> dict[str, Any]:
        return {"vnid": int(self.vnid), "owner": base64.b64encode(self.owner).decode(),
                "version": self.version, "revoked": [[s, e] for s, e in self.entries],
                "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_json(cls, d: Any) -> RevocationList:
        if not isinstance(d, dict):
            raise ProtocolError("a revocation list is a JSON object")
        try:
            rl = cls(VNID(int(d["vnid"])), base64.b64decode(str(d["owner"]), validate=True),
                     int(d["version"]),
                     tuple((int(s), float(e)) for s, e in d["revoked"]),
                     base64.b64decode(str(d["signature"]), validate=True))
        except KeyError as exc:
            raise ProtocolError(f"revocation list: missing field {exc.args[0]}") from None
        except (ValueError, TypeError, binascii.Error) as exc:
            raise ProtocolError(f"revocation list: bad field: {exc}") from None
        if len(rl.owner) != 32 or len(rl.signature) != 64:
            raise ProtocolError("revocation list: owner must be 32 bytes, signature 64")
        return rl


def load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"{what}: not JSON: {exc}") from None


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Who may stitch into one hosted VN: anyone (``allow_any``), the RMs in ``allow``
    without a grant, and holders of a grant signed by ``owner``."""

    allow_any: bool = False
    allow: frozenset[RouteManagerId] = field(default_factory=frozenset)
    owner: bytes | None = None

    def allows_without_grant(self, rm: RouteManagerId) -> bool:
        return self.allow_any or rm in self.allow


#: The policy of a VN the core was given no policy for (unit tests, plain simulations).
OPEN = AccessPolicy(allow_any=True)


@dataclass(frozen=True, slots=True)
class AccessDecision:
    ok: bool
    #: Why (``allowed``, ``granted``, or the refusal's cause, for logs and counters).
    cause: str
    #: The serial of the grant that admitted the origin (None when no grant was needed).
    serial: int | None = None
    #: The grant's expiry (inf when no grant was needed).
    expires: float = float("inf")


def check_access(policy: AccessPolicy, vnid: VNID, origin: RouteManagerId,
                 grant: Grant | None, *, revoked: frozenset[int], now: float
                 ) -> AccessDecision:
    """May ``origin`` stitch into ``vnid`` here, presenting ``grant``, at ``now``?"""
    if policy.allows_without_grant(origin):
        return AccessDecision(True, "allowed")
    if grant is None:
        return AccessDecision(False, "no_grant")
    if policy.owner is None or not grant.signed_by(policy.owner):
        return AccessDecision(False, "bad_signature")
    if grant.vnid != vnid:
        return AccessDecision(False, "other_vn")
    if grant.member != origin:
        return AccessDecision(False, "other_member")
    if grant.expires <= now:
        return AccessDecision(False, "expired")
    if grant.serial in revoked:
        return AccessDecision(False, "revoked")
    return AccessDecision(True, "granted", grant.serial, grant.expires)



# -- messages (registered in :mod:`vnstitch.protocol.messages`) ------------------------


@dataclass(frozen=True, slots=True)
class QueryRefused:
    """The target ``at`` refuses query ``query_id`` (``reason``: ``not_authorised``);
    travels back along ``path`` (origin .. target) like an OFFER."""

    TYPE: ClassVar[MsgType] = MsgType.QUERY_REFUSED
    query_id: bytes
    path: tuple[RouteManagerId, ...]
    at: RouteManagerId
    reason: str

    def to_wire(self) -> list[Any]:
        return [self.query_id, wire_path(self.path), wire_rm(self.at), self.reason]

    @classmethod
    def from_wire(cls, p: Any) -> QueryRefused:
        qid, path, at, reason = _unpack(p, 4, "query_refused")
        return cls(_bytes(qid, "query_id", 8), _path(path, "path", 2), _rm(at, "at"),
                   _str(reason, "reason", 32))


@dataclass(frozen=True, slots=True)
class Revocations:
    """One owner-signed revocation list, flooded between neighbours (an announcement)."""

    TYPE: ClassVar[MsgType] = MsgType.REVOCATIONS
    revocations: RevocationList

    def to_wire(self) -> list[Any]:
        return self.revocations.to_wire()

    @classmethod
    def from_wire(cls, p: Any) -> Revocations:
        return cls(RevocationList.from_wire(p))
