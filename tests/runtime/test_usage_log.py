"""Issue 10, items 1, 3 and 5: the usage log in the store -- identity columns, one row per
wait for a waiting client's denials, time windows with the grants still open at their
start, pruning by retention, and the schema-3 migration of an older log."""

from __future__ import annotations

import sqlite3
import time
import types
from pathlib import Path

import pytest

from lm_core.runtime import store as store_mod
from lm_core.runtime.store import DB_NAME, DENIAL_WAIT_GAP, Batch, Store
from lm_core.runtime.usage import DAY, prune_usage

from .test_store import write_v1_store

ALICE = {"user": "alice", "host": "ws1", "pid": 7, "program": "cad", "version": "2",
         "display": ":0"}  # fmt: skip


class Clock:
    """The store's wall clock, moved by the test."""

    def __init__(self, t: float) -> None:
        self.t = t

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = types.SimpleNamespace(time=lambda: self.t, strftime=time.strftime,
                                     gmtime=time.gmtime)  # fmt: skip
        monkeypatch.setattr(store_mod, "time", fake)


def _open(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "data", pool="eng", server_id="A")


def _log(store: Store, *rows: tuple[str, str, str]) -> None:
    batch = Batch()
    for kind, client, reason in rows:
        batch.log_usage(kind, client, "L 1", 1, reason, ALICE if client == "alice" else None)
    store.commit(batch)


def test_identity_is_stored_with_each_row(tmp_path: Path) -> None:
    store = _open(tmp_path)
    _log(store, ("grant", "alice", ""), ("grant", "anon", ""))
    rows = store.usage()
    store.close()
    assert rows[0].identity == ALICE
    assert rows[1].identity is None


def test_a_waiting_clients_denials_are_one_row_per_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(1_000_000.0)
    clock.install(monkeypatch)
    store = _open(tmp_path)
    for _ in range(600):  # ten minutes of one retry a second
        _log(store, ("deny", "alice", "no_seats"))
        clock.t += 1.0
    _log(store, ("deny", "alice", "no_majority"))  # another reason: its own row
    _log(store, ("deny", "bob", "no_seats"))  # another client: its own row
    rows = store.usage()
    assert [(r.client_id, r.reason, r.attempts) for r in rows] == [
        ("alice", "no_seats", 600),
        ("alice", "no_majority", 1),
        ("bob", "no_seats", 1),
    ]
    assert rows[0].at == 1_000_000.0
    assert rows[0].last_at == 1_000_599.0
    # a grant ends the wait: the next refusal starts a new row
    _log(store, ("grant", "alice", ""), ("deny", "alice", "no_seats"))
    # so does a pause longer than the gap
    clock.t += DENIAL_WAIT_GAP + 1
    _log(store, ("deny", "alice", "no_seats"))
    rows = store.usage()
    store.close()
    assert [(r.kind, r.reason, r.attempts) for r in rows[3:]] == [
        ("grant", "", 1),
        ("deny", "no_seats", 1),
        ("deny", "no_seats", 1),
    ]


def test_an_expiry_is_dated_back_by_its_ago(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Clock(5_000.0).install(monkeypatch)
    store = _open(tmp_path)
    batch = Batch()
    batch.log_usage("expire", "alice", "L 1", 1, "", ALICE, 2.5)
    store.commit(batch)
    (row,) = store.usage()
    store.close()
    assert row.at == 4_997.5
    with pytest.raises(ValueError, match="ago"):
        Batch().log_usage("expire", "a", "L 1", 1, "", None, -1.0)


def test_a_window_holds_its_rows_and_the_grants_open_at_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(100.0)
    clock.install(monkeypatch)
    store = _open(tmp_path)
    _log(store, ("grant", "early-closed", ""))  # t=100, released at 110: outside
    _log(store, ("grant", "early-open", ""))  # t=100, released at 250: open at 200
    _log(store, ("grant", "alice", ""))  # t=100, never released: open at 200
    clock.t = 110.0
    _log(store, ("release", "early-closed", ""))
    clock.t = 150.0
    _log(store, ("deny", "waiter", "no_seats"))  # a wait from 150 ...
    clock.t = 210.0
    _log(store, ("deny", "waiter", "no_seats"))  # ... to 210: overlaps the window
    clock.t = 250.0
    _log(store, ("release", "early-open", ""))
    clock.t = 400.0
    _log(store, ("grant", "late", ""))  # after the window
    rows, more = store.usage_window(200.0, 300.0)
    assert not more
    assert [(r.kind, r.client_id) for r in rows] == [
        ("grant", "early-open"), ("grant", "alice"), ("deny", "waiter"),
        ("release", "early-open"),
    ]  # fmt: skip
    # paging: one row at a time, in id order, `more` until the last
    seen = []
    after = 0
    while True:
        page, more = store.usage_window(200.0, 300.0, after_id=after, limit=1)
        seen += page
        if not more:
            break
        after = page[-1].id
    assert [r.id for r in seen] == [r.id for r in rows]
    only, _ = store.usage_window(200.0, 300.0, license="Other 1")
    assert only == []
    store.close()


def test_rows_older_than_the_retention_are_pruned_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = 1_800_000_000.0
    clock = Clock(now - 500 * DAY)
    clock.install(monkeypatch)
    store = _open(tmp_path)
    for _ in range(25):
        _log(store, ("grant", "old", ""), ("release", "old", ""))
    clock.t = now - 10 * DAY
    _log(store, ("grant", "recent", ""))
    assert store.prune_usage(now - 400 * DAY, chunk=20) == 20  # one bounded chunk
    assert prune_usage(store, 400, now=now) == store_mod.PRUNE_EVERY  # the rest, then idle
    rows = store.usage()
    assert [r.client_id for r in rows] == ["recent"]
    assert prune_usage(store, 5, now=now) == store_mod.PRUNE_EVERY  # a shorter retention
    assert store.usage() == []
    store.close()


def test_an_older_usage_log_migrates_to_schema_3(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_v1_store(data)  # one usage row, no identity columns
    store = _open(tmp_path)
    assert 3 in store.migrated
    (row,) = store.usage()
    assert row.identity is None
    assert row.attempts == 1
    _log(store, ("grant", "alice", ""))
    assert store.usage()[-1].identity == ALICE
    store.close()
    conn = sqlite3.connect(data / DB_NAME)
    names = {r[1] for r in conn.execute("SELECT * FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert "usage_at" in names
