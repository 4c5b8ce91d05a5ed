"""Issue 10, item 4: the console's Usage tab -- utilisation over time per license (a
plotext plot), peak against the hard limit, denials marked -- fed the same merged report
as `lm report` (`lm_core.runtime.report.build_report`, here over recorded usage rows at
the fixed wall clock), at 80x24 and 120x40."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot
from textual_plotext import PlotextPlot

from lm_core.engine import messages as m
from lm_core.engine.identity import ClientIdentity
from lm_core.runtime.report import build_report
from lm_tui.app import LmTuiApp
from lm_tui.source import RecordedSource
from lm_tui.usage_tab import UsagePane, step_points
from lm_tui.widgets import KeyedTable

from .conftest import WALL, load_fixture

Ready = Callable[[Pilot[Any]], Awaitable[None]]
APP = "Application 1.0"
MIN = 60.0


def _row(i: int, kind: str, client: str, ago_min: float, *, count: int = 1,
         reason: str = "", user: str = "", lic: str = APP) -> m.UsageRecord:  # fmt: skip
    return m.UsageRecord(
        id=i, at=WALL - ago_min * MIN, kind=kind, client_id=client, license=lic, count=count,
        reason=reason, identity=ClientIdentity(user=user or client),
        last_at=WALL - ago_min * MIN if kind == "deny" else 0.0,
    )  # fmt: skip


def recorded_report() -> dict[str, Any]:
    """The last hour of a small pool: Application 1.0 reaches its hard limit of 100 twice
    and turns two users away; Other 2.0 idles along."""
    on_a = [
        _row(1, "grant", "ci-farm", 55, count=60, user="build"),
        _row(2, "grant", "alice", 50, count=20, user="alice"),
        _row(3, "grant", "bob", 40, count=20, user="bob"),
        _row(4, "deny", "carol", 38, reason="no_seats", user="carol"),
        _row(5, "release", "bob", 30),
        _row(6, "release", "alice", 10),
    ]
    on_b = [
        _row(7, "grant", "dave", 20, count=20, user="dave"),
        _row(8, "deny", "erin", 15, reason="no_seats", user="erin"),
        _row(9, "grant", "ops", 45, count=2, user="ops", lic="Other 2.0"),
    ]
    return build_report({"A": on_a, "B": on_b}, {"A": WALL, "B": WALL},
                        since=WALL - 60 * MIN, until=WALL, by="hour",
                        hard_limits={APP: 100, "Other 2.0": 10})  # fmt: skip


def make_app(usage: dict[str, Any] | None = None) -> LmTuiApp:
    snapshots = load_fixture("fig8")
    return LmTuiApp(
        RecordedSource(snapshots, usage=usage),
        pool_name=snapshots[0]["pool"],
        interval=None,
        clock=lambda: 100.0,
        wall_clock=lambda: WALL,
        blink=False,
    )


async def _show_usage(pilot: Pilot[Any]) -> None:
    from .conftest import wait_ready

    await wait_ready(pilot)
    await pilot.press("4")
    pane = pilot.app.query_one(UsagePane)
    for _ in range(200):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if pane.fetches:
            break
    await pilot.pause()


def test_step_points_draw_vertical_steps() -> None:
    xs, ys = step_points([[WALL - 120, 0], [WALL - 60, 3], [WALL, 1]], WALL)
    assert xs == [-2.0, -1.0, -1.0, 0.0, 0.0]
    assert ys == [0, 0, 3, 3, 1]


async def test_usage_tab_plots_the_report_and_tabulates_peak_against_the_limit() -> None:
    report = recorded_report()
    (app_lic,) = [x for x in report["licenses"] if x["license"] == APP]
    assert app_lic["peak"] == 100  # the recording is what the test says it is
    assert len(app_lic["denied_at"]) == 2
    app = make_app(report)
    async with app.run_test(size=(80, 24)) as pilot:
        await _show_usage(pilot)
        source = app.source
        assert isinstance(source, RecordedSource)
        assert source.usage_asked == [(WALL - 3600, WALL)]  # the last hour, once
        pane = app.query_one(UsagePane)
        assert pane.report == report
        table = app.query_one("#usage-table", KeyedTable)
        assert table.row_count == 2
        cells = [str(c) for c in table.get_row(APP)]
        assert cells[1] == "100 / 100"
        assert cells[4] == "2"
        assert cells[5].startswith("2 (no_seats 2)")
        plot = app.query_one(PlotextPlot)
        assert plot.region.height >= 8  # room for a plot at 80x24
        drawn = plot.plt.build()
        assert "minutes ago" in drawn
        assert "x" in drawn  # the denials' markers
        info = str(app.query_one("#usage-info").render())
        assert "servers read: A, B" in info


async def test_usage_tab_says_why_when_there_is_no_usage_log() -> None:
    app = make_app(None)
    async with app.run_test(size=(80, 24)) as pilot:
        await _show_usage(pilot)
        info = str(app.query_one("#usage-info").render())
        assert "no usage log recorded" in info
        assert app.query_one("#usage-table", KeyedTable).row_count == 0


def test_usage_tab_snapshot_80x24(snap_compare: Any) -> None:
    assert snap_compare(make_app(recorded_report()), terminal_size=(80, 24),
                        run_before=_show_usage)  # fmt: skip


def test_usage_tab_snapshot_120x40(snap_compare: Any) -> None:
    assert snap_compare(make_app(recorded_report()), terminal_size=(120, 40),
                        run_before=_show_usage)  # fmt: skip
