"""The audit chain and its checks as pure functions (no daemon)."""

from __future__ import annotations

import sqlite3
from typing import Any

from lm_core.engine import messages as m
from lm_core.runtime.audit import (
    AuditLog,
    Head,
    Pending,
    diff_views,
    genesis,
    make_row,
    verify_chain,
    verify_pool,
)
from lm_core.runtime.audit_store import anchor, ensure_table, insert, prune, read


def chain(n: int, server: str = "A", actor: str = "admin:a") -> list[dict[str, Any]]:
    head = Head(0, genesis("p", server))
    rows = []
    for i in range(n):
        r = make_row(
            head,
            at=f"2026-01-0{i + 1}T00:00:00.000Z",
            op="set_distribution",
            actor=actor,
            reason=f"r{i}",
            what="w",
            rlf_seq=1,
            cfg=(1, i + 2),
            before={"x": i},
            after={"x": i + 1},
        )
        rows.append(r)
        head = Head(r["seq"], r["hash"])
    return rows


def test_chain_survives_sqlite_and_checks() -> None:
    conn = sqlite3.connect(":memory:")
    ensure_table(conn)
    insert(conn, chain(3))
    rows = read(conn)
    assert verify_chain("p", "A", rows, {"seq": 3, "hash": rows[-1]["hash"]}) is None


def test_retention_prunes_the_oldest_rows_and_the_chain_still_verifies() -> None:
    conn = sqlite3.connect(":memory:")
    ensure_table(conn)
    rows = chain(5)  # stamped 2026-01-01 .. 2026-01-05
    insert(conn, rows)
    head = {"seq": 5, "hash": rows[-1]["hash"]}
    assert prune(conn, "2026-01-03T00:00:00.000Z", chunk=100) == 2  # Jan 1 and 2
    kept = read(conn)
    assert [r["seq"] for r in kept] == [3, 4, 5]
    at = anchor(conn)
    assert at is not None
    assert (at["seq"], at["hash"]) == (2, rows[1]["hash"])
    assert verify_chain("p", "A", kept, head, at) is None
    # without the anchor the pruned rows read as removed; a forged anchor breaks the link
    brk = verify_chain("p", "A", kept, head, None)
    assert brk is not None
    assert "missing" in brk.why
    brk = verify_chain("p", "A", kept, head, {"seq": 2, "hash": "0" * 64})
    assert brk is not None
    assert brk.seq == 3
    # an edited row after pruning is still caught; the newest row is never pruned
    edited = [dict(r) for r in kept]
    edited[0]["reason"] = "changed"
    brk = verify_chain("p", "A", edited, head, at)
    assert brk is not None
    assert brk.seq == 3
    assert prune(conn, "2027-01-01T00:00:00.000Z", chunk=100) == 2
    assert [r["seq"] for r in read(conn)] == [5]
    at = anchor(conn)
    assert at is not None
    assert verify_chain("p", "A", read(conn), head, at) is None


def test_each_tampering_is_named() -> None:
    rows = chain(4)
    edited = [dict(r) for r in rows]
    edited[1]["reason"] = "changed"
    brk = verify_chain("p", "A", edited, None)
    assert brk is not None
    assert (brk.seq, brk.why) == (2, "its content does not match its hash: edited or forged")
    brk = verify_chain("p", "A", rows[:1] + rows[2:], None)
    assert brk is not None
    assert brk.seq == 2
    assert "missing" in brk.why
    brk = verify_chain("p", "A", rows[:3], {"seq": 4, "hash": rows[3]["hash"]})
    assert brk is not None
    assert "removed" in brk.why
    # another server's genesis: the first row does not link
    brk = verify_chain("p", "B", rows, None)
    assert brk is not None
    assert brk.seq == 1


def test_servers_must_agree_on_authors() -> None:
    a, b = chain(2, "A"), chain(2, "B")
    c = chain(2, "C", actor="admin:mallory")
    assert verify_pool({"A": a, "B": b}) == []
    breaks = verify_pool({"A": a, "B": b, "C": c})
    assert {(x.server, x.seq) for x in breaks} == {("C", 1), ("C", 2)}


class FakeTable:
    def __init__(self, cfg: tuple[int, int], dist: dict[str, int]) -> None:
        self.cfg = cfg
        self.codes: list[str] = []
        st = type("S", (), {"hard_limit": 100, "free": 0, "rows": dist})()
        self.licenses = {"App 1": st}


class FakeEngine:
    def __init__(self, cfg: tuple[int, int], dist: dict[str, int]) -> None:
        self.table = FakeTable(cfg, dist)
        self.rlf = type("R", (), {"sequence": 1})()


def test_follower_records_only_the_notes_it_reached() -> None:
    log = AuditLog("p", "B", None, [])
    notes = tuple(
        m.ChangeNote(
            cfg_term=1,
            cfg_version=v,
            rlf_seq=1,
            op="set_distribution",
            actor=f"admin:{v}",
            reason="r",
        )
        for v in (3, 5, 7)
    )
    sync = m.DistributionSync(
        pool="p", sender="A", cfg_term=1, cfg_version=5, rlf_seq=1, changes=notes
    )
    engine = FakeEngine((1, 3), {"A": 40, "B": 60})
    pending = log.pending_for(sync, "", engine)
    assert isinstance(pending, Pending)
    engine.table = FakeTable((1, 5), {"A": 50, "B": 50})
    rows = log.rows_after(pending, engine, [], 0.0)
    assert [r["actor"] for r in rows] == ["admin:5"]  # v3 it had, v7 it has not reached
    assert rows[0]["before"]["licenses"]["App 1"]["distribution"] == {"A": 40, "B": 60}
    assert log.recent_notes[-1].cfg_version == 5
    assert diff_views(rows[0]["before"], rows[0]["after"]) == "App 1: A:40 B:60 -> A:50 B:50"


def test_an_unapplied_operation_records_nothing() -> None:
    log = AuditLog("p", "B", None, [])
    op = m.ChangeDistribution(
        pool="p",
        sender="x",
        request_id=1,
        license="App 1",
        distribution=(("A", 1),),
        actor="admin:a sha256:00",
        reason="r",
    )
    engine = FakeEngine((1, 3), {"A": 40, "B": 60})
    pending = log.pending_for(op, "", engine)
    assert pending is not None
    assert log.rows_after(pending, engine, [], 0.0) == []  # forwarded or refused
    assert log.head.seq == 0


def test_rlf_by_transfer_recorded_on_the_leader_with_its_carrier() -> None:
    log = AuditLog("p", "A", None, [])
    msg = m.RlfTransfer(pool="p", sender="C", rlf_text="x")
    engine = FakeEngine((1, 3), {"A": 40, "B": 60})
    pending = log.pending_for(msg, "", engine)
    assert pending is not None
    assert log.rows_after(pending, engine, [], 0.0) == []  # nothing adopted
    engine.rlf = type("R", (), {"sequence": 2})()
    engine.table = FakeTable((1, 4), {"A": 40, "B": 60})  # the leader adopted and bumped
    [row] = log.rows_after(pending, engine, [], 0.0)
    assert row["op"] == "push_rlf"
    assert row["actor"].startswith("server C")
    assert (row["before"]["rlf_seq"], row["after"]["rlf_seq"]) == (1, 2)
