"""Key files (mode 0600, refusals) and the SQLite state store."""

from __future__ import annotations

import math
import os
import sqlite3
import stat
import typing
from pathlib import Path

import pytest

from vnstitch.daemon.errors import KeyFileError, StateError
from vnstitch.daemon.identity import load_key_file, write_key_file
from vnstitch.daemon.state import (
    TABLES,
    ReservationRecord,
    StateStore,
    StitchRecord,
)
from vnstitch.dataplane.objects import (
    Bridge,
    BridgePort,
    DataplaneObject,
    DataplaneState,
    FdbEntry,
    PathPin,
    RateLimit,
    Route,
    U32Filter,
    VxlanPort,
    WireguardInterface,
    WireguardPeer,
    object_from_json,
    object_to_json,
)

PRIV = "cHJpdmF0ZS1rZXktb2YtdGhpcy10dW5uZWwtMzJieXQ="
OBJECTS: list[DataplaneObject] = [
    WireguardInterface("wgs1", PRIV, 51820, "10.255.0.1/24",
                       (WireguardPeer("A" * 43 + "=", "10.0.0.2:51820", ("10.255.0.2/32",), 5),)),
    VxlanPort("vx100", 100, "10.255.0.1", "wgs1"),
    Bridge("vnbr100"),
    BridgePort("vnbr100", "vx100"),
    FdbEntry("vx100", "10.255.0.2"),
    Route("10.100.2.0/24", "vnbr100", 50),
    RateLimit("wgs1", 10, 20.0, 20.0),
]
U32_FILTER = U32Filter("wgs1", 10, 1, 10, ("ip dport 22 0xffff", "ip protocol 6 0xff"))
OBJECTS_ALL_KINDS: list[DataplaneObject] = [
    *OBJECTS, U32_FILTER, PathPin(51820, "0.0.0.0/0", "10.1.1.2", "l-t", "10.0.0.1")]


def test_key_file_is_0600_and_round_trips(tmp_path: Path) -> None:
    info = write_key_file(tmp_path / "k")
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600
    again = load_key_file(tmp_path / "k")
    assert again.rm_id == info.rm_id and len(info.rm_id) == 32
    assert again.private_key_raw == info.private_key_raw
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file(tmp_path / "k")


def test_key_file_refusals(tmp_path: Path) -> None:
    write_key_file(tmp_path / "k")
    os.chmod(tmp_path / "k", 0o644)
    with pytest.raises(KeyFileError, match="too open"):
        load_key_file(tmp_path / "k")
    bad = tmp_path / "bad"
    bad.write_text("hello")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_key_file(bad)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_file(tmp_path / "absent")


def test_schema_wal_and_mode(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "s.db")
    try:
        assert store.tables() == set(TABLES)
        assert store.journal_mode() == "wal"
        assert stat.S_IMODE(os.stat(tmp_path / "s.db").st_mode) == 0o600
    finally:
        store.close()


def test_restart_round_trip(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "s.db")
    store.claim("a" * 32)
    stitch = StitchRecord("s1", 100, ("a" * 32, "b" * 32), 20.0, 3.0, 2.0, "up", 1.0, 2.0)
    res = ReservationRecord("s1", "s1", 100, 20.0, ("a" * 32, "b" * 32), 2.0)
    store.put_stitch(stitch)
    store.put_reservation(res)
    store.put_tunnel("t1", "b" * 32, "up", 2.0)
    store.save_desired(DataplaneState(OBJECTS))
    store.save_core_state(b"\x00core\xff", 3.0)
    hw = store.reserve_sequence(5, block=100)
    assert hw == 105 and store.reserve_sequence(50, block=100) == 105  # still covered
    store.close()

    again = StateStore.open(tmp_path / "s.db")
    try:
        again.claim("a" * 32)
        assert again.stitches() == [stitch]
        assert again.reservations() == [res]
        assert again.tunnels() == [("t1", "b" * 32, "up", 2.0)]
        assert again.load_desired() == DataplaneState(OBJECTS)
        assert again.tunnel_keys() == {"wgs1": (PRIV, 51820)}
        assert again.load_core_state() == b"\x00core\xff"
        assert again.sequence_high_water() == 105
        with pytest.raises(StateError, match="belongs to Route Manager"):
            again.claim("b" * 32)
    finally:
        again.close()


def test_private_keys_only_in_tunnel_keys_table(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "s.db")
    store.save_desired(DataplaneState(OBJECTS))
    store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    rows = [r[0] for r in conn.execute("SELECT obj FROM dataplane_desired")]
    conn.close()
    assert not any(PRIV in r for r in rows)


def test_objects_json_round_trip() -> None:
    for obj in OBJECTS:
        assert object_from_json(*object_to_json(obj)) == obj


def test_every_dataplane_object_type_is_stored_and_restored(tmp_path: Path) -> None:
    # every member of the DataplaneObject union must survive the state database
    kinds = {type(obj) for obj in OBJECTS_ALL_KINDS}
    assert kinds == set(typing.get_args(DataplaneObject))
    store = StateStore.open(tmp_path / "s.db")
    store.claim("a" * 32)
    store.save_desired(DataplaneState(OBJECTS_ALL_KINDS))
    store.close()
    again = StateStore.open(tmp_path / "s.db")
    try:
        again.claim("a" * 32)
        restored = again.load_desired()
    finally:
        again.close()
    filt = restored.get(U32_FILTER.key)
    assert filt == U32_FILTER and isinstance(filt, U32Filter)
    assert isinstance(filt.matches, tuple)


def test_corrupted_database_gives_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(StateError, match=r"bad\.db: not a usable vnstitch state database"):
        StateStore.open(bad)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StateError, match="not a vnstitch state database"):
        StateStore.open(other)
    # A real store whose pages were overwritten in the middle.
    good = tmp_path / "good.db"
    store = StateStore.open(good)
    for i in range(300):
        store.put_stitch(StitchRecord(f"s{i}", 100, ("x" * 500,), 1.0, 0, 0, "up", 0, 0))
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray(good.read_bytes())
    data[4096 * 3: 4096 * 6] = b"\xa5" * (4096 * 3)
    good.write_bytes(bytes(data))
    with pytest.raises(StateError, match=r"good\.db: .*(corrupt|not a usable)"):
        StateStore.open(good)


def test_schema_version_mismatch(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "s.db")
    store._conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    store.close()
    with pytest.raises(StateError, match="schema version 99"):
        StateStore.open(tmp_path / "s.db")


def test_zero_length_database_is_refused_unless_initialised(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    db.touch()
    with pytest.raises(StateError, match=r"empty.*--init-state"):
        StateStore.open(db)
    assert db.stat().st_size == 0  # refused, not silently initialised
    store = StateStore.open(db, initialise=True)
    assert "stitches" in store.tables()
    store.close()
    StateStore.open(db).close()  # initialised: an ordinary database now


def test_foreign_database_is_moved_aside_only_when_initialised(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.close()
    with pytest.raises(StateError, match="not a vnstitch state database"):
        StateStore.open(db)
    store = StateStore.open(db, initialise=True)
    store.close()
    aside = tmp_path / "s.db.unusable-1"
    with sqlite3.connect(aside) as conn:  # the operator's file is kept, untouched
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("photos",)]
    conn.close()
    # A file that is not SQLite at all: the same.
    junk = tmp_path / "j.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(StateError):
        StateStore.open(junk)
    StateStore.open(junk, initialise=True).close()
    assert (tmp_path / "j.db.unusable-1").read_bytes() == b"not a database" * 100


def test_non_finite_numbers_are_refused_on_write_and_skipped_on_read(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "s.db")
    with pytest.raises(StateError, match="non-finite"):
        store.put_stitch(StitchRecord("x", 100, (), math.inf, 0, 0, "up", 0, 0))
    store.put_stitch(StitchRecord("good", 100, (), 5.0, 0, 0, "up", 0, 0))
    store._conn.execute(  # a row written by an older version
        "INSERT INTO stitches VALUES ('bad', 100, '[]', ?, 0, 0, 'up', 0, 0)", (-math.inf,))
    assert [s.stitch_id for s in store.stitches()] == ["good"]
    assert list(store.bad_rows) == ["stitches:bad"]
    store.close()
