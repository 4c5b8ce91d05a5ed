"""Start-up, elections, heartbeats, majority rule, disassociation, terms (issue 3 items 1, 3, 7)."""

from __future__ import annotations

from lm_core.engine.harness import Pool, make_kit
from lm_core.engine.messages import (
    Authorize,
    Deny,
    Request,
    ServerAck,
    ServerHeartbeat,
    VoteReply,
    VoteRequest,
)
from lm_core.engine.server import TRANSITIONS, Role

LIC = "Application 1.0"


def req(client: str, rid: int = 1) -> Request:
    return Request(pool="eng", sender=client, request_id=rid, license=LIC)


def started(order: str = "ABC", until: float = 4.0) -> Pool:
    pool = make_kit().pool()
    for sid in order:
        pool.start(sid)
    pool.run(until)
    return pool


def test_simultaneous_start_resolves_by_leader_priority() -> None:
    for order in ("ABC", "CBA", "BCA"):
        pool = started(order)
        assert pool.leader() == "A", order
        assert {pool.status(s)["role"] for s in "BC"} == {"follower"}
        assert all(pool.status(s)["leader"] == "A" for s in "ABC")
        assert all(pool.status(s)["term"] == 1 for s in "ABC")


def test_first_server_up_leads() -> None:
    pool = make_kit().pool()
    pool.start("C")
    pool.run(1.5)
    pool.start("A")
    pool.start("B")
    pool.run(6.0)
    assert pool.leader() == "C"
    assert pool.status("A")["role"] == "follower"


def test_lone_starter_leads_once_a_majority_is_up() -> None:
    pool = make_kit().pool()
    pool.start("B")
    pool.run(10.0)
    assert pool.status("B")["role"] == "candidate"
    assert pool.status("B")["serving"] is False
    pool.start("C")
    pool.run(14.0)
    assert pool.leader() == "B"
    assert pool.status("C")["role"] == "follower"


def test_server_starting_while_leader_exists_joins_as_follower() -> None:
    pool = make_kit().pool()
    pool.start("A")
    pool.start("B")
    pool.run(4.0)
    assert pool.leader() == "A"
    term = pool.status("A")["term"]
    pool.start("C")
    pool.run(pool.now + 1.0)
    status = pool.status("C")
    assert status["role"] == "follower"
    assert status["leader"] == "A"
    assert status["term"] == term
    assert pool.leader() == "A"


def test_heartbeats_carry_every_servers_status() -> None:
    pool = started()
    pool.crash("C")
    pool.run(pool.now + 3.0)
    beats = [m for src, dst, m in pool.sent if dst == "B" and isinstance(m, ServerHeartbeat)]
    assert set(beats[-1].up) == {"A", "B"}
    assert pool.status("B")["peers"]["C"]["up"] is False
    assert pool.status("A")["peers"]["C"]["up"] is False
    assert pool.status("A")["majority"] == {"up": 2, "size": 3, "ok": True}


def test_follower_sends_leader_check_then_stands() -> None:
    pool = started()
    pool.crash("A")
    pool.sent.clear()
    pool.run(pool.now + 2.2)
    checks = [(s, d) for s, d, m in pool.sent if type(m).__name__ == "LeaderCheck"]
    assert ("B", "A") in checks
    assert ("C", "A") in checks
    pool.run(pool.now + 3.0)
    assert pool.leader() == "B"  # priority: B stands before C
    assert pool.status("B")["term"] == 2


def test_majority_rule_two_of_three_down_survivor_denies() -> None:
    pool = started()
    pool.crash("B")
    pool.crash("C")
    pool.run(pool.now + 3.0)
    [ans] = pool.ask("A", req("c1"))
    assert isinstance(ans, Deny)
    assert ans.reason == "no_majority"
    assert ans.detail.startswith("no majority lease yet: 1/3 servers in contact")
    assert pool.status("A")["serving"] is False
    assert pool.status("A")["not_serving_reason"].startswith(
        "no_majority: no majority lease yet: 1/3 servers in contact"
    )


def test_majority_rule_off_lone_server_serves() -> None:
    pool = make_kit(majority_rule=False).pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    pool.crash("B")
    pool.crash("C")
    pool.run(pool.now + 3.0)
    [ans] = pool.ask("A", req("c1"))
    assert isinstance(ans, Authorize)


def test_minority_leader_stops_serving_within_a_lease() -> None:
    pool = started()
    pool.isolate("A")
    pool.run(pool.now + 1.5)  # server_lease
    [ans] = pool.ask("A", req("c1"))
    assert isinstance(ans, Deny)
    assert ans.reason == "no_majority"
    pool.run(pool.now + 5.0)
    assert pool.status("B")["role"] == "leader"
    assert pool.status("B")["term"] == 2
    [ans] = pool.ask("C", req("c2"))
    assert isinstance(ans, Authorize)
    # healing: the old leader sees the higher term and follows
    pool.heal()
    pool.run(pool.now + 2.0)
    assert pool.leader() == "B"
    assert pool.status("A")["role"] == "follower"
    assert pool.status("A")["term"] == 2


def test_disassociation_when_only_the_leader_link_is_cut() -> None:
    pool = started()
    pool.cut |= {("A", "C"), ("C", "A")}
    pool.run(pool.now + 8.0)
    # B still hears A, so C is told a leader exists and leaves the pool
    assert pool.leader() == "A"
    assert pool.status("A")["term"] == 1
    assert pool.status("C")["role"] == "disassociated"
    [ans] = pool.ask("C", req("c1"))
    assert isinstance(ans, Deny)
    assert ans.reason == "disassociated"
    pool.heal()
    pool.run(pool.now + 2.0)
    assert pool.status("C")["role"] == "follower"
    assert pool.status("C")["leader"] == "A"
    assert isinstance(pool.ask("C", req("c1", 2))[0], Authorize)


def test_stale_term_heartbeat_refused() -> None:
    pool = started()
    b = pool.servers["B"]
    old = ServerHeartbeat(pool="eng", sender="C", term=0, seq=99)
    out = b.handle(pool.now, "C", old)
    [send] = [e for e in out if type(e).__name__ == "Send"]
    assert isinstance(send.msg, ServerAck)
    assert send.msg.ok is False
    assert send.msg.term == 1
    assert any(type(e).__name__ == "Event" and "stale term" in e.text for e in out)  # type: ignore[union-attr]
    assert b.status(pool.now)["leader"] == "A"


def test_message_for_another_pool_refused() -> None:
    pool = started()
    out = pool.servers["B"].handle(
        pool.now, "A", ServerHeartbeat(pool="other", sender="A", term=5, seq=1)
    )
    assert [type(e).__name__ for e in out] == ["Event"]
    assert pool.status("B")["term"] == 1
    [ans] = pool.ask("B", Request(pool="other", sender="c", request_id=1, license=LIC))
    assert isinstance(ans, Deny)
    assert ans.reason == "bad_request"


def test_one_vote_per_term_persisted_before_reply() -> None:
    pool = make_kit().pool()
    c = pool.start("C")
    seq = c.rlf.sequence
    ask = VoteRequest(pool="eng", sender="A", term=1, pre=False, rlf_seq=seq)
    out = c.handle(0.1, "A", ask)
    kinds = [type(e).__name__ for e in out]
    assert kinds.index("PersistState") < kinds.index("Send")
    [vote] = [e.msg for e in out if type(e).__name__ == "Send"]
    assert isinstance(vote, VoteReply)
    assert vote.granted
    other = c.handle(0.2, "B", VoteRequest(pool="eng", sender="B", term=1, rlf_seq=seq))
    [vote] = [e.msg for e in other if type(e).__name__ == "Send"]
    assert isinstance(vote, VoteReply)
    assert not vote.granted


def test_no_vote_for_candidate_with_older_config() -> None:
    pool = started()
    pool.crash("A")
    pool.run(pool.now + 2.6)  # C no longer hears a leader; nobody stood yet
    c = pool.servers["C"]
    assert c.role is Role.FOLLOWER
    seq = c.rlf.sequence
    ask = VoteRequest(pool="eng", sender="B", term=9, rlf_seq=seq, cfg_term=0, cfg_version=0)
    out = c.handle(pool.now, "B", ask)
    [vote] = [e.msg for e in out if type(e).__name__ == "Send"]
    assert isinstance(vote, VoteReply)
    assert not vote.granted
    assert "older" in vote.reason


def test_follower_with_live_leader_refuses_votes() -> None:
    pool = started()
    out = pool.servers["C"].handle(
        pool.now, "B", VoteRequest(pool="eng", sender="B", term=2, pre=True, cfg_term=9)
    )
    [vote] = [e.msg for e in out if type(e).__name__ == "Send"]
    assert isinstance(vote, VoteReply)
    assert not vote.granted
    assert vote.leader == "A"


def test_one_leader_per_term_through_repeated_failures() -> None:
    pool = started()
    leaders: dict[int, set[str]] = {}
    for victim in ("A", "B", "A", "C"):
        if victim in pool.servers:
            pool.crash(victim)
        for sid in "ABC":
            if sid not in pool.servers:
                pool.start(sid)
        pool.crash(victim)
        for _ in range(20):
            pool.run(pool.now + 0.5)
            for sid, s in pool.servers.items():
                if s.role is Role.LEADER:
                    leaders.setdefault(s.term, set()).add(sid)
        pool.start(victim)
    assert all(len(v) == 1 for v in leaders.values()), leaders


def test_transition_table_is_closed() -> None:
    for role, targets in TRANSITIONS.items():
        assert role in Role
        assert targets <= set(Role)
    assert Role.LEADER not in TRANSITIONS[Role.STARTING]
    assert TRANSITIONS[Role.LEADER] == {Role.FOLLOWER}
