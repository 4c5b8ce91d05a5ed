"""The borrowing planner's source orders (claims 5, 14, 15, 17), without a pool."""

from __future__ import annotations

from lm_core.engine.borrowing import Move, plan_borrow

ORDER = ("A", "B", "C", "D")  # A leads; D has the lowest priority


def plan(
    *,
    target: str = "B",
    want: int,
    failover: bool,
    rows: dict[str, int],
    free: int = 0,
    leader_in_use: int = 0,
    threshold: float = 0.8,
    fenced: frozenset[str] = frozenset(),
    up: frozenset[str] = frozenset(ORDER),
    in_use: dict[str, int] | None = None,
    asked: list[str] | None = None,
) -> list[Move]:
    used = in_use or {}

    def in_use_of(s: str) -> int:
        if asked is not None:
            asked.append(s)
        return used.get(s, 0)

    return plan_borrow(
        target=target,
        want=want,
        failover=failover,
        leader="A",
        order=ORDER,
        rows=rows,
        free=free,
        leader_in_use=leader_in_use,
        threshold=threshold,
        fenced=fenced,
        up=up,
        in_use_of=in_use_of,
    )


def test_claim5_ordinary_borrow_free_pool_then_fenced_then_leader_spare_above_reserve() -> None:
    # leader A: row 10, 4 in use, reserve ceil(10 * 0.2) = 2 -> 4 spare
    moves = plan(
        want=20,
        failover=False,
        rows={"A": 10, "B": 5, "C": 3, "D": 6},
        free=2,
        leader_in_use=4,
        fenced=frozenset({"C"}),
    )
    assert moves == [Move(None, 2), Move("C", 3), Move("A", 4)]


def test_claim5_ordinary_borrow_stops_at_want_and_never_takes_from_live_followers() -> None:
    moves = plan(want=3, failover=False, rows={"A": 0, "B": 5, "C": 9, "D": 9}, free=2)
    assert moves == [Move(None, 2)]  # C and D are alive: their seats are not borrowed


def test_claim14_failover_borrow_takes_the_leaders_spare_first_with_no_reserve() -> None:
    moves = plan(
        want=7, failover=True, rows={"A": 10, "B": 5, "C": 3, "D": 6}, free=5, leader_in_use=4
    )
    assert moves == [Move("A", 6), Move(None, 1)]


def test_claim15_failover_takes_followers_unused_seats_lowest_priority_first() -> None:
    asked: list[str] = []
    moves = plan(
        want=10,
        failover=True,
        rows={"A": 2, "B": 0, "C": 6, "D": 4},
        leader_in_use=2,
        up=frozenset({"A", "B", "C", "D"}),
        in_use={"C": 5, "D": 1},
        asked=asked,
    )
    assert moves == [Move("D", 3), Move("C", 1)]
    assert asked == ["D", "C"]  # never asks the leader or the borrower


def test_claim15_failover_skips_followers_out_of_contact() -> None:
    moves = plan(
        want=10,
        failover=True,
        rows={"A": 0, "B": 0, "C": 6, "D": 4},
        up=frozenset({"A", "B", "C"}),
    )
    assert moves == [Move("C", 6)]


def test_claim17_failover_takes_a_failed_servers_row_before_functioning_followers() -> None:
    moves = plan(
        want=8,
        failover=True,
        rows={"A": 0, "B": 0, "C": 6, "D": 4},
        free=1,
        fenced=frozenset({"D"}),
        up=frozenset({"A", "B", "C"}),
    )
    assert moves == [Move(None, 1), Move("D", 4), Move("C", 3)]


def test_borrower_never_takes_from_itself_and_nothing_is_planned_for_no_want() -> None:
    assert plan(target="A", want=5, failover=True, rows={"A": 9}, leader_in_use=0) == []
    assert plan(want=0, failover=True, rows={"A": 9}, free=9) == []
