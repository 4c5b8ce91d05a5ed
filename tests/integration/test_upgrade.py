"""A rolling upgrade on real daemons: the servers are stopped (SIGTERM) and started again
in turn -- the followers, then (second test) the leader too -- while clients hold seats;
the pool keeps serving, each restarted server migrates its store, and no client loses
its seat (counted from the clients' own event streams: no "lost" event, every client's
latest answer a grant or a renewal, every client still running and in the key tables).

Before the next server stops, `lm status --all-up` waits until the restarted one is past
its restart grace (S4): a server in restart grace grants nothing new, so the clients of
the next server stopped -- the leader's, whose fail-over waits for an election too --
could not move to it in time. (That was the leader-restart failure: the follower
restarted just before the leader was still in its grace when the leader's clients came.)

The code is the same before and after here, so the "old" server's data directory is put
back into the previous schema version (1) while it is stopped -- exactly what the
previous release left on disk -- and the restart has to migrate it with seats in it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lm_core.engine.rlf import Timing
from lm_core.runtime.store import DB_NAME, SCHEMA_VERSION

from .conftest import APP, Pool, all_up, held_total

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = {"A": 2, "B": 2, "C": 2}  # seats held through each server at the start


def to_schema_1(data_dir: Path) -> int:
    """Turn a stopped server's store into the layout schema version 1 had (`keys` a rowid
    table, no `schema_history`); returns the number of key-table rows it holds."""
    conn = sqlite3.connect(data_dir / DB_NAME, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "CREATE TABLE keys_v1 (client_id TEXT NOT NULL, license TEXT NOT NULL, "
            "entry TEXT NOT NULL, PRIMARY KEY (client_id, license))"
        )
        conn.execute("INSERT INTO keys_v1 SELECT client_id, license, entry FROM keys")
        conn.execute("DROP TABLE keys")
        conn.execute("ALTER TABLE keys_v1 RENAME TO keys")
        conn.execute("DROP TABLE schema_history")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        conn.execute("COMMIT")
        return int(conn.execute("SELECT COUNT(*) FROM keys").fetchone()[0])
    finally:
        conn.close()


def schema_version(data_dir: Path) -> str:
    conn = sqlite3.connect(data_dir / DB_NAME)
    try:
        return str(conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    finally:
        conn.close()


def client_events(pool: Pool) -> dict[str, list[dict[str, object]]]:
    """Every holder's JSON event lines so far, by client id."""
    out: dict[str, list[dict[str, object]]] = {}
    for log in sorted(pool.root.glob("hold-*.log")):
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                out.setdefault(str(event["client_id"]), []).append(event)
    return out


def test_rolling_restart_including_the_leader_keeps_every_seat(
    pool_factory: Callable[..., Pool],
) -> None:
    rolling_restart(pool_factory, leader_too=True)


def rolling_restart(pool_factory: Callable[..., Pool], *, leader_too: bool) -> None:
    # The default timing a site runs (client lease 6 s): the test pool's fast timing (2 s)
    # is shorter than a daemon's start-up on a loaded 2-core machine.
    pool = pool_factory(timing=Timing())
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "three servers up with a leader")
    seats = sum(CLIENTS.values())
    for sid, n in CLIENTS.items():
        for i in range(n):
            pool.hold("--license", APP, "--server", sid, "--client-id", f"{sid}{i}",
                      "--seconds", "900", "--json")  # fmt: skip
    pool.wait(lambda st: held_total(st) == seats, f"{seats} seats held")

    # Followers first, the leader last (the README's procedure).
    leader = pool.status()["leader"]
    order = [s for s in pool.ids if s != leader] + ([leader] if leader_too else [])
    for sid in order:
        assert pool.terminate(sid) == 0, pool.log_tail()
        assert to_schema_1(pool.data_dir(sid)) >= 0
        pool.wait(
            lambda st: st["leader"] is not None and st["majority"]["ok"],
            f"the pool serves while {sid} is stopped",
            timeout=30,
        )
        pool.start(sid)
        # The README's step: wait until every server is back before the next one.
        back = pool.lm("status", "--wait", "60", "--all-up", timeout=90)
        assert back.returncode == 0, back.stderr + pool.log_tail()
        pool.wait(lambda st: held_total(st) == seats, f"{seats} seats held after {sid}")
        assert schema_version(pool.data_dir(sid)) == str(SCHEMA_VERSION)
        assert "migrated store" in pool.logs[sid].read_text()
        assert list(pool.data_dir(sid).glob(f"{DB_NAME}.schema1-*.bak"))
        assert all(h.poll() is None for h in pool.holders), "a client exited"

    events = client_events(pool)
    assert sorted(events) == sorted(f"{sid}{i}" for sid, n in CLIENTS.items() for i in range(n))
    # A client whose server restarts fails over; on the way it may be told "no" by a
    # server that is still catching up (a transient denial), but it never loses its seat
    # and it ends holding one.
    lost = {cid: [e for e in evs if e["event"] == "lost"] for cid, evs in events.items()}
    assert all(not bad for bad in lost.values()), lost

    def answered_with_a_seat() -> bool:
        for evs in client_events(pool).values():
            kinds = [e["event"] for e in evs if e["event"] in ("authorized", "renewed", "denied")]
            if not kinds or kinds[-1] == "denied":
                return False
        return True

    deadline = time.monotonic() + 30
    while not answered_with_a_seat():
        assert time.monotonic() < deadline, client_events(pool)
        time.sleep(0.1)
    assert not [e for evs in client_events(pool).values() for e in evs if e["event"] == "lost"]
    st = pool.wait(lambda st: all_up(st) and held_total(st) == seats, "all seats still held")
    assert {c["client_id"] for c in st["clients"]} == set(events)
