"""Admission before signature verification (pure): forged floods are dropped cheaply
while a configured peer's keepalives keep getting through."""

from __future__ import annotations

import os
import random

from vnstitch.model.ids import RouteManagerId
from vnstitch.protocol.admission import Admission, AdmissionConfig
from vnstitch.protocol.codec import Codec, Peek
from vnstitch.protocol.identity import Identity, TrustStore
from vnstitch.protocol.messages import Hello, MsgType, Probe

PEER_ADDR = ("192.0.2.2", 7700)


def _pair() -> tuple[Codec, Codec]:
    a, b = Identity(os.urandom(32)), Identity(os.urandom(32))
    trust = TrustStore([a.public_bytes, b.public_bytes])
    return Codec(a, trust), Codec(b, trust)


def _forged(sender: RouteManagerId, recipient: RouteManagerId, rng: random.Random,
            type_code: int = int(MsgType.HELLO)) -> bytes:
    """A datagram as a flooder builds it: right ids, random sequence and signature."""
    good = Codec(Identity(os.urandom(32)), TrustStore()).encode_with(
        recipient, Hello(1, 1), 0.0, rng.randrange(1, 1 << 40))
    head = b"VS\x01" + bytes.fromhex(sender) + bytes.fromhex(recipient)
    body = good[35:-64]
    return head + body + rng.randbytes(64)


def test_peek_reads_claims_and_window_without_verifying() -> None:
    rx, tx = _pair()
    first = tx.encode(rx.identity.rm_id, Hello(1, 1), 0.0)
    assert rx.peek(first) == Peek(tx.identity.rm_id, int(MsgType.HELLO), False)
    rx.decode(first, 0.0)  # verified once: the window now exists
    nxt = tx.encode(rx.identity.rm_id, Hello(1, 1), 0.0)
    assert rx.peek(nxt).in_window
    far = tx.encode_with(rx.identity.rm_id, Hello(1, 1), 0.0, 10_000_000)
    assert not rx.peek(far).in_window  # a forger's guess, or a restarted peer
    assert rx.peek(b"x" * 10).problem == "truncated"
    assert rx.peek(b"XX" + first[2:]).problem == "bad_magic"
    stranger = Codec(Identity(os.urandom(32)), TrustStore()).encode(rx.identity.rm_id,
                                                                   Hello(1, 1), 0.0)
    assert rx.peek(stranger).problem == "unknown_sender"
    junk_body = nxt[:35] + b"\xc1" * 20 + nxt[-64:]  # msgpack's never-used byte
    assert rx.peek(junk_body) == Peek(tx.identity.rm_id, None, False)


def test_forged_neighbour_id_from_elsewhere_is_dropped() -> None:
    rx, tx = _pair()
    adm = Admission({tx.identity.rm_id: PEER_ADDR})
    dgram = tx.encode(rx.identity.rm_id, Hello(1, 1), 0.0)
    assert adm.check(rx.peek(dgram), ("198.51.100.9", 7700), 0.0) == "address_mismatch"
    assert adm.check(rx.peek(dgram), PEER_ADDR, 0.0) is None  # control: its own address
    # Inside one of our tunnels the far end's address is its tunnel address.
    assert adm.check(rx.peek(dgram), ("10.255.0.3", 7700), 0.0, {"10.255.0.3"}) is None


def test_header_screen_drops_a_foreign_address_without_reading_the_body() -> None:
    """The screen needs only the header: a neighbour's id from another address is
    dropped even when its body is unreadable, and it draws nothing from the budgets."""
    rx, tx = _pair()
    adm = Admission({tx.identity.rm_id: PEER_ADDR}, AdmissionConfig(
        verify_burst=1.0, reserve_tier1=0.0, reserve_tier2=0.0))
    dgram = tx.encode(rx.identity.rm_id, Hello(1, 1), 0.0)
    junk = dgram[:35] + b"\xc1" * 20 + dgram[-64:]
    head = rx.peek_header(junk)
    assert head == Peek(tx.identity.rm_id)  # the header alone: no type, no window
    assert adm.screen(head, ("198.51.100.9", 7700)) == "address_mismatch"
    assert adm.screen(rx.peek_header(b"x" * 10), PEER_ADDR) == "truncated"
    assert adm.admitted == [0, 0, 0]
    # Control: from its own address it passes the screen, and the two steps together
    # are exactly the one-step peek and check (the single budget token is still there).
    full = rx.peek_body(dgram, rx.peek_header(dgram))
    assert full == rx.peek(dgram)
    assert adm.screen(rx.peek_header(dgram), PEER_ADDR) is None
    assert adm.admit(full, PEER_ADDR, 0.0) is None
    assert adm.check(rx.peek(dgram), PEER_ADDR, 0.0) == "verify_budget_tier3"


def test_flood_from_the_peers_own_address_leaves_its_keepalives_through() -> None:
    """50,000 forged datagrams/s from the peer's address for 2 s, with the peer's own
    HELLO and PROBE every 0.1 s among them: every genuine one is admitted."""
    rx, tx = _pair()
    rx.decode(tx.encode(rx.identity.rm_id, Hello(1, 1), 0.0), 0.0)  # first contact
    adm = Admission({tx.identity.rm_id: PEER_ADDR}, AdmissionConfig(), now=0.0)
    rng = random.Random(4)
    flood = [_forged(tx.identity.rm_id, rx.identity.rm_id, rng) for _ in range(64)]
    forged_admitted = genuine = genuine_ok = 0
    for step in range(100_000):
        now = step / 50_000
        dgram = flood[step % 64]
        if adm.check(rx.peek(dgram), PEER_ADDR, now) is None:
            forged_admitted += 1
        if step % 5000 == 0:  # every 0.1 s
            msg = Hello(1, 1) if step % 10000 else Probe(MsgType.PROBE, "t", step, now)
            real = tx.encode(rx.identity.rm_id, msg, now)
            genuine += 1
            if adm.check(rx.peek(real), PEER_ADDR, now) is None:
                genuine_ok += 1
                rx.decode(real, now)
    assert genuine_ok == genuine == 20
    # Forgeries reach verification at most at the per-source rate (+ its burst).
    assert forged_admitted <= 100 * 2 + 200, forged_admitted


def test_verify_budget_serves_keepalives_first() -> None:
    rx, tx = _pair()
    rx.decode(tx.encode(rx.identity.rm_id, Hello(1, 1), 0.0), 0.0)
    cfg = AdmissionConfig(verify_per_s=100, verify_burst=100, source_per_s=1e9,
                          source_burst=1e9)
    adm = Admission({tx.identity.rm_id: PEER_ADDR}, cfg)
    forged = _forged(tx.identity.rm_id, rx.identity.rm_id, random.Random(1))
    # Out-of-window datagrams spend the budget down to tier 3's floor...
    for _ in range(1000):
        adm.check(rx.peek(forged), PEER_ADDR, 0.0)
    assert adm.admitted[2] == 50  # tier 3 stops at half the burst
    # ...and the peer's in-window HELLO still gets verified.
    hello = tx.encode(rx.identity.rm_id, Hello(1, 1), 0.0)
    assert adm.check(rx.peek(hello), PEER_ADDR, 0.0) is None


def test_source_table_is_bounded() -> None:
    rx, tx = _pair()
    adm = Admission({}, AdmissionConfig(max_sources=50))
    dgram = tx.encode(rx.identity.rm_id, Hello(1, 1), 0.0)
    for i in range(1000):
        adm.check(rx.peek(dgram), (f"10.0.{i // 250}.{i % 250}", 1), 0.0)
    assert adm.sources_tracked == 50
