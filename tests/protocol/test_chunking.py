"""UPDATE chunking: every chunk of any table fits the codec's datagram limit."""

from __future__ import annotations

import random

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.examples import examples
from vnstitch.model.ids import VNID, RouteManagerId
from vnstitch.protocol.codec import MAX_DATAGRAM, Codec
from vnstitch.protocol.discovery import _chunk, entry_fits
from vnstitch.protocol.identity import Identity, TrustStore
from vnstitch.protocol.messages import MAX_COMPONENT_LEN, MAX_COMPONENTS, MAX_PATH, Entry

_rng = random.Random(7)
_A, _B = Identity.from_rng(_rng), Identity.from_rng(_rng)
_TRUST = TrustStore([_A.public_bytes, _B.public_bytes])

rm_ids = st.binary(min_size=16, max_size=16).map(lambda b: RouteManagerId(b.hex()))
vnids = st.integers(1, (1 << 24) - 1).map(VNID)
floats = st.one_of(st.just(0.0), st.floats(0, 1e9, allow_nan=False, allow_infinity=False))
comps = st.lists(st.text(max_size=MAX_COMPONENT_LEN), max_size=MAX_COMPONENTS).map(tuple)
#: Every entry of an UPDATE starts with the announcer (the sender).
_ANN = RouteManagerId("ff" * 16)
_POOL = [RouteManagerId(f"{i:032x}") for i in range(12)]
others = rm_ids.filter(lambda r: r != _ANN)
tails = st.one_of(
    st.lists(others, max_size=MAX_PATH - 1, unique=True),  # long, unrelated paths
    st.lists(st.sampled_from(_POOL), max_size=len(_POOL), unique=True))  # shared prefixes
entries = st.builds(Entry, vnids, tails.map(lambda t: (_ANN, *t)), floats, floats, floats,
                    comps)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(st.lists(entries, max_size=80), st.lists(st.tuples(vnids, rm_ids), max_size=400),
       st.integers(0, (1 << 32)))
def test_every_chunk_fits_the_datagram_limit(es: list[Entry],
                                             ws: list[tuple[VNID, RouteManagerId]],
                                             sync: int) -> None:
    fitting = [e for e in es if entry_fits(e)]
    chunks = _chunk(fitting, ws, sync)
    sender, receiver = Codec(_A, _TRUST), Codec(_B, _TRUST)
    assert sum(len(u.entries) for u in chunks) == len(fitting)
    assert sum(len(u.withdrawals) for u in chunks) == len(ws)
    for u in chunks:
        # worst case envelope: the largest sequence number and a float timestamp
        data = sender.encode_with(_B.rm_id, u, 1e9, (1 << 64) - 1)
        assert len(data) <= MAX_DATAGRAM
        _, back = receiver.decode(sender.encode(_B.rm_id, u, 5.0), 5.0)
        assert back == u


def test_paths_sharing_prefixes_pack_many_entries_per_datagram() -> None:
    """A tree of 25-hop routes (what one neighbour announces) costs about one id per
    route, not 25: 60 routes fit 3 UPDATEs, where full paths need 20 or more."""
    trunk = tuple(RouteManagerId(f"{i:032x}") for i in range(1, 24))
    es = [Entry(VNID(v), (_ANN, *trunk, RouteManagerId(f"{1000 + v:032x}")), 10.0, 5.0, 3.0,
                ("10.0.0.0/24",)) for v in range(1, 61)]
    full = sum(len(msgpack.packb(e.to_wire(), use_bin_type=True)) for e in es)
    assert full > 20 * 1250  # what the 64-byte-per-hop form would need
    chunks = _chunk(es, [], 0)
    assert len(chunks) <= 3
    sender, receiver = Codec(_A, _TRUST), Codec(_B, _TRUST)
    for u in chunks:
        assert receiver.decode(sender.encode(_B.rm_id, u, 5.0), 5.0)[1] == u


def test_an_entry_too_big_for_any_datagram_is_not_fitting() -> None:
    path = tuple(RouteManagerId(f"{i:032x}") for i in range(MAX_PATH))
    big = Entry(VNID(1), path, 1.0, 1.0, 1.0, tuple("x" * MAX_COMPONENT_LEN
                                                    for _ in range(MAX_COMPONENTS)))
    assert not entry_fits(big)
    assert entry_fits(Entry(VNID(1), path[:3], 1.0, 1.0, 1.0, ("10.0.0.0/24",)))
