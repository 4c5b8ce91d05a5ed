"""Headless pilot tests of the console against recorded statuses: every action goes to
the source with the right arguments, invalid input never leaves the modal, read-only
refuses, and a failing pool shows a banner instead of a traceback."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Input, Static, TextArea

from lm_tui.app import LmTuiApp
from lm_tui.modals import (
    CodeScreen,
    DistributionScreen,
    HelpScreen,
    KeyDetailsScreen,
    PushScreen,
    ReclaimScreen,
)
from lm_tui.source import Outcome, RecordedSource
from lm_tui.widgets import KeyedTable

FIXTURES = Path(__file__).parent / "fixtures"
CODES = json.loads((FIXTURES / "codes.json").read_text(encoding="utf-8"))
SIZE = (120, 40)

Ready = Callable[[Pilot[Any]], Awaitable[None]]
Make = Callable[..., LmTuiApp]


def source_of(app: LmTuiApp) -> RecordedSource:
    assert isinstance(app.source, RecordedSource)
    return app.source


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def test_tables_show_the_recorded_status(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("busy_pool")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        servers = app.query_one("#servers", KeyedTable)
        assert servers.row_keys() == ["A", "B", "C"]
        assert servers.plain_rows()[2][4] == "2 behind"
        assert sorted(app._panels) == ["Application 1.0", "CAD Pro 2.1", "Viewer 3.0"]
        cad = app._panels["CAD Pro 2.1"].query_one(KeyedTable).plain_rows()
        assert cad[0] == ["A ★", "9", "9", "0", "100%", "9", "9", "0"]
        keys = app.query_one("#keys-table", KeyedTable)
        assert len(keys.row_keys()) == 72
        events = app.query_one("#events-table", KeyedTable).plain_rows()
        # newest first: the push C missed (A, B and B's sync of it), then the reclaim
        assert [row[2] for row in events][:4] == ["sync", "push", "push", "reclaim"]
        assert [row[2] for row in events][-1] == "start"


async def test_rows_update_in_place_by_key(recorded_app: Make, ready: Ready) -> None:
    """FIG. 8 -> FIG. 9: the same row keys, the cursor stays on its row, A goes down."""
    app = recorded_app("fig8", "fig9_after_a_died")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        table = app.query_one("#servers", KeyedTable)
        table.move_cursor(row=2)
        await pilot.press("space")
        await settle(pilot)
        assert app.polls == 2
        assert table.cursor_key() == "C"
        assert table.plain_rows()[0][5] == "DOWN"
        panel = app._panels["Application 1.0"].query_one(KeyedTable)
        assert panel.plain_rows()[0][:4] == ["A ✗", "40", "0", "40"]
        assert ("Application 1.0", "A", "in_use") in app._hot
        assert app.query_one("#header").render().plain.count("leader B") == 1  # type: ignore[union-attr]


async def test_pool_failure_shows_a_banner_and_keeps_running(
    recorded_app: Make, ready: Ready
) -> None:
    app = recorded_app("fig8")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)

        async def broken() -> dict[str, Any]:
            raise ConnectionRefusedError("connection refused")

        source_of(app).status = broken  # type: ignore[method-assign]
        await pilot.press("space")
        await settle(pilot)
        assert app.error == "connection refused"
        banner = app.query_one("#banner")
        assert banner.display
        assert "cannot reach the pool: connection refused" in str(banner.render())
        assert app.query_one("#servers", KeyedTable).row_keys() == ["A", "B", "C"]  # last status
        assert app.is_running


async def test_add_code_sends_the_code(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("fig8")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("a")
        assert isinstance(app.screen, CodeScreen)
        area = app.screen.query_one("#code", TextArea)
        area.text = "LM1-not-a-code"
        await pilot.pause()
        assert app.screen.query_one("#ok", Button).disabled
        area.text = CODES["viewer_base"]
        await pilot.pause()
        assert not app.screen.query_one("#ok", Button).disabled
        await pilot.click("#ok")
        await settle(pilot)
        assert source_of(app).calls == [("add_code", (CODES["viewer_base"],))]
        assert app.outcomes == [("add_code", Outcome(True, "done"))]


async def test_add_allocations_needs_an_add_on_code(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("fig8")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("l")
        area = app.screen.query_one("#code", TextArea)
        area.text = CODES["viewer_base"]
        await pilot.pause()
        assert app.screen.query_one("#ok", Button).disabled
        area.text = CODES["application_add"]
        await pilot.pause()
        await pilot.click("#ok")
        await settle(pilot)
        assert source_of(app).calls == [("add_allocations", (CODES["application_add"],))]


async def test_invalid_distribution_sum_is_refused_in_the_modal(
    recorded_app: Make, ready: Ready
) -> None:
    app = recorded_app("fig8")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("d")
        screen = app.screen
        assert isinstance(screen, DistributionScreen)
        assert screen.inputs() == {"A": "40", "B": "30", "C": "30"}
        await pilot.press("5", "0")  # A: 50 -> sum 110 > 100
        assert screen.inputs()["A"] == "50"
        assert screen.query_one("#ok", Button).disabled
        assert "sum 110 exceeds the hard limit 100" in str(screen.query_one("#dist-sum").render())
        await pilot.press("enter")  # refused: the modal stays, nothing is sent
        await settle(pilot)
        assert app.screen is screen
        assert source_of(app).calls == []
        await pilot.press("backspace", "backspace", "3", "0")  # 30 + 30 + 30 = 90
        assert not screen.query_one("#ok", Button).disabled
        await pilot.press("enter")
        await settle(pilot)
        assert source_of(app).calls == [
            ("set_distribution", ("Application 1.0", {"A": 30, "B": 30, "C": 30}))
        ]


async def test_push_rlf_shows_diff_then_follows_the_push(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("fig8", push_path=str(FIXTURES / "patent_seq3.rlf"))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("u")
        screen = app.screen
        assert isinstance(screen, PushScreen)
        assert screen.loaded is not None
        assert screen.loaded.error is None
        assert screen.loaded.sequence == 3
        assert "+A = 50" in screen.loaded.diff
        await pilot.click("#ok")
        await settle(pilot)
        (call,) = source_of(app).calls
        assert call[0] == "push_rlf"
        assert "sequence = 3" in call[1][0]
        assert app.outcomes[-1][0] == "push_rlf"
        assert app.rlf_text == call[1][0]  # the pushed RLF is now the pool's
        progress = screen.query_one("#progress", DataTable)
        assert progress.row_count == 3


async def test_push_refuses_an_older_sequence(
    recorded_app: Make, ready: Ready, patent_rlf_text: str
) -> None:
    app = recorded_app(
        "fig8", push_path=str(FIXTURES.parent.parent.parent / "sample_rlfs" / "patent.rlf")
    )
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("u")
        screen = app.screen
        assert isinstance(screen, PushScreen)
        assert screen.loaded is not None
        assert screen.loaded.error == "sequence 2 is not higher than the pool's sequence 2"
        assert screen.query_one("#ok", Button).disabled
        screen.query_one("#path", Input).value = "/nonexistent/x.rlf"
        await pilot.click("#load")
        assert screen.loaded.error is not None
        assert "No such file" in screen.loaded.error


async def test_reclaim_needs_a_reason(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("fig8")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("2", "down", "enter")
        assert isinstance(app.screen, KeyDetailsScreen)
        assert app.screen.row.client_id == "client-b"
        await pilot.press("r")
        assert isinstance(app.screen, ReclaimScreen)
        await pilot.press("enter")  # an empty reason is refused, and the dialog says why
        assert isinstance(app.screen, ReclaimScreen)
        why = str(app.screen.query_one("#reason-why", Static).render())
        assert "refused: a reason is required" in why
        await pilot.click("#ok")
        assert isinstance(app.screen, ReclaimScreen)
        assert source_of(app).calls == []
        await pilot.press(*"stale")
        await pilot.press("enter")
        await settle(pilot)
        assert source_of(app).calls == [("reclaim", ("client-b", "Application 1.0", "stale"))]


async def test_refused_action_is_a_toast_not_a_crash(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("fig8")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)

        async def boom(*_args: Any) -> Outcome:
            raise OSError("connection reset")

        source_of(app).reclaim = boom  # type: ignore[method-assign]
        await pilot.press("2", "r", *"x", "enter")
        await settle(pilot)
        assert app.outcomes == [("reclaim", Outcome(False, "connection reset"))]
        assert app.is_running


async def test_read_only_refuses_every_action(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("fig8", read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        for key in ("a", "l", "d", "u"):
            await pilot.press(key)
            assert not isinstance(app.screen, (CodeScreen, DistributionScreen, PushScreen))
        await pilot.press("2", "enter")
        assert isinstance(app.screen, KeyDetailsScreen)
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, ReclaimScreen)
        await settle(pilot)
        assert source_of(app).calls == []
        assert "[read-only]" in str(app.query_one("#header").render())


async def test_pause_stops_updates_and_space_refreshes(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("fig8", "fig9_after_a_died", "fig8")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("p")
        assert app.paused
        assert app.status is not None
        assert app.status["leader"] == "A"
        await pilot.press("space")  # paused: one refresh, said so, still paused
        await settle(pilot)
        assert app.status["leader"] == "B"
        assert app.paused
        assert any("refreshed once" in str(n.message) for n in app._notifications)
        await pilot.press("p")  # resume polls at once
        await settle(pilot)
        assert app.status["leader"] == "A"


async def test_help_lists_the_bindings(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("fig8")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = dict(app.screen.entries)
        assert keys["?"] == "Help"
        assert keys["d"] == "Change the distribution"
        assert keys["S"].startswith("Sort keys descending")
        assert keys["ctrl+p"] == "command palette"
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_filter_and_sort_keys(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("busy_pool")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("slash", *"^cad", "enter")
        table = app.query_one("#keys-table", KeyedTable)
        assert table.row_keys()
        assert all(k.startswith("cad-") for k in table.row_keys())
        assert app.focused is table
        await pilot.press("slash", *"!^(cad|ws)", "enter")  # focus selects all: typing replaces
        assert {k.split("-")[0] for k in table.row_keys()} == {"view"}
        await pilot.press("s", "s", "s", "s")  # client id -> server -> license -> count -> lease
        leases = [float(r[4].rstrip("s")) for r in table.plain_rows()]
        assert leases == sorted(leases)


@pytest.mark.parametrize("fixture", ["fig8", "no_majority"])
async def test_no_majority_banner_only_when_lost(
    recorded_app: Make, ready: Ready, fixture: str
) -> None:
    app = recorded_app(fixture)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        text = str(app.query_one("#banner").render())
        assert ("NO MAJORITY" in text) == (fixture == "no_majority")
        assert app.query_one("#banner").display == (fixture == "no_majority")


async def test_escape_leaves_the_filter(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("busy_pool")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("3", "slash")
        assert app.focused is app.query_one("#event-filter")
        await pilot.press(*"borrow", "escape")
        assert app.focused is app.query_one("#events-table")
        kinds = {row[2] for row in app.query_one("#events-table", KeyedTable).plain_rows()}
        assert kinds == {"borrow"}


async def test_command_palette_offers_the_actions(
    recorded_app: Make, ready: Ready, wait_until: Callable[..., Awaitable[None]]
) -> None:
    from textual.command import CommandList, CommandPalette

    app = recorded_app("fig8")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"distribution")
        await wait_until(
            pilot,
            lambda: app.screen.query_one(CommandList).option_count > 0,
            "palette hits",
        )
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, DistributionScreen), "the distribution dialog"
        )
