"""The SQLite store on real files: round trips, group commit, foreign/damaged/locked dirs."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lm_core.errors import InputError
from lm_core.runtime.store import DB_NAME, SCHEMA_VERSION, Batch, Store, StoreError


def _open(tmp_path: Path, pool: str = "eng", server_id: str = "A") -> Store:
    return Store.open(tmp_path / "data", pool=pool, server_id=server_id)


def test_fresh_store_loads_empty(tmp_path: Path) -> None:
    store = _open(tmp_path)
    loaded = store.load()
    store.close()
    assert loaded.state is None
    assert loaded.keys == []
    assert loaded.rlf is None


def test_store_is_wal_and_full_sync(tmp_path: Path) -> None:
    _open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "data" / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_batch_round_trips_after_reopen(tmp_path: Path) -> None:
    store = _open(tmp_path)
    batch = Batch()
    batch.set_state({"term": 3, "vote": "B", "dist": {"Application 1.0": {"A": 40}}})
    batch.set_rlf(2, "pool eng\nsequence 2\n")
    batch.put_key("c1", "Application 1.0", {"client_id": "c1", "count": 1})
    batch.put_key("c2", "Application 1.0", {"client_id": "c2", "count": 2})
    batch.log_usage("grant", "c1", "Application 1.0", 1, "")
    batch.log_usage("deny", "c3", "Application 1.0", 1, "no_seats")
    store.commit(batch)
    store.close()

    store = _open(tmp_path)
    loaded = store.load()
    usage = store.usage()
    store.close()
    assert loaded.state == {"term": 3, "vote": "B", "dist": {"Application 1.0": {"A": 40}}}
    assert loaded.rlf == (2, "pool eng\nsequence 2\n")
    assert loaded.keys == [{"client_id": "c1", "count": 1}, {"client_id": "c2", "count": 2}]
    assert [(u.kind, u.client_id, u.count, u.reason) for u in usage] == [
        ("grant", "c1", 1, ""),
        ("deny", "c3", 1, "no_seats"),
    ]


def test_state_replaces_and_key_none_deletes(tmp_path: Path) -> None:
    store = _open(tmp_path)
    first = Batch()
    first.set_state({"term": 1})
    first.put_key("c1", "L 1", {"n": 1})
    first.put_key("c2", "L 1", {"n": 2})
    store.commit(first)
    second = Batch()
    second.set_state({"term": 2})
    second.put_key("c1", "L 1", None)
    second.put_key("c2", "L 1", {"n": 3})
    store.commit(second)
    loaded = store.load()
    assert store.key_count() == 1
    store.close()
    assert loaded.state == {"term": 2}
    assert loaded.keys == [{"n": 3}]


def test_later_write_in_batch_wins(tmp_path: Path) -> None:
    store = _open(tmp_path)
    batch = Batch()
    batch.put_key("c1", "L 1", {"n": 1})
    batch.put_key("c1", "L 1", None)
    batch.put_key("c2", "L 1", None)
    batch.put_key("c2", "L 1", {"n": 2})
    store.commit(batch)
    loaded = store.load()
    store.close()
    assert loaded.keys == [{"n": 2}]


def test_empty_batch_is_false_and_writes_nothing(tmp_path: Path) -> None:
    store = _open(tmp_path)
    assert not Batch()
    store.commit(Batch())
    assert store.usage() == []
    store.close()


def test_usage_is_append_only_and_paged(tmp_path: Path) -> None:
    store = _open(tmp_path)
    for i in range(5):
        batch = Batch()
        batch.log_usage("grant", f"c{i}", "L 1", 1, "")
        store.commit(batch)
    rows = store.usage(since_id=2, limit=2)
    store.close()
    assert [r.client_id for r in rows] == ["c2", "c3"]
    assert rows[0].id < rows[1].id


def test_foreign_pool_refused(tmp_path: Path) -> None:
    _open(tmp_path, pool="eng").close()
    with pytest.raises(StoreError, match="belongs to pool 'eng', not 'ops'"):
        _open(tmp_path, pool="ops")


def test_foreign_server_refused(tmp_path: Path) -> None:
    _open(tmp_path, server_id="A").close()
    with pytest.raises(StoreError, match="belongs to server 'A', not 'B'") as info:
        _open(tmp_path, server_id="B")
    # exit 2 in the CLI: a StoreError is an InputError naming the file
    assert isinstance(info.value, InputError)
    assert str(info.value).startswith(str(tmp_path / "data" / DB_NAME) + ": ")


def test_garbage_file_refused_and_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / DB_NAME).write_bytes(b"this is not a database at all" * 10)
    with pytest.raises(StoreError, match="not an SQLite file"):
        _open(tmp_path)
    assert (data / DB_NAME).read_bytes() == b"this is not a database at all" * 10


def test_other_sqlite_file_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / DB_NAME)
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an lm-daemon store"):
        _open(tmp_path)


def test_damaged_pages_refused(tmp_path: Path) -> None:
    store = _open(tmp_path)
    for i in range(200):
        batch = Batch()
        batch.put_key(f"c{i}", "L 1", {"pad": "x" * 200})
        store.commit(batch)
    store.close()
    path = tmp_path / "data" / DB_NAME
    raw = bytearray(path.read_bytes())
    assert len(raw) > 8192
    # Keep the 100-byte header, smash the rest of page 1 (the schema) and page 2.
    raw[100:8192] = b"\xa5" * (8192 - 100)
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match=r"damaged store|not an lm-daemon store"):
        _open(tmp_path)


def test_second_opener_refused_while_locked(tmp_path: Path) -> None:
    store = _open(tmp_path)
    code = (
        "import sys\nfrom pathlib import Path\n"
        "from lm_core.runtime.store import Store, StoreError\n"
        "try:\n"
        f"    Store.open(Path({str(tmp_path / 'data')!r}), pool='eng', server_id='A')\n"
        "except StoreError as e:\n    print(e); sys.exit(2)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    store.close()
    assert out.returncode == 2
    assert "in use by another lm-daemon" in out.stdout
    # once closed, it opens again
    _open(tmp_path).close()


def test_data_dir_that_is_a_file_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    with pytest.raises(StoreError, match="data dir"):
        _open(tmp_path)


def test_committed_batch_survives_kill(tmp_path: Path) -> None:
    code = (
        "import os\nfrom pathlib import Path\n"
        "from lm_core.runtime.store import Batch, Store\n"
        f"s = Store.open(Path({str(tmp_path / 'data')!r}), pool='eng', server_id='A')\n"
        "b = Batch(); b.set_state({'term': 7}); b.put_key('c1', 'L 1', {'n': 1})\n"
        "s.commit(b)\n"
        "os._exit(0)\n"  # no close, no checkpoint
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    store = _open(tmp_path)
    loaded = store.load()
    store.close()
    assert loaded.state == {"term": 7}
    assert loaded.keys == [{"n": 1}]


def test_grant_only_batch_survives_kill_9(tmp_path: Path) -> None:
    """A PersistKey/LogUsage-only batch is committed without an fsync (synchronous=NORMAL)
    but is in the WAL when commit returns: a SIGKILL of the process loses nothing."""
    code = (
        "import os, signal\nfrom pathlib import Path\n"
        "from lm_core.runtime.store import Batch, Store\n"
        f"s = Store.open(Path({str(tmp_path / 'data')!r}), pool='eng', server_id='A')\n"
        "b = Batch(); b.put_key('c1', 'L 1', {'n': 1}); b.log_usage('grant', 'c1', 'L 1', 1, '')\n"
        "assert not b.synchronous\n"
        "s.commit(b)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False)
    assert proc.returncode == -9
    store = _open(tmp_path)
    loaded = store.load()
    rows = store.usage()
    store.close()
    assert loaded.keys == [{"n": 1}]
    assert [(r.kind, r.client_id) for r in rows] == [("grant", "c1")]


def test_state_batches_fsync_and_grant_batches_do_not(tmp_path: Path) -> None:
    """synchronous=FULL for a batch with state or an RLF, NORMAL for keys/usage only --
    read back from the store's own connection after each commit."""
    store = _open(tmp_path)

    def level() -> int:
        return int(store._conn.execute("PRAGMA synchronous").fetchone()[0])

    grant = Batch()
    grant.put_key("c1", "L 1", {"n": 1})
    grant.log_usage("grant", "c1", "L 1", 1, "")
    state = Batch()
    state.set_state({"term": 2})
    state.put_key("c2", "L 1", {"n": 2})
    rlf = Batch()
    rlf.set_rlf(2, "text")
    assert (grant.synchronous, state.synchronous, rlf.synchronous) == (False, True, True)
    try:
        store.commit(grant)
        assert level() == 1  # NORMAL
        store.commit(state)
        assert level() == 2  # FULL
        store.commit(grant)
        assert level() == 1
        store.commit(rlf)
        assert level() == 2
    finally:
        store.close()


def test_checkpoint_is_due_every_n_commits_and_bounds_the_wal(tmp_path: Path) -> None:
    from lm_core.runtime.store import CHECKPOINT_EVERY

    store = _open(tmp_path)
    db = tmp_path / "data" / DB_NAME
    wal = tmp_path / "data" / (DB_NAME + "-wal")

    def commits(start: int) -> None:
        for i in range(start, start + CHECKPOINT_EVERY):
            assert not store.checkpoint_due
            b = Batch()
            b.put_key(f"c{i}", "L 1", {"n": i, "pad": "x" * 200})
            store.commit(b)
        assert store.checkpoint_due  # SQLite's own auto-checkpoint is off

    try:
        commits(0)
        db_before = db.stat().st_size
        store.checkpoint()
        assert not store.checkpoint_due
        assert db.stat().st_size > db_before  # the pages moved into the database file
        wal_first = wal.stat().st_size
        commits(CHECKPOINT_EVERY)  # the WAL is written again from its start ...
        store.checkpoint()
        # ... so it does not keep growing (appended, it would be about twice the size)
        assert wal.stat().st_size < 1.5 * wal_first
        assert store.key_count() == 2 * CHECKPOINT_EVERY
    finally:
        store.close()


def test_out_of_range_integers_are_refused_before_any_sql(tmp_path: Path) -> None:
    """Issue 9, item 1: the store is never the first to find an overflow. The largest
    sequence the parsers allow round-trips; one above it is a ValueError when the batch is
    gathered, and the store is untouched."""
    from lm_core.engine import limits

    store = _open(tmp_path)
    batch = Batch()
    batch.set_rlf(limits.SEQUENCE_MAX, "top")
    store.commit(batch)
    for bad in (limits.SEQUENCE_MAX + 1, 2**63, -1):
        with pytest.raises(ValueError, match="RLF sequence"):
            Batch().set_rlf(bad, "x")
    with pytest.raises(ValueError, match="usage count"):
        Batch().log_usage("grant", "c1", "Application 1.0", 2**63, "")
    assert store.load().rlf == (limits.SEQUENCE_MAX, "top")
    store.close()


# ------------------------------------------------------------ schema migrations, backup/restore

from lm_core.runtime import store as store_mod  # noqa: E402

# The layout lm-daemon 0.1.0 wrote (schema version 1), with `keys` as the rowid table the
# earliest stores had: what an upgrade finds on a server's disk.
_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rlf (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, text TEXT NOT NULL);
CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL);
CREATE TABLE keys (
    client_id TEXT NOT NULL, license TEXT NOT NULL, entry TEXT NOT NULL,
    PRIMARY KEY (client_id, license)
);
CREATE TABLE usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL,
    client_id TEXT NOT NULL, license TEXT NOT NULL, count INTEGER NOT NULL, reason TEXT NOT NULL
);
"""


def write_v1_store(data_dir: Path, *, pool: str = "eng", server_id: str = "A") -> None:
    """A schema-1 data dir holding a state, an RLF, two keys and a usage row."""
    data_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(data_dir / DB_NAME, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_V1_SCHEMA)
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("schema_version", "1"), ("pool", pool), ("server_id", server_id),
         ("created_at", "2026-01-01T00:00:00Z")],
    )  # fmt: skip
    conn.execute("INSERT INTO rlf VALUES (1, 4, 'pool eng')")
    conn.execute("""INSERT INTO state VALUES (1, '{"term":7}')""")
    conn.execute("""INSERT INTO keys VALUES ('c1', 'L 1', '{"n":1}'), ('c2', 'L 1', '{"n":2}')""")
    conn.execute("INSERT INTO usage (at, kind, client_id, license, count, reason) "
                 "VALUES (1.0, 'grant', 'c1', 'L 1', 1, '')")  # fmt: skip
    conn.close()


def _table_sql(path: Path, name: str) -> str:
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    conn.close()
    return str(row[0]) if row else ""


def test_previous_schema_migrates_at_open_with_a_copy_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_v1_store(data)
    assert "WITHOUT ROWID" not in _table_sql(data / DB_NAME, "keys")
    store = _open(tmp_path)
    loaded = store.load()
    assert store.migrated == [2, 3]
    copy = store.migration_backup
    store.close()
    # Everything the old store held is still there, in the new layout.
    assert loaded.state == {"term": 7}
    assert loaded.rlf == (4, "pool eng")
    assert loaded.keys == [{"n": 1}, {"n": 2}]
    assert "WITHOUT ROWID" in _table_sql(data / DB_NAME, "keys")
    conn = sqlite3.connect(data / DB_NAME)
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    history = conn.execute("SELECT version, backup FROM schema_history").fetchall()
    conn.close()
    assert history == [(2, str(copy)), (3, str(copy))]
    # The copy taken first is the untouched version-1 store.
    assert copy is not None
    assert copy.parent == data
    assert copy.name.startswith(f"{DB_NAME}.schema1-")
    old = sqlite3.connect(copy)
    assert old.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    assert old.execute("SELECT COUNT(*) FROM keys").fetchone() == (2,)
    old.close()
    # Opening again migrates nothing more.
    store = _open(tmp_path)
    assert store.migrated == []
    store.close()


def test_fresh_store_is_current_schema_with_history(tmp_path: Path) -> None:
    _open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "data" / DB_NAME)
    version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    history = conn.execute("SELECT version, backup FROM schema_history").fetchall()
    conn.close()
    assert version == (str(store_mod.SCHEMA_VERSION),)
    assert history == [(store_mod.SCHEMA_VERSION, "created")]


def test_migration_is_not_run_for_a_foreign_data_dir(tmp_path: Path) -> None:
    write_v1_store(tmp_path / "data", pool="other")
    with pytest.raises(StoreError, match="belongs to pool 'other'"):
        _open(tmp_path)
    assert not list((tmp_path / "data").glob("*.bak"))


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    _open(tmp_path).close()
    path = tmp_path / "data" / DB_NAME
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match="version 99 was written by a newer lm-daemon"):
        _open(tmp_path)


def _store_with_data(tmp_path: Path) -> Store:
    store = _open(tmp_path)
    batch = Batch()
    batch.set_state({"term": 5})
    batch.set_rlf(3, "pool eng\nsequence 3\n")
    batch.put_key("c1", "L 1", {"n": 1})
    batch.log_usage("grant", "c1", "L 1", 1, "")
    store.commit(batch)
    return store


def test_backup_while_open_then_restore_round_trip(tmp_path: Path) -> None:
    store = _store_with_data(tmp_path)  # held open, as by a running daemon
    out = tmp_path / "A.backup"
    info = store_mod.backup(tmp_path / "data", out)
    assert (info.pool, info.server_id, info.keys) == ("eng", "A", 1)
    # Changes after the backup are not in it ...
    later = Batch()
    later.put_key("c2", "L 1", {"n": 2})
    later.set_state({"term": 6})
    store.commit(later)
    # ... and restore refuses while the directory is in use.
    with pytest.raises(StoreError, match="in use by another lm-daemon"):
        store_mod.restore(tmp_path / "data", out)
    store.close()
    restored, kept = store_mod.restore(tmp_path / "data", out)
    assert restored.keys == 1
    assert kept is not None
    assert kept.exists()
    store = _open(tmp_path)
    loaded = store.load()
    usage = store.usage()
    store.close()
    assert loaded.state == {"term": 5}
    assert loaded.keys == [{"n": 1}]
    assert loaded.rlf == (3, "pool eng\nsequence 3\n")
    assert [u.kind for u in usage] == ["grant"]
    # The store it replaced is kept whole.
    conn = sqlite3.connect(kept)
    assert conn.execute("SELECT COUNT(*) FROM keys").fetchone() == (2,)
    conn.close()


def test_backup_is_one_file_and_restores_into_an_empty_dir(tmp_path: Path) -> None:
    _store_with_data(tmp_path).close()
    out = tmp_path / "A.backup"
    store_mod.backup(tmp_path / "data", out)
    assert not Path(f"{out}-wal").exists()
    _, kept = store_mod.restore(tmp_path / "fresh", out)
    assert kept is None
    store = Store.open(tmp_path / "fresh", pool="eng", server_id="A")
    assert store.load().state == {"term": 5}
    store.close()


def test_backup_refuses_to_overwrite_and_non_stores(tmp_path: Path) -> None:
    _store_with_data(tmp_path).close()
    out = tmp_path / "A.backup"
    out.write_text("keep me")
    with pytest.raises(StoreError, match="already exists"):
        store_mod.backup(tmp_path / "data", out)
    assert out.read_text() == "keep me"
    with pytest.raises(StoreError, match="not an lm-daemon store"):
        store_mod.restore(tmp_path / "data", out)
    with pytest.raises(StoreError, match="store not found"):
        store_mod.backup(tmp_path / "nowhere", tmp_path / "x.backup")


def test_restore_of_another_servers_backup_needs_force(tmp_path: Path) -> None:
    _store_with_data(tmp_path).close()
    out = tmp_path / "A.backup"
    store_mod.backup(tmp_path / "data", out)
    Store.open(tmp_path / "b", pool="eng", server_id="B").close()
    with pytest.raises(StoreError, match="holds pool 'eng' server 'B'"):
        store_mod.restore(tmp_path / "b", out)
    store_mod.restore(tmp_path / "b", out, force=True)
    with pytest.raises(StoreError, match="belongs to server 'A'"):
        Store.open(tmp_path / "b", pool="eng", server_id="B")


def test_restored_older_backup_migrates_at_next_open(tmp_path: Path) -> None:
    write_v1_store(tmp_path / "old")
    out = tmp_path / "v1.backup"
    info = store_mod.backup(tmp_path / "old", out)
    assert info.schema_version == 1
    store_mod.restore(tmp_path / "data", out)
    store = _open(tmp_path)
    assert store.migrated == [2, 3]
    assert store.load().state == {"term": 7}
    store.close()


def test_lm_daemon_backup_and_restore_commands(tmp_path: Path) -> None:
    _store_with_data(tmp_path).close()
    cmd = [sys.executable, "-c", "from lm_core.runtime.startup import main; main()"]
    out = tmp_path / "A.backup"
    done = subprocess.run([*cmd, "backup", "--data-dir", str(tmp_path / "data"), "--out",
                           str(out)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"pool 'eng', server 'A', schema {SCHEMA_VERSION}, 1 authorizations" in done.stdout
    again = subprocess.run([*cmd, "backup", "--data-dir", str(tmp_path / "data"), "--out",
                            str(out)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert again.returncode == 2
    assert again.stderr.strip().endswith("A.backup: already exists (use --force to overwrite)")
    assert "Traceback" not in again.stderr
    back = subprocess.run([*cmd, "restore", "--data-dir", str(tmp_path / "data"), "--from",
                           str(out)], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert "the store it replaced is kept as" in back.stdout
    version = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0
    assert version.stdout.startswith("lm-daemon ")
