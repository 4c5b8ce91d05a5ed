"""The audit log on real daemons (A1): every admin change is recorded on every server that
applied it, with the admin certificate's identity and the reason; `lm audit verify`
passes, then fails naming the server and row after a row is edited with sqlite3 in one
server's file, or a row is forged into another's."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from lm_core.engine import messages as m
from lm_core.runtime.audit import Head, genesis, make_row, row_hash
from lm_core.runtime.audit_store import insert, read
from lm_core.runtime.connection import Connection
from lm_core.runtime.tlsconfig import admin_context, load_tls_dir

from .conftest import APP, Pool, all_up, held_total

pytestmark = pytest.mark.integration


def send_admin(pool: Pool, sid: str, msg: m.Message) -> list[m.Message]:
    assert pool.tls_dir is not None
    paths = load_tls_dir(pool.tls_dir, "admin")
    assert paths is not None

    async def go() -> list[m.Message]:
        async with await Connection.open(
            pool.rlf.server(sid).address, ssl=admin_context(paths)
        ) as conn:
            return [await conn.request(msg, reply_timeout=15)]

    return asyncio.run(go())


def audit_json(pool: Pool, *args: str) -> dict[str, Any]:
    out = pool.lm("audit", "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def wait_changes(pool: Pool, cond: Callable[[list[dict[str, Any]]], bool], what: str) -> Any:
    def ok(_: dict[str, Any]) -> bool:
        got = audit_json(pool)
        return cond(got["changes"])

    pool.wait(ok, what)
    return audit_json(pool)["changes"]


def rows_of(pool: Pool, sid: str) -> list[dict[str, Any]]:
    with db(pool, sid) as conn:
        return read(conn)


def db(pool: Pool, sid: str) -> sqlite3.Connection:
    return sqlite3.connect(pool.data_dir(sid) / "lm.sqlite3", isolation_level=None, timeout=5)


def test_changes_recorded_everywhere_then_edit_and_forgery_detected(
    pool_factory: Callable[..., Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = pool_factory()
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "three servers up with a leader")

    out = pool.lm("dist", "set", APP, "A:50,B:25,C:25", "--reason", "team X needs seats on A")
    assert out.returncode == 0, out.stderr
    out = pool.lm(
        "code",
        "add",
        pool.issue(seats=12, product="Other", version="2.0"),
        "--reason",
        "PO 4711",
    )
    assert out.returncode == 0, out.stderr
    newer = dataclasses.replace(
        pool.rlf, sequence=pool.rlf.sequence + 1, borrowing_threshold=0.7, signature=None
    )
    pool.signed(newer, pool.root / "newer.rlf")
    out = pool.lm(
        "rlf",
        "push",
        str(pool.root / "newer.rlf"),
        "--pool-from",
        str(pool.rlf_path),
        "--reason",
        "threshold 0.7",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # straight to a follower, claiming to be someone else: forwarded to the leader, and
    # recorded with the certificate's identity, not the claimed one
    follower = next(s["id"] for s in pool.status()["servers"] if s["role"] == "follower")
    [reply] = send_admin(
        pool,
        follower,
        m.ChangeDistribution(
            pool=pool.rlf.pool,
            sender="x",
            request_id=7,
            license=APP,
            distribution=(("A", 45), ("B", 25), ("C", 30)),
            actor="admin:mallory",
            reason="via a follower",
        ),
    )
    assert isinstance(reply, m.AdminReply)
    assert reply.ok, reply.message
    pool.hold("--license", APP, "--client-id", "stale-1", "--server", "B", "--seconds", "600")
    pool.wait(lambda st: held_total(st) == 1, "stale-1 holds a seat")
    out = pool.lm(
        "key", "release", "--client-id", "stale-1", "--license", APP, "--reason", "host hung"
    )
    assert out.returncode == 0, out.stderr

    changes = wait_changes(
        pool,
        lambda cs: (
            sum(set(c["servers"]) == {"A", "B", "C"} for c in cs) == 4
            and any(c["op"] == "reclaim" for c in cs)
        ),
        "the four config changes recorded on A, B and C, and the reclaim",
    )
    dist = next(c for c in changes if c["op"] == "set_distribution")
    assert dist["reason"] == "team X needs seats on A"
    assert dist["actor"].startswith("admin:")
    assert " sha256:" in dist["actor"]
    assert dist["before"]["licenses"][APP]["distribution"] == {"A": 40, "B": 30, "C": 30}
    assert dist["after"]["licenses"][APP]["distribution"] == {"A": 50, "B": 25, "C": 25}
    code = next(c for c in changes if c["op"] == "add_code")
    assert code["reason"] == "PO 4711"
    assert "Other 2.0" not in code["before"]["licenses"]
    assert code["after"]["licenses"]["Other 2.0"]["hard_limit"] == 12
    push = next(c for c in changes if c["op"] == "push_rlf")
    assert push["reason"] == "threshold 0.7"
    for sid, seq in push["servers"].items():  # every server: before and after the push
        row = next(r for r in rows_of(pool, sid) if r["seq"] == seq)
        assert (row["before"]["rlf_seq"], row["after"]["rlf_seq"]) == (
            newer.sequence - 1,
            newer.sequence,
        )
    fwd = next(c for c in changes if c["reason"] == "via a follower")
    assert fwd["actor"] == dist["actor"]  # the admin certificate, not "admin:mallory"
    assert fwd["after"]["licenses"][APP]["distribution"] == {"A": 45, "B": 25, "C": 30}
    reclaim = next(c for c in changes if c["op"] == "reclaim")
    assert reclaim["servers"].keys() == {"B"}
    assert reclaim["reason"] == "host hung"
    assert reclaim["before"] == {"client_id": "stale-1", "license": APP, "count": 1}

    out = pool.lm("audit")
    assert out.returncode == 0, out.stderr
    assert "set_distribution" in out.stdout
    assert "team X needs seats on A" in out.stdout
    out = pool.lm("audit", "--since", "2999-01-01", "--json")
    assert json.loads(out.stdout)["changes"] == []

    out = pool.lm("audit", "verify")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("chain intact") == 3
    monkeypatch.setenv("LM_TLS_ROLE", "monitor")  # read-only operators may audit too
    out = pool.lm("audit", "verify")
    assert out.returncode == 0, out.stdout + out.stderr
    out = pool.lm("dist", "set", APP, "A:40,B:30,C:30")
    assert out.returncode == 1, out.stdout  # ... but change nothing
    monkeypatch.delenv("LM_TLS_ROLE")

    # an edited row in B's file: its hash no longer matches
    with db(pool, "B") as conn:
        seq = conn.execute("SELECT seq FROM audit WHERE op = 'set_distribution'").fetchone()[0]
        conn.execute("UPDATE audit SET reason = 'nothing to see' WHERE seq = ?", (seq,))
    out = pool.lm("audit", "verify")
    assert out.returncode == 1, out.stdout
    assert f"BROKEN server B row {seq}: its content does not match its hash" in out.stdout
    assert "A: ok" in out.stdout
    assert "C: ok" in out.stdout
    out = pool.lm("audit", "verify", "--json")
    got = json.loads(out.stdout)
    assert got["ok"] is False
    assert got["servers"]["B"]["row"] == seq

    # a forged row appended to C's file, with a correctly chained hash
    with db(pool, "C") as conn:
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        forged = make_row(
            Head(last[0], last[1]),
            at="2026-01-01T00:00:00.000Z",
            op="set_distribution",
            actor="admin:mallory sha256:0000",
            reason="forged",
            what="forged",
            rlf_seq=1,
            cfg=(99, 99),
            before={},
            after={},
        )
        insert(conn, [forged])
    out = pool.lm("audit", "verify")
    assert out.returncode == 1, out.stdout
    assert f"BROKEN server C row {last[0] + 1}" in out.stdout
    assert "added outside the daemon" in out.stdout

    # a row removed from A's file breaks the next row's link
    with db(pool, "A") as conn:
        conn.execute("DELETE FROM audit WHERE seq = 1")
    out = pool.lm("audit", "verify")
    assert out.returncode == 1
    assert "BROKEN server A row 1: row 1 is missing" in out.stdout


def test_plaintext_actor_and_bounded_reason(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory(tls=False)
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "three servers up with a leader")
    out = pool.lm("dist", "set", APP, "A:41,B:29,C:30", "--reason", "x" * 2000)
    assert out.returncode == 2, out.stdout  # a reason is one bounded line
    assert "--reason" in out.stderr
    out = pool.lm("dist", "set", APP, "A:41,B:29,C:30")
    assert out.returncode == 0, out.stderr
    changes = wait_changes(
        pool,
        lambda cs: any(set(c["servers"]) == {"A", "B", "C"} for c in cs),
        "the change on every server",
    )
    assert changes[0]["actor"].startswith("no certificate (127.0.0.1:")
    assert changes[0]["reason"] == ""
    out = pool.lm("audit", "verify")
    assert out.returncode == 0, out.stdout


def test_hash_chain_known_answer() -> None:
    g = genesis("p", "A")
    row = make_row(
        Head(0, g),
        at="2026-01-01T00:00:00.000Z",
        op="push_rlf",
        actor="admin:a",
        reason="r",
        what="w",
        rlf_seq=2,
        cfg=(1, 3),
        before={"rlf_seq": 1},
        after={"rlf_seq": 2},
    )
    content = {k: v for k, v in row.items() if k not in ("prev", "hash")}
    assert row["prev"] == g
    assert row["hash"] == row_hash(g, content)
    assert row_hash(g, {**content, "reason": "R"}) != row["hash"]
