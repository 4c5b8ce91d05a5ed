"""The `lm-tui` application: a live view of the pool and the operator's actions.

Theory of operation:
* One poll at a time. `_poll` is an exclusive worker that asks the source for the merged
  pool status and posts `PoolUpdated` (or `PoolUnreachable`); when it finishes it re-arms
  one `set_timer` for the next poll. `space` cancels the timer and polls now; `p` stops
  re-arming. Nothing ever overlaps, however slow the pool answers.
* All widget changes happen in message handlers on the app's task, by row key
  (`KeyedTable.sync`), so there is no flicker and cursors stay put.
* Actions run in workers that never raise (exit_on_error=False and a catch-all): the
  outcome is an `ActionFinished` / `PushFinished` message, shown as a toast. Servers may
  die at any time; the last status stays on screen under a banner.
* The clock and the wall clock are injectable so recorded snapshots render identically.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane

from lm_core.engine.status_types import PoolStatus
from lm_core.engine.vocab import AdminOp, EventKind
from lm_tui.modals import (
    CodeRequest,
    CodeScreen,
    DistributionRequest,
    DistributionScreen,
    HelpScreen,
    KeyDetailsScreen,
    LicenseChoice,
    PushScreen,
    ReclaimRequest,
    ReclaimScreen,
)
from lm_tui.source import Outcome, PoolSource
from lm_tui.usage_tab import UsagePane
from lm_tui.viewmodel import (
    KEY_COLUMNS,
    KEY_HEADERS,
    DistributionView,
    EventLog,
    InUseHistory,
    KeyRow,
    RowFilter,
    changed_cells,
    compile_filter,
    distribution_views,
    header_view,
    key_row_text,
    key_rows,
    server_rows,
    sort_key_rows,
)
from lm_tui.widgets import KeyedTable, LicensePanel

HIGHLIGHT_SECONDS = 2.0
USAGE_INTERVAL = 5.0  # seconds between usage reads while the Usage tab is shown
HISTORY_SECONDS = 2.0  # one sparkline sample per this many seconds (24 samples shown)

SERVER_COLUMNS = (
    ("id", "server"),
    ("address", "address"),
    ("role", "role"),
    ("term", "term"),
    ("rlf_seq", "RLF seq"),
    ("up", "up"),
    ("heartbeat", "heartbeat age"),
)
EVENT_COLUMNS = (("time", "time"), ("server", "server"), ("kind", "kind"), ("text", "event"))
# One style per event kind the engine emits (a test checks this covers `EventKind` exactly).
KIND_STYLE: dict[str, str] = {
    EventKind.START: "green",
    EventKind.ROLE: "magenta",
    EventKind.ELECTION: "magenta",
    EventKind.CHECK: "yellow",
    EventKind.SYNC: "cyan",
    EventKind.FENCE: "red",
    EventKind.BORROW: "cyan",
    EventKind.CLAIM: "cyan",
    EventKind.ADMIN: "yellow",
    EventKind.PUSH: "yellow",
    EventKind.RECLAIM: "red",
    EventKind.EXPIRY: "yellow",
    EventKind.REFUSED: "dim",
    EventKind.ERROR: "bold red",
    EventKind.BUG: "bold red",
}


# ---------------------------------------------------------------- messages (past tense)


class PoolUpdated(Message):
    def __init__(self, status: PoolStatus) -> None:
        super().__init__()
        self.status = status


class PoolUnreachable(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class LeaderChanged(Message):
    def __init__(self, old: str | None, new: str | None, term: Any) -> None:
        super().__init__()
        self.old = old
        self.new = new
        self.term = term


class ActionFinished(Message):
    def __init__(self, action: AdminOp, outcome: Outcome) -> None:
        super().__init__()
        self.action = action
        self.outcome = outcome


class PushFinished(Message):
    def __init__(self, outcome: Outcome, rlf_text: str) -> None:
        super().__init__()
        self.outcome = outcome
        self.rlf_text = rlf_text


ACTION_NAMES = {
    AdminOp.ADD_LICENSE_CODE: "add license code",
    AdminOp.ADD_ALLOCATIONS: "add allocations",
    AdminOp.CHANGE_DISTRIBUTION: "change distribution",
    AdminOp.RECLAIM: "reclaim",
}


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class FilterInput(Input):
    """A `/` filter box: Escape goes back to the table below it."""

    BINDINGS = [Binding("escape", "leave", "Back to the table", show=False)]  # noqa: RUF012

    def __init__(self, table_id: str, **kwargs: Any) -> None:
        super().__init__(placeholder="/ filter: regex, !regex inverts", **kwargs)
        self.table_id = table_id

    def action_leave(self) -> None:
        self.screen.query_one(f"#{self.table_id}").focus()


_SORT = Binding.Group("Sort")


class LmTuiApp(App[int]):
    """The operator console for one pool."""

    CSS_PATH = "app.tcss"
    TITLE = "lm-tui"

    # Footer words are short so every key fits in 80 columns; `tooltip` is the long form
    # the help screen shows.
    BINDINGS = [  # noqa: RUF012
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("p", "pause", "Pause", tooltip="Pause / resume live updates"),
        Binding("space", "refresh", "Refresh", tooltip="Refresh now (once, even while paused)"),
        Binding("slash", "filter", "Filter", tooltip="Filter the keys or events table"),
        Binding(
            "s",
            "sort",
            "Sort ▲",
            tooltip="Sort keys ascending (again: by the next column)",
            group=_SORT,
        ),
        Binding(
            "S",
            "sort_descending",
            "Sort ▼",
            tooltip="Sort keys descending (again: by the next column)",
            group=_SORT,
        ),
        # a and l are in the help (?) and the command palette; the footer has no room.
        Binding("a", "add_code", "Code", tooltip="Add a license code", show=False),
        Binding(
            "l", "add_allocations", "Alloc", tooltip="Add allocations (add-on code)", show=False
        ),
        Binding("d", "distribution", "Dist", tooltip="Change the distribution"),
        Binding("u", "push", "Push", tooltip="Push an RLF"),
        Binding("r", "reclaim", "Reclaim", tooltip="Reclaim the selected authorization"),
        Binding("1", "show_tab('pool')", "Pool tab", show=False),
        Binding("2", "show_tab('keys')", "Keys tab", show=False),
        Binding("3", "show_tab('events')", "Events tab", show=False),
        Binding("4", "show_tab('usage')", "Usage tab", show=False),
    ]

    def __init__(
        self,
        source: PoolSource,
        *,
        pool_name: str = "?",
        rlf_text: str | None = None,
        read_only: bool = False,
        interval: float | None = 0.5,
        status_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        blink: bool = True,
        push_path: str = "",
        notice: str = "",
    ) -> None:
        super().__init__()
        self.source = source
        self.pool_name = pool_name
        self.rlf_text = rlf_text
        self.read_only = read_only
        self.interval = interval
        self.status_timeout = status_timeout
        self.clock = clock
        self.wall_clock = wall_clock
        self.blink = blink
        self.push_path = push_path
        self.notice = notice
        self.paused = False
        self.status: PoolStatus | None = None
        self.error: str | None = None
        self.updated_at: float | None = None
        self.outcomes: list[tuple[AdminOp, Outcome]] = []
        self.polls = 0
        self._timer: Any = None
        self._views: list[DistributionView] = []
        self._hot: dict[tuple[str, str, str], float] = {}
        self._history = InUseHistory()
        self._sampled_at: float | None = None
        self._closing = False
        self._events = EventLog()
        self._panels: dict[str, LicensePanel] = {}
        self._key_rows: dict[str, KeyRow] = {}
        self._key_filter: RowFilter = compile_filter("")
        self._event_filter: RowFilter = compile_filter("")
        self._sort_column = "client_id"
        self._sort_reverse = False
        self._refresh_once = False  # space while paused: show the next status anyway
        self._leader: str | None = None

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Static(id="banner")
        with TabbedContent(initial="pool"):
            with TabPane("Pool", id="pool"), VerticalScroll(id="pool-scroll"):
                yield Static("Servers", classes="section")
                yield KeyedTable(SERVER_COLUMNS, id="servers", cursor_type="row")
                yield Static("Distribution tables", classes="section")
                yield Vertical(id="licenses")
            with TabPane("Keys", id="keys"):
                with Horizontal(classes="filter-bar"):
                    yield FilterInput("keys-table", id="key-filter")
                    yield Static(id="key-info")
                yield KeyedTable(
                    tuple(zip(KEY_COLUMNS, KEY_HEADERS, strict=True)),
                    id="keys-table",
                    cursor_type="row",
                )
            with TabPane("Events", id="events"):
                with Horizontal(classes="filter-bar"):
                    yield FilterInput("events-table", id="event-filter")
                    yield Static(id="event-info")
                yield KeyedTable(EVENT_COLUMNS, id="events-table", cursor_type="row")
            with TabPane("Usage", id="usage"):
                yield UsagePane(
                    self.source,
                    interval=None if self.interval is None else USAGE_INTERVAL,
                    wall_clock=self.wall_clock,
                    id="usage-pane",
                )
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        for widget in self.query(Input):
            widget.cursor_blink = self.blink
        self.sub_title = "read-only" if self.read_only else ""
        self._render_header()
        for scroll in self.query(VerticalScroll):
            scroll.can_focus = False
        self.query_one("#servers", KeyedTable).focus()
        self._arm(0.0)
        if self.notice:
            self.notify(self.notice, title="lm-tui", timeout=20)
        if self.interval is not None:
            self.set_interval(1.0, self._render_header)

    # ------------------------------------------------------------ polling

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if delay <= 0:
            self._poll()
        else:
            self._timer = self.set_timer(delay, self._poll)

    @work(exclusive=True, group="poll", exit_on_error=False)
    async def _poll(self) -> None:
        try:
            status = await asyncio.wait_for(self.source.status(), self.status_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.post_message(PoolUnreachable(_error_line(exc)))
        else:
            self.post_message(PoolUpdated(status))
        if self.interval is not None and not self.paused:
            self._arm(self.interval)

    def on_pool_unreachable(self, message: PoolUnreachable) -> None:
        self.polls += 1
        self._refresh_once = False
        self.error = message.error
        self._render_header()

    async def on_pool_updated(self, message: PoolUpdated) -> None:
        self.polls += 1
        if self.paused and not self._refresh_once:
            return
        if self._refresh_once:
            self._refresh_once = False
            self.notify("paused: refreshed once (p resumes live updates)", timeout=3)
        self.error = None
        self.updated_at = self.clock()
        try:
            await self._apply(message.status)
        except Exception as exc:  # never a traceback: show why and keep going
            self.notify(f"could not show the status: {_error_line(exc)}", severity="error")

    # ------------------------------------------------------------ rendering

    async def _apply(self, status: PoolStatus) -> None:
        now = self.clock()
        views = distribution_views(status)
        hot = changed_cells(self._views, views)
        for cell in hot:
            self._hot[cell] = now + HIGHLIGHT_SECONDS
        if hot:
            self.set_timer(HIGHLIGHT_SECONDS + 0.05, self._cool)
        if self._sampled_at is None or now - self._sampled_at >= HISTORY_SECONDS:
            self._sampled_at = now
            self._history.add(views)
        self._events.add(status, self.wall_clock())
        self._views = views
        self.status = status
        leader = status.get("leader")
        if self._leader != leader and self.polls > 1:
            self.post_message(LeaderChanged(self._leader, leader, status.get("term")))
        self._leader = leader
        self._render_header()
        self._render_servers(status)
        await self._render_licenses(status)
        self._render_keys()
        self._render_events()
        if isinstance(self.screen, PushScreen):
            self.screen.show_status(status)

    def _cool(self) -> None:
        if self.status is not None:
            self.call_later(self._rerender)

    async def _rerender(self) -> None:
        if self.status is not None:
            await self._render_licenses(self.status)

    def _render_header(self) -> None:
        if not self.is_running or self._closing:
            return
        age = None if self.updated_at is None else max(0.0, self.clock() - self.updated_at)
        view = header_view(
            self.status,
            updated_age=age,
            error=self.error,
            paused=self.paused,
            pool_name=self.pool_name,
        )
        serving_style = "bold green" if view.serving else "bold red"
        line = Text.assemble(
            ("pool ", "dim"),
            (view.pool, "bold"),
            ("   RLF seq ", "dim"),
            (view.rlf_seq, "bold"),
            ("   leader ", "dim"),
            (view.leader, "bold"),
            ("   term ", "dim"),
            (view.term, "bold"),
            ("   ", ""),
            (view.majority, serving_style),
            ("   updated ", "dim"),
            (view.updated, ""),
        )
        if self.read_only:
            line.append("   [read-only]", style="bold yellow")
        self.query_one("#header", Static).update(line)
        banner = self.query_one("#banner", Static)
        banner.display = bool(view.banners)
        banner.update(Text("\n".join(view.banners)))

    def _render_servers(self, status: PoolStatus) -> None:
        rows = []
        for r in server_rows(status):
            rows.append(
                (
                    r.key,
                    [
                        Text(r.id, style="bold"),
                        r.address,
                        Text(
                            r.role,
                            style="bold magenta"
                            if r.role == "leader"
                            else ("bold yellow" if r.role.endswith("(drained)") else ""),
                        ),
                        r.term,
                        Text(
                            r.rlf_seq + (" behind" if r.behind else ""),
                            style="bold yellow" if r.behind else "",
                        ),
                        Text("up", style="green") if r.up else Text("DOWN", style="bold red"),
                        r.heartbeat,
                    ],
                )
            )
        with self.batch_update():
            self.query_one("#servers", KeyedTable).sync(rows)

    async def _render_licenses(self, status: PoolStatus) -> None:
        box = self.query_one("#licenses", Vertical)
        views = distribution_views(status)
        now = self.clock()
        self._hot = {k: v for k, v in self._hot.items() if v > now}
        hot = set(self._hot)
        wanted = {v.license for v in views}
        for lic in [name for name in self._panels if name not in wanted]:
            await self._panels.pop(lic).remove()
        for view in views:
            if view.license not in self._panels:
                panel = LicensePanel(view.license)
                self._panels[view.license] = panel
                await box.mount(panel)
        with self.batch_update():
            for view in views:
                self._panels[view.license].show(
                    view, status.get("leader"), hot, self._history.series(view.license)
                )

    def _render_keys(self) -> None:
        if self.status is None:
            return
        rows = key_rows(self.status)
        self._key_rows = {r.key: r for r in rows}
        shown = [
            r
            for r in sort_key_rows(rows, self._sort_column, self._sort_reverse)
            if self._key_filter(key_row_text(r))
        ]
        arrow = "▼" if self._sort_reverse else "▲"
        total = self.status.get("clients_total")
        more = f" (servers hold {total})" if isinstance(total, int) and total > len(rows) else ""
        info = Text(
            f"{len(shown)} of {len(rows)} keys{more} · sorted by {self._sort_column} {arrow}"
        )
        if self._key_filter.error:
            info = Text(self._key_filter.error, style="bold red")
        self.query_one("#key-info", Static).update(info)
        table_rows = [
            (
                r.key,
                [
                    Text(r.client_id, style="bold"),
                    r.server,
                    r.license,
                    Text(str(r.count), justify="right"),
                    Text(r.lease, justify="right"),
                    r.user or "-",
                    r.host or "-",
                    r.program or "-",
                    r.since[11:] or "-",  # the time (UTC); the date is in the details
                ],
            )
            for r in shown
        ]
        with self.batch_update():
            self.query_one("#keys-table", KeyedTable).sync(table_rows)

    def _render_events(self) -> None:
        rows = self._events.rows(self._event_filter)
        info = Text(f"{len(rows)} events, newest first")
        if self._event_filter.error:
            info = Text(self._event_filter.error, style="bold red")
        self.query_one("#event-info", Static).update(info)
        table_rows = []
        for r in rows:
            when = datetime.datetime.fromtimestamp(r.at).strftime("%H:%M:%S")
            style = KIND_STYLE.get(r.kind, "")
            table_rows.append(
                (r.key, [Text(when, style="dim"), r.server, Text(r.kind, style=style), r.text])
            )
        with self.batch_update():
            self.query_one("#events-table", KeyedTable).sync(table_rows)

    def on_leader_changed(self, message: LeaderChanged) -> None:
        if message.new is None:
            self.notify(f"no leader (was {message.old})", severity="error")
        else:
            self.notify(f"leader is now {message.new} (term {message.term})", severity="warning")

    # ------------------------------------------------------------ filters and sorting

    @on(Input.Changed, "#key-filter")
    def _key_filter_changed(self, event: Input.Changed) -> None:
        self._key_filter = compile_filter(event.value)
        self._render_keys()

    @on(Input.Changed, "#event-filter")
    def _event_filter_changed(self, event: Input.Changed) -> None:
        self._event_filter = compile_filter(event.value)
        self._render_events()

    @on(Input.Submitted, "#key-filter")
    def _key_filter_done(self) -> None:
        self.query_one("#keys-table", KeyedTable).focus()

    @on(Input.Submitted, "#event-filter")
    def _event_filter_done(self) -> None:
        self.query_one("#events-table", KeyedTable).focus()

    @on(DataTable.HeaderSelected, "#keys-table")
    def _header_selected(self, event: DataTable.HeaderSelected) -> None:
        column = event.column_key.value
        if column is None:
            return
        if column == self._sort_column:
            self._sort_reverse = not self._sort_reverse
        else:
            self._sort_column, self._sort_reverse = column, False
        self._render_keys()

    def action_sort(self, descending: bool = False) -> None:
        """Sort the keys by the next column (or, when the direction changes, the same one)."""
        if descending == self._sort_reverse:
            i = KEY_COLUMNS.index(self._sort_column)
            self._sort_column = KEY_COLUMNS[(i + 1) % len(KEY_COLUMNS)]
        self._sort_reverse = descending
        self._show_tab("keys")
        self._render_keys()

    def action_sort_descending(self) -> None:
        self.action_sort(descending=True)

    def action_filter(self) -> None:
        tabs = self.query_one(TabbedContent)
        tab = "events" if tabs.active == "events" else "keys"
        self._show_tab(tab)
        self.query_one("#event-filter" if tab == "events" else "#key-filter", Input).focus()

    def action_show_tab(self, tab: str) -> None:
        self._show_tab(tab)

    def _show_tab(self, tab: str) -> None:
        """Switch tabs and move the focus along (TabbedContent follows the focus)."""
        tabs = self.query_one(TabbedContent)
        if tabs.active != tab:
            tabs.active = tab
        target = {"pool": "#servers", "keys": "#keys-table", "events": "#events-table",
                  "usage": "#usage-table"}[tab]  # fmt: skip
        self.query_one(target, KeyedTable).focus()

    # ------------------------------------------------------------ pause / refresh / help

    def action_pause(self) -> None:
        self.paused = not self.paused
        if self.paused:
            if self._timer is not None:
                self._timer.stop()
            self.notify("paused: press p to resume", timeout=2)
        else:
            self._arm(0.0)
        self._render_header()

    def action_refresh(self) -> None:
        if not self.paused:
            self._arm(0.0)
            return
        # Paused: fetch and show one status now, then stay paused (said when it arrives).
        self._refresh_once = True
        self._poll()

    def help_entries(self) -> list[tuple[str, str]]:
        names = {"question_mark": "?", "slash": "/", "space": "space"}
        entries = []
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            entries.append(
                (names.get(binding.key, binding.key), binding.tooltip or binding.description)
            )
        entries += [
            ("enter", "details of the selected key (Keys tab)"),
            ("ctrl+p", "command palette"),
            ("escape", "close a dialog / leave a filter"),
        ]
        return entries

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.help_entries(), self.read_only))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Add license code", "Add a license code to the pool", self.action_add_code
        )
        yield SystemCommand(
            "Add allocations", "Raise seats with an add-on code", self.action_add_allocations
        )
        yield SystemCommand(
            "Change distribution", "Move allocations between servers", self.action_distribution
        )
        yield SystemCommand("Push RLF", "Push a new signed RLF to every server", self.action_push)
        yield SystemCommand("Pause / resume", "Stop or restart live updates", self.action_pause)
        yield SystemCommand("Refresh", "Ask the pool for its status now", self.action_refresh)

    # ------------------------------------------------------------ actions

    def _allowed(self) -> bool:
        if self.read_only:
            self.notify("read-only: actions are disabled", severity="warning")
            return False
        return True

    def action_add_code(self) -> None:
        if self._allowed():
            self.push_screen(
                CodeScreen(AdminOp.ADD_LICENSE_CODE, self._vendors()), self._code_chosen
            )

    def action_add_allocations(self) -> None:
        if self._allowed():
            self.push_screen(
                CodeScreen(AdminOp.ADD_ALLOCATIONS, self._vendors()), self._code_chosen
            )

    def _vendors(self) -> dict[str, str] | None:
        """Vendor keys of the pool's current RLF (None if unknown: the pool checks)."""
        if self.rlf_text is None:
            return None
        from lm_core.engine.rlf import parse_rlf

        try:
            rlf = parse_rlf(self.rlf_text)
        except Exception:
            return None
        return {v.name: v.key for v in rlf.vendors}

    def _code_chosen(self, request: CodeRequest | None) -> None:
        if request is None:
            return
        if request.kind == AdminOp.ADD_ALLOCATIONS:
            self._act(AdminOp.ADD_ALLOCATIONS, self.source.add_allocations(request.code))
        else:
            self._act(AdminOp.ADD_LICENSE_CODE, self.source.add_code(request.code))

    def action_distribution(self) -> None:
        if not self._allowed():
            return
        if self.status is None or not self._views:
            self.notify("no status yet: cannot change the distribution", severity="warning")
            return
        servers = [str(s["id"]) for s in self.status.get("servers", [])]
        choices = []
        for view in self._views:
            current = {}
            for row in view.rows:
                value = row.distribution if row.distribution is not None else row.own_distribution
                current[row.server] = value or 0
            choices.append(LicenseChoice(view.license, view.hard_limit, current))
        initial = self._focused_license()
        self.push_screen(DistributionScreen(choices, servers, initial), self._distribution_chosen)

    def _focused_license(self) -> str | None:
        focused = self.focused
        if focused is None:
            return None
        for node in [focused, *focused.ancestors]:
            if isinstance(node, LicensePanel):
                return node.license
        return None

    def _distribution_chosen(self, request: DistributionRequest | None) -> None:
        if request is not None:
            self._act(
                AdminOp.CHANGE_DISTRIBUTION,
                self.source.set_distribution(request.license, request.distribution),
            )

    def action_push(self) -> None:
        if not self._allowed():
            return
        seq = self.status.get("rlf_seq") if self.status else None
        self.push_screen(
            PushScreen(
                self.rlf_text, seq if isinstance(seq, int) else None, self._push, self.push_path
            )
        )

    def action_reclaim(self) -> None:
        if not self._allowed():
            return
        row = self._selected_key()
        if row is None:
            self._show_tab("keys")
            self.notify("select an authorization in the Keys tab first", severity="warning")
            return
        self.push_screen(ReclaimScreen(row), self._reclaim_chosen)

    def _selected_key(self) -> KeyRow | None:
        if self.query_one(TabbedContent).active != "keys":
            return None
        key = self.query_one("#keys-table", KeyedTable).cursor_key()
        return self._key_rows.get(key) if key is not None else None

    @on(DataTable.RowSelected, "#keys-table")
    def _key_selected(self, event: DataTable.RowSelected) -> None:
        row = self._key_rows.get(event.row_key.value or "")
        if row is not None:
            self.push_screen(KeyDetailsScreen(row), lambda choice: self._details_done(row, choice))

    def _details_done(self, row: KeyRow, choice: str | None) -> None:
        if choice == "reclaim" and self._allowed():
            self.push_screen(ReclaimScreen(row), self._reclaim_chosen)

    def _reclaim_chosen(self, request: ReclaimRequest | None) -> None:
        if request is not None:
            self._act(
                AdminOp.RECLAIM,
                self.source.reclaim(request.client_id, request.license, request.reason),
            )

    def _act(self, action: AdminOp, call: Coroutine[Any, Any, Outcome]) -> None:
        self.notify(f"{ACTION_NAMES.get(action, str(action))}: sent…", timeout=2)
        self._run_action(action, call)

    @work(group="action", exit_on_error=False)
    async def _run_action(self, action: AdminOp, call: Coroutine[Any, Any, Outcome]) -> None:
        try:
            outcome = await call
        except Exception as exc:
            outcome = Outcome(False, _error_line(exc))
        self.post_message(ActionFinished(action, outcome))

    def on_action_finished(self, message: ActionFinished) -> None:
        self.outcomes.append((message.action, message.outcome))
        name = ACTION_NAMES.get(message.action, str(message.action))
        if message.outcome.ok:
            self.notify(f"{name}: {message.outcome.message}", title="done")
        else:
            self.notify(f"{name}: {message.outcome.message}", title="refused", severity="error")
        self.action_refresh()

    def _push(self, rlf_text: str) -> None:
        self._run_push(rlf_text)

    @work(group="action", exit_on_error=False)
    async def _run_push(self, rlf_text: str) -> None:
        try:
            outcome = await self.source.push_rlf(rlf_text)
        except Exception as exc:
            outcome = Outcome(False, _error_line(exc))
        self.post_message(PushFinished(outcome, rlf_text))

    def on_push_finished(self, message: PushFinished) -> None:
        outcome = message.outcome
        self.outcomes.append((AdminOp.UPDATE_RLF, outcome))
        if outcome.ok:
            self.rlf_text = message.rlf_text
            self.notify(f"push RLF: {outcome.message}", title="done")
        else:
            self.notify(f"push RLF: {outcome.message}", title="refused", severity="error")
        if isinstance(self.screen, PushScreen):
            try:
                self.screen.show_result(outcome.ok, outcome.message, outcome.per_server)
            except Exception as exc:  # never a traceback to the operator
                self.notify(f"could not show the push result: {_error_line(exc)}")
        self.action_refresh()

    async def action_quit(self) -> None:
        self.exit(0)

    async def on_unmount(self) -> None:
        self._closing = True
        self.paused = True  # no more re-arming
        if self._timer is not None:
            self._timer.stop()
        self.workers.cancel_group(self, "poll")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.source.aclose(), 2.0)
