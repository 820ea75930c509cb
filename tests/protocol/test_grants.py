"""Grants and revocation lists: forged, expired and replayed grants are refused.

Hypothesis draws grant fields (VNID, member, expiry, serial) and a presentation (who,
for which VN, when, against which revocations); every refusal has its control: the
same grant, presented as issued, is admitted.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.examples import examples
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.errors import ProtocolError, RemoteProtocolError
from vnstitch.protocol.grants import (
    MAX_REVOKED,
    AccessPolicy,
    Grant,
    OwnerKey,
    RevocationList,
    check_access,
)

OWNER = OwnerKey(b"\x01" * 32)
OTHER = OwnerKey(b"\x02" * 32)
POLICY = AccessPolicy(owner=OWNER.public_bytes)

vnids = st.integers(1, (1 << 24) - 1).map(VNID)
rms = st.binary(min_size=16, max_size=16).map(lambda b: RouteManagerId(b.hex()))
times = st.floats(0, 4e9, allow_nan=False)
serials = st.integers(0, 1 << 40)


def _check(g: Grant | None, vnid: VNID, origin: RouteManagerId, now: float, *,
           revoked: frozenset[int] = frozenset(), policy: AccessPolicy = POLICY) -> str:
    return check_access(policy, vnid, origin, g, revoked=revoked, now=now).cause


@settings(max_examples=examples(60), deadline=None)
@given(vnids, rms, times, serials, st.floats(0, 1e6))
def test_a_grant_as_issued_is_admitted(vnid: VNID, member: RouteManagerId, expires: float,
                                       serial: int, before: float) -> None:
    g = OWNER.grant(vnid, member, expires, serial)
    assert _check(g, vnid, member, expires - before - 1e-3) == "granted"
    assert Grant.from_wire(g.to_wire()) == g
    assert Grant.from_json(g.to_json()) == g


@settings(max_examples=examples(80), deadline=None)
@given(vnids, rms, times, serials,
       st.sampled_from(["vnid", "member", "expires", "serial", "signature", "other_key"]),
       st.data())
def test_forged_grants_are_refused(  # noqa: PLR0917 - Hypothesis passes them by position
        vnid: VNID, member: RouteManagerId, expires: float,
                                   serial: int, field: str, data: st.DataObject) -> None:
    g = OWNER.grant(vnid, member, expires, serial)
    if field == "vnid":
        forged = dataclasses.replace(g, vnid=data.draw(vnids.filter(lambda v: v != vnid)))
    elif field == "member":
        forged = dataclasses.replace(g, member=data.draw(rms.filter(lambda m: m != member)))
    elif field == "expires":
        forged = dataclasses.replace(g, expires=expires + data.draw(st.floats(1, 1e9)))
    elif field == "serial":
        forged = dataclasses.replace(g, serial=data.draw(serials.filter(lambda s: s != serial)))
    elif field == "signature":
        i = data.draw(st.integers(0, 63))
        sig = bytearray(g.signature)
        sig[i] ^= 1 << data.draw(st.integers(0, 7))
        forged = dataclasses.replace(g, signature=bytes(sig))
    else:
        forged = OTHER.grant(vnid, member, expires, serial)
    # presented exactly as the forger claims it (its own VN, member, before its expiry)
    assert _check(forged, forged.vnid, forged.member, -1.0) == "bad_signature"
    assert _check(g, vnid, member, -1.0) == "granted"  # control


@settings(max_examples=examples(60), deadline=None)
@given(vnids, rms, times, serials, st.floats(0, 1e9))
def test_expired_grants_are_refused(vnid: VNID, member: RouteManagerId, expires: float,
                                    serial: int, late: float) -> None:
    g = OWNER.grant(vnid, member, expires, serial)
    assert _check(g, vnid, member, expires + late) == "expired"
    assert _check(g, vnid, member, expires - 1.0) == "granted"  # control


@settings(max_examples=examples(60), deadline=None)
@given(vnids, rms, rms, vnids, times, serials)
def test_replayed_grants_are_refused(  # noqa: PLR0917
        vnid: VNID, member: RouteManagerId,
                                     thief: RouteManagerId, other_vn: VNID, expires: float,
                                     serial: int) -> None:
    g = OWNER.grant(vnid, member, expires, serial)
    now = expires - 1.0
    if thief != member:  # another RM presents the member's grant
        assert _check(g, vnid, thief, now) == "other_member"
    if other_vn != vnid:  # the member presents it for another VN of the same owner
        assert _check(g, other_vn, member, now) == "other_vn"
    # a revoked grant replayed by its own member
    assert _check(g, vnid, member, now, revoked=frozenset({serial})) == "revoked"
    assert _check(g, vnid, member, now, revoked=frozenset({serial + 1})) == "granted"


def test_allow_list_and_any_need_no_grant() -> None:
    me, other = RouteManagerId("aa" * 16), RouteManagerId("bb" * 16)
    assert _check(None, VNID(5), me, 0.0, policy=AccessPolicy(allow=frozenset({me}))) == \
        "allowed"
    assert _check(None, VNID(5), other, 0.0, policy=AccessPolicy(allow=frozenset({me}))) == \
        "no_grant"
    assert _check(None, VNID(5), other, 0.0, policy=AccessPolicy(allow_any=True)) == "allowed"
    # no owner key: no grant can admit anyone
    g = OWNER.grant(VNID(5), other, 1e9, 1)
    assert _check(g, VNID(5), other, 0.0, policy=AccessPolicy()) == "bad_signature"


@settings(max_examples=examples(40), deadline=None)
@given(vnids, st.integers(0, 1 << 40),
       st.lists(st.tuples(serials, times), max_size=MAX_REVOKED, unique_by=lambda e: e[0]))
def test_revocation_lists_round_trip_and_verify(vnid: VNID, version: int,
                                                entries: list[tuple[int, float]]) -> None:
    rl = OWNER.revocations(vnid, version, entries)
    assert rl.valid()
    assert RevocationList.from_wire(rl.to_wire()) == rl
    assert RevocationList.from_json(rl.to_json()) == rl
    assert not dataclasses.replace(rl, version=version + 1).valid()
    if entries:
        assert not dataclasses.replace(rl, entries=rl.entries[1:]).valid()


def test_bad_grant_input_is_refused_with_the_field() -> None:
    with pytest.raises(RemoteProtocolError, match=r"grant\.member"):
        Grant.from_wire([5, b"x", 1.0, 1, b"s" * 64])
    with pytest.raises(RemoteProtocolError, match=r"grant\.expires"):
        Grant.from_wire([5, b"x" * 16, float("nan"), 1, b"s" * 64])
    with pytest.raises(ProtocolError, match="missing field member"):
        Grant.from_json({"vnid": 5})
    with pytest.raises(ProtocolError, match="at most"):
        OWNER.revocations(VNID(5), 1, [(i, 1.0) for i in range(MAX_REVOKED + 1)])
