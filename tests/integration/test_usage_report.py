"""Issue 10: client identity in `lm status`, `lm report` to the seat-second, a waiting
client's denials logged once per wait, and a seat that moved servers counted once -- on
real daemons (TLS, SQLite, separate processes).

The tolerance of every seat-second check is the measurement's own: a server logs a grant
while the client waits for its answer, and a release while the client waits for its
`Released`, so each hold's logged length lies between (release sent - grant received)
and (Released received - request sent), all four read from the wall clock around the
library's calls. No other slack."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from lm_core.engine.identity import ClientIdentity
from lm_core.runtime import audit_store
from lm_core.runtime.audit import Head, genesis, make_row, utc_stamp, verify_chain
from lm_core.runtime.client import LicenseClient, LicenseDenied
from lm_core.runtime.store import DB_NAME
from lm_core.runtime.tlsconfig import load_tls_dir

from .conftest import APP, Pool, held_total

pytestmark = pytest.mark.integration


@dataclass
class Hold:
    """The wall-clock bounds of one hold (see the module docstring)."""

    user: str
    before_enter: float = 0.0
    after_enter: float = 0.0
    before_exit: float = 0.0
    after_exit: float = 0.0

    @property
    def low(self) -> float:
        return self.before_exit - self.after_enter

    @property
    def high(self) -> float:
        return self.after_exit - self.before_enter


def _client(pool: Pool, user: str, prefer: str, **kw: Any) -> LicenseClient:
    trust = load_tls_dir(pool.tls_dir, "client")
    ident = ClientIdentity(user=user, host="ws-" + user, pid=4242, program="cad",
                           version="2.1", display=":0")  # fmt: skip
    return LicenseClient(pool.rlf, trust, prefer=prefer, identity=ident,
                         client_id=f"{user}-client", **kw)  # fmt: skip


async def _hold(
    pool: Pool, user: str, prefer: str, until: asyncio.Event, hold: Hold, **kw: Any
) -> None:
    wait = kw.pop("wait", False)
    lease = _client(pool, user, prefer, **kw).acquire(APP, wait=wait)
    hold.before_enter = time.time()
    await lease.__aenter__()
    hold.after_enter = time.time()
    await until.wait()
    hold.before_exit = time.time()
    await lease.__aexit__(None, None, None)
    hold.after_exit = time.time()


async def _until(cond: Callable[[], bool], what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _report(pool: Pool, since: float, until: float, *extra: str) -> dict[str, Any]:
    done = pool.lm("report", "--json", "--by", "hour", "--since", f"@{since}",
                   "--until", f"@{until}", *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _user_seconds(lic: dict[str, Any], user: str) -> float:
    total = 0.0
    for p in lic["periods"]:
        total += sum(u["seat_seconds"] for u in p["top_users"] if u["user"] == user)
    return total


def test_status_report_and_denials_match_what_the_clients_held(
    pool_factory: Callable[..., Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # `lm status` tables unwrapped
    pool = pool_factory(seats=2, dist={"A": 1, "B": 1, "C": 0})
    pool.start_led_by("A")
    t_start = time.time()
    alice, bob, dave = Hold("alice"), Hold("bob"), Hold("dave")

    async def scenario() -> dict[str, Any]:
        let_alice, let_bob, let_dave = asyncio.Event(), asyncio.Event(), asyncio.Event()
        # alice and bob wait if a loaded machine makes a server refuse for a moment
        ta = asyncio.create_task(_hold(pool, "alice", "A", let_alice, alice, wait=True))
        await _until(lambda: alice.after_enter > 0, "alice's grant")
        tb = asyncio.create_task(_hold(pool, "bob", "B", let_bob, bob, wait=True))
        await _until(lambda: bob.after_enter > 0, "bob's grant")
        # `lm status` while both hold: who, from where, running what, since when
        status = await pool.wait_async(lambda st: held_total(st) == 2, "two seats held")
        table = await asyncio.to_thread(pool.lm, "status")
        assert "alice@ws-alice" in table.stdout, table.stdout
        assert "bob@ws-bob" in table.stdout, table.stdout
        assert "cad 2.1" in table.stdout, table.stdout
        # carol is refused by every server: one wait, however many servers said no
        carol = _client(pool, "carol", "C", retry_backoff=0.05)
        with pytest.raises(LicenseDenied):
            async with carol.acquire(APP):
                pass
        # dave waits (--wait): he retries every server until a seat frees up
        td = asyncio.create_task(
            _hold(pool, "dave", "C", let_dave, dave, retry_backoff=0.2, wait=True)
        )
        # several walks of the server list while he waits (counted in the servers' logs)
        deadline = time.monotonic() + 30
        while await _attempts(pool, t_start - 1, "dave-client") < 6:
            assert time.monotonic() < deadline, "dave was not refused again and again"
            await asyncio.sleep(0.1)
        assert dave.after_enter == 0, "dave got a seat while two of two were held"
        let_alice.set()
        await ta
        await _until(lambda: dave.after_enter > 0, "dave's grant after alice released")
        let_bob.set()
        let_dave.set()
        await asyncio.gather(tb, td)
        return status

    status = asyncio.run(scenario())
    t_end = time.time()

    rows = {c["client_id"]: c for c in status["clients"]}
    a = rows["alice-client"]
    assert a["identity"] == {"user": "alice", "host": "ws-alice", "pid": 4242,
                             "program": "cad", "version": "2.1", "display": ":0"}  # fmt: skip
    assert a["since"] is not None
    assert a["held_for"] >= 0

    # the report, read with a monitor certificate: it may read, never change
    monkeypatch.setenv("LM_TLS_ROLE", "monitor")
    rep = _report(pool, t_start - 1, t_end + 1)
    (lic,) = [x for x in rep["licenses"] if x["license"] == APP]
    assert rep["servers_read"] == ["A", "B", "C"]
    assert lic["hard_limit"] == 2
    assert lic["peak"] == 2
    for h in (alice, bob, dave):
        got = _user_seconds(lic, h.user)
        assert h.low <= got <= h.high, (h, got)
    total_low = sum(h.low for h in (alice, bob, dave))
    total_high = sum(h.high for h in (alice, bob, dave))
    assert total_low <= lic["seat_seconds"] <= total_high
    assert abs(lic["seat_hours"] - lic["seat_seconds"] / 3600) < 1e-4
    # denials: carol's one wait (3 servers refused), dave's one wait (many retries)
    assert lic["denials"]["no_seats"]["users"] >= 2, lic["denials"]
    for user, least in (("carol", 3), ("dave", 6)):
        (mine,) = _report(pool, t_start - 1, t_end + 1, "--user", user)["licenses"]
        assert mine["denials"]["no_seats"]["waits"] == 1, (user, mine["denials"])
        assert mine["denials"]["no_seats"]["users"] == 1
        assert mine["denials"]["no_seats"]["attempts"] >= least, (user, mine["denials"])
    # each server logged dave's wait as ONE row, however often he asked
    dave_rows = _deny_rows(pool, t_start - 1, t_end + 1, "dave-client")
    assert dave_rows, "dave's denials were not logged"
    assert len(dave_rows) <= 3, dave_rows  # at most one row per server
    assert sum(r.attempts for r in dave_rows) > len(dave_rows)

    # --user narrows, --csv gives one row per license and hour
    only_bob = _report(pool, t_start - 1, t_end + 1, "--user", "bob")
    (lb,) = only_bob["licenses"]
    assert bob.low <= lb["seat_seconds"] <= bob.high
    assert lb["peak"] == 1
    csv_out = pool.lm("report", "--csv", "--since", f"@{t_start - 1}", "--until", f"@{t_end + 1}")
    assert csv_out.returncode == 0, csv_out.stderr
    lines = csv_out.stdout.strip().splitlines()
    assert lines[0].startswith("license,period_start,period_end,peak,hard_limit")
    assert any(line.startswith(f"{APP},") and ",2,2," in line for line in lines[1:]), lines


async def _attempts(pool: Pool, since: float, client_id: str) -> int:
    """Refusals of `client_id` in every server's usage log (a wait's row counts them)."""
    total = 0
    async with pool.client() as c:
        for sid in pool.ids:
            got = await c.server_usage(sid, since, time.time() + 1)
            if got is not None:
                total += sum(r.attempts for r in got[0]
                             if r.kind == "deny" and r.client_id == client_id)  # fmt: skip
    return total


def _deny_rows(pool: Pool, since: float, until: float, client_id: str) -> list[Any]:
    async def go(c: Any) -> list[Any]:
        out = []
        for sid in pool.ids:
            got = await c.server_usage(sid, since, until)
            assert got is not None, c.errors
            out += [r for r in got[0] if r.kind == "deny" and r.client_id == client_id]
        return out

    return pool.run(go)  # type: ignore[no-any-return]


def test_a_seat_that_moved_servers_is_counted_once(pool_factory: Callable[..., Pool]) -> None:
    """eve holds on A; A is killed; eve's seat moves to B (fail-over); A comes back and
    logs the end of its stale entry seconds later. The report counts eve's seat once."""
    pool = pool_factory(seats=2, dist={"A": 1, "B": 1, "C": 0})
    pool.start_led_by("A")
    t_start = time.time()
    eve = Hold("eve")

    async def scenario() -> None:
        let_go = asyncio.Event()
        task = asyncio.create_task(_hold(pool, "eve", "A", let_go, eve))
        await _until(lambda: eve.after_enter > 0, "eve's grant")
        await pool.wait_async(lambda st: held_total(st) == 1, "eve holds")
        pool.kill("A")
        await pool.wait_async(
            lambda st: any(c["server"] != "A" and c["client_id"] == "eve-client"
                           for c in st["clients"]),
            "eve's seat on another server",
        )  # fmt: skip
        pool.start("A")
        # A's log must end its stale entry (expiry or move) while eve still holds on B
        deadline = time.monotonic() + 20
        while not await _ended_on_a(pool, t_start):
            assert time.monotonic() < deadline, "A never logged the end of eve's old entry"
            await asyncio.sleep(0.1)
        assert held_total(await pool.wait_async(lambda st: True, "status")) == 1
        let_go.set()
        await task

    asyncio.run(scenario())
    t_end = time.time()
    rep = _report(pool, t_start - 1, t_end + 1)
    (lic,) = [x for x in rep["licenses"] if x["license"] == APP]
    got = _user_seconds(lic, "eve")
    assert eve.low <= got <= eve.high, (eve, got)
    assert lic["peak"] == 1  # never two seats at once for one client


async def _ended_on_a(pool: Pool, since: float) -> bool:
    async with pool.client() as c:
        got = await c.server_usage("A", since, time.time() + 1)
    return got is not None and any(
        r.client_id == "eve-client" and r.kind in ("expire", "moved") for r in got[0]
    )


def test_the_daemon_prunes_rows_older_than_the_retention_at_start_up(
    pool_factory: Callable[..., Pool],
) -> None:
    """Rows older than the RLF's retention (default 400 days) go when the daemon starts;
    younger ones stay. The audit log too: its oldest rows go, the newest stays, and the
    chain still verifies from the anchor the pruning leaves."""
    pool = pool_factory()
    pool.start_led_by("A")
    pool.terminate("A")
    now = time.time()
    conn = sqlite3.connect(pool.data_dir("A") / DB_NAME)
    head = audit_store.head(conn) or Head(0, genesis(pool.rlf.pool, "A"))
    old = []
    for i in range(3):  # 3 changes 500 days ago, after whatever the start-up recorded
        r = make_row(
            head, at=utc_stamp(now - (500 - i) * 86_400), op="set_distribution",
            actor="admin:old", reason=f"old {i}", what="w", rlf_seq=1, cfg=(1, 1),
            before={}, after={},
        )  # fmt: skip
        old.append(r)
        head = Head(r["seq"], r["hash"])
    with conn:
        audit_store.insert(conn, old)
    with conn:
        conn.executemany(
            "INSERT INTO usage (at, kind, client_id, license, count, reason) "
            "VALUES (?, ?, ?, ?, 1, '')",
            [(now - 500 * 86_400, "grant", "ancient", APP),
             (now - 499 * 86_400, "release", "ancient", APP),
             (now - 10 * 86_400, "grant", "recent", APP)],
        )  # fmt: skip
    conn.close()
    pool.start("A")
    pool.wait_listening("A")

    async def clients(c: Any) -> set[str] | None:
        got = await c.server_usage("A", 0.0, now + 60)
        return None if got is None else {r.client_id for r in got[0]}

    deadline = time.monotonic() + 20
    while (seen := pool.run(clients)) != {"recent"}:
        assert time.monotonic() < deadline, f"not pruned: {seen}"
        time.sleep(0.1)
    assert "pruned 2 usage rows older than 400 days" in pool.logs["A"].read_text()

    async def audit(c: Any) -> dict[str, Any]:
        return dict(await c.server_audit("A"))

    got = pool.run(audit)
    assert [r["seq"] for r in got["rows"]][:1] == [head.seq]  # only the newest old row
    assert got["anchor"]["seq"] == head.seq - 1
    assert verify_chain(pool.rlf.pool, "A", got["rows"], got["head"], got["anchor"]) is None
    assert verify_chain(pool.rlf.pool, "A", got["rows"], got["head"], None) is not None
