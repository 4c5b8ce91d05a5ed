"""SVG snapshots of the console, fed from recorded statuses (fixed size, clocks, TZ, no
blinking cursor). Update with `pytest tests/tui --snapshot-update` only after looking."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import TextArea

from lm_tui.app import LmTuiApp

FIXTURES = Path(__file__).parent / "fixtures"
SIZE = (120, 40)
CODES = json.loads((FIXTURES / "codes.json").read_text(encoding="utf-8"))

Ready = Callable[[Pilot[Any]], Awaitable[None]]
Make = Callable[..., LmTuiApp]


def test_overview_fig8(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    """The patent's FIG. 8: A leads, one client on each server, pool available 97."""
    assert snap_compare(recorded_app("fig8"), terminal_size=SIZE, run_before=ready)


def test_overview_fig9_after_leader_died(
    snap_compare: Any, recorded_app: Make, ready: Ready
) -> None:
    """FIG. 9: A is down, B leads term 2, A's row shows 0 in use and 40 available."""
    assert snap_compare(recorded_app("fig9_after_a_died"), terminal_size=SIZE, run_before=ready)


def test_no_majority_banner(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    """1 of 3 up: banner, NOT SERVING, no leader's view (—), C's own row only."""
    assert snap_compare(recorded_app("no_majority"), terminal_size=SIZE, run_before=ready)


def test_distribution_tables_thresholds(
    snap_compare: Any, recorded_app: Make, ready: Ready
) -> None:
    """A busy pool: three licenses, warn >= 70 % and crit >= 90 % colours, C behind."""
    assert snap_compare(recorded_app("busy_pool"), terminal_size=SIZE, run_before=ready)


def test_distribution_changed_cells_highlighted(
    snap_compare: Any, recorded_app: Make, ready: Ready
) -> None:
    """FIG. 8 then FIG. 9: the cells that changed are highlighted for a moment."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press("space")
        await ready_polls(pilot, 2)

    app = recorded_app("fig8", "fig9_after_a_died")
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def ready_polls(pilot: Pilot[Any], polls: int) -> None:
    app = pilot.app
    assert isinstance(app, LmTuiApp)
    for _ in range(200):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if app.polls >= polls:
            return
    raise AssertionError("the second status never arrived")


def test_key_table(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    assert snap_compare(
        recorded_app("busy_pool"), press=["2"], terminal_size=SIZE, run_before=ready
    )


def test_key_table_filtered_and_sorted(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    """`/` then `!ws` hides the workstations; `s` four times sorts by lease expiry (the
    cursor stays on its row, cad-a01)."""
    press = ["slash", "exclamation_mark", "w", "s", "enter", "s", "s", "s", "s"]
    assert snap_compare(
        recorded_app("busy_pool"), press=press, terminal_size=SIZE, run_before=ready
    )


def test_event_log(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    assert snap_compare(
        recorded_app("busy_pool"), press=["3"], terminal_size=SIZE, run_before=ready
    )


def test_help(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    assert snap_compare(
        recorded_app("fig8"), press=["question_mark"], terminal_size=SIZE, run_before=ready
    )


def _with_code(ready: Ready, key: str, code: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await ready(pilot)
        await pilot.press(key)
        await pilot.pause()
        pilot.app.screen.query_one("#code", TextArea).text = code
        await pilot.pause()

    return run_before


def test_add_code_modal(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    """The pasted code's product, seats, expiry and vendor, before confirming."""
    run_before = _with_code(ready, "a", CODES["viewer_base"])
    assert snap_compare(recorded_app("fig8"), terminal_size=SIZE, run_before=run_before)


def test_add_allocations_modal_refuses_base_code(
    snap_compare: Any, recorded_app: Make, ready: Ready
) -> None:
    run_before = _with_code(ready, "l", CODES["viewer_base"])
    assert snap_compare(recorded_app("fig8"), terminal_size=SIZE, run_before=run_before)


def test_distribution_modal_refuses_invalid_sum(
    snap_compare: Any, recorded_app: Make, ready: Ready
) -> None:
    """50 + 30 + 30 = 110 > 100: the sum is shown in red and Apply is disabled."""
    press = ["d", "5", "0"]
    assert snap_compare(recorded_app("fig8"), press=press, terminal_size=SIZE, run_before=ready)


def test_distribution_modal_valid(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    """30 + 30 + 30 = 90: ten seats to the free pool."""
    press = ["d", "3", "0"]
    assert snap_compare(recorded_app("fig8"), press=press, terminal_size=SIZE, run_before=ready)


def test_push_modal_diff(
    snap_compare: Any, recorded_app: Make, ready: Ready, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The diff against the pool's RLF and the sequence numbers, before confirming."""
    monkeypatch.chdir(FIXTURES)
    app = recorded_app("fig8", push_path="patent_seq3.rlf")
    assert snap_compare(app, press=["u"], terminal_size=SIZE, run_before=ready)


def test_reclaim_modal(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    press = ["2", "r", "s", "t", "a", "l", "e"]
    assert snap_compare(recorded_app("fig8"), press=press, terminal_size=SIZE, run_before=ready)


def test_key_details_modal(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    press = ["2", "down", "enter"]
    assert snap_compare(recorded_app("fig8"), press=press, terminal_size=SIZE, run_before=ready)
