"""Signed message layer: round trips, fuzzing, forged/replayed/stale/oversized drops."""

from __future__ import annotations

import contextlib
import random
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.examples import examples
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.codec import MAX_DATAGRAM, Codec
from vnstitch.protocol.errors import ProtocolError, RemoteProtocolError
from vnstitch.protocol.grants import MAX_REVOKED, Grant, QueryRefused, RevocationList, Revocations
from vnstitch.protocol.identity import Identity, TrustStore
from vnstitch.protocol.messages import (
    Congestion,
    Entry,
    Hello,
    Hold,
    HoldOk,
    HoldRefused,
    LeaseOp,
    Leases,
    Message,
    MsgType,
    Offer,
    PathSignal,
    Probe,
    Query,
    Resync,
    Update,
)
from vnstitch.protocol.replay import ReplayWindow


def _pair(seed: int = 1) -> tuple[Codec, Codec, Identity, Identity]:
    rng = random.Random(seed)
    a, b = Identity.from_rng(rng), Identity.from_rng(rng)
    trust = TrustStore([a.public_bytes, b.public_bytes])
    return Codec(a, trust), Codec(b, trust), a, b


rm_ids = st.binary(min_size=16, max_size=16).map(lambda b: RouteManagerId(b.hex()))
paths = st.lists(rm_ids, min_size=2, max_size=6, unique=True).map(tuple)
vnids = st.integers(1, (1 << 24) - 1).map(VNID)
mbps = st.floats(0, 1e6, allow_nan=False)
comps = st.lists(st.text(max_size=20), max_size=4).map(tuple)
tokens = st.text(min_size=1, max_size=30)
entries = st.builds(Entry, vnids, paths, mbps, mbps, mbps, comps, st.booleans())
grants = st.none() | st.builds(Grant, vnids, rm_ids, mbps, st.integers(0, 1 << 53),
                               st.binary(min_size=64, max_size=64))
revocations = st.builds(
    RevocationList, vnids, st.binary(min_size=32, max_size=32), st.integers(0, 1 << 53),
    st.lists(st.tuples(st.integers(0, 1 << 53), mbps), max_size=MAX_REVOKED).map(tuple),
    st.binary(min_size=64, max_size=64))


@st.composite
def updates(draw: st.DrawFn) -> Update:
    """Entries of one UPDATE all start with the announcer; paths often share prefixes."""
    announcer = draw(rm_ids)
    pool = draw(st.lists(rm_ids.filter(lambda r: r != announcer), min_size=1, max_size=6,
                         unique=True))
    ents = []
    for _ in range(draw(st.integers(0, 4))):
        tail = draw(st.lists(st.sampled_from(pool), max_size=len(pool), unique=True))
        ents.append(Entry(draw(vnids), (announcer, *tail), draw(mbps), draw(mbps), draw(mbps),
                          draw(comps), draw(st.booleans())))
    withdrawals = draw(st.lists(st.tuples(vnids, rm_ids), max_size=3).map(tuple))
    return Update(tuple(ents), withdrawals, draw(st.integers(0, 5)), 0,
                  draw(st.integers(1, 3)))


messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Hello, st.integers(0, (1 << 64) - 1), st.integers(0, 1000),
              st.integers(0, (1 << 64) - 1), st.integers(0, 1000)),
    updates(),
    st.just(Resync()),
    st.builds(Query, st.binary(min_size=8, max_size=8), vnids, mbps, st.just(float("inf")),
              mbps, st.integers(1, 16), paths, mbps, mbps, mbps, st.integers(1, 16), grants),
    st.builds(Offer, st.binary(min_size=8, max_size=8), paths, mbps, mbps, mbps, comps,
              grants),
    st.builds(Hold, tokens, vnids, paths, mbps, mbps, st.binary(min_size=32, max_size=32),
              st.text(max_size=20), st.text(max_size=15), st.text(max_size=15), comps,
              st.binary(min_size=64, max_size=64), st.text(max_size=30), grants),
    st.builds(HoldOk, tokens, paths, st.binary(min_size=32, max_size=32),
              st.text(max_size=20), st.binary(min_size=64, max_size=64), st.text(max_size=30)),
    st.builds(HoldRefused, tokens, paths, rm_ids, st.text(max_size=20), mbps),
    st.builds(PathSignal, st.sampled_from([MsgType.COMMIT, MsgType.COMMIT_ACK, MsgType.ABORT,
                                           MsgType.PATH_DOWN]),
              tokens, paths),
    st.builds(Probe, st.sampled_from([MsgType.PROBE, MsgType.PROBE_REPLY]), tokens,
              st.integers(0, (1 << 32) - 1), mbps),
    st.builds(Leases, st.sampled_from(list(LeaseOp)),
              st.lists(tokens, max_size=5).map(tuple)),
    st.builds(QueryRefused, st.binary(min_size=8, max_size=8), paths, rm_ids,
              st.text(max_size=20)),
    st.builds(Revocations, revocations),
    st.builds(Congestion, tokens, paths, rm_ids,
              st.lists(rm_ids, min_size=2, max_size=2, unique=True).map(tuple),
              st.integers(0, 65535)),
)


@settings(max_examples=examples(300), deadline=None)
@given(messages)
def test_round_trip(msg: Message) -> None:
    ca, cb, a, _ = _pair()
    sender, back = cb.decode(ca.encode(cb.identity.rm_id, msg, 100.0), 100.0)
    assert sender == a.rm_id
    assert back == msg


@settings(max_examples=examples(500), deadline=None)
@given(st.binary(max_size=1600))
def test_arbitrary_bytes_only_raise_remote_protocol_error(data: bytes) -> None:
    _, cb, _, _ = _pair()
    with pytest.raises(RemoteProtocolError):
        cb.decode(data, 0.0)


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=1200), st.integers(0, 200))
def test_trusted_garbage_payload_is_malformed_not_a_crash(junk: bytes, type_code: int) -> None:
    """Signed by a trusted key but with a nonsense body: still only RemoteProtocolError."""
    _, cb, a, b = _pair()
    head = struct.pack("!2sB16s16s", b"VS", 1, bytes.fromhex(a.rm_id), bytes.fromhex(b.rm_id))
    for seq, body in enumerate((junk, msgpack.packb([7, 0.0, type_code, list(junk[:5])])), 1):
        signed = head + msgpack.packb([seq, 0.0, type_code, body]) if seq == 1 else head + body
        # RemoteProtocolError is the only exception allowed; a valid message is fine too.
        with contextlib.suppress(RemoteProtocolError):
            cb.decode(signed + a.sign(signed), 0.0)


@settings(max_examples=examples(100), deadline=None)
@given(messages, st.data())
def test_any_flipped_bit_is_dropped(msg: Message, data: st.DataObject) -> None:
    ca, cb, _, _ = _pair()
    wire = bytearray(ca.encode(cb.identity.rm_id, msg, 5.0))
    pos = data.draw(st.integers(0, len(wire) - 1))
    wire[pos] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(RemoteProtocolError) as exc:
        cb.decode(bytes(wire), 5.0)
    assert exc.value.reason in {"bad_signature", "bad_magic", "bad_version", "unknown_sender"}


def test_forged_by_untrusted_key() -> None:
    _, cb, _, _ = _pair()
    mallory = Identity.from_rng(random.Random(99))
    forger = Codec(mallory, TrustStore([mallory.public_bytes]))
    with pytest.raises(RemoteProtocolError) as exc:
        cb.decode(forger.encode(cb.identity.rm_id, Resync(), 0.0), 0.0)
    assert exc.value.reason == "unknown_sender"


def test_replay_stale_wrong_recipient_oversized() -> None:
    ca, cb, _, _ = _pair()
    wire = ca.encode(cb.identity.rm_id, Hello(1, 2), 10.0)
    cb.decode(wire, 10.0)
    with pytest.raises(RemoteProtocolError) as exc:
        cb.decode(wire, 10.0)
    assert exc.value.reason == "replayed"
    with pytest.raises(RemoteProtocolError) as exc:
        cb.decode(ca.encode(cb.identity.rm_id, Hello(1, 2), 10.0), 100.0)
    assert exc.value.reason == "stale"
    with pytest.raises(RemoteProtocolError) as exc:
        cb.decode(ca.encode(ca.identity.rm_id, Hello(1, 2), 10.0), 10.0)
    assert exc.value.reason == "wrong_recipient"
    with pytest.raises(RemoteProtocolError) as exc:
        cb.decode(b"\0" * (MAX_DATAGRAM + 1), 10.0)
    assert exc.value.reason == "oversized"


def test_encoder_refuses_oversized() -> None:
    ca, cb, _, _ = _pair()
    big = Entry(VNID(1), (RouteManagerId("ab" * 16),), 1.0, 1.0, 1.0, ("x" * 48,) * 24)
    with pytest.raises(ProtocolError):
        ca.encode(cb.identity.rm_id, Update((big, big), ()), 0.0)


def test_replay_window_reordering_and_age() -> None:
    w = ReplayWindow(8)
    assert w.check(5) is None
    assert w.check(3) is None  # late but inside the window
    assert w.check(3) == "replayed"
    assert w.check(5) == "replayed"
    assert w.check(20) is None
    assert w.check(12) == "too_old"
    assert w.check(13) is None
    restored = ReplayWindow(8, highest=20)
    assert restored.check(19) == "replayed"
    assert restored.check(21) is None


def test_codec_restore_never_reuses_sequence_numbers() -> None:
    ca, cb, a, _ = _pair()
    for _ in range(3):
        cb.decode(ca.encode(cb.identity.rm_id, Resync(), 0.0), 0.0)
    state = ca.export_state()
    cb_state = cb.export_state()
    ca2 = Codec(a, ca.trust)
    ca2.restore_state(state)
    cb2 = Codec(cb.identity, cb.trust)
    cb2.restore_state(cb_state)
    cb2.decode(ca2.encode(cb.identity.rm_id, Resync(), 0.0), 0.0)
    old = ca.encode_with(cb.identity.rm_id, Resync(), 0.0, 2)
    with pytest.raises(RemoteProtocolError):
        cb2.decode(old, 0.0)
