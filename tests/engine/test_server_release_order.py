"""A RELEASE overtaken by the client's next request must not free the seat (S1).

Found by `lm sim --seed 20151`: client c1 sent RELEASE #31, then REQUEST #32 to the same
server; the network delivered #32 first (it renewed c1's entry and was authorized), then
#31 removed the entry. c1 rightly believed it held a seat under #32, the server no longer
counted it, and the seat went to another client: 16 believed seats, hard limit 15.
A server now ignores a RELEASE whose request id is older than the newest one the entry
was renewed by (request ids are fresh and increasing per client).
"""

from __future__ import annotations

from lm_core.engine.harness import Pool, make_kit
from lm_core.engine.messages import (
    Authorize,
    ClientHeartbeat,
    Deny,
    Message,
    Release,
    Released,
    Request,
)

LIC = "Application 1.0"


def req(client: str, rid: int) -> Request:
    return Request(pool="eng", sender=client, request_id=rid, license=LIC)


def hb(client: str, rid: int) -> ClientHeartbeat:
    return ClientHeartbeat(pool="eng", sender=client, request_id=rid, license=LIC)


def rel(client: str, rid: int) -> Release:
    return Release(pool="eng", sender=client, request_id=rid, license=LIC)


def one_seat_pool() -> Pool:
    """Hard limit 1, all of it on B: whoever holds it, nobody else may get it."""
    pool = make_kit({"A": 0, "B": 1, "C": 0}, seats=1).pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    assert pool.leader() == "A"
    return pool


def only(replies: list[Message]) -> Message:
    assert len(replies) == 1, replies
    return replies[0]


def assert_nobody_else_gets_it(pool: Pool, b_reason: str = "no_seats") -> None:
    for sid in "BAC":
        ans = only(pool.ask(sid, req("c2", 1), token=f"c2@{sid}"))
        assert isinstance(ans, Deny), (sid, ans)
        assert ans.reason == (b_reason if sid == "B" else "no_seats")
    assert pool.row("B", LIC)["in_use"] == 1  # type: ignore[index]


def test_release_overtaken_by_the_next_request_keeps_the_seat() -> None:
    pool = one_seat_pool()
    assert isinstance(only(pool.ask("B", req("c1", 1))), Authorize)
    # c1 sends RELEASE #2 then REQUEST #3; #3 arrives first and is authorized.
    assert isinstance(only(pool.ask("B", req("c1", 3))), Authorize)
    late = only(pool.ask("B", rel("c1", 2)))
    assert isinstance(late, Released)  # answered, but the seat stays c1's
    assert any("stale Release #2" in ev.text for _, ev in pool.events)
    assert not any(u.kind == "release" for _, u in pool.usage)
    assert_nobody_else_gets_it(pool)
    # c1's own, newer RELEASE does free it.
    assert isinstance(only(pool.ask("B", rel("c1", 4))), Released)
    assert isinstance(only(pool.ask("B", req("c2", 2))), Authorize)


def test_replayed_old_messages_do_not_make_a_stale_release_look_new() -> None:
    pool = one_seat_pool()
    assert isinstance(only(pool.ask("B", req("c1", 1))), Authorize)
    assert isinstance(only(pool.ask("B", hb("c1", 4))), Authorize)
    # RELEASE #5 is overtaken by REQUEST #6; then duplicates of heartbeat #4 and of
    # request #1 arrive (the renewal fast path and the general path).
    assert isinstance(only(pool.ask("B", req("c1", 6))), Authorize)
    assert isinstance(only(pool.ask("B", hb("c1", 4))), Authorize)
    assert isinstance(only(pool.ask("B", req("c1", 1))), Authorize)
    assert isinstance(only(pool.ask("B", rel("c1", 5))), Released)
    assert_nobody_else_gets_it(pool)


def test_stale_release_after_a_restart_keeps_the_seat() -> None:
    pool = one_seat_pool()
    assert isinstance(only(pool.ask("B", req("c1", 1))), Authorize)
    assert isinstance(only(pool.ask("B", req("c1", 3))), Authorize)
    # B crashes and comes back from its disk before the late RELEASE #2 arrives.
    pool.crash("B")
    pool.start("B")
    pool.run(pool.now + 4.0)
    assert isinstance(only(pool.ask("B", rel("c1", 2))), Released)
    assert pool.row("B", LIC)["in_use"] == 1  # type: ignore[index]
    # c1 heartbeats back in under its newer request: re-adopted, still one seat in all.
    assert isinstance(only(pool.ask("B", hb("c1", 7))), Authorize)
    assert_nobody_else_gets_it(pool, b_reason="restart_grace")
