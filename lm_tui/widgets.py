"""Widgets of the console: a DataTable updated in place by row key, and a license panel.

`KeyedTable.sync(rows)` is the only way rows change: rows that went away are removed,
changed cells are updated, new rows are added, and the order is fixed with `sort` --
never a clear-and-refill, so there is no flicker and the cursor stays on its row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from lm_tui.viewmodel import DistributionView, DistRow, sparkline

Cell = Text | str


class KeyedTable(DataTable[Any]):
    """A DataTable whose rows carry stable keys and are synced, not rebuilt."""

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._column_spec = list(columns)
        self._shown: dict[str, tuple[str, ...]] = {}

    def on_mount(self) -> None:
        for key, label in self._column_spec:
            self.add_column(label, key=key)

    @staticmethod
    def _signature(cell: Cell) -> str:
        if isinstance(cell, Text):
            return f"{cell.plain}\x00{cell.style}\x00{cell.spans}"
        return f"{cell}\x00"

    def cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def sync(self, rows: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Make the table show exactly `rows` (key, cells), in that order."""
        keep = self.cursor_key()
        wanted = {key for key, _ in rows}
        for key in [k for k in self._shown if k not in wanted]:
            self.remove_row(key)
            del self._shown[key]
        columns = [key for key, _ in self._column_spec]
        for key, cells in rows:
            # Each row's first cell is a fresh Text: the sort below tells rows apart by it.
            first = cells[0] if isinstance(cells[0], Text) else Text(str(cells[0]))
            cells = [first.copy(), *cells[1:]]
            sig = tuple(self._signature(c) for c in cells)
            old = self._shown.get(key)
            if old is None:
                self.add_row(*cells, key=key)
            elif old != sig:
                for column, cell, before, after in zip(columns, cells, old, sig, strict=True):
                    if before != after:
                        self.update_cell(key, column, cell, update_width=True)
            self._shown[key] = sig
        order = [key for key, _ in rows]
        if [r.key.value for r in self.ordered_rows] != order:
            position = {id(self.get_cell(key, columns[0])): i for i, key in enumerate(order)}
            self.sort(columns[0], key=lambda cell: position[id(cell)])
        if keep is not None and keep in self._shown:
            self.move_cursor(row=self.get_row_index(keep), animate=False)

    def row_keys(self) -> list[str]:
        """Row keys in display order (for tests)."""
        return [r.key.value for r in self.ordered_rows if r.key.value is not None]

    def plain_rows(self) -> list[list[str]]:
        """Cells as plain strings in display order (for tests)."""
        out = []
        for row in self.ordered_rows:
            cells = self.get_row(row.key)
            out.append([c.plain if isinstance(c, Text) else str(c) for c in cells])
        return out


DIST_TABLE_COLUMNS = (
    ("server", "server"),
    ("distribution", "distribution"),
    ("in_use", "in use"),
    ("available", "available"),
    ("use", "use"),
    ("own_distribution", "own: distribution"),
    ("own_in_use", "in use"),
    ("own_available", "available"),
)

LEVEL_STYLE = {"ok": "", "warn": "bold yellow", "crit": "bold red"}
HOT_STYLE = "reverse"


def _cell(value: int | None, *, hot: bool, style: str = "", dont_care: bool = True) -> Text:
    if value is None:
        return Text("X" if dont_care else "—", style="dim", justify="right")
    return Text(str(value), style=f"{style} {HOT_STYLE}".strip() if hot else style, justify="right")


def dist_cells(
    view: DistributionView, row: DistRow, leader: str | None, hot: set[str]
) -> list[Cell]:
    """Cells of one row; `hot` names the fields to highlight as just changed."""
    level = LEVEL_STYLE[row.level]
    name = row.server + (" ★" if row.server == leader else "") + ("" if row.up else " ✗")
    has_global = leader is not None
    return [
        Text(name, style="" if row.up else "dim red"),
        _cell(row.distribution, hot="distribution" in hot, dont_care=has_global),
        _cell(row.in_use, hot="in_use" in hot, style=level, dont_care=has_global),
        _cell(row.available, hot="available" in hot, dont_care=has_global),
        Text(row.percent, style=level, justify="right"),
        _cell(row.own_distribution, hot="own_distribution" in hot, dont_care=False),
        _cell(row.own_in_use, hot="own_in_use" in hot, dont_care=False),
        _cell(row.own_available, hot="own_available" in hot, dont_care=False),
    ]


class LicensePanel(Vertical):
    """One license: a title line (hard limit, pool available, free pool, in use and a
    sparkline of its history), and the distribution table."""

    DEFAULT_CSS = """
    LicensePanel { height: auto; margin-bottom: 1; }
    LicensePanel > .title { height: 1; }
    LicensePanel > KeyedTable { height: auto; max-height: 14; }
    """

    def __init__(self, license: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.license = license

    def compose(self) -> ComposeResult:
        yield Static(self.license, classes="title")
        yield KeyedTable(DIST_TABLE_COLUMNS, cursor_type="none", zebra_stripes=False)

    def show(
        self,
        view: DistributionView,
        leader: str | None,
        hot: set[tuple[str, str, str]],
        history: list[int],
    ) -> None:
        totals_hot = {f for lic, s, f in hot if lic == view.license and s == "*"}
        title = Text.assemble(
            (view.license, "bold"),
            "   hard limit ",
            self._total(view.hard_limit, "hard_limit" in totals_hot),
            "   pool available ",
            self._total(view.pool_available, "pool_available" in totals_hot),
            "   free pool ",
            self._total(view.free_pool, "free_pool" in totals_hot),
            "   in use ",
            (str(view.in_use), "bold"),
            "  ",
            (sparkline(history, view.hard_limit), "cyan"),
        )
        if view.binding:  # V1: a bound code refused here is shown loudly
            style = "bold red" if "REFUSED" in view.binding else "dim"
            title.append(f"  {view.binding}", style=style)
        self.query_one(".title", Static).update(title)
        rows = []
        for row in view.rows:
            row_hot = {f for lic, s, f in hot if lic == view.license and s == row.key}
            rows.append((row.key, dist_cells(view, row, leader, row_hot)))
        self.query_one(KeyedTable).sync(rows)

    @staticmethod
    def _total(value: int | None, hot: bool) -> Text:
        text = "—" if value is None else str(value)
        return Text(text, style="bold reverse" if hot else "bold")
