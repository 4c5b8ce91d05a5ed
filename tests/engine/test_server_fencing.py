"""S2 at a change of leader: a new leader hands out nothing a silent server might still use."""

from __future__ import annotations

from lm_core.engine.harness import Pool, make_kit
from lm_core.engine.leases import Clocks
from lm_core.engine.messages import Authorize, ClientHeartbeat, Deny, Request

LIC = "Application 1.0"
IDS = ("A", "B", "C", "D", "E")


def req(client: str, rid: int = 1) -> Request:
    return Request(pool="eng", sender=client, request_id=rid, license=LIC)


def five() -> Pool:
    kit = make_kit(dict.fromkeys(IDS, 18), ids=IDS, borrowing_threshold=1.0)
    pool = kit.pool()
    for sid in IDS:
        pool.start(sid)
    pool.run(4.0)
    assert pool.leader() == "A"
    return pool


def test_new_leader_holds_free_pool_until_silent_servers_are_fenced() -> None:
    pool = five()
    pool.crash("A")
    pool.crash("E")
    pool.run(pool.now + 6.0)
    assert pool.leader() == "B"
    for i in range(18):
        assert isinstance(pool.ask("B", req(f"c{i}")), list)
    [ans] = pool.ask("B", req("one-more"))
    assert isinstance(ans, Deny)
    pool.run(pool.now + 1.0)
    row = pool.row("B", LIC)
    assert row["distribution"] == 19  # taken from the free pool in the table ...
    assert row["allowed"] == 18  # ... but not usable: A or E might still be serving
    [ans] = pool.ask("B", req("one-more", 2))
    assert isinstance(ans, Deny)
    fence = Clocks.from_timing(pool.rlf.timing).fence
    for rid in range(int(fence) + 1):
        pool.run(pool.now + 1.0)
        for i in range(18):
            pool.ask("B", ClientHeartbeat(pool="eng", sender=f"c{i}", request_id=rid + 2,
                                          license=LIC))  # fmt: skip
    fenced = {p for p, v in pool.status("B")["peers"].items() if v["fenced"]}
    assert fenced == {"A", "E"}
    assert pool.row("B", LIC)["allowed"] == 19
    [ans] = pool.ask("B", req("one-more", 3))
    assert isinstance(ans, Authorize)


def test_silent_server_not_fenced_before_its_clients_expire() -> None:
    pool = five()
    clocks = Clocks.from_timing(pool.rlf.timing)
    assert clocks.fence > clocks.server_lease + clocks.client_lease
    pool.crash("E")
    pool.run(pool.now + clocks.fence - 1.0)
    assert pool.status("A")["peers"]["E"]["fenced"] is False
    pool.run(pool.now + 2.0)
    assert pool.status("A")["peers"]["E"]["fenced"] is True


def test_returning_fenced_server_serves_only_what_the_leader_allows() -> None:
    pool = five()
    pool.crash("E")
    clocks = Clocks.from_timing(pool.rlf.timing)
    pool.run(pool.now + clocks.fence + 1.0)
    assert pool.status("A")["peers"]["E"]["fenced"] is True
    e = pool.start("E")
    assert e.allowed == {}
    pool.run(pool.now + 2.0)
    assert pool.status("E")["role"] == "follower"
    assert pool.row("E", LIC)["allowed"] == 18
    assert pool.status("A")["peers"]["E"]["fenced"] is False
