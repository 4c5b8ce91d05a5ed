"""The console's Usage tab: utilisation over time per license, peak against the hard
limit, denials marked -- from the same merged usage log as `lm report` (the source's
`usage(since, until)`, which reads every server through the admin API).

One fetch at a time: `UsagePane` fetches in an exclusive worker when it is shown, then
re-arms one timer for the next while it stays shown (nothing is read while another tab
is open). The plot is a `textual_plotext.PlotextPlot`: each license's seats in use as a
step line, its hard limit as a horizontal line, each wait that was refused as an ``x``
at the time it began; the table under it gives the numbers (peak of limit, average,
seat-hours, denials and users denied) for the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static
from textual_plotext import PlotextPlot

from lm_tui.widgets import KeyedTable

WINDOW = 3_600.0  # seconds of history shown
USAGE_COLUMNS = (
    ("license", "license"),
    ("peak", "peak/limit"),
    ("average", "average"),
    ("seat_hours", "seat-h"),
    ("users", "denied users"),
    ("denials", "denials (waits by reason)"),
)
COLORS = ("cyan", "green", "magenta", "yellow", "blue", "white")


class UsageSource(Protocol):
    async def usage(self, since: float, until: float) -> dict[str, Any]: ...


class UsageFetched(Message):
    """A usage report arrived (or `error` says why not)."""

    def __init__(self, report: dict[str, Any] | None, error: str = "") -> None:
        super().__init__()
        self.report = report
        self.error = error


def step_points(timeline: list[list[float]], now: float) -> tuple[list[float], list[float]]:
    """A step series ``[[t, seats], ...]`` as plot points: minutes before `now` on x, each
    change drawn as a vertical step."""
    xs: list[float] = []
    ys: list[float] = []
    prev: float | None = None
    for t, seats in timeline:
        x = (t - now) / 60.0
        if prev is not None:
            xs.append(x)
            ys.append(prev)
        xs.append(x)
        ys.append(seats)
        prev = seats
    return xs, ys


def summary_rows(report: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """The table under the plot: one row per license."""
    rows = []
    for lic in report.get("licenses", []):
        limit = lic.get("hard_limit")
        peak = Text(f"{lic['peak']} / {limit if limit is not None else '?'}")
        if limit is not None and lic["peak"] >= limit:
            peak.stylize("bold red")
        denials = lic.get("denials", {})
        waits = sum(d["waits"] for d in denials.values())
        users = max((d["users"] for d in denials.values()), default=0)
        reasons = ", ".join(f"{r} {d['waits']}" for r, d in denials.items())
        rows.append(
            (
                lic["license"],
                (
                    lic["license"],
                    peak,
                    f"{lic['average']:.2f}",
                    f"{lic['seat_hours']:.2f}",
                    str(users),
                    f"{waits} ({reasons})" if waits else "0",
                ),
            )
        )
    return rows


class UsagePane(Vertical):
    """The Usage tab's content. `source` answers `usage(since, until)`; `interval` None
    fetches once per showing (tests), else every `interval` seconds while shown."""

    def __init__(
        self,
        source: Any,
        *,
        window: float = WINDOW,
        interval: float | None = 5.0,
        wall_clock: Callable[[], float] = time.time,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.window = window
        self.interval = interval
        self.wall_clock = wall_clock
        self.report: dict[str, Any] | None = None
        self.error = ""
        self.fetches = 0
        self._timer: Any = None

    def compose(self) -> ComposeResult:
        yield Static(id="usage-info")
        yield PlotextPlot(id="usage-plot")
        yield KeyedTable(USAGE_COLUMNS, id="usage-table", cursor_type="row")

    def on_show(self) -> None:
        self.fetch()

    def on_hide(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    @work(exclusive=True, group="usage", exit_on_error=False)
    async def fetch(self) -> None:
        usage = getattr(self.source, "usage", None)
        if usage is None:
            self.post_message(UsageFetched(None, "this source has no usage log"))
            return
        now = self.wall_clock()
        try:
            report = await usage(now - self.window, now)
        except Exception as exc:  # shown, never raised: servers may be down
            self.post_message(UsageFetched(None, str(exc) or type(exc).__name__))
        else:
            self.post_message(UsageFetched(report))

    def on_usage_fetched(self, message: UsageFetched) -> None:
        self.fetches += 1
        if message.report is not None:
            self.report, self.error = message.report, ""
        else:
            self.error = message.error
        self._show_report()
        if self.interval is not None and self.display and self.is_attached:
            if self._timer is not None:
                self._timer.stop()
            self._timer = self.set_timer(self.interval, self.fetch)

    def _show_report(self) -> None:
        info = self.query_one("#usage-info", Static)
        report = self.report
        minutes = round(self.window / 60)
        if report is None:
            info.update(f"usage, last {minutes} min: {self.error or 'reading…'}")
            return
        unread = report.get("servers_unreachable") or {}
        line = (
            f"usage, last {minutes} min (servers read: "
            f"{', '.join(report.get('servers_read', [])) or 'none'}"
            + (f"; not read: {', '.join(sorted(unread))}" if unread else "")
            + ")  x = refused"
        )
        if self.error:
            line += f"  [last read failed: {self.error}]"
        info.update(Text(line))
        self._plot(report)
        self.query_one("#usage-table", KeyedTable).sync(summary_rows(report))

    def _plot(self, report: dict[str, Any]) -> None:
        widget = self.query_one("#usage-plot", PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        now = self.wall_clock()
        top = 1.0
        for i, lic in enumerate(report.get("licenses", [])):
            color = COLORS[i % len(COLORS)]
            xs, ys = step_points(lic.get("timeline", []), now)
            if xs:
                plt.plot(xs, ys, color=color, label=lic["license"], marker="braille")
                top = max(top, *ys)
            limit = lic.get("hard_limit")
            if limit is not None:
                plt.hline(limit, color=color)
                top = max(top, float(limit))
            denied = [(t - now) / 60.0 for t in lic.get("denied_at", [])]
            if denied:
                plt.scatter(denied, [float(limit or top)] * len(denied), marker="x",
                            color="red")  # fmt: skip
        plt.xlim(-self.window / 60.0, 0.0)
        plt.ylim(0.0, float(int(top * 1.2) + 1))
        plt.xlabel("minutes ago")
        widget.refresh()
