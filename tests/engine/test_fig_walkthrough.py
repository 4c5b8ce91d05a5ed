"""The patent's worked example, FIG. 5 -> FIG. 11, table cell by table cell.

Three servers A, B, C; "Application 1.0", hard limit 100, distribution A:40 B:30 C:30;
one client on each server; A dies; B becomes leader; A's client fails over to B; A
returns as a follower with 0 in use, 40 available. Followers' "don't care" cells are
None in their status.
"""

from __future__ import annotations

from typing import Any

import pytest

from lm_core.engine.harness import Pool, make_kit
from lm_core.engine.messages import Authorize, ClientHeartbeat, Deny, Request

LIC = "Application 1.0"


def req(client: str, rid: int = 1, count: int = 1) -> Request:
    return Request(pool="eng", sender=client, request_id=rid, license=LIC, count=count)


def cells(pool: Pool, sid: str) -> dict[str, Any]:
    view = pool.license_view(sid, LIC)
    out: dict[str, Any] = {"pool_available": view["pool_available"]}
    for server, row in view["servers"].items():
        out[server] = None if row is None else (row["in_use"], row["available"])
    return out


def keep_alive(pool: Pool, clients: dict[str, str], rid: int) -> None:
    """Each client heartbeats the server that holds it."""
    for client, sid in clients.items():
        if sid in pool.servers:
            msg = ClientHeartbeat(pool="eng", sender=client, request_id=rid, license=LIC)
            pool.ask(sid, msg, token=f"hb:{client}")


@pytest.fixture
def fig8() -> Pool:
    pool = make_kit().pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    return pool


def test_fig5_initial_tables(fig8: Pool) -> None:
    assert fig8.leader() == "A"
    assert cells(fig8, "A") == {
        "pool_available": 100, "A": (0, 40), "B": (0, 30), "C": (0, 30),
    }  # fmt: skip
    assert cells(fig8, "B") == {"pool_available": None, "A": None, "B": (0, 30), "C": None}
    assert cells(fig8, "C") == {"pool_available": None, "A": None, "B": None, "C": (0, 30)}
    for sid in "ABC":
        view = fig8.license_view(sid, LIC)
        assert view["hard_limit"] == 100
        assert fig8.status(sid)["serving"] is True
    assert fig8.license_view("B", LIC)["free_pool"] is None


def test_fig6_to_fig8_grants_on_b_c_a(fig8: Pool) -> None:
    pool = fig8
    [ans] = pool.ask("B", req("client-B"))
    assert isinstance(ans, Authorize)
    assert [s.id for s in ans.servers] == ["A", "B", "C"]
    pool.run(pool.now + 1.0)
    assert cells(pool, "B") == {"pool_available": None, "A": None, "B": (1, 29), "C": None}
    assert cells(pool, "A") == {"pool_available": 99, "A": (0, 40), "B": (1, 29), "C": (0, 30)}

    [ans] = pool.ask("C", req("client-C"))
    assert isinstance(ans, Authorize)
    pool.run(pool.now + 1.0)
    assert cells(pool, "C") == {"pool_available": None, "A": None, "B": None, "C": (1, 29)}
    assert cells(pool, "B") == {"pool_available": None, "A": None, "B": (1, 29), "C": None}
    assert cells(pool, "A") == {"pool_available": 98, "A": (0, 40), "B": (1, 29), "C": (1, 29)}

    [ans] = pool.ask("A", req("client-A"))
    assert isinstance(ans, Authorize)
    pool.run(pool.now + 1.0)
    assert cells(pool, "A") == {"pool_available": 97, "A": (1, 39), "B": (1, 29), "C": (1, 29)}


def test_fig9_new_leader_rebuilds_table(fig8: Pool) -> None:
    pool = fig8
    holders = {"client-A": "A", "client-B": "B", "client-C": "C"}
    for client, sid in holders.items():
        assert isinstance(pool.ask(sid, req(client))[0], Authorize)
    pool.run(pool.now + 1.0)
    pool.crash("A")
    t = pool.now
    rid = 2
    while pool.leader() != "B" and pool.now < t + 10:
        pool.run(pool.now + 1.0)
        keep_alive(pool, holders, rid)
        rid += 1
    assert pool.leader() == "B"
    assert pool.status("B")["term"] == 2
    pool.run(pool.now + 1.0)
    # A is down: 0 in use, 40 available; C's rows came with C's ACK
    assert cells(pool, "B") == {"pool_available": 98, "A": (0, 40), "B": (1, 29), "C": (1, 29)}
    assert cells(pool, "C") == {"pool_available": None, "A": None, "B": None, "C": (1, 29)}
    assert pool.status("B")["peers"]["A"]["up"] is False
    assert pool.status("C")["leader"] == "B"


def test_fig10_failover_heartbeat_converted_to_request(fig8: Pool) -> None:
    pool = fig8
    holders = {"client-A": "A", "client-B": "B", "client-C": "C"}
    for client, sid in holders.items():
        pool.ask(sid, req(client))
    pool.crash("A")
    pool.run(pool.now + 6.0)
    assert pool.leader() == "B"
    # client A, in fail-over mode, heartbeats B: B has no key-table entry for it
    hb = ClientHeartbeat(pool="eng", sender="client-A", request_id=9, license=LIC, failover=True)
    [ans] = pool.ask("B", hb)
    assert isinstance(ans, Authorize)
    assert ans.sender == "B"
    assert cells(pool, "B")["B"] == (2, 28)
    assert any(u.kind == "grant" and u.reason == "failover" for _, u in pool.usage)


def test_fig10_failover_denied_when_b_has_nothing() -> None:
    # threshold 1.0: B does not borrow ahead of need
    pool = make_kit({"A": 40, "B": 1, "C": 59}, borrowing_threshold=1.0).pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    assert isinstance(pool.ask("B", req("client-B"))[0], Authorize)
    pool.ask("A", req("client-A"))
    pool.crash("A")
    pool.run(pool.now + 6.0)
    assert pool.leader() == "B"
    hb = ClientHeartbeat(pool="eng", sender="client-A", request_id=9, license=LIC, failover=True)
    [ans] = pool.ask("B", hb)
    assert isinstance(ans, Deny)
    assert ans.reason == "no_seats"
    # ... and the client tries C next, which converts the heartbeat as well
    [ans] = pool.ask("C", hb)
    assert isinstance(ans, Authorize)
    assert ans.sender == "C"


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh-disk", "own-disk"])
def test_fig11_old_leader_returns_as_follower(fig8: Pool, fresh: bool) -> None:
    pool = fig8
    holders = {"client-A": "A", "client-B": "B", "client-C": "C"}
    for client, sid in holders.items():
        pool.ask(sid, req(client))
    pool.crash("A")
    pool.run(pool.now + 6.0)
    assert pool.leader() == "B"
    hb = ClientHeartbeat(pool="eng", sender="client-A", request_id=9, license=LIC, failover=True)
    assert isinstance(pool.ask("B", hb)[0], Authorize)
    holders["client-A"] = "B"
    pool.start("A", fresh=fresh)
    t = pool.now
    rid = 10
    # past the restart grace and the claim hold: A's stale entry for client-A is gone
    clocks = pool.servers["B"].clocks
    while pool.now < t + max(clocks.grace, clocks.claim_hold) + 1:
        pool.run(pool.now + 1.0)
        keep_alive(pool, holders, rid)
        rid += 1
    status = pool.status("A")
    assert status["role"] == "follower"
    assert status["leader"] == "B"
    assert cells(pool, "A") == {"pool_available": None, "A": (0, 40), "B": None, "C": None}
    assert cells(pool, "B") == {"pool_available": 97, "A": (0, 40), "B": (2, 28), "C": (1, 29)}
