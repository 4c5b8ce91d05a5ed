"""One SQLite file per server: what a pool member must not forget across a crash.

Theory of operation
-------------------
The file `<data-dir>/lm.sqlite3` (WAL) holds

* `meta`   -- schema version, the pool name and server id the directory belongs to;
* `rlf`    -- the current RLF text and its sequence number (one row);
* `state`  -- the engine's small durable state (`PersistState`, JSON, one row, replaced);
* `keys`   -- the key table (`PersistKey`: one row per client id + license; upsert/delete);
* `usage`  -- the append-only usage log (`LogUsage`: grant, release, deny, expire, reclaim).

(Stores created before `keys` became `WITHOUT ROWID` and `usage.id` lost `AUTOINCREMENT`
-- one page write less each per grant; rows are never deleted from `usage`, so ids still
only grow -- read and write exactly the same.)

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

SCHEMA_VERSION = 2
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
    client_id TEXT NOT NULL, license TEXT NOT NULL, count INTEGER NOT NULL, reason TEXT NOT NULL
);
CREATE TABLE schema_history (
    version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL, lm_version TEXT NOT NULL,
    backup TEXT NOT NULL
);
"""
_TABLES = {"meta", "rlf", "state", "keys", "usage"}  # present in every schema version
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # built once, not per row


class StoreError(InputError):
    """The data directory cannot be used (foreign, damaged, locked): exit 2, one line."""


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


@dataclass(slots=True)
class Batch:
    """Writes gathered from the engine's effects, committed together in one transaction."""

    state: dict[str, Any] | None = None
    rlf: tuple[int, str] | None = None  # (sequence, text)
    keys: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    usage: list[tuple[str, str, str, int, str]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)  # audit rows (audit_store)

    def set_state(self, state: dict[str, Any]) -> None:
        self.state = state

    def set_rlf(self, seq: int, text: str) -> None:
        _check_int(seq, 0, limits.SEQUENCE_MAX, "RLF sequence")
        self.rlf = (seq, text)

    def put_key(self, client_id: str, license: str, entry: dict[str, Any] | None) -> None:
        # A later write for the same key replaces an earlier one in the same batch.
        self.keys[(client_id, license)] = entry

    def log_usage(self, kind: str, client_id: str, license: str, count: int, reason: str) -> None:
        _check_int(count, -limits.HARD_LIMIT_MAX, limits.HARD_LIMIT_MAX, "usage count")
        self.usage.append((kind, client_id, license, count, reason))

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
        if self._ckpt_conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._ckpt_conn.close()
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
            "SELECT id, at, kind, client_id, license, count, reason FROM usage "
            "WHERE id > ? ORDER BY id LIMIT ?",
            (since_id, limit),
        ).fetchall()
        return [UsageRow(*r) for r in rows]

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
                c.executemany(
                    "INSERT INTO usage (at, kind, client_id, license, count, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(at, *u) for u in batch.usage],
                )
            if batch.audit:
                audit_store.insert(c, batch.audit)

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


# version -> the step that turns a store of version - 1 into it (runs inside a transaction)
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {2: _to_v2}


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
