"""Plain unit tests of the console's view model (no Textual)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lm_tui import viewmodel as vm

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize(
    ("in_use", "distribution", "level"),
    [
        (0, 40, "ok"),
        (27, 40, "ok"),
        (28, 40, "warn"),  # 70 %
        (35, 40, "warn"),
        (36, 40, "crit"),  # 90 %
        (40, 40, "crit"),
        (0, 0, "ok"),
        (1, 0, "crit"),
        (None, 40, "ok"),
        (3, None, "ok"),
    ],
)
def test_usage_levels_warn_at_70_crit_at_90(
    in_use: int | None, distribution: int | None, level: str
) -> None:
    assert vm.usage_level(in_use, distribution) == level


def test_header_fig8_majority_ok_no_banner() -> None:
    view = vm.header_view(fixture("fig8"), updated_age=0.4)
    assert (view.pool, view.rlf_seq, view.leader, view.term) == ("patent", "2", "A", "1")
    assert view.majority == "3/3 up, majority ok"
    assert view.serving
    assert view.banners == ()
    assert view.updated == "0.4s ago"


def test_header_no_majority_banners() -> None:
    view = vm.header_view(fixture("no_majority"), updated_age=12.0, paused=True)
    assert view.majority == "1/3 up — NOT SERVING"
    assert not view.serving
    assert view.leader == "none"
    assert view.banners == (
        "cannot reach server A, B",
        "NO MAJORITY: 1 of 3 servers up — the pool issues no licenses",
        "NO LEADER: an election is pending or a majority is missing",
    )
    assert view.updated == "12s ago (paused)"


def test_header_unreachable_pool_keeps_last_status() -> None:
    view = vm.header_view(fixture("fig8"), updated_age=30.0, error="connection refused")
    assert view.leader == "A"
    assert view.banners[0] == "cannot reach the pool: connection refused (showing the last status)"
    nothing = vm.header_view(None, updated_age=None, error="timed out", pool_name="eng")
    assert nothing.pool == "eng"
    assert nothing.updated == "never"
    assert nothing.banners == ("cannot reach the pool: timed out",)


def test_server_rows_flag_down_and_behind() -> None:
    rows = vm.server_rows(fixture("busy_pool"))
    assert [(r.id, r.role, r.rlf_seq, r.behind) for r in rows] == [
        ("A", "leader", "3", False),
        ("B", "follower", "3", False),
        ("C", "follower", "2", True),
    ]
    fig9 = {r.id: r for r in vm.server_rows(fixture("fig9_after_a_died"))}
    assert not fig9["A"].up
    assert fig9["A"].role == "down"
    assert fig9["A"].heartbeat == "—"
    assert fig9["B"].role == "leader"


def test_distribution_fig8_matches_the_patent() -> None:
    (view,) = vm.distribution_views(fixture("fig8"))
    assert (view.license, view.hard_limit, view.pool_available, view.free_pool) == (
        "Application 1.0",
        100,
        97,
        0,
    )
    rows = {r.server: r for r in view.rows}
    assert (rows["A"].distribution, rows["A"].in_use, rows["A"].available) == (40, 1, 39)
    assert (rows["B"].distribution, rows["B"].in_use, rows["B"].available) == (30, 1, 29)
    # The leader's own row is its global row; followers report their own.
    assert (rows["A"].own_distribution, rows["A"].own_in_use) == (40, 1)
    assert (rows["C"].own_distribution, rows["C"].own_available) == (30, 29)
    assert view.in_use == 3
    assert rows["A"].percent == "2%"


def test_distribution_fig9_dead_leader_row() -> None:
    (view,) = vm.distribution_views(fixture("fig9_after_a_died"))
    rows = {r.server: r for r in view.rows}
    assert view.pool_available == 98
    assert (rows["A"].up, rows["A"].in_use, rows["A"].available) == (False, 0, 40)
    assert rows["A"].own_distribution is None  # down: no own report
    assert rows["B"].own_in_use == 1  # B leads now: its own row is its global row


def test_distribution_without_leader_is_dont_care() -> None:
    (view,) = vm.distribution_views(fixture("no_majority"))
    rows = {r.server: r for r in view.rows}
    assert view.pool_available is None
    assert all(r.distribution is None and r.in_use is None for r in view.rows)
    assert (rows["C"].own_distribution, rows["C"].own_in_use) == (30, 0)
    assert rows["C"].percent == "—"


def test_changed_cells_fig8_to_fig9() -> None:
    before = vm.distribution_views(fixture("fig8"))
    after = vm.distribution_views(fixture("fig9_after_a_died"))
    changed = vm.changed_cells(before, after)
    lic = "Application 1.0"
    assert (lic, "A", "in_use") in changed
    assert (lic, "A", "available") in changed
    assert (lic, "*", "pool_available") in changed
    assert (lic, "B", "in_use") not in changed
    assert (lic, "C", "distribution") not in changed
    assert vm.changed_cells(after, after) == set()
    assert vm.changed_cells([], after) == set()  # nothing to compare with


def test_history_and_sparkline() -> None:
    history = vm.InUseHistory(size=3)
    for name in ("fig8", "fig9_after_a_died", "fig8", "fig8"):
        history.add(vm.distribution_views(fixture(name)))
    assert history.series("Application 1.0") == [2, 3, 3]
    assert history.series("nothing") == []
    assert vm.sparkline([], 100) == ""
    assert vm.sparkline([0, 50, 100, 150], 100) == "▁▅██"
    assert vm.sparkline(list(range(100)), 99, width=4) == "████"
    assert vm.sparkline([0, 1, 2], None) == "▁▅█"


def test_key_rows_filter_invert_and_sort() -> None:
    rows = vm.key_rows(fixture("busy_pool"))
    assert len(rows) == 72
    ws = vm.filter_rows(rows, vm.compile_filter("^ws-"), vm.key_row_text)
    not_ws = vm.filter_rows(rows, vm.compile_filter("!^ws-"), vm.key_row_text)
    assert len(ws) + len(not_ws) == len(rows)
    assert all(r.client_id.startswith("ws-") for r in ws)
    assert not any(r.client_id.startswith("ws-") for r in not_ws)
    case = vm.filter_rows(rows, vm.compile_filter("cad pro"), vm.key_row_text)
    assert {r.license for r in case} == {"CAD Pro 2.1"}
    by_lease = vm.sort_key_rows(rows, "lease_expires_in")
    leases = [r.lease_expires_in for r in by_lease]
    assert leases == sorted(leases)
    by_count_desc = vm.sort_key_rows(rows, "count", reverse=True)
    assert by_count_desc[0].count == 2
    assert by_count_desc[-1].count == 1


def test_bad_regex_matches_everything_and_says_why() -> None:
    flt = vm.compile_filter("ws-(")
    assert flt.error is not None
    assert flt.error.startswith("bad regex")
    assert flt("anything")
    assert vm.compile_filter("").error is None
    assert vm.compile_filter("!")("x")


def test_event_log_dedupes_across_snapshots_newest_first() -> None:
    log = vm.EventLog()
    first = fixture("fig8")
    new = log.add(first, now=1000.0)
    assert len(new) == len(first["events"]) > 0
    later = copy.deepcopy(first)
    for ev in later["events"]:
        ev["age"] += 2.0  # the same events, seen two seconds later
    later["events"].insert(0, {"server": "B", "age": 0.1, "kind": "deny", "text": "x: no_seats"})
    assert [r.kind for r in log.add(later, now=1002.0)] == ["deny"]
    rows = log.rows()
    assert rows[0].kind == "deny"
    assert [r.at for r in rows] == sorted((r.at for r in rows), reverse=True)
    assert [r.kind for r in log.rows(vm.compile_filter("election|deny"))] == ["deny", "election"]
    syncs = [r.kind for r in rows].count("sync")
    assert syncs > 0
    assert len(log.rows(vm.compile_filter("!sync"))) == len(rows) - syncs


def test_event_log_is_bounded() -> None:
    log = vm.EventLog(size=5)
    for i in range(10):
        log.add({"events": [{"server": "A", "age": 0, "kind": "k", "text": f"e{i}"}]}, now=i)
    assert [r.text for r in log.rows()] == ["e9", "e8", "e7", "e6", "e5"]


@pytest.mark.parametrize(
    ("inputs", "ok", "total", "free", "error"),
    [
        ({"A": "40", "B": "30", "C": "30"}, True, 100, 0, None),
        ({"A": "30", "B": "30", "C": "30"}, True, 90, 10, None),
        ({"A": "50", "B": "30", "C": "30"}, False, 110, -10, "sum 110 exceeds the hard limit 100"),
        ({"A": "-1", "B": "30", "C": "30"}, False, 60, 40, "A: must not be negative"),
        ({"A": "x", "B": "30", "C": "30"}, False, 60, 40, "A: 'x' is not a whole number"),
        ({"A": "40", "B": "30"}, False, 70, 30, "C: enter a number"),
    ],
)
def test_check_distribution(
    inputs: dict[str, str], ok: bool, total: int, free: int, error: str | None
) -> None:
    check = vm.check_distribution(100, ["A", "B", "C"], inputs)
    assert (check.ok, check.total, check.free_pool) == (ok, total, free)
    if error is None:
        assert check.errors == ()
        assert check.values == {k: int(v) for k, v in inputs.items()}
    else:
        assert error in check.errors


def test_check_distribution_without_hard_limit_refuses() -> None:
    check = vm.check_distribution(None, ["A"], {"A": "1"})
    assert not check.ok
    assert check.free_pool is None


def test_rlf_diff_and_push_checks() -> None:
    diff = vm.rlf_diff(
        "a\nsequence = 2\nb\n", "a\nsequence = 3\nb\n", current_name="pool", new_name="new.rlf"
    )
    assert diff[:2] == ["--- pool", "+++ new.rlf"]
    assert "-sequence = 2" in diff
    assert "+sequence = 3" in diff
    assert vm.rlf_diff("same\n", "same\n", current_name="a", new_name="b") == []
    assert vm.check_push(2, 3) is None
    assert vm.check_push(None, 1) is None
    assert vm.check_push(3, 3) == "sequence 3 is not higher than the pool's sequence 3"


def test_push_progress() -> None:
    status = fixture("busy_pool")
    assert vm.push_progress(status, 3) == [("A", "seq 3 ✓"), ("B", "seq 3 ✓"), ("C", "seq 2 …")]
    assert vm.push_progress(fixture("fig9_after_a_died"), 3)[0] == ("A", "down")


def test_header_majority_up_but_no_leader_in_contact() -> None:
    """Right after a leader dies: 2 of 3 up, followers still name the dead leader."""
    status = fixture("fig8")
    status["servers"][0].update(up=False, reachable=False)
    status["majority"] = {"up": 2, "size": 3, "ok": False}
    view = vm.header_view(status, updated_age=0.0)
    assert view.majority == "2/3 up — NOT SERVING"
    assert view.banners == (
        "cannot reach server A",
        "NOT SERVING: 2 of 3 servers up, but no leader in contact with a majority "
        "(election in progress?)",
        "the leader A cannot be reached: followers will elect a new one",
    )


def test_rlf_diff_leaves_out_comments() -> None:
    old = "# sequence 2\nsequence = 2\n\nA = 40\n"
    new = "# sequence 3\nsequence = 3\n\nA = 40\n"
    diff = vm.rlf_diff(old, new, current_name="pool", new_name="new")
    assert [ln for ln in diff if ln[:1] in "+-" and ln[:3] not in ("+++", "---")] == [
        "-sequence = 2",
        "+sequence = 3",
    ]


def test_a_drained_server_says_so() -> None:
    status = fixture("busy_pool")
    status["servers"] = [
        {**s, "drained": s["id"] == "B"}  # type: ignore[typeddict-item]
        for s in status["servers"]
    ]
    roles = {r.id: r.role for r in vm.server_rows(status)}
    assert roles == {"A": "leader", "B": "follower (drained)", "C": "follower"}
