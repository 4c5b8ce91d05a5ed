"""One SQLite file per server: what a pool member must not forget across a crash.

Theory of operation
-------------------
The file `<data-dir>/lm.sqlite3` (WAL) holds

* `meta`   -- schema version, the pool name and server id the directory belongs to;
* `rlf`    -- the current RLF text and its sequence number (one row);
* `state`  -- the engine's small durable state (`PersistState`, JSON, one row, replaced);
* `keys`   -- the key table (`PersistKey`: one row per client id + license; upsert/delete);
* `usage`  -- the usage log (`LogUsage`: grant, release, deny, expire, reclaim, moved),
  with who asked (the client's stated identity) -- see "The usage log" below.

(Stores created before `keys` became `WITHOUT ROWID` and `usage.id` lost `AUTOINCREMENT`
-- one page write less each per grant; rows are deleted from `usage` only oldest first
(`prune_usage`), so ids still only grow -- read and write exactly the same.)

Every write goes through `commit(batch)`: one transaction. The daemon gathers the
persist effects of one step (or of several queued inputs) into a `Batch` and commits it
before it sends any message that depends on it: the group commit of the grant path.

Durability depends on what the batch holds (DESIGN: "writes on the grant path are
group-committed; admin changes are synchronous"):

* a batch with a `PersistState` or a new RLF (term, vote, distribution, configuration:
  what S1/S2/S5/S6 rest on) commits with `synchronous=FULL`: the WAL is fsynced before
  `commit` returns, so it survives a power loss;
* a batch of only `PersistKey` / `LogUsage` (grants, renewals, releases, the usage log)
  commits with `synchronous=NORMAL`: the transaction is in the WAL, in the OS page cache,
  when `commit` returns -- durable against a crash or `kill -9` of the daemon, not
  against a power loss or kernel crash. The WAL is fsynced at the next FULL commit or
  checkpoint (SQLite syncs the WAL before it checkpoints), which also makes every
  earlier NORMAL commit durable, in order. A grant lost to a power loss is covered by
  restart grace (S4): the restarted server issues nothing new for one client lease and
  re-adopts the clients that heartbeat back in, so no seat is handed out twice.

This takes the fsync (~0.35 ms, often far more on real disks) off every grant: at one
client, one fsync per request was the daemon's whole cost. A NORMAL commit is a few
`write`s into the page cache (tens of microseconds), so the daemon runs it on its event
loop; FULL commits run in a worker thread. SQLite's automatic checkpoint is off (it
would fsync inside whichever commit crosses the threshold, stalling the loop): the
daemon calls `checkpoint()` in a worker thread, on a second connection, when
`checkpoint_due` says so (every `CHECKPOINT_EVERY` commits) and keeps committing
meanwhile; closing the store checkpoints too.

Bounds: every integer column holds a value the parsers and the codec already bounded
(`lm_core.engine.limits`: an RLF sequence is at most 2**53 - 1, a seat count at most
`HARD_LIMIT_MAX`), far inside SQLite's signed 64-bit INTEGER. `Batch` checks them again
when a write is gathered and raises `ValueError` naming the value: a value out of range
here is a bug upstream, caught before the transaction, never an overflow inside it.

Schema versions and upgrades. `meta.schema_version` says which layout a file has. A
store of an older version is migrated forward when it is opened (`MIGRATIONS`, one
transaction per step, recorded in `schema_history`), after an online-backup copy of the
file is written next to it (`lm.sqlite3.schema<N>-<UTC time>.bak`); a store of a newer
version is refused (run the newer lm-daemon, or restore the copy taken before the
upgrade). `backup()` copies a store with SQLite's online backup API -- safe while the
daemon runs -- into one self-contained file; `restore()` copies such a file back into a
data directory whose daemon is stopped (the store it replaces is kept beside it).

The usage log
-------------
One row per grant, release, expiry, reclaim or move of a key-table entry, with the
client's identity (user, host, pid, program, version, display) when the server knows
it. A *denial* row stands for one wait, not one retry: a client waiting with ``--wait``
asks about once a second, and each refusal of the same (client, license, reason) that
comes within `DENIAL_WAIT_GAP` seconds of the previous one adds to that row's
`attempts` and moves its `last_at` instead of adding a row; a grant to the client ends
the wait. (A restart starts a new row for a wait in progress.) `usage_window` reads the
rows of a time window -- plus the grants still open at its start -- for the admin API
(`UsageRequest`, `lm report`); it reads on a connection of its own, so a report never
stalls the daemon's writes. `prune_usage` deletes rows older than the RLF's
`retention_days` in bounded chunks (the daemon calls it at start-up and every
`PRUNE_EVERY` seconds). Ids only grow: pruning deletes the oldest rows, never the newest.

A data directory is bound to one (pool, server id) when it is first used. Opening it for
another pool or server, opening a file that is not an lm store (or is damaged), or opening
it while another daemon holds it raises `StoreError` -- the daemon prints that one line and
exits 2. The store never resets or rewrites a directory it does not recognise.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lm_core.engine import limits
from lm_core.errors import InputError
from lm_core.runtime import audit_store
from lm_core.runtime.audit import Head

log = logging.getLogger("lm.store")

SCHEMA_VERSION = 3
DB_NAME = "lm.sqlite3"
LOCK_NAME = "lm.lock"
CHECKPOINT_EVERY = 256  # commits between WAL checkpoints (a few MiB of WAL at most)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rlf (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, text TEXT NOT NULL);
CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL);
CREATE TABLE keys (
    client_id TEXT NOT NULL, license TEXT NOT NULL, entry TEXT NOT NULL,
    PRIMARY KEY (client_id, license)
) WITHOUT ROWID;
CREATE TABLE usage (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL,
    client_id TEXT NOT NULL, license TEXT NOT NULL, count INTEGER NOT NULL, reason TEXT NOT NULL,
    user TEXT NOT NULL DEFAULT '', host TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL DEFAULT 0,
    program TEXT NOT NULL DEFAULT '', version TEXT NOT NULL DEFAULT '',
    display TEXT NOT NULL DEFAULT '', known INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 1, last_at REAL
);
CREATE INDEX usage_at ON usage (at);
CREATE TABLE schema_history (
    version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL, lm_version TEXT NOT NULL,
    backup TEXT NOT NULL
);
"""
_TABLES = {"meta", "rlf", "state", "keys", "usage"}  # present in every schema version
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # built once, not per row


class StoreError(InputError):
    """The data directory cannot be used (foreign, damaged, locked): exit 2, one line."""


DENIAL_WAIT_GAP = 60.0  # seconds: a refusal this soon after the last one is the same wait
WAITS_MAX = 10_000  # open waits remembered (older ones are forgotten first)
PRUNE_CHUNK = 5_000  # rows deleted per prune step (a few ms: the daemon's loop runs it)
PRUNE_EVERY = 3_600.0  # seconds between the daemon's prune runs
_IDENTITY_COLS = ("user", "host", "pid", "program", "version", "display")
_USAGE_COLS = (
    "id, at, kind, client_id, license, count, reason, "
    "user, host, pid, program, version, display, known, attempts, last_at"
)
# the usage kinds that open or close a seat interval (a denial does neither)
_SEAT_KINDS = ("grant", "release", "expire", "reclaim", "moved")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One line of the usage log."""

    id: int
    at: float  # wall-clock seconds since the epoch (UTC)
    kind: str
    client_id: str
    license: str
    count: int
    reason: str
    identity: dict[str, Any] | None = None  # `ClientIdentity.as_json()`; None: not known
    attempts: int = 1  # a denial: refusals in this wait
    last_at: float | None = None  # a denial: the last refusal of this wait


def _usage_row(r: tuple[Any, ...]) -> UsageRow:
    ident = dict(zip(_IDENTITY_COLS, r[7:13], strict=True)) if r[13] else None
    return UsageRow(
        id=int(r[0]), at=float(r[1]), kind=str(r[2]), client_id=str(r[3]), license=str(r[4]),
        count=int(r[5]), reason=str(r[6]), identity=ident, attempts=int(r[14]),
        last_at=None if r[15] is None else float(r[15]),
    )  # fmt: skip


@dataclass(slots=True)
class _Wait:
    """A denial row still counting retries."""

    row_id: int
    last: float


@dataclass(slots=True)
class Batch:
    """Writes gathered from the engine's effects, committed together in one transaction."""

    state: dict[str, Any] | None = None
    rlf: tuple[int, str] | None = None  # (sequence, text)
    keys: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    # (kind, client_id, license, count, reason, identity as_json or None, seconds ago)
    usage: list[tuple[str, str, str, int, str, dict[str, Any] | None, float]] = field(
        default_factory=list
    )
    audit: list[dict[str, Any]] = field(default_factory=list)  # audit rows (audit_store)

    def set_state(self, state: dict[str, Any]) -> None:
        self.state = state

    def set_rlf(self, seq: int, text: str) -> None:
        _check_int(seq, 0, limits.SEQUENCE_MAX, "RLF sequence")
        self.rlf = (seq, text)

    def put_key(self, client_id: str, license: str, entry: dict[str, Any] | None) -> None:
        # A later write for the same key replaces an earlier one in the same batch.
        self.keys[(client_id, license)] = entry

    def log_usage(
        self,
        kind: str,
        client_id: str,
        license: str,
        count: int,
        reason: str,
        identity: dict[str, Any] | None = None,
        ago: float = 0.0,
    ) -> None:
        """One usage row; `ago` dates it back from the commit time (an expiry)."""
        _check_int(count, -limits.HARD_LIMIT_MAX, limits.HARD_LIMIT_MAX, "usage count")
        if not 0.0 <= ago <= limits.SECONDS_MAX:
            raise ValueError(f"usage ago {ago!r} outside 0..{limits.SECONDS_MAX}")
        self.usage.append((kind, client_id, license, count, reason, identity, ago))

    @property
    def synchronous(self) -> bool:
        """True if this batch must be fsynced before `commit` returns (an admin-side
        change: state or RLF); grant-path writes alone need not be (see the module doc)."""
        return self.state is not None or self.rlf is not None or bool(self.audit)

    def __bool__(self) -> bool:
        return (
            self.state is not None
            or self.rlf is not None
            or bool(self.keys or self.usage or self.audit)
        )


def _check_int(value: int, lo: int, hi: int, what: str) -> None:
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"{what} {value!r} outside {lo}..{hi}: refused before the store")


@dataclass(frozen=True, slots=True)
class Loaded:
    """What the store hands back at start-up."""

    state: dict[str, Any] | None
    keys: list[dict[str, Any]]
    rlf: tuple[int, str] | None


class Store:
    """The SQLite store of one pool member. Not thread-safe: one caller at a time
    (the daemon serialises its calls; `check_same_thread=False` lets it use a worker)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lock: IO[str]) -> None:
        self._conn = conn
        self.path = path
        self._lock = lock
        self.pool = ""
        self.server_id = ""
        self._sync = "FULL"  # the connection's current `PRAGMA synchronous`
        self._since_checkpoint = 0
        self._ckpt_conn: sqlite3.Connection | None = None  # see checkpoint()
        self.migrated: list[int] = []  # schema versions migrated to at open (oldest first)
        self._waits: dict[tuple[str, str], dict[str, _Wait]] = {}  # open denial waits
        self._read_conn: sqlite3.Connection | None = None  # see usage_window()
        self._read_lock = threading.Lock()
        self.migration_backup: Path | None = None  # the copy taken before migrating

    # ------------------------------------------------------------ open / close

    @classmethod
    def open(cls, data_dir: Path, *, pool: str, server_id: str) -> Store:
        """Open (or create) the store in `data_dir` for `pool` / `server_id`."""
        where = str(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data dir: {exc.strerror}", file=where) from None
        if not data_dir.is_dir():
            raise StoreError("data dir is not a directory", file=where)
        lock = _take_lock(data_dir / LOCK_NAME)
        path = data_dir / DB_NAME
        try:
            store = cls._open_locked(path, lock, pool=pool, server_id=server_id)
        except BaseException:
            lock.close()
            raise
        return store

    @classmethod
    def _open_locked(cls, path: Path, lock: IO[str], *, pool: str, server_id: str) -> Store:
        where = str(path)
        existed = path.exists() and path.stat().st_size > 0
        if existed:
            _check_header(path)
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0.5)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store: {exc}", file=where) from None
        store = cls(conn, path, lock)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # see checkpoint()
            if existed and store._has_tables():
                store._check_existing(pool=pool, server_id=server_id)
            else:
                store._create(pool=pool, server_id=server_id)
            audit_store.ensure_table(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(
                f"damaged store ({exc}); move it away to start afresh", file=where
            ) from None
        except BaseException:
            conn.close()
            raise
        store.pool = pool
        store.server_id = server_id
        return store

    def _create(self, *, pool: str, server_id: str) -> None:
        with self._tx():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            self._conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("pool", pool),
                    ("server_id", server_id),
                    ("created_at", _utc_now()),
                ],
            )
            self._conn.execute(
                "INSERT INTO schema_history VALUES (?, ?, ?, ?)",
                (SCHEMA_VERSION, _utc_now(), _lm_version(), "created"),
            )

    def _has_tables(self) -> bool:
        # An SQLite file without tables is what a crash during creation leaves behind.
        row = self._conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return bool(row[0])

    def _check_existing(self, *, pool: str, server_id: str) -> None:
        where = str(self.path)
        row = self._conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise StoreError(
                f"damaged store (integrity check: {row[0] if row else '?'}); "
                "move it away to start afresh",
                file=where,
            )
        tables = {
            r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables >= _TABLES:
            raise StoreError(
                "not an lm-daemon store (missing tables: "
                + ", ".join(sorted(_TABLES - tables))
                + ")",
                file=where,
            )
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        version = _schema_version(meta.get("schema_version"), where)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store schema version {version} was written by a newer lm-daemon; this one "
                f"reads versions up to {SCHEMA_VERSION} (run the newer lm-daemon, or restore "
                "the backup taken before the upgrade: lm-daemon restore)",
                file=where,
            )
        if meta.get("pool") != pool:
            raise StoreError(
                f"data dir belongs to pool {meta.get('pool')!r}, not {pool!r}", file=where
            )
        if meta.get("server_id") != server_id:
            raise StoreError(
                f"data dir belongs to server {meta.get('server_id')!r}, not {server_id!r}",
                file=where,
            )
        if version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        """Copy the file aside (online backup), then apply each forward step in its own
        transaction, recording it in `schema_history`."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        copy = self.path.with_name(f"{DB_NAME}.schema{version}-{stamp}.bak")
        _backup_conn(self._conn, copy, where=str(self.path))
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx():
                MIGRATIONS[target](self._conn)
                self._conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(target),)
                )
                self._conn.execute(
                    "INSERT OR REPLACE INTO schema_history VALUES (?, ?, ?, ?)",
                    (target, _utc_now(), _lm_version(), str(copy)),
                )
            self.migrated.append(target)
        log.info(
            "migrated store %s from schema version %d to %d (copy before: %s)",
            self.path, version, SCHEMA_VERSION, copy,
        )  # fmt: skip
        self.migration_backup = copy

    def close(self) -> None:
        """Close the database (a clean checkpoint) and release the directory lock."""
        for extra in (self._ckpt_conn, self._read_conn):
            if extra is not None:
                with contextlib.suppress(sqlite3.Error):
                    extra.close()
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        with contextlib.suppress(OSError):
            self._lock.close()

    # ------------------------------------------------------------ read

    def load(self) -> Loaded:
        """Everything the engine needs at start-up."""
        where = str(self.path)
        try:
            row = self._conn.execute("SELECT json FROM state WHERE id = 1").fetchone()
            state = json.loads(row[0]) if row else None
            keys = [
                json.loads(r[0])
                for r in self._conn.execute("SELECT entry FROM keys ORDER BY client_id, license")
            ]
            rrow = self._conn.execute("SELECT seq, text FROM rlf WHERE id = 1").fetchone()
        except (sqlite3.DatabaseError, json.JSONDecodeError) as exc:
            raise StoreError(
                f"damaged store ({exc}); move it away to start afresh", file=where
            ) from None
        rlf = (int(rrow[0]), str(rrow[1])) if rrow else None
        return Loaded(state=state, keys=keys, rlf=rlf)

    def usage(self, *, since_id: int = 0, limit: int = 10_000) -> list[UsageRow]:
        """Usage log rows with id > since_id, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_USAGE_COLS} FROM usage WHERE id > ? ORDER BY id LIMIT ?",
            (since_id, limit),
        ).fetchall()
        return [_usage_row(r) for r in rows]

    def usage_window(
        self, since: float, until: float, *, after_id: int = 0, limit: int = 1000,
        license: str = "",
    ) -> tuple[list[UsageRow], bool]:  # fmt: skip
        """The rows of `[since, until)` (a denial's wait overlapping it counts) plus the
        grants still open at `since` (the last seat event of their client and license
        before `since` is that grant), with id > `after_id`, oldest first, at most
        `limit`; and whether more follow. Safe to call from any thread while the daemon
        writes: it reads on a read-only connection of its own (WAL: a consistent
        snapshot per call)."""
        lic_sql = " AND license = :lic" if license else ""
        sql = (
            f"SELECT {_USAGE_COLS} FROM usage WHERE id > :after AND at < :until{lic_sql} "
            "AND (COALESCE(last_at, at) >= :since OR id IN ("
            "  SELECT o.id FROM usage o WHERE o.kind = 'grant' AND o.id IN ("
            "    SELECT MAX(id) FROM usage WHERE at < :since AND kind IN "
            f"    ({', '.join(repr(k) for k in _SEAT_KINDS)}){lic_sql} "
            "    GROUP BY client_id, license))) "
            "ORDER BY id LIMIT :limit"
        )
        args = {"after": after_id, "until": until, "since": since, "lic": license,
                "limit": limit + 1}  # fmt: skip
        with self._read_lock:
            if self._read_conn is None:
                self._read_conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=5.0
                )
                self._read_conn.execute("PRAGMA query_only=1")
            rows = self._read_conn.execute(sql, args).fetchall()
        return [_usage_row(r) for r in rows[:limit]], len(rows) > limit

    def prune_usage(self, before: float, *, chunk: int = PRUNE_CHUNK) -> int:
        """Delete up to `chunk` usage rows that ended before `before` (wall clock),
        oldest first, in one transaction; returns how many. Call again while it returns
        `chunk`."""
        with self._tx():
            cur = self._conn.execute(
                "DELETE FROM usage WHERE id IN (SELECT id FROM usage "
                "WHERE COALESCE(last_at, at) < ? ORDER BY id LIMIT ?)",
                (before, chunk),
            )
        return max(0, cur.rowcount)

    def prune_audit(self, before: str, *, chunk: int = PRUNE_CHUNK) -> int:
        """Delete up to `chunk` audit rows stamped before `before` (ISO UTC) in one
        transaction, keeping the chain verifiable (see `audit_store.prune`)."""
        with self._tx():
            return audit_store.prune(self._conn, before, chunk)

    def audit_anchor(self) -> dict[str, Any] | None:
        """Where the audit chain starts after pruning (None: at its genesis)."""
        return audit_store.anchor(self._conn)

    def audit_rows(self, *, since_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Audit rows with seq > since_seq, oldest first (see `audit_store`)."""
        return audit_store.read(self._conn, since_seq=since_seq, limit=limit)

    def audit_tail(self, n: int) -> tuple[Head | None, list[dict[str, Any]]]:
        """The audit head and the newest `n` rows (the daemon's start-up)."""
        return audit_store.head(self._conn), audit_store.last_rows(self._conn, n)

    def key_count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0])

    # ------------------------------------------------------------ write

    def commit(self, batch: Batch) -> None:
        """Write `batch` in one transaction. When this returns it survives a crash of the
        process; with a state or RLF change it is also fsynced (survives a power loss)."""
        if not batch:
            return
        self._set_sync("FULL" if batch.synchronous else "NORMAL")
        self._since_checkpoint += 1
        at = time.time()
        with self._tx():
            c = self._conn
            if batch.rlf is not None:
                c.execute(
                    "INSERT INTO rlf (id, seq, text) VALUES (1, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, text = excluded.text",
                    batch.rlf,
                )
            if batch.state is not None:
                c.execute(
                    "INSERT INTO state (id, json) VALUES (1, ?) "
                    "ON CONFLICT(id) DO UPDATE SET json = excluded.json",
                    (_JSON.encode(batch.state),),
                )
            upserts = [
                (cid, lic, _JSON.encode(e)) for (cid, lic), e in batch.keys.items() if e is not None
            ]
            deletes = [(cid, lic) for (cid, lic), e in batch.keys.items() if e is None]
            if deletes:
                c.executemany("DELETE FROM keys WHERE client_id = ? AND license = ?", deletes)
            if upserts:
                c.executemany(
                    "INSERT INTO keys (client_id, license, entry) VALUES (?, ?, ?) "
                    "ON CONFLICT(client_id, license) DO UPDATE SET entry = excluded.entry",
                    upserts,
                )
            if batch.usage:
                self._write_usage(batch.usage, at)
            if batch.audit:
                audit_store.insert(c, batch.audit)

    def _write_usage(
        self, rows: list[tuple[str, str, str, int, str, dict[str, Any] | None, float]], at: float
    ) -> None:
        """Insert the batch's usage rows (inside the commit's transaction); a denial that
        continues an open wait updates that wait's row instead (module doc)."""
        c = self._conn
        plain: list[tuple[Any, ...]] = []
        for kind, client_id, lic, count, reason, identity, ago in rows:
            values = (at - ago, kind, client_id, lic, count, reason, *_identity_values(identity))
            if kind == "grant":
                self._waits.pop((client_id, lic), None)
            if kind != "deny":
                plain.append(values)
                continue
            self._insert_usage(plain)  # keep the batch's order
            waits = self._waits.setdefault((client_id, lic), {})
            wait = waits.get(reason)
            if wait is not None and at - wait.last <= DENIAL_WAIT_GAP:
                c.execute(
                    "UPDATE usage SET attempts = attempts + 1, last_at = ? WHERE id = ?",
                    (at, wait.row_id),
                )
                wait.last = at
                continue
            cur = c.execute(
                "INSERT INTO usage (at, kind, client_id, license, count, reason, user, host, "
                "pid, program, version, display, known, last_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, at),
            )
            waits[reason] = _Wait(int(cur.lastrowid or 0), at)
            if len(self._waits) > WAITS_MAX:
                self._forget_waits(at)
        self._insert_usage(plain)

    def _insert_usage(self, plain: list[tuple[Any, ...]]) -> None:
        if plain:
            self._conn.executemany(
                "INSERT INTO usage (at, kind, client_id, license, count, reason, user, host, "
                "pid, program, version, display, known) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                plain,
            )
            plain.clear()

    def _forget_waits(self, now: float) -> None:
        """Drop the waits that ended (no refusal within the gap); if that is not enough,
        the oldest half."""
        for key in list(self._waits):
            left = {r: w for r, w in self._waits[key].items() if now - w.last <= DENIAL_WAIT_GAP}
            if left:
                self._waits[key] = left
            else:
                del self._waits[key]
        if len(self._waits) > WAITS_MAX:
            by_age = sorted(self._waits, key=lambda k: max(w.last for w in self._waits[k].values()))
            for key in by_age[: len(by_age) // 2]:
                del self._waits[key]

    @property
    def checkpoint_due(self) -> bool:
        """True when enough commits went into the WAL since the last `checkpoint()`."""
        return self._since_checkpoint >= CHECKPOINT_EVERY

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (fsyncs both: this also makes every NORMAL
        commit so far power-loss durable). Blocking, on a connection of its own: the
        daemon runs it in a worker thread while it goes on committing (a PASSIVE
        checkpoint never blocks a writer). One checkpoint at a time."""
        self._since_checkpoint = 0
        if self._ckpt_conn is None:
            self._ckpt_conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0.5
            )
        self._ckpt_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _set_sync(self, level: str) -> None:
        # A PRAGMA, so outside any transaction; only when the level changes.
        if level != self._sync:
            self._conn.execute(f"PRAGMA synchronous={level}")
            self._sync = level

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")


# ------------------------------------------------------------ schema migrations


def _to_v2(conn: sqlite3.Connection) -> None:
    """Version 2: a `schema_history` table; `keys` as a WITHOUT ROWID table (stores made
    before that change still had a rowid table: rebuild it, rows unchanged)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_history (version INTEGER PRIMARY KEY, "
        "applied_at TEXT NOT NULL, lm_version TEXT NOT NULL, backup TEXT NOT NULL)"
    )
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type='table' AND name='keys'"
    ).fetchone()
    if row is not None and "WITHOUT ROWID" not in str(row[0]).upper():
        conn.execute(
            "CREATE TABLE keys_v2 (client_id TEXT NOT NULL, license TEXT NOT NULL, "
            "entry TEXT NOT NULL, PRIMARY KEY (client_id, license)) WITHOUT ROWID"
        )
        conn.execute(
            "INSERT INTO keys_v2 (client_id, license, entry) "
            "SELECT client_id, license, entry FROM keys"
        )
        conn.execute("DROP TABLE keys")
        conn.execute("ALTER TABLE keys_v2 RENAME TO keys")


def _to_v3(conn: sqlite3.Connection) -> None:
    """Version 3 (usage log): the client's identity, a denial's attempts and last time
    on each row, and an index on the time (report windows, pruning). Old rows keep
    `known` 0 (no identity) and one attempt. Columns already there (a store created at
    version 3 and marked older) are kept."""
    have = {str(r[1]) for r in conn.execute("PRAGMA table_info(usage)")}
    for col in (
        "user TEXT NOT NULL DEFAULT ''", "host TEXT NOT NULL DEFAULT ''",
        "pid INTEGER NOT NULL DEFAULT 0", "program TEXT NOT NULL DEFAULT ''",
        "version TEXT NOT NULL DEFAULT ''", "display TEXT NOT NULL DEFAULT ''",
        "known INTEGER NOT NULL DEFAULT 0", "attempts INTEGER NOT NULL DEFAULT 1",
        "last_at REAL",
    ):  # fmt: skip
        if col.split()[0] not in have:
            conn.execute(f"ALTER TABLE usage ADD COLUMN {col}")
    conn.execute("CREATE INDEX IF NOT EXISTS usage_at ON usage (at)")


def _identity_values(identity: dict[str, Any] | None) -> tuple[Any, ...]:
    """The identity columns of a usage row (and `known`)."""
    if identity is None:
        return ("", "", 0, "", "", "", 0)
    return (
        str(identity.get("user", "")), str(identity.get("host", "")),
        int(identity.get("pid", 0)), str(identity.get("program", "")),
        str(identity.get("version", "")), str(identity.get("display", "")), 1,
    )  # fmt: skip


# version -> the step that turns a store of version - 1 into it (runs inside a transaction)
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _to_v2, 3: _to_v3}


def _schema_version(value: str | None, where: str) -> int:
    try:
        version = int(value or "")
    except ValueError:
        raise StoreError(f"store schema version {value!r} is not a number", file=where) from None
    if version < 1:
        raise StoreError(f"store schema version {version} is not a version", file=where)
    return version


def _lm_version() -> str:
    from lm_core.version import version

    return version()


# ------------------------------------------------------------ backup / restore


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """Who a store file belongs to (from its `meta` table)."""

    path: Path
    pool: str
    server_id: str
    schema_version: int
    keys: int


def _backup_conn(src: sqlite3.Connection, out: Path, *, where: str) -> None:
    """Copy the database behind `src` into a new self-contained file `out` (online backup
    API: consistent even while another connection writes), fsynced, then renamed."""
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
        finally:
            dst.close()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
        _fsync_dir(out.parent)
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"backup failed: {exc}", file=where) from None
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write backup: {exc.strerror or exc}", file=str(out)) from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _inspect(conn: sqlite3.Connection, path: Path) -> StoreInfo:
    where = str(path)
    try:
        row = conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise StoreError(f"damaged store (integrity check: {row[0] if row else '?'})",
                             file=where)  # fmt: skip
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables >= _TABLES:
            raise StoreError("not an lm-daemon store (missing tables: "
                             + ", ".join(sorted(_TABLES - tables)) + ")", file=where)  # fmt: skip
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        keys = int(conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"damaged store ({exc})", file=where) from None
    return StoreInfo(
        path=path,
        pool=str(meta.get("pool", "")),
        server_id=str(meta.get("server_id", "")),
        schema_version=_schema_version(meta.get("schema_version"), where),
        keys=keys,
    )


def _connect_existing(path: Path, what: str) -> sqlite3.Connection:
    if not path.is_file():
        raise StoreError(f"{what} not found", file=str(path))
    _check_header(path)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        conn.execute("PRAGMA query_only=1")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {what}: {exc}", file=str(path)) from None
    return conn


def backup(data_dir: Path, out: Path, *, force: bool = False) -> StoreInfo:
    """Copy the store of `data_dir` into the single file `out` (the daemon may be
    running: the online backup API reads a consistent snapshot). Raises `StoreError`."""
    if out.exists() and not force:
        raise StoreError("already exists (use --force to overwrite)", file=str(out))
    if not out.parent.is_dir():
        raise StoreError("no such directory", file=str(out.parent))
    path = data_dir / DB_NAME
    conn = _connect_existing(path, "store")
    try:
        info = _inspect(conn, path)
        _backup_conn(conn, out, where=str(path))
    finally:
        conn.close()
    return StoreInfo(out, info.pool, info.server_id, info.schema_version, info.keys)


def restore(data_dir: Path, src: Path, *, force: bool = False) -> tuple[StoreInfo, Path | None]:
    """Put the backup `src` in place as the store of `data_dir` (its daemon must be
    stopped). The store it replaces is first copied to `lm.sqlite3.before-restore-<time>`
    (returned). A backup of another pool or server, or a data dir holding another pool's
    store, is refused unless `force`. An older schema is migrated at the next start."""
    source = _connect_existing(src, "backup file")
    try:
        info = _inspect(source, src)
        if info.schema_version > SCHEMA_VERSION:
            raise StoreError(
                f"backup has schema version {info.schema_version}; this lm-daemon reads "
                f"versions up to {SCHEMA_VERSION}",
                file=str(src),
            )
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create data dir: {exc.strerror}",
                             file=str(data_dir)) from None  # fmt: skip
        lock = _take_lock(data_dir / LOCK_NAME)
        try:
            return info, _restore_locked(data_dir, source, info, force=force)
        finally:
            lock.close()
    finally:
        source.close()


def _restore_locked(
    data_dir: Path, source: sqlite3.Connection, info: StoreInfo, *, force: bool
) -> Path | None:
    path = data_dir / DB_NAME
    kept: Path | None = None
    if path.exists() and path.stat().st_size > 0:
        current = _connect_existing(path, "store")
        try:
            now = _inspect(current, path)
            if (now.pool, now.server_id) != (info.pool, info.server_id) and not force:
                raise StoreError(
                    f"data dir holds pool {now.pool!r} server {now.server_id!r}, the backup "
                    f"is pool {info.pool!r} server {info.server_id!r} (use --force to "
                    "replace it)",
                    file=str(data_dir),
                )
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            kept = path.with_name(f"{DB_NAME}.before-restore-{stamp}")
            _backup_conn(current, kept, where=str(path))
        finally:
            current.close()
    try:
        dst = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        try:
            source.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
            dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise StoreError(f"restore failed: {exc}", file=str(path)) from None
    return kept


def _take_lock(path: Path) -> IO[str]:
    try:
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 -- held for the store's lifetime
    except OSError as exc:
        raise StoreError(f"cannot open lock file: {exc.strerror}", file=str(path)) from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise StoreError(
            f"data dir is in use by another lm-daemon (pid {holder})", file=str(path.parent)
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def _check_header(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise StoreError(f"cannot read store: {exc.strerror}", file=str(path)) from None
    if head != b"SQLite format 3\x00":
        raise StoreError("not an lm-daemon store (not an SQLite file)", file=str(path))


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
