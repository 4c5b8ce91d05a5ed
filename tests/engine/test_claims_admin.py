"""Admin operations: CHANGE_DISTRIBUTION (claims 7-8, 21-22), ADD_ALLOCATIONS (9-10, 23-24),
ADD_LICENSE_CODE (11-12, 25-26), UPDATE_RLF / RLF sequence numbers (S5), reclaim, and
"answered only once durable on a majority" (S6)."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest

from lm_core.engine.harness import Kit, Pool, make_kit
from lm_core.engine.messages import (
    AddAllocations,
    AddLicenseCode,
    AdminReply,
    Authorize,
    ChangeDistribution,
    DistributionSync,
    Message,
    Reclaim,
    Request,
    StatusReply,
    StatusRequest,
    UpdateRlf,
)
from lm_core.engine.rlf import render_rlf, with_distribution

LIC = "Application 1.0"


@pytest.fixture
def kit() -> Kit:
    return make_kit()


@pytest.fixture
def pool(kit: Kit) -> Pool:
    pool = kit.pool()
    for sid in "ABC":
        pool.start(sid)
    pool.run(4.0)
    assert pool.leader() == "A"
    return pool


def admin(pool: Pool, sid: str, msg: Message) -> AdminReply:
    [ans] = pool.ask(sid, msg, token=f"admin@{sid}")
    assert isinstance(ans, AdminReply)
    return ans


def change(dist: dict[str, int], lic: str = LIC, rid: int = 1) -> ChangeDistribution:
    return ChangeDistribution(
        pool="eng", sender="admin", request_id=rid, license=lic,
        distribution=tuple(dist.items()),
    )  # fmt: skip


def rows(pool: Pool, sid: str, lic: str = LIC) -> dict[str, int]:
    state = pool.servers[sid].table.licenses[lic]
    return {**state.rows, "free": state.free, "hard": state.hard_limit}


def test_claim7_change_distribution_at_leader_syncs_followers(pool: Pool) -> None:
    ans = admin(pool, "A", change({"A": 20, "B": 30, "C": 40}))
    assert ans.ok, ans.message
    assert ans.request_id == 1
    assert ans.data["config_version"] == pool.status("A")["config_version"]
    assert ans.data["durable_on"] >= 2
    want = {"A": 20, "B": 30, "C": 40, "free": 10, "hard": 100}
    assert rows(pool, "A") == want
    assert rows(pool, "B") == want
    assert rows(pool, "C") == want
    pool.run(pool.now + 1.0)
    assert pool.row("C", LIC) == {
        "distribution": 40,
        "in_use": 0,
        "available": 40,
        "allowed": 40,
        "grace_held": 0,
        "down": False,
        "fenced": False,
        "held_back": 0,
    }


def test_claim8_change_distribution_forwarded_by_follower(pool: Pool) -> None:
    ans = admin(pool, "C", change({"A": 50, "B": 25, "C": 25}))
    assert ans.ok, ans.message
    assert [type(m).__name__ for s, d, m in pool.sent if s == "C" and d == "A"].count(
        "ForwardedAdmin"
    ) == 1
    assert rows(pool, "B") == {"A": 50, "B": 25, "C": 25, "free": 0, "hard": 100}


@pytest.mark.parametrize(
    ("dist", "lic", "reason"),
    [
        ({"A": 50, "B": 50, "C": 1}, LIC, "sums to 101, over the hard limit 100"),
        ({"A": 10, "Z": 10}, LIC, "unknown server 'Z'"),
        ({"A": -1}, LIC, "negative distribution -1"),
        ({"A": 1}, "Nothing 9.9", "unknown license 'Nothing 9.9'"),
    ],
)
@pytest.mark.parametrize("at", ["A", "B"])
def test_change_distribution_refused_with_reason(
    pool: Pool, dist: dict[str, int], lic: str, reason: str, at: str
) -> None:
    before = pool.status("A")["config_version"]
    ans = admin(pool, at, change(dist, lic))
    assert not ans.ok
    assert reason in ans.message
    assert "\n" not in ans.message
    assert pool.status("A")["config_version"] == before


def test_claim9_add_allocations(pool: Pool, kit: Kit) -> None:
    code = kit.code(seats=20, serial="ADD1", kind="add")
    ans = admin(pool, "B", AddAllocations(pool="eng", sender="admin", request_id=7, code=code))
    assert ans.ok, ans.message
    assert ans.data["hard_limit"] == 120
    for sid in "ABC":
        assert rows(pool, sid) == {"A": 40, "B": 30, "C": 30, "free": 20, "hard": 120}
    # the same code twice is refused
    again = admin(pool, "A", AddAllocations(pool="eng", sender="admin", request_id=8, code=code))
    assert not again.ok
    assert "already in the pool" in again.message


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda k: k.code(seats=5, serial="X1", kind="add", key=make_kit().vendor_private),
         "signature"),
        (lambda k: k.code(seats=5, serial="X2", kind="add",
                          expires=datetime.date(2026, 1, 1)), "expired"),
        (lambda k: k.code(seats=5, serial="X3"), "not an add-on code"),
        (lambda k: k.code(seats=5, serial="X4", kind="add", product="Other"),
         "no license 'Other 1.0'"),
        (lambda k: "LM1-GARBAGE", ""),
    ],
)  # fmt: skip
def test_add_allocations_refused(pool: Pool, kit: Kit, make: object, reason: str) -> None:
    code = make(kit)  # type: ignore[operator]
    ans = admin(pool, "C", AddAllocations(pool="eng", sender="admin", request_id=1, code=code))
    assert not ans.ok
    assert reason in ans.message
    assert ans.message
    assert rows(pool, "A")["hard"] == 100


def test_claim11_add_license_code_new_license_split_evenly(pool: Pool, kit: Kit) -> None:
    code = kit.code(seats=31, serial="NEW1", product="Designer", version="2.0")
    ans = admin(pool, "C", AddLicenseCode(pool="eng", sender="admin", request_id=3, code=code))
    assert ans.ok, ans.message
    for sid in "ABC":
        assert rows(pool, sid, "Designer 2.0") == {
            "A": 10, "B": 10, "C": 10, "free": 1, "hard": 31,
        }  # fmt: skip
    # the sync carried the added code
    syncs = [m for _, _, m in pool.sent if isinstance(m, DistributionSync)]
    assert code in syncs[-1].codes
    pool.run(pool.now + 1.0)
    ask = Request(pool="eng", sender="d1", request_id=1, license="Designer 2.0")
    [ans2] = pool.ask("B", ask)
    assert isinstance(ans2, Authorize)


def test_add_license_code_survives_leader_change(pool: Pool, kit: Kit) -> None:
    code = kit.code(seats=30, serial="NEW2", product="Designer", version="2.0")
    assert admin(pool, "A", AddLicenseCode(pool="eng", sender="a", request_id=1, code=code)).ok
    pool.crash("A")
    pool.run(pool.now + 6.0)
    assert pool.leader() == "B"
    assert rows(pool, "B", "Designer 2.0")["hard"] == 30
    pool.start("A")
    pool.run(pool.now + 2.0)
    assert rows(pool, "A", "Designer 2.0")["hard"] == 30


def test_admin_reply_waits_for_majority_durability(pool: Pool) -> None:
    pool.cut |= {("B", "A"), ("C", "A")}  # no ACKs reach the leader
    replies = pool.ask("A", change({"A": 10, "B": 10, "C": 10}), token="adm")
    assert replies == []  # not durable anywhere but on A
    pool.run(pool.now + 0.5)
    assert pool.replies.get("adm") is None
    pool.heal()
    pool.run(pool.now + 1.0)
    [ans] = pool.replies["adm"]
    assert isinstance(ans, AdminReply)
    assert ans.ok


def test_admin_op_without_majority_refused(pool: Pool) -> None:
    pool.crash("B")
    pool.crash("C")
    pool.run(pool.now + 3.0)
    ans = admin(pool, "A", change({"A": 10}))
    assert not ans.ok
    assert "no majority lease yet: 1/3 servers in contact" in ans.message


def test_update_rlf_higher_sequence_accepted_everywhere(pool: Pool, kit: Kit) -> None:
    for i in range(5):
        pool.ask("B", Request(pool="eng", sender=f"c{i}", request_id=1, license=LIC))
    new = kit.sign(with_distribution(kit.rlf, LIC, {"A": 10, "B": 45, "C": 45}))
    ans = admin(pool, "C", UpdateRlf(pool="eng", sender="admin", request_id=5,
                                     rlf_text=render_rlf(new)))  # fmt: skip
    assert ans.ok, ans.message
    pool.run(pool.now + 1.0)
    for sid in "ABC":
        assert pool.status(sid)["rlf_seq"] == new.sequence
        assert rows(pool, sid) == {"A": 10, "B": 45, "C": 45, "free": 0, "hard": 100}
    # in-use counts are kept
    assert pool.row("B", LIC)["in_use"] == 5
    assert pool.row("A", LIC, "B")["in_use"] == 5


@pytest.mark.parametrize("what", ["same", "lower", "other-admin", "tampered", "other-pool"])
def test_update_rlf_refused(pool: Pool, kit: Kit, what: str) -> None:
    newer = with_distribution(kit.rlf, LIC, {"A": 10, "B": 45, "C": 45})
    if what == "same":
        text, reason = render_rlf(kit.rlf), "not higher than the current"
    elif what == "lower":
        older = kit.sign(replace(newer, sequence=1))
        text, reason = render_rlf(older), "not higher"
    elif what == "other-admin":
        other_kit = make_kit()
        forged = replace(newer, admin_key=other_kit.admin_public)
        text, reason = render_rlf(kit.sign(forged, other_kit.admin_private)), "admin"
    elif what == "tampered":
        text = render_rlf(kit.sign(newer)).replace("45", "44", 1)
        reason = "signature"
    else:
        other = kit.sign(replace(newer, pool="prod"))
        text, reason = render_rlf(other), "pool 'prod'"
    for at in "AB":
        ans = admin(pool, at, UpdateRlf(pool="eng", sender="admin", request_id=1, rlf_text=text))
        assert not ans.ok
        assert reason in ans.message, ans.message
    assert {pool.status(s)["rlf_seq"] for s in "ABC"} == {kit.rlf.sequence}


def test_server_returning_with_newer_rlf_pushes_it(pool: Pool, kit: Kit) -> None:
    new = kit.sign(with_distribution(kit.rlf, LIC, {"A": 20, "B": 40, "C": 40}))
    pool.crash("C")
    pool.run(pool.now + 1.0)
    pool.start("C", new)  # the admin installed a newer RLF on C while it was down
    pool.run(pool.now + 2.0)
    for sid in "ABC":
        assert pool.status(sid)["rlf_seq"] == new.sequence, sid
        assert rows(pool, sid) == {"A": 20, "B": 40, "C": 40, "free": 0, "hard": 100}
    assert pool.leader() == "A"
    assert any(e.kind == "push" for sid, e in pool.events if sid == "A")


def test_reclaim_and_status(pool: Pool) -> None:
    pool.ask("B", Request(pool="eng", sender="stale", request_id=1, license=LIC))
    ans = admin(pool, "B", Reclaim(pool="eng", sender="admin", request_id=2, client_id="stale",
                                   license=LIC, reason="left for the day"))  # fmt: skip
    assert ans.ok
    assert pool.row("B", LIC)["in_use"] == 0
    assert any(u.kind == "reclaim" and u.reason == "left for the day" for _, u in pool.usage)
    again = admin(pool, "B", Reclaim(pool="eng", sender="admin", request_id=3, client_id="stale",
                                     license=LIC, reason="x"))  # fmt: skip
    assert not again.ok
    [st] = pool.ask("C", StatusRequest(pool="eng", sender="admin", request_id=4))
    assert isinstance(st, StatusReply)
    assert st.status["id"] == "C"
    assert st.status["role"] == "follower"
