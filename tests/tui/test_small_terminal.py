"""The console at 80x24: the whole footer, the distribution dialog's Apply/Cancel and the
push dialog's Cancel are on screen (geometry checked, and SVG snapshots); refresh while
paused; descending sort; an empty reclaim reason says why it is refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets import Button, Footer
from textual.widgets._footer import FooterKey, FooterLabel

from lm_tui.app import LmTuiApp
from lm_tui.modals import DistributionScreen, PushScreen
from lm_tui.widgets import KeyedTable

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = (80, 24)

Ready = Callable[[Pilot[Any]], Awaitable[None]]
Make = Callable[..., LmTuiApp]


def _on_screen(region: Region) -> bool:
    return region.width > 0 and Region(0, 0, *SMALL).contains_region(region)


async def test_footer_shows_every_key_it_lists(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("fig8")
    async with app.run_test(size=SMALL) as pilot:
        await ready(pilot)
        footer = app.screen.query_one(Footer)
        keys = list(footer.query(FooterKey))
        shown = {k.key for k in keys}
        assert shown >= {"q", "question_mark", "p", "space", "slash", "s", "S", "d", "u", "r"}
        for widget in [*keys, *footer.query(FooterLabel)]:
            assert _on_screen(widget.region), (widget, widget.region)
        # The keys the footer leaves out are in the help.
        entries = dict(app.help_entries())
        assert "Add a license code" in entries["a"]
        assert "Add allocations" in entries["l"]


async def test_distribution_dialog_buttons_on_screen(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("fig8")
    async with app.run_test(size=SMALL) as pilot:
        await ready(pilot)
        await pilot.press("d")
        assert isinstance(app.screen, DistributionScreen)
        await pilot.pause()
        for button in ("#ok", "#cancel"):
            region = app.screen.query_one(button, Button).region
            assert _on_screen(region), (button, region)
        await pilot.click("#cancel")
        assert not isinstance(app.screen, DistributionScreen)


async def test_push_dialog_cancel_on_screen(
    recorded_app: Make, ready: Ready, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(FIXTURES)
    app = recorded_app("fig8", push_path="patent_seq3.rlf")
    async with app.run_test(size=SMALL) as pilot:
        await ready(pilot)
        await pilot.press("u")
        assert isinstance(app.screen, PushScreen)
        await pilot.pause()
        for button in ("#ok", "#cancel"):
            region = app.screen.query_one(button, Button).region
            assert _on_screen(region), (button, region)
        await pilot.click("#cancel")
        assert not isinstance(app.screen, PushScreen)


async def test_descending_sort_key(recorded_app: Make, ready: Ready) -> None:
    app = recorded_app("busy_pool")
    async with app.run_test(size=SMALL) as pilot:
        await ready(pilot)
        await pilot.press("2", "S")  # the same column (client id), descending
        table = app.query_one("#keys-table", KeyedTable)
        ids = [r[0] for r in table.plain_rows()]
        assert ids == sorted(ids, reverse=True)
        await pilot.press("s")  # the same column again, ascending
        assert [r[0] for r in table.plain_rows()] == sorted(ids)
        await pilot.press("S", "S", "S", "S")  # -> server -> license -> count, descending
        counts = [int(r[3]) for r in table.plain_rows()]
        assert counts == sorted(counts, reverse=True)


# ---------------------------------------------------------------- snapshots at 80x24


def test_small_overview(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    """The pool tab at 80x24: header, tables, the whole footer."""
    assert snap_compare(recorded_app("fig8"), terminal_size=SMALL, run_before=ready)


def test_small_distribution_dialog(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    """The distribution dialog at 80x24, Apply and Cancel visible."""
    assert snap_compare(recorded_app("fig8"), press=["d"], terminal_size=SMALL, run_before=ready)


def test_small_push_dialog(
    snap_compare: Any, recorded_app: Make, ready: Ready, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The push dialog at 80x24: the diff scrolls, Push and Cancel visible."""
    monkeypatch.chdir(FIXTURES)
    app = recorded_app("fig8", push_path="patent_seq3.rlf")
    assert snap_compare(app, press=["u"], terminal_size=SMALL, run_before=ready)


def test_small_reclaim_refused(snap_compare: Any, recorded_app: Make, ready: Ready) -> None:
    """An empty reclaim reason: the dialog says why nothing happened."""
    press = ["2", "r", "enter"]
    assert snap_compare(recorded_app("fig8"), press=press, terminal_size=SMALL, run_before=ready)
