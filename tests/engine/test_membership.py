"""A server listed in a newer RLF joins when it comes up (it offers its RLF, the pool
adopts it); a server a newer RLF drops is told and stops serving."""

from __future__ import annotations

from dataclasses import replace

from lm_core.engine.harness import make_kit
from lm_core.engine.messages import AdminReply, Authorize, Deny, Request, UpdateRlf
from lm_core.engine.rlf import ServerEntry, render_rlf, with_server, without_server

LIC = "Application 1.0"


def req(client: str, rid: int = 1) -> Request:
    return Request(pool="eng", sender=client, request_id=rid, license=LIC)


def test_a_server_of_a_newer_rlf_joins_the_running_pool() -> None:
    kit = make_kit()
    pool = kit.pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    assert pool.leader() == "A"
    newer = kit.sign(with_server(kit.rlf, ServerEntry("D", "127.0.0.1", 27004)))
    pool.start("D", newer)
    pool.run(pool.now + 10.0)
    assert pool.leader() == "A"
    assert {s.rlf.sequence for s in pool.servers.values()} == {newer.sequence}
    assert pool.servers["D"].role.value == "follower"
    assert pool.servers["D"].leader_id == "A"
    assert pool.status("A")["peers"]["D"]["up"]
    assert any("D joins" in ev.text for sid, ev in pool.events if sid == "A")
    # D serves: it borrows from the free pool (its distribution is 0) for its client
    ans = pool.ask("D", req("d1"))
    if isinstance(ans[0], Deny):
        pool.run(pool.now + ans[0].retry_after)
        ans = pool.ask("D", req("d1", 2))
    assert isinstance(ans[0], Authorize), ans


def test_an_older_or_foreign_offer_changes_nothing() -> None:
    kit = make_kit()
    pool = kit.pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    other = make_kit()  # another admin's key
    mine = replace(kit.rlf, admin_key=other.admin_public)
    forged = other.sign(with_server(mine, ServerEntry("D", "127.0.0.1", 27004)))
    pool.start("D", forged)
    pool.run(pool.now + 10.0)
    assert {pool.servers[s].rlf.sequence for s in "ABC"} == {kit.rlf.sequence}
    assert "D" not in pool.servers["A"].servers
    refused = [ev.text for sid, ev in pool.events if sid == "A" and ev.kind == "refused"]
    assert any("offered by non-member 'D'" in t for t in refused), refused


def test_a_server_removed_by_a_newer_rlf_is_told_and_stops_serving() -> None:
    kit = make_kit({"A": 40, "B": 30, "C": 20, "D": 10}, ids=("A", "B", "C", "D"))
    pool = kit.pool()
    for sid in "ABCD":
        pool.start(sid)
    pool.run(4.0)
    assert pool.leader() == "A"
    assert isinstance(pool.ask("D", req("d1"))[0], Authorize)
    newer = kit.sign(without_server(kit.rlf, "D"))
    push = UpdateRlf(pool="eng", sender="admin", request_id=1, rlf_text=render_rlf(newer))
    now = pool.ask("A", push, token="op")
    pool.run(pool.now + 2.0)
    [done] = now + pool.replies.pop("op", [])
    assert isinstance(done, AdminReply)
    assert done.ok, done
    assert pool.servers["D"].removed
    st = pool.status("D")
    assert not st["serving"]
    assert "D was removed from pool 'eng' by RLF seq" in str(st["not_serving_reason"])
    [ans] = pool.ask("D", req("d2"))
    assert isinstance(ans, Deny)
    assert ans.reason == "disassociated"
    assert pool.leader() == "A"
    assert pool.servers["A"].servers == ("A", "B", "C")
    # the leader cannot push an RLF that removes itself
    gone_a = kit.sign(without_server(with_server(newer, ServerEntry("E", "127.0.0.1", 27005)), "A"))
    push = UpdateRlf(pool="eng", sender="admin", request_id=2, rlf_text=render_rlf(gone_a))
    [refused] = pool.ask("A", push, token="op2")
    assert isinstance(refused, AdminReply)
    assert "removes the leader A" in refused.message
