"""SQLite (WAL) state of one Route Manager daemon: what must survive a crash.

Theory of operation: one database file per daemon (created mode 0600: it holds tunnel
private keys) with a ``meta`` table (schema version, owning RM id) and one table per kind
of state -- stitches, reservations, tunnel keys, the desired dataplane objects, the
sequence-number high-water mark and the core's exported state, and for the allocation
loop (:mod:`vnstitch.daemon.allocation`) each stitch's recent rate samples and the HTB
rate overrides it decided (tables added with ``IF NOT EXISTS``: older files gain them).
Every write is its own transaction (or grouped with :meth:`StateStore.transaction`),
committed with ``synchronous=FULL`` so that a ``kill -9`` right after a call returns loses nothing.

Sequence numbers are never reused across restarts: the daemon reserves them in blocks
(:meth:`StateStore.reserve_sequence`) and only sends a datagram whose number is at or
below the persisted high-water mark; a restarted core starts above it.

The desired dataplane state is stored object by object (JSON with a type tag); WireGuard
private keys go to ``tunnel_keys`` and are joined back on load. A file that is not a
SQLite database, fails ``quick_check``, has another schema or is zero bytes long raises
:class:`StateError` naming the file and what to do (the operator may ask to initialise
it: ``routemgr run --init-state``). Rows with unreadable or non-finite numbers are
refused on write and skipped on read (named in :attr:`StateStore.bad_rows`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vnstitch.daemon.errors import StateError
from vnstitch.dataplane.objects import (
    DataplaneObject,
    DataplaneState,
    RateLimit,
    WireguardInterface,
    object_from_json,
    object_to_json,
)
from vnstitch.protocol.intent import Intent, IntentError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stitches (
    stitch_id TEXT PRIMARY KEY, vnid INTEGER NOT NULL, path TEXT NOT NULL,
    bandwidth_mbps REAL NOT NULL, latency_ms REAL NOT NULL, cost REAL NOT NULL,
    status TEXT NOT NULL, requested_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY, stitch_id TEXT NOT NULL, vnid INTEGER NOT NULL,
    bandwidth_mbps REAL NOT NULL, peers TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tunnel_keys (
    interface TEXT PRIMARY KEY, private_key TEXT NOT NULL, listen_port INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dataplane_desired (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, obj TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tunnels (
    tunnel_id TEXT PRIMARY KEY, peer TEXT NOT NULL, state TEXT NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sequence (
    id INTEGER PRIMARY KEY CHECK (id = 1), high_water INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS core_state (
    id INTEGER PRIMARY KEY CHECK (id = 1), blob BLOB NOT NULL, saved_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS allocation_samples (
    stitch_id TEXT NOT NULL, t REAL NOT NULL, mbps REAL NOT NULL,
    PRIMARY KEY (stitch_id, t));
CREATE TABLE IF NOT EXISTS allocation_overrides (
    key TEXT PRIMARY KEY, obj TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    intent_id TEXT PRIMARY KEY, obj TEXT NOT NULL);
"""

TABLES = frozenset({"meta", "stitches", "reservations", "tunnel_keys", "dataplane_desired",
                    "tunnels", "sequence", "core_state", "allocation_samples",
                    "allocation_overrides", "intents"})



@dataclass(frozen=True, slots=True)
class StitchRecord:
    stitch_id: str
    vnid: int
    path: tuple[str, ...]
    bandwidth_mbps: float
    latency_ms: float
    cost: float
    status: str  # "requested" | "up" | "renegotiating" | "down" | "failed"
    requested_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class ReservationRecord:
    reservation_id: str
    stitch_id: str
    vnid: int
    bandwidth_mbps: float
    peers: tuple[str, ...]
    created_at: float


def _aside_name(p: Path) -> Path:
    n = 1
    while p.with_name(f"{p.name}.unusable-{n}").exists():
        n += 1
    return p.with_name(f"{p.name}.unusable-{n}")


def _finite(*values: object) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               for v in values)


class StateStore:
    """The daemon's SQLite state; open with :meth:`open`, close with :meth:`close`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._depth = 0
        #: Rows refused on load (non-finite or malformed numbers): ``table:key`` -> why.
        self.bad_rows: dict[str, str] = {}

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, *, initialise: bool = False) -> StateStore:
        """Open the database at ``path`` (created, mode 0600, when missing) and check it.

        A zero-length file or a file that is not a vnstitch state database is refused --
        it may be another program's file, or a database truncated by a full disk, and
        starting empty would silently forget every stitch -- unless ``initialise`` is
        set: then a zero-length file is initialised and any other unusable file is moved
        aside (``NAME.unusable-N``) first.
        """
        p = Path(path)
        try:
            size = p.stat().st_size if p.exists() else None
            wal = p.with_name(p.name + "-wal")
            if size == 0 and wal.exists() and wal.stat().st_size > 0:
                size = -1  # all of it still in the write-ahead log: not empty
        except OSError as exc:
            raise StateError(f"{p}: cannot read state database: {exc.strerror}") from None
        if size == 0 and not initialise:
            raise StateError(f"{p}: state database is empty (zero bytes): refusing to start "
                             "with no state; pass --init-state to initialise it")
        try:
            return cls._open(p, fresh=size is None or size == 0)
        except StateError:
            if not initialise or size is None or size == 0:
                raise
        aside = _aside_name(p)
        try:
            p.rename(aside)
            for suffix in ("-wal", "-shm"):
                extra = p.with_name(p.name + suffix)
                if extra.exists():
                    extra.rename(aside.with_name(aside.name + suffix))
        except OSError as exc:
            raise StateError(f"{p}: cannot move the unusable database aside: "
                             f"{exc.strerror}") from None
        return cls._open(p, fresh=True)

    @classmethod
    def _open(cls, p: Path, *, fresh: bool) -> StateStore:
        if fresh:
            try:
                os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o600))
            except OSError as exc:
                raise StateError(f"{p}: cannot create state database: {exc.strerror}") from None
        try:
            conn = sqlite3.connect(p, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StateError(f"{p}: cannot open state database: {exc}") from None
        store = cls(p, conn)
        try:
            store._init(fresh)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StateError(
                f"{p}: not a usable vnstitch state database ({exc}); move it aside or "
                "pass --init-state to start with empty state") from None
        except StateError:
            conn.close()
            raise
        return store

    def _init(self, fresh: bool) -> None:
        c = self._conn
        mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateError(f"{self.path}: cannot switch to WAL journal (got {mode})")
        c.execute("PRAGMA synchronous=FULL")
        check = c.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StateError(f"{self.path}: database is corrupted (quick_check: {check}); "
                             "move it aside to start with empty state")
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not fresh and "meta" not in tables:
            raise StateError(f"{self.path}: a SQLite database but not a vnstitch state "
                             f"database (tables: {', '.join(sorted(tables))})")
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise StateError(f"{self.path}: schema version {row[0]}, this vnstitch "
                                 f"needs {SCHEMA_VERSION}")
            c.execute("INSERT OR IGNORE INTO sequence VALUES (1, 0)")

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit (nestable; the outermost commits)."""
        if self._depth == 0:
            self._conn.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._conn.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._conn.execute("COMMIT")

    def tables(self) -> set[str]:
        return {r[0] for r in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}

    def journal_mode(self) -> str:
        return str(self._conn.execute("PRAGMA journal_mode").fetchone()[0])

    # -- owner ----------------------------------------------------------------------------

    def claim(self, rm_id: str) -> None:
        """Record the owning RM id; refuse a database that belongs to another RM."""
        with self.transaction():
            row = self._conn.execute("SELECT value FROM meta WHERE key='rm_id'").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO meta VALUES ('rm_id', ?)", (rm_id,))
            elif row[0] != rm_id:
                raise StateError(f"{self.path}: belongs to Route Manager {row[0]}, "
                                 f"not {rm_id} (wrong key file or state_db?)")

    # -- small named values (e.g. the PRA's user-behaviour feeds) ------------------------

    def put_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta_with_prefix(self, prefix: str) -> dict[str, str]:
        rows = self._conn.execute("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
                                  (len(prefix), prefix))
        return {str(k): str(v) for k, v in rows}

    # -- stitches and reservations --------------------------------------------------------

    def put_stitch(self, s: StitchRecord) -> None:
        if not _finite(s.bandwidth_mbps, s.latency_ms, s.cost, s.requested_at, s.updated_at):
            raise StateError(f"stitch {s.stitch_id}: refusing to store a non-finite number")
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO stitches VALUES (?,?,?,?,?,?,?,?,?)",
                (s.stitch_id, s.vnid, json.dumps(list(s.path)), s.bandwidth_mbps,
                 s.latency_ms, s.cost, s.status, s.requested_at, s.updated_at))

    def delete_stitch(self, stitch_id: str) -> None:
        with self.transaction():
            self._conn.execute("DELETE FROM stitches WHERE stitch_id=?", (stitch_id,))

    def stitches(self) -> list[StitchRecord]:
        """Every readable stitch row; a row with a bad value is skipped and named in
        :attr:`bad_rows` (one bad row must not hide the others, or break a view)."""
        out: list[StitchRecord] = []
        for r in self._conn.execute("SELECT * FROM stitches ORDER BY stitch_id").fetchall():
            try:
                path = json.loads(r[2])
                ok = (isinstance(r[0], str) and isinstance(r[1], int)
                      and isinstance(path, list) and all(isinstance(x, str) for x in path)
                      and _finite(r[3], r[4], r[5], r[7], r[8]) and isinstance(r[6], str))
            except (ValueError, TypeError):
                ok = False
            if not ok:
                self.bad_rows[f"stitches:{r[0]!s:.80}"] = "unreadable or non-finite values"
                continue
            out.append(StitchRecord(r[0], r[1], tuple(path), float(r[3]), float(r[4]),
                                    float(r[5]), r[6], float(r[7]), float(r[8])))
        return out

    def put_reservation(self, r: ReservationRecord) -> None:
        if not _finite(r.bandwidth_mbps, r.created_at):
            raise StateError(f"reservation {r.reservation_id}: refusing to store a "
                             "non-finite number")
        with self.transaction():
            self._conn.execute(
                "INSERT OR REPLACE INTO reservations VALUES (?,?,?,?,?,?)",
                (r.reservation_id, r.stitch_id, r.vnid, r.bandwidth_mbps,
                 json.dumps(list(r.peers)), r.created_at))

    def delete_reservation(self, reservation_id: str) -> None:
        with self.transaction():
            self._conn.execute("DELETE FROM reservations WHERE reservation_id=?",
                               (reservation_id,))

    def reservations(self) -> list[ReservationRecord]:
        """Every readable reservation row (bad ones are skipped, see :attr:`bad_rows`)."""
        out: list[ReservationRecord] = []
        for r in self._conn.execute(
                "SELECT * FROM reservations ORDER BY reservation_id").fetchall():
            try:
                peers = json.loads(r[4])
                ok = (isinstance(peers, list) and isinstance(r[2], int)
                      and _finite(r[3], r[5]))
            except (ValueError, TypeError):
                ok = False
            if not ok:
                self.bad_rows[f"reservations:{r[0]!s:.80}"] = "unreadable or non-finite values"
                continue
            out.append(ReservationRecord(r[0], r[1], r[2], float(r[3]),
                                         tuple(str(x) for x in peers), float(r[5])))
        return out

    def put_tunnel(self, tunnel_id: str, peer: str, state: str, now: float) -> None:
        with self.transaction():
            self._conn.execute("INSERT OR REPLACE INTO tunnels VALUES (?,?,?,?)",
                               (tunnel_id, peer, state, now))

    def tunnels(self) -> list[tuple[str, str, str, float]]:
        rows = self._conn.execute("SELECT * FROM tunnels ORDER BY tunnel_id").fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # -- dataplane desired state and tunnel keys ------------------------------------------

    def save_desired(self, state: DataplaneState) -> None:
        """Replace the stored desired dataplane state (keys split off to ``tunnel_keys``)."""
        with self.transaction():
            self._conn.execute("DELETE FROM dataplane_desired")
            self._conn.execute("DELETE FROM tunnel_keys")
            for obj in state:
                kind, text = object_to_json(obj, with_secrets=False)
                self._conn.execute("INSERT INTO dataplane_desired VALUES (?,?,?)",
                                   (obj.key, kind, text))
                if isinstance(obj, WireguardInterface):
                    self._conn.execute("INSERT INTO tunnel_keys VALUES (?,?,?)",
                                       (obj.name, obj.private_key, obj.listen_port))

    def load_desired(self) -> DataplaneState:
        keys = dict(self._conn.execute("SELECT interface, private_key FROM tunnel_keys"))
        objs: list[DataplaneObject] = []
        for key, kind, text in self._conn.execute(
                "SELECT key, kind, obj FROM dataplane_desired ORDER BY key"):
            try:
                obj = object_from_json(kind, text)
            except (ValueError, TypeError, KeyError) as exc:
                raise StateError(f"{self.path}: dataplane_desired row {key!r} is "
                                 f"unreadable: {exc}") from None
            if isinstance(obj, WireguardInterface):
                if obj.name not in keys:
                    raise StateError(f"{self.path}: no tunnel key for interface {obj.name}")
                obj = dataclasses.replace(obj, private_key=keys[obj.name])
            objs.append(obj)
        return DataplaneState(objs)

    def tunnel_keys(self) -> dict[str, tuple[str, int]]:
        return {r[0]: (r[1], r[2]) for r in self._conn.execute("SELECT * FROM tunnel_keys")}

    # -- sequence numbers -----------------------------------------------------------------

    def sequence_high_water(self) -> int:
        return int(self._conn.execute("SELECT high_water FROM sequence").fetchone()[0])

    def reserve_sequence(self, in_use: int, block: int = 1024) -> int:
        """Make sure numbers up to ``in_use`` are covered; raise the mark by ``block``."""
        with self.transaction():
            hw = self.sequence_high_water()
            if in_use > hw:
                hw = in_use + block
                self._conn.execute("UPDATE sequence SET high_water=?", (hw,))
        return hw

    # -- exported core state --------------------------------------------------------------

    def save_core_state(self, blob: bytes, now: float) -> None:
        with self.transaction():
            self._conn.execute("INSERT OR REPLACE INTO core_state VALUES (1, ?, ?)",
                               (blob, now))

    def load_core_state(self) -> bytes | None:
        row = self._conn.execute("SELECT blob FROM core_state").fetchone()
        return None if row is None else bytes(row[0])

    # -- stitch intents (vnstitch.protocol.intent) ----------------------------------------

    def put_intent(self, intent: Intent) -> None:
        with self.transaction():
            self._conn.execute("INSERT OR REPLACE INTO intents VALUES (?,?)",
                               (intent.intent_id, json.dumps(intent.to_json(),
                                                             allow_nan=False)))

    def delete_intent(self, intent_id: str) -> None:
        with self.transaction():
            self._conn.execute("DELETE FROM intents WHERE intent_id=?", (intent_id,))

    def intents(self) -> list[Intent]:
        """Every readable intent (a bad row is skipped and named in :attr:`bad_rows`)."""
        out: list[Intent] = []
        for key, text in self._conn.execute("SELECT intent_id, obj FROM intents "
                                            "ORDER BY intent_id").fetchall():
            try:
                out.append(Intent.from_json(json.loads(text)))
            except (ValueError, TypeError, IntentError) as exc:
                self.bad_rows[f"intents:{key!s:.80}"] = str(exc)[:200]
        return out

    # -- allocation loop ------------------------------------------------------------------

    def save_allocation(self, samples: list[tuple[str, float, float]],
                        overrides: list[RateLimit], keep: int, live: set[str]) -> None:
        """Add rate samples, keep the last ``keep`` per live stitch, replace the overrides."""
        with self.transaction():
            c = self._conn
            c.executemany("INSERT OR REPLACE INTO allocation_samples VALUES (?,?,?)", samples)
            for (sid,) in c.execute("SELECT DISTINCT stitch_id FROM allocation_samples"
                                    ).fetchall():
                if sid not in live:
                    c.execute("DELETE FROM allocation_samples WHERE stitch_id=?", (sid,))
                    continue
                c.execute("DELETE FROM allocation_samples WHERE stitch_id=? AND t NOT IN "
                          "(SELECT t FROM allocation_samples WHERE stitch_id=? "
                          "ORDER BY t DESC LIMIT ?)", (sid, sid, keep))
            c.execute("DELETE FROM allocation_overrides")
            for o in overrides:
                c.execute("INSERT INTO allocation_overrides VALUES (?,?)",
                          (o.key, object_to_json(o)[1]))

    def allocation_samples(self) -> dict[str, list[tuple[float, float]]]:
        out: dict[str, list[tuple[float, float]]] = {}
        for sid, t, mbps in self._conn.execute(
                "SELECT stitch_id, t, mbps FROM allocation_samples ORDER BY stitch_id, t"):
            out.setdefault(str(sid), []).append((float(t), float(mbps)))
        return out

    def allocation_overrides(self) -> list[RateLimit]:
        out: list[RateLimit] = []
        for key, text in self._conn.execute("SELECT key, obj FROM allocation_overrides"):
            try:
                obj = object_from_json("rate", text)
            except (ValueError, TypeError, KeyError) as exc:
                raise StateError(f"{self.path}: allocation_overrides row {key!r} is "
                                 f"unreadable: {exc}") from None
            if isinstance(obj, RateLimit):
                out.append(obj)
        return out
