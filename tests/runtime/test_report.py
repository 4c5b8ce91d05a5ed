"""Issue 10, item 3: merging the servers' usage logs (pure; `lm_core.runtime.report`).
The live, to-the-seat-second check is tests/integration/test_usage_report.py."""

from __future__ import annotations

import itertools

from lm_core.engine import messages as m
from lm_core.engine.identity import ClientIdentity
from lm_core.runtime.report import (
    Filters,
    build_report,
    merge_intervals,
    merge_waits,
    server_intervals,
)

H = 3_600.0
T0 = 1_800_000_000.0 - (1_800_000_000.0 % 86_400)  # a UTC midnight
L = "App 1.0"
_ids = itertools.count(1)


def rec(kind: str, client: str, at: float, *, count: int = 1, reason: str = "",
        user: str = "", attempts: int = 1, last_at: float = 0.0,
        lic: str = L) -> m.UsageRecord:  # fmt: skip
    ident = ClientIdentity(user=user) if user else None
    return m.UsageRecord(id=next(_ids), at=at, kind=kind, client_id=client, license=lic,
                         count=count, reason=reason, identity=ident, attempts=attempts,
                         last_at=last_at)  # fmt: skip


def test_intervals_pair_grants_with_their_end_on_one_server() -> None:
    rows = [
        rec("grant", "c1", T0 + 10, user="ann"),
        rec("grant", "c2", T0 + 20, count=2),
        rec("release", "c1", T0 + 70),
        rec("grant", "c1", T0 + 100),  # re-adopted after a restart: ends nothing open
        rec("grant", "c1", T0 + 130),  # a second grant of an open entry ends the first
        rec("grant", "c3", T0 + 30),
        rec("release", "c3", T0 + 40),
        rec("moved", "c3", T0 + 45),  # a held seat moved after its release: ends nothing
        rec("expire", "c4", T0 + 50),  # nothing open: ends nothing
    ]
    ivs = server_intervals("A", rows, since=T0, until=T0 + 200)
    got = sorted((iv.client_id, iv.start - T0, iv.end - T0, iv.count) for iv in ivs)
    assert got == [
        ("c1", 10, 70, 1), ("c1", 100, 130, 1), ("c1", 130, 200, 1),
        ("c2", 20, 200, 2), ("c3", 30, 40, 1),
    ]  # fmt: skip


def test_a_seat_that_moved_servers_counts_once() -> None:
    """A held c1 from 0; A died at 50, c1 was re-granted on B at 52 and released at 90;
    A came back and expired its stale entry at 120 (dated to its lease end)."""
    a = server_intervals("A", [rec("grant", "c1", T0), rec("expire", "c1", T0 + 120)],
                         since=T0, until=T0 + 200)  # fmt: skip
    b_rows = [rec("grant", "c1", T0 + 52, reason="failover"), rec("release", "c1", T0 + 90)]
    b = server_intervals("B", b_rows, since=T0, until=T0 + 200)
    merged = merge_intervals(a + b)
    assert sorted((iv.server, iv.start - T0, iv.end - T0) for iv in merged) == [
        ("A", 0, 52), ("B", 52, 90)
    ]
    report = build_report({"A": [rec("grant", "c1", T0), rec("expire", "c1", T0 + 120)],
                           "B": [rec("grant", "c1", T0 + 52), rec("release", "c1", T0 + 90)]},
                          {}, since=T0, until=T0 + H, by="hour")  # fmt: skip
    (lic,) = report["licenses"]
    assert lic["seat_seconds"] == 90.0
    assert lic["peak"] == 1


def test_waits_merge_across_servers_and_retries() -> None:
    denials = [
        ("A", rec("deny", "w", T0 + 0, reason="no_seats", attempts=5, last_at=T0 + 10, user="u")),
        ("B", rec("deny", "w", T0 + 1, reason="no_seats", attempts=4, last_at=T0 + 11, user="u")),
        ("C", rec("deny", "w", T0 + 500, reason="no_seats", user="u")),  # a later, new wait
        ("A", rec("deny", "v", T0 + 2, reason="expired", user="v")),
    ]
    waits = merge_waits(denials)
    assert [(w.client_id, w.reason, w.attempts, sorted(w.servers)) for w in waits] == [
        ("w", "no_seats", 9, ["A", "B"]),
        ("v", "expired", 1, ["A"]),
        ("w", "no_seats", 1, ["C"]),
    ]


def test_periods_peak_average_seat_hours_denials_and_top_users() -> None:
    rows = {
        "A": [
            rec("grant", "a1", T0 + 0.5 * H, user="ann"),
            rec("grant", "b1", T0 + 0.75 * H, user="bob", count=2),
            rec("release", "b1", T0 + 1.25 * H),  # crosses into the second hour
            rec("release", "a1", T0 + 1.5 * H),
            rec("deny", "c1", T0 + 0.8 * H, reason="no_seats", user="cy", attempts=3,
                last_at=T0 + 0.81 * H),
        ],
    }
    report = build_report(rows, {"A": T0 + 2 * H}, since=T0, until=T0 + 2 * H, by="hour",
                          hard_limits={L: 3})  # fmt: skip
    (lic,) = report["licenses"]
    assert lic["hard_limit"] == 3
    assert lic["peak"] == 3
    assert lic["seat_seconds"] == (1.0 * H) + (2 * 0.5 * H)  # ann 1 h, bob 2 seats x 0.5 h
    assert lic["seat_hours"] == 2.0
    assert lic["average"] == 1.0  # 2 seat-hours over a 2-hour window
    first, second = lic["periods"]
    assert (first["peak"], first["seat_hours"], first["average"]) == (3, 1.0, 1.0)
    assert (second["peak"], second["seat_hours"]) == (3, 1.0)
    assert first["denials"] == {"no_seats": {"waits": 1, "attempts": 3, "users": 1}}
    assert second["denials"] == {}
    assert [u["user"] for u in lic["top_users"]] == ["ann", "bob"]
    assert lic["top_users"][0]["seat_hours"] == 1.0
    assert lic["timeline"][0] == [T0, 0]
    assert max(v for _, v in lic["timeline"]) == 3
    # --user keeps that user's seats and denials only
    only = build_report(rows, {}, since=T0, until=T0 + 2 * H, by="hour",
                        filters=Filters(user="cy"))  # fmt: skip
    (cy,) = only["licenses"]
    assert cy["seat_seconds"] == 0
    assert cy["denials"]["no_seats"]["users"] == 1


def test_an_open_grant_is_held_until_its_server_answered() -> None:
    rows = {"A": [rec("grant", "a1", T0 + 10)]}
    report = build_report(rows, {"A": T0 + 40}, since=T0, until=T0 + H, by="day")
    assert report["licenses"][0]["seat_seconds"] == 30.0
    assert report["by"] == "day"
    assert report["licenses"][0]["periods"][0]["start"].endswith("T00:00:00Z")
