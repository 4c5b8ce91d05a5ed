"""A pool in the engine harness with every seat held, and the client messages the claim
and drain tests send (one place for both)."""

from __future__ import annotations

from lm_core.engine.harness import Pool, make_kit
from lm_core.engine.messages import Authorize, ClientHeartbeat, Message, Request

LIC = "Application 1.0"


def req(client: str, rid: int = 1) -> Request:
    return Request(pool="eng", sender=client, request_id=rid, license=LIC)


def hb(client: str, rid: int, *, ticket: str = "", failover: bool = False) -> ClientHeartbeat:
    return ClientHeartbeat(
        pool="eng", sender=client, request_id=rid, license=LIC, failover=failover, ticket=ticket
    )


def full_pool(
    dist: dict[str, int], *, seats: int = 100, settle: float = 0.0
) -> tuple[Pool, dict[str, str]]:
    """Servers of `dist` (A leads), every seat held by a client named after its server
    ("A0", "A1", ...); returns each client's ticket. `settle`: seconds run afterwards."""
    pool = make_kit(dist, ids=tuple(dist), borrowing_threshold=1.0, seats=seats).pool()
    for sid in dist:
        pool.start(sid)
    pool.run(4.0)
    assert pool.leader() == "A"
    tickets: dict[str, str] = {}
    for sid, n in dist.items():
        for i in range(n):
            [ans] = pool.ask(sid, req(f"{sid}{i}"), token=f"t-{sid}{i}")
            assert isinstance(ans, Authorize), ans
            assert ans.ticket
            tickets[f"{sid}{i}"] = ans.ticket
    if settle:
        pool.run(pool.now + settle)
    return pool, tickets


def answer(pool: Pool, sid: str, msg: Message, token: str) -> Message:
    """The one answer to `msg`, at once or (a claim waiting for its seats, an admin
    change waiting for majority durability) a little later."""
    now = pool.ask(sid, msg, token=token)
    pool.run(pool.now + 1.0)
    got = now + pool.replies.pop(token, [])
    assert len(got) == 1, got
    return got[0]
