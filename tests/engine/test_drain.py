"""`lm server drain` / `resume` in the engine: a drained server grants nothing, its
clients walk on and their seats move with them (claims on a settled drain), it keeps
counting in the majority, the drain is replicated (a new leader keeps it), and resume
serves again."""

from __future__ import annotations

from lm_core.engine.harness import Pool
from lm_core.engine.messages import (
    AdminReply,
    Authorize,
    Deny,
    DrainServer,
)
from lm_core.engine.vocab import DenyReason

from . import fullpool
from .fullpool import LIC, answer, hb, req


def drain(server: str, *, on: bool = True, rid: int = 1) -> DrainServer:
    return DrainServer(pool="eng", sender="admin", request_id=rid, server=server, drain=on)


def full_pool() -> tuple[Pool, dict[str, str]]:
    """A:4 B:3 C:3 of a hard limit of 10, every seat held; returns each client's ticket."""
    return fullpool.full_pool({"A": 4, "B": 3, "C": 3}, seats=10, settle=1.0)


def held(pool: Pool) -> int:
    """Seats clients hold across the pool (entries held back for a claim hold aside)."""
    return sum(s.keys.in_use(LIC) - s.keys.held(LIC) for s in pool.servers.values())


def test_drained_follower_denies_and_its_clients_move_with_their_seats() -> None:
    pool, tickets = full_pool()
    reply = answer(pool, "B", drain("B"), "op")  # reaches a follower: forwarded
    assert isinstance(reply, AdminReply)
    assert reply.ok, reply
    assert all(s.table.drained.keys() == {"B"} for s in pool.servers.values())
    # B renews nothing and grants nothing: the client is told to walk on
    [ans] = pool.ask("B", hb("B0", 2), token="t-B0")
    assert isinstance(ans, Deny)
    assert ans.reason == DenyReason.DRAINED
    [ans] = pool.ask("B", req("new"), token="new")
    assert isinstance(ans, Deny)
    assert ans.reason == DenyReason.DRAINED
    # the full pool has no free seat: each client's own seats move to C with it
    for i in range(3):
        ans = answer(pool, "C", hb(f"B{i}", 3, ticket=tickets[f"B{i}"], failover=True), f"f{i}")
        assert isinstance(ans, Authorize), (i, ans)
    pool.run(pool.now + 1.0)
    b = pool.servers["B"].keys
    # B's moved entries ended: no client on them, held back until their claim hold
    assert b.in_use(LIC) - b.held(LIC) == 0
    assert b.held(LIC) == 3
    assert pool.servers["C"].keys.in_use(LIC) == 6
    assert held(pool) == 10
    assert pool.servers["A"].table.licenses[LIC].rows["B"] == 0
    assert all(s.table.conserved() for s in pool.servers.values())
    # B still counts in the majority: with C stopped, A and B keep the pool serving
    pool.crash("C")
    pool.run(pool.now + 3.0)
    assert pool.leader() == "A"
    assert isinstance(pool.ask("A", hb("A0", 2), token="t-A0")[0], Authorize)


def test_the_drain_survives_a_change_of_leader_and_resume_serves_again() -> None:
    pool, _ = full_pool()
    assert isinstance(answer(pool, "A", drain("C"), "op"), AdminReply)
    pool.crash("A")
    pool.run(pool.now + 4.0)
    assert pool.leader() == "B"
    assert pool.servers["B"].table.drained.keys() == {"C"}
    assert pool.status("B")["drained"] == ["C"]
    [ans] = pool.ask("C", hb("C0", 2), token="t-C0")
    assert isinstance(ans, Deny)
    assert ans.reason == DenyReason.DRAINED
    # resume: C serves again (its clients, had they stayed, renew there)
    reply = answer(pool, "B", drain("C", on=False, rid=2), "op2")
    assert isinstance(reply, AdminReply)
    assert reply.ok, reply
    pool.run(pool.now + 1.0)
    assert not pool.servers["C"].table.drained
    pool.run(pool.now + 20.0)  # the entries of the clients C had before its drain are gone
    assert isinstance(answer(pool, "C", req("again", 5), "again"), Authorize)


def test_refused_drains_say_why() -> None:
    pool, _ = full_pool()
    for op, why in (
        (drain("Z"), "no server 'Z'"),
        (drain("A"), "leads the pool"),
        (drain("B", on=False), "is not drained"),
    ):
        reply = answer(pool, "A", op, "op")
        assert isinstance(reply, AdminReply)
        assert not reply.ok
        assert why in reply.message, reply.message
    assert isinstance(answer(pool, "A", drain("B"), "op"), AdminReply)
    reply = answer(pool, "A", drain("B", rid=3), "op")
    assert isinstance(reply, AdminReply)
    assert "drained already" in reply.message
