"""A leader cut off from the majority must not hand out seats it fenced (S1).

Found by `lm sim --seed 50493`: leader A (term 1) was cut off with one follower I. The
majority elected B (term 2); K, over its allowance after a distribution decrease, kept
serving its clients under B. A, with no majority lease, fenced everyone it no longer
heard from and raised I's allowance with K's seats. After the heal B adopted I's
allowance as I reported it, so the pool served one seat more than its hard limit.
A leader now raises allowances only while it holds a majority lease.

This scripted reproduction pins the mechanism (a lease-less leader raising an allowance
with fenced seats); seed 50493 in test_server_sim_regressions.py replays the whole
over-issue.
"""

from __future__ import annotations

from lm_core.engine.harness import Pool, make_kit
from lm_core.engine.messages import (
    AdminReply,
    Authorize,
    ChangeDistribution,
    ClientHeartbeat,
    Deny,
    Message,
    Request,
)

LIC = "Application 1.0"
IDS = ("A", "B", "C", "D", "E")


def req(client: str, rid: int) -> Request:
    return Request(pool="eng", sender=client, request_id=rid, license=LIC)


def hb(client: str, rid: int) -> ClientHeartbeat:
    return ClientHeartbeat(pool="eng", sender=client, request_id=rid, license=LIC)


def only(replies: list[Message]) -> Message:
    assert len(replies) == 1, replies
    return replies[0]


def split(pool: Pool, side: str, other: str) -> None:
    for a in side:
        for b in other:
            pool.cut.add((a, b))
            pool.cut.add((b, a))


def test_leader_without_a_majority_raises_nobody_with_fenced_seats() -> None:
    pool = make_kit({"E": 1}, ids=IDS, seats=1).pool()
    for sid in IDS:
        pool.start(sid)
    pool.run(4.0)
    assert pool.leader() == "A"
    assert isinstance(only(pool.ask("E", req("x", 1))), Authorize)
    # The seat moves to B in the table, but x keeps it on E: B may not use it yet.
    change = ChangeDistribution(
        pool="eng", sender="admin", request_id=1, license=LIC,
        distribution=(("B", 1), ("E", 0)),
    )  # fmt: skip
    ans = only(pool.ask("A", change, token="admin"))
    assert isinstance(ans, AdminReply)
    assert ans.ok, ans.message
    pool.run(pool.now + 2.0)
    assert pool.row("B", LIC)["allowed"] == 0  # type: ignore[index]

    # A and B are cut off; C, D, E elect a new leader and E keeps serving x under it.
    split(pool, "AB", "CDE")
    rid = 1
    last: Message | None = None
    fence = pool.servers["A"].clocks.fence
    end = pool.now + fence + 3.0
    while pool.now < end:
        pool.run(pool.now + 1.0)
        rid += 1
        last = only(pool.ask("E", hb("x", rid), token=f"x{rid}"))
    assert isinstance(last, Authorize), last
    # A, cut off, stepped down (it fences nobody without a majority lease) ...
    assert pool.servers["A"].role.value != "leader"
    assert pool.servers["A"].ledger is None
    new_leader = next(s for s in "CDE" if pool.servers[s].role.value == "leader")
    assert pool.servers[new_leader].term > pool.servers["A"].term
    # ... and nobody gave E's seat to B.
    assert pool.row("B", LIC)["allowed"] == 0  # type: ignore[index]

    pool.heal()
    for _ in range(4):
        pool.run(pool.now + 1.0)
        rid += 1
        assert isinstance(only(pool.ask("E", hb("x", rid), token=f"x{rid}")), Authorize)
    assert pool.servers["B"].leader_id == new_leader
    assert pool.servers["A"].role.value == "follower"
    ans_y = only(pool.ask("B", req("y", 1), token="y"))
    assert isinstance(ans_y, Deny), "x holds the only seat on E: B must not grant another"
    assert ans_y.reason == "no_seats"
