"""A request larger than any one server's seats is served by gathering them from several
sources (issue 11: 9 seats wanted, 10 free, no server holds 9), and only then."""

from __future__ import annotations

from lm_core.engine.borrowing import Move, plan_borrow
from lm_core.engine.harness import Pool, make_kit
from lm_core.engine.messages import Authorize, Deny, Request

LIC = "Application 1.0"


def plan(
    want: int,
    gather: int,
    *,
    rows: dict[str, int],
    free: int = 0,
    in_use: dict[str, int] | None = None,
    drained: tuple[str, ...] = (),
) -> list[Move]:
    use = in_use or {}
    return plan_borrow(
        target="B",
        want=want,
        failover=False,
        leader="A",
        order=("A", "B", "C", "D"),
        rows=rows,
        free=free,
        leader_in_use=use.get("A", 0),
        threshold=0.8,
        fenced=(),
        up={"B", "C", "D"},
        in_use_of=lambda s: use.get(s, 0),
        drained=drained,
        gather=gather,
    )


def test_gathering_takes_free_pool_leader_and_followers() -> None:
    moves = plan(6, 9, rows={"A": 4, "B": 3, "C": 2, "D": 0}, free=1)
    assert moves == [Move(None, 1), Move("A", 4), Move("C", 1)]
    assert sum(m.count for m in moves) == 6


def test_an_ordinary_borrow_keeps_the_leader_reserve_and_spares_followers() -> None:
    assert plan(6, 0, rows={"A": 4, "B": 3, "C": 2, "D": 0}, free=1) == [
        Move(None, 1), Move("A", 3)]  # fmt: skip


def test_no_gathering_when_one_server_can_serve_the_request() -> None:
    # C has 9 unused: the client walks on to C; seats do not chase it
    assert plan(6, 9, rows={"A": 0, "B": 3, "C": 9, "D": 0}) == []


def test_nothing_beyond_the_ordinary_moves_when_the_pool_lacks_the_seats() -> None:
    moves = plan(8, 9, rows={"A": 4, "B": 1, "C": 2, "D": 1}, in_use={"D": 1})
    assert moves == [Move("A", 3)]  # the ordinary part only; C's seats stay


def test_a_drained_server_gives_its_unused_seats_first() -> None:
    moves = plan(2, 0, rows={"A": 4, "B": 3, "C": 2, "D": 3}, in_use={"D": 1}, drained=("D",))
    assert moves == [Move("D", 2)]


def up(dist: dict[str, int], seats: int) -> Pool:
    pool = make_kit(dist, borrowing_threshold=0.8, seats=seats).pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    assert pool.leader() == "A"
    return pool


def test_nine_of_ten_free_seats_no_server_holding_nine() -> None:
    pool = up({"A": 4, "B": 3, "C": 3}, seats=10)
    got = None
    for rid in range(1, 8):  # the client retries after each denial, as it would
        big = Request(pool="eng", sender="big", request_id=rid, license=LIC, count=9)
        [got] = pool.ask("B", big, token=f"r{rid}")
        if isinstance(got, Authorize):
            break
        assert isinstance(got, Deny)
        assert got.reason == "no_seats", got
        pool.run(pool.now + got.retry_after)
    assert isinstance(got, Authorize)
    assert got.count == 9, got
    assert pool.servers["A"].table.licenses[LIC].rows["B"] >= 9
    assert all(s.table.conserved() for s in pool.servers.values())
    # one more seat is left in the pool, and a second client gets it
    [one] = pool.ask("C", Request(pool="eng", sender="one", request_id=1, license=LIC))
    if isinstance(one, Deny):
        pool.run(pool.now + one.retry_after)
        [one] = pool.ask("A", Request(pool="eng", sender="one", request_id=2, license=LIC))
    assert isinstance(one, Authorize), one
