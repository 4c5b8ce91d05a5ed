"""Borrowing (claims 2-6, 13-15 / 17-20, 27-29) and the S2 safety rules for moving seats."""

from __future__ import annotations

from dataclasses import replace

from lm_core.engine.harness import Pool, make_kit
from lm_core.engine.messages import (
    Authorize,
    BorrowRequest,
    ChangeDistribution,
    ClientHeartbeat,
    Deny,
    DistributionSync,
    Release,
    Request,
)

LIC = "Application 1.0"


def req(client: str, rid: int = 1, count: int = 1) -> Request:
    return Request(pool="eng", sender=client, request_id=rid, license=LIC, count=count)


def up(dist: dict[str, int], *, threshold: float = 0.8, seats: int = 100) -> Pool:
    pool = make_kit(dist, borrowing_threshold=threshold, seats=seats).pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    assert pool.leader() == "A"
    return pool


def table(pool: Pool, sid: str = "A") -> dict[str, int]:
    """Server `sid`'s replicated distribution table for LIC (rows + free pool)."""
    state = pool.servers[sid].table.licenses[LIC]
    return {**state.rows, "free": state.free}


def conserved(pool: Pool) -> bool:
    return all(s.table.conserved() for s in pool.servers.values())


def test_claim2_threshold_borrow_from_free_pool_then_sync_everyone() -> None:
    pool = up({"A": 40, "B": 30, "C": 20})
    assert table(pool) == {"A": 40, "B": 30, "C": 20, "free": 10}
    for i in range(24):
        assert isinstance(pool.ask("B", req(f"c{i}")), list)
    assert not any(isinstance(m, BorrowRequest) for _, _, m in pool.sent)
    pool.ask("B", req("c24"))  # 25/30 > 0.8
    borrows = [m for s, d, m in pool.sent if isinstance(m, BorrowRequest)]
    assert [(b.sender, b.license, b.count, b.failover) for b in borrows] == [("B", LIC, 3, False)]
    assert table(pool) == {"A": 40, "B": 33, "C": 20, "free": 7}
    syncs = {d for s, d, m in pool.sent if isinstance(m, DistributionSync) and s == "A"}
    assert syncs >= {"B", "C"}
    pool.run(pool.now + 1.0)
    assert table(pool, "B") == table(pool, "C") == table(pool)
    assert pool.row("B", LIC) == {
        "distribution": 33, "in_use": 25, "available": 8, "allowed": 33,
        "grace_held": 0, "down": False, "fenced": False, "held_back": 0,
    }  # fmt: skip
    assert conserved(pool)


def test_claim3_request_that_cannot_be_met_is_denied_then_served() -> None:
    pool = up({"A": 40, "B": 2, "C": 48}, threshold=1.0)
    assert table(pool)["free"] == 10
    [ans] = pool.ask("B", req("big", count=5))
    assert isinstance(ans, Deny)
    assert ans.reason == "no_seats"
    assert ans.retry_after > 0
    pool.run(pool.now + ans.retry_after)
    [ans] = pool.ask("B", req("big", 2, count=5))
    assert isinstance(ans, Authorize)
    assert ans.count == 5
    assert table(pool) == {"A": 40, "B": 5, "C": 48, "free": 7}


def test_claim5_borrow_from_fenced_down_server() -> None:
    pool = up({"A": 0, "B": 30, "C": 70}, threshold=1.0)
    pool.crash("C")
    pool.run(pool.now + 4.0)
    # C is down but not yet fenced: its seats do not move
    for i in range(30):
        pool.ask("B", req(f"c{i}"))
    [ans] = pool.ask("B", req("extra"))
    assert isinstance(ans, Deny)
    assert table(pool)["C"] == 70
    pool.run(pool.now + pool.servers["A"].clocks.fence - 2.0)  # fencing (leases.py)
    assert pool.status("A")["peers"]["C"]["fenced"] is True
    for i in range(30):
        pool.ask("B", ClientHeartbeat(pool="eng", sender=f"c{i}", request_id=2, license=LIC))
    [ans] = pool.ask("B", req("extra", 2))
    assert isinstance(ans, Deny)  # the borrow is on its way
    pool.run(pool.now + ans.retry_after)
    [ans] = pool.ask("B", req("extra", 3))
    assert isinstance(ans, Authorize)
    assert table(pool)["C"] == 69
    assert table(pool)["B"] == 31
    assert conserved(pool)


def test_claim5_borrow_from_leader_itself_keeps_its_reserve() -> None:
    pool = up({"A": 50, "B": 10, "C": 40})
    for i in range(9):
        pool.ask("B", req(f"c{i}"))  # 9/10 > 0.8: borrow up to 9/0.8 -> 12
    assert table(pool)["B"] == 12
    assert table(pool)["A"] == 48
    assert table(pool)["free"] == 0
    pool.run(pool.now + 1.0)
    assert pool.row("B", LIC)["allowed"] == 12
    assert conserved(pool)


def test_claim14_failover_borrow_order_leader_first() -> None:
    pool = up({"A": 10, "B": 0, "C": 80}, threshold=1.0)
    hb = ClientHeartbeat(pool="eng", sender="lost", request_id=1, license=LIC, failover=True)
    [ans] = pool.ask("B", hb)
    assert isinstance(ans, Deny)
    [borrow] = [m for _, _, m in pool.sent if isinstance(m, BorrowRequest)]
    assert borrow.failover is True
    assert table(pool) == {"A": 9, "B": 1, "C": 80, "free": 10}


def test_claim15_failover_borrow_from_functioning_follower_only_after_its_ack() -> None:
    pool = up({"A": 0, "B": 0, "C": 100}, threshold=1.0)
    pool.cut.add(("C", "A"))  # C's ACKs are lost for now
    hb = ClientHeartbeat(pool="eng", sender="lost", request_id=1, license=LIC, failover=True)
    [ans] = pool.ask("B", hb)
    assert isinstance(ans, Deny)
    # the table moves at once, but B may not use the seat until C gave it up
    assert table(pool) == {"A": 0, "B": 1, "C": 99, "free": 0}
    pool.run(pool.now + 1.0)
    assert pool.row("A", LIC, "B")["allowed"] == 0
    assert pool.row("A", LIC, "C")["allowed"] == 99
    [ans] = pool.ask("B", replace(hb, request_id=2))
    assert isinstance(ans, Deny)
    assert table(pool)["B"] == 1  # B does not ask again while the seat is on its way
    pool.heal()
    pool.run(pool.now + 1.0)
    assert pool.row("A", LIC, "B")["allowed"] == 1
    [ans] = pool.ask("B", replace(hb, request_id=3))
    assert isinstance(ans, Authorize)
    assert conserved(pool)


def test_decrease_below_in_use_keeps_clients_and_moves_only_free_seats() -> None:
    pool = up({"A": 40, "B": 30, "C": 30}, threshold=1.0)
    for i in range(20):
        pool.ask("C", req(f"c{i}"))
    pool.run(pool.now + 1.0)
    change = ChangeDistribution(
        pool="eng", sender="admin", request_id=1, license=LIC,
        distribution=(("A", 40), ("B", 50), ("C", 10)),
    )  # fmt: skip
    [ans] = pool.ask("A", change, token="adm")
    assert ans.ok  # type: ignore[attr-defined]
    pool.run(pool.now + 1.0)
    # C keeps its 20 clients; B only gets the 10 seats C really had free
    assert pool.row("A", LIC, "C")["allowed"] == 10
    assert pool.row("A", LIC, "B")["allowed"] == 40
    for i in range(20):
        hb = ClientHeartbeat(pool="eng", sender=f"c{i}", request_id=2, license=LIC)
        assert isinstance(pool.ask("C", hb)[0], Authorize)
    for i in range(10):
        pool.ask("C", Release(pool="eng", sender=f"c{i}", request_id=4, license=LIC))
    pool.run(pool.now + 1.0)
    assert pool.row("A", LIC, "B")["allowed"] == 50
    assert conserved(pool)


def test_replayed_old_ack_does_not_free_seats() -> None:
    pool = up({"A": 40, "B": 30, "C": 30}, threshold=1.0)
    old = [m for s, d, m in pool.sent if s == "C" and d == "A" and type(m).__name__ == "ServerAck"]
    for i in range(5):
        pool.ask("C", req(f"c{i}"))
    pool.run(pool.now + 1.0)
    assert pool.row("A", LIC, "C")["in_use"] == 5
    for ack in old:  # a network replaying old ACKs (in_use 0)
        pool.servers["A"].handle(pool.now, "C", ack)
    assert pool.row("A", LIC, "C")["in_use"] == 5
