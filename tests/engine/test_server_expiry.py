"""Expired codes serve nothing (S5); an expiring add-on lowers the hard limit (set_today)."""

from __future__ import annotations

import datetime

from lm_core.engine.harness import make_kit
from lm_core.engine.messages import AddAllocations, AdminReply, Authorize, Deny, Request

LIC = "Application 1.0"


def req(client: str, rid: int = 1) -> Request:
    return Request(pool="eng", sender=client, request_id=rid, license=LIC)


def test_expired_license_denied_after_the_day_changes() -> None:
    pool = make_kit().pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    assert isinstance(pool.ask("B", req("c1"))[0], Authorize)
    for server in pool.servers.values():
        server.set_today(datetime.date(2028, 1, 1))
    pool.run(pool.now + 1.0)
    [ans] = pool.ask("B", req("c2"))
    assert isinstance(ans, Deny)
    assert ans.reason == "expired"
    assert "2027-12-31" in ans.detail


def test_expiring_add_on_lowers_hard_limit_everywhere() -> None:
    kit = make_kit()
    pool = kit.pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    code = kit.code(seats=20, serial="ADD1", kind="add", expires=datetime.date(2027, 1, 31))
    [ans] = pool.ask("A", AddAllocations(pool="eng", sender="a", request_id=1, code=code))
    assert isinstance(ans, AdminReply)
    assert ans.ok
    assert pool.servers["B"].table.licenses[LIC].hard_limit == 120
    for server in pool.servers.values():
        server.set_today(datetime.date(2027, 2, 1))
    pool.run(pool.now + 1.0)
    for server in pool.servers.values():
        state = server.table.licenses[LIC]
        assert state.hard_limit == 100
        assert server.table.conserved()
    assert isinstance(pool.ask("C", req("c3"))[0], Authorize)
