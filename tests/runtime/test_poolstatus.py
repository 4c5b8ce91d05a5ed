"""merge_status: hand-written per-server status dicts (CONTRACTS.md schema) -> pool status."""

from __future__ import annotations

import json
from typing import Any

from lm_core.engine.rlf import Rlf, ServerEntry
from lm_core.runtime.poolstatus import find_leader, merge_status

APP = "Application 1.0"
AT = "2026-11-24T10:00:00Z"


def _rlf() -> Rlf:
    return Rlf(
        pool="eng",
        sequence=1,
        admin_key="ed25519:AAAA",
        servers=(
            ServerEntry(id="A", host="127.0.0.1", port=27001),
            ServerEntry(id="B", host="127.0.0.1", port=27002),
            ServerEntry(id="C", host="127.0.0.1", port=27003),
        ),
        vendors=(),
        codes=(),
        distribution={},
    )


def _row(dist: int, in_use: int) -> dict[str, int]:
    return {"distribution": dist, "in_use": in_use, "available": dist - in_use}


def _status(
    sid: str,
    role: str,
    term: int,
    leader: str | None,
    rows: dict[str, Any],
    *,
    pool_available: int | None = None,
    free_pool: int | None = None,
    peers: dict[str, Any] | None = None,
    clients: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
    up: int = 3,
) -> dict[str, Any]:
    return {
        "id": sid,
        "pool": "eng",
        "role": role,
        "term": term,
        "leader": leader,
        "rlf_seq": 1,
        "config_version": 1,
        "serving": True,
        "not_serving_reason": None,
        "majority": {"up": up, "size": 3, "ok": up >= 2},
        "peers": peers or {},
        "licenses": [
            {
                "license": APP,
                "hard_limit": 100,
                "expires": "2027-12-31",
                "pool_available": pool_available,
                "free_pool": free_pool,
                "servers": rows,
            }
        ],
        "clients": clients or [],
        "events": events or [],
    }


def _client(cid: str, lease: float = 5.0) -> dict[str, Any]:
    return {
        "client_id": cid,
        "license": APP,
        "count": 1,
        "lease_expires_in": lease,
        "last_heartbeat_age": 0.5,
    }


def _fig8() -> dict[str, dict[str, Any] | None]:
    peers = {
        "B": {"up": True, "last_heartbeat_age": 0.2},
        "C": {"up": True, "last_heartbeat_age": 0.3},
    }
    return {
        "A": _status(
            "A",
            "leader",
            1,
            "A",
            {"A": _row(40, 1), "B": _row(30, 1), "C": _row(30, 1)},
            pool_available=97,
            free_pool=0,
            peers=peers,
            clients=[_client("ca")],
            events=[{"age": 3.0, "kind": "election", "text": "A leads term 1"}],
        ),
        "B": _status(
            "B",
            "follower",
            1,
            "A",
            {"A": None, "B": _row(30, 1), "C": None},
            clients=[_client("cb")],
            events=[{"age": 1.0, "kind": "role", "text": "B follows A"}],
        ),
        "C": _status(
            "C",
            "follower",
            1,
            "A",
            {"A": None, "B": None, "C": _row(30, 1)},
            clients=[_client("cc")],
        ),
    }


def test_fig8_leader_table_wins_and_followers_keep_own_rows() -> None:
    pool = merge_status(_rlf(), _fig8(), AT)
    assert pool["pool"] == "eng"
    assert pool["leader"] == "A"
    assert pool["term"] == 1
    assert pool["rlf_seq"] == 1
    assert pool["collected_at"] == AT
    assert pool["majority"] == {"up": 3, "size": 3, "ok": True}
    [lic] = pool["licenses"]
    assert lic["license"] == APP
    assert lic["hard_limit"] == 100
    assert lic["pool_available"] == 97
    assert lic["free_pool"] == 0
    assert lic["servers"] == {"A": _row(40, 1), "B": _row(30, 1), "C": _row(30, 1)}
    assert lic["own"] == {"A": _row(40, 1), "B": _row(30, 1), "C": _row(30, 1)}
    assert [(c["client_id"], c["server"]) for c in pool["clients"]] == [
        ("ca", "A"),
        ("cb", "B"),
        ("cc", "C"),
    ]
    assert [(s["id"], s["up"], s["reachable"], s["role"]) for s in pool["servers"]] == [
        ("A", True, True, "leader"),
        ("B", True, True, "follower"),
        ("C", True, True, "follower"),
    ]
    assert pool["servers"][0]["address"] == "127.0.0.1:27001"
    assert pool["servers"][0]["last_heartbeat_age"] == 0.0
    assert pool["servers"][2]["last_heartbeat_age"] == 0.3
    assert [(e["server"], e["kind"]) for e in pool["events"]] == [("B", "role"), ("A", "election")]


def test_fig9_leader_down_new_leader_view() -> None:
    per: dict[str, dict[str, Any] | None] = {
        "A": None,
        "B": _status(
            "B",
            "leader",
            2,
            "B",
            {"A": _row(40, 0), "B": _row(30, 1), "C": _row(30, 1)},
            pool_available=98,
            free_pool=0,
            peers={
                "A": {"up": False, "last_heartbeat_age": None},
                "C": {"up": True, "last_heartbeat_age": 0.1},
            },
            up=2,
        ),
        "C": _status("C", "follower", 2, "B", {"A": None, "B": None, "C": _row(30, 1)}, up=2),
    }
    pool = merge_status(_rlf(), per, AT)
    assert pool["leader"] == "B"
    assert pool["term"] == 2
    assert pool["majority"] == {"up": 2, "size": 3, "ok": True}
    a = pool["servers"][0]
    assert (a["up"], a["reachable"], a["role"], a["term"]) == (False, False, None, None)
    [lic] = pool["licenses"]
    assert lic["pool_available"] == 98
    assert lic["servers"]["A"] == _row(40, 0)
    assert set(lic["own"]) == {"B", "C"}


def test_no_leader_rows_empty_and_up_is_reachable() -> None:
    per: dict[str, dict[str, Any] | None] = {
        "A": None,
        "B": _status("B", "candidate", 3, None, {"A": None, "B": _row(30, 0), "C": None}, up=1),
        "C": None,
    }
    pool = merge_status(_rlf(), per, AT)
    assert pool["leader"] is None
    assert pool["term"] == 3
    assert pool["majority"] == {"up": 1, "size": 3, "ok": False}
    assert [s["up"] for s in pool["servers"]] == [False, True, False]
    [lic] = pool["licenses"]
    assert lic["servers"] == {"A": {}, "B": {}, "C": {}}
    assert lic["pool_available"] is None
    assert lic["own"] == {"B": _row(30, 0)}


def test_nobody_reachable() -> None:
    pool = merge_status(_rlf(), {"A": None, "B": None, "C": None}, AT)
    assert pool["leader"] is None
    assert pool["rlf_seq"] == 1
    assert pool["term"] == 0
    assert pool["licenses"] == []
    assert pool["clients"] == []
    assert pool["majority"] == {"up": 0, "size": 3, "ok": False}
    assert [s["reachable"] for s in pool["servers"]] == [False, False, False]


def test_missing_servers_count_as_unreachable_and_strangers_are_ignored() -> None:
    per = _fig8()
    del per["C"]
    per["Z"] = _status("Z", "leader", 99, "Z", {})
    pool = merge_status(_rlf(), per, AT)
    assert pool["leader"] == "A"
    assert [s["id"] for s in pool["servers"]] == ["A", "B", "C"]
    assert pool["servers"][2]["reachable"] is False


def test_highest_term_leader_wins_over_stale_leader() -> None:
    per = _fig8()
    per["B"] = _status(
        "B",
        "leader",
        5,
        "B",
        {"A": _row(40, 0), "B": _row(30, 1), "C": _row(30, 1)},
        pool_available=98,
        free_pool=0,
    )
    assert find_leader(per)[0] == "B"
    pool = merge_status(_rlf(), per, AT)
    assert pool["leader"] == "B"
    assert pool["term"] == 5
    assert pool["licenses"][0]["pool_available"] == 98


def test_leader_named_by_followers_but_unreachable() -> None:
    per: dict[str, dict[str, Any] | None] = {
        "A": None,
        "B": _status("B", "follower", 4, "A", {"A": None, "B": _row(30, 1), "C": None}),
        "C": _status("C", "follower", 4, "A", {"A": None, "B": None, "C": _row(30, 1)}),
    }
    pool = merge_status(_rlf(), per, AT)
    assert pool["leader"] == "A"
    assert pool["term"] == 4
    assert pool["licenses"][0]["servers"] == {"A": {}, "B": {}, "C": {}}
    assert pool["servers"][0]["up"] is False


def test_rlf_seq_is_leaders_and_output_is_json() -> None:
    per = _fig8()
    assert per["C"] is not None
    per["C"]["rlf_seq"] = 2  # a follower that already took a newer RLF
    pool = merge_status(_rlf(), per, AT)
    assert pool["rlf_seq"] == 1
    assert pool["servers"][2]["rlf_seq"] == 2
    assert json.loads(json.dumps(pool)) == pool
    stable = {"pool", "rlf_seq", "leader", "term", "collected_at", "majority", "servers"}
    assert stable | {"licenses", "clients", "events"} <= set(pool)
    server_keys = {"id", "address", "up", "reachable", "role", "term", "rlf_seq"}
    assert server_keys | {"config_version", "last_heartbeat_age"} <= set(pool["servers"][0])


def test_clients_total_counts_what_servers_hold_beyond_what_they_list() -> None:
    per = _fig8()
    assert merge_status(_rlf(), per, AT)["clients_total"] == 3  # no totals given: listed
    b = per["B"]
    assert b is not None
    b["clients_total"] = 2_500  # B lists 1 of its 2,500 rows (STATUS_CLIENTS_MAX cut)
    per["C"] = None
    pool = merge_status(_rlf(), per, AT)
    assert len(pool["clients"]) == 2
    assert pool["clients_total"] == 2_501
    assert [s["clients_total"] for s in pool["servers"]] == [1, 2_500, None]
