"""The console's modal screens: every action validates here before anything is sent.

Each screen dismisses with what the app should send (or None for cancel); the app does
the sending in a worker and reports the outcome as a toast. The push screen is the
exception: it stays open after the operator confirms and follows the push server by
server (the app feeds it statuses through `show_status` and the result through
`show_result`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Select, Static, TextArea

from lm_core.engine.status_types import PoolStatus
from lm_core.engine.vocab import AdminOp
from lm_tui.viewmodel import (
    KeyRow,
    check_distribution,
    check_push,
    push_progress,
    rlf_diff,
)


class _Modal(ModalScreen[Any]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]  # noqa: RUF012

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_mount(self) -> None:
        blink = bool(getattr(self.app, "blink", True))
        for widget in self.query(Input):
            widget.cursor_blink = blink
        for area in self.query(TextArea):
            area.cursor_blink = blink

    @on(Button.Pressed, "#cancel")
    def _cancelled(self) -> None:
        self.dismiss(None)


# ---------------------------------------------------------------- add code / allocations


@dataclass(frozen=True, slots=True)
class CodeRequest:
    kind: AdminOp  # ADD_LICENSE_CODE or ADD_ALLOCATIONS
    code: str


def code_text(text: str) -> str:
    """The code itself: `text`, or the contents of the file `text` names."""
    candidate = text.strip()
    if candidate and "\n" not in candidate and not candidate.upper().startswith("LM1-"):
        path = Path(candidate).expanduser()
        try:
            if path.is_file():
                return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return text
    return text


def describe_code(
    text: str, *, want_kind: str | None, vendors: Mapping[str, str] | None = None
) -> tuple[bool, Text]:
    """Parse a pasted code: (ok, what to show). With `vendors` (name -> public key text,
    from the pool's RLF) the vendor signature is checked here too."""
    from lm_core.engine.codes import parse_code, verify_code
    from lm_core.engine.keys import load_public
    from lm_core.errors import LmError

    if not text.strip():
        return False, Text(
            "paste a license code (or type the path of a file holding one)", style="dim"
        )
    text = code_text(text)
    try:
        code = parse_code(text)
    except LmError as exc:
        return False, Text(f"not a license code: {exc}", style="bold red")
    except Exception as exc:  # a malformed paste must never crash the console
        return False, Text(f"not a license code: {exc}", style="bold red")
    info = Text.assemble(
        ("product  ", "dim"),
        (f"{code.product} {code.version}\n", "bold"),
        ("seats    ", "dim"),
        f"{code.seats} ({code.kind})\n",
        ("expires  ", "dim"),
        f"{code.expires.isoformat()}\n",
        ("vendor   ", "dim"),
        f"{code.vendor}\n",
        ("serial   ", "dim"),
        f"{code.serial}\n",
        ("binding  ", "dim"),
        f"bound to {len(code.binding)} servers" if code.binding else "unbound",
    )
    if vendors is not None:
        key = vendors.get(code.vendor)
        if key is None:
            info.append(
                f"\nvendor {code.vendor!r} is not trusted by the pool's RLF", style="bold red"
            )
            return False, info
        try:
            verify_code(code, load_public(key))
        except LmError as exc:
            info.append(f"\n{exc}", style="bold red")
            return False, info
        info.append("\nvendor signature verified against the pool's RLF", style="green")
    if want_kind == "add" and code.kind != "add":
        info.append("\nadd allocations needs an add-on code (kind 'add')", style="bold red")
        return False, info
    return True, info


class CodeScreen(_Modal):
    """Add a license code, or add allocations with an add-on code."""

    def __init__(self, kind: AdminOp, vendors: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.vendors = vendors

    def compose(self) -> ComposeResult:
        title = "Add a license code" if self.kind == AdminOp.ADD_LICENSE_CODE else "Add allocations"
        with Vertical(classes="dialog"):
            yield Label(title, classes="dialog-title")
            yield Label("Paste the code, or type the path of a file holding it:")
            yield TextArea(id="code", soft_wrap=True, show_line_numbers=False)
            yield Static(Text("paste a license code", style="dim"), id="code-info")
            with Horizontal(classes="buttons"):
                yield Button("Add", id="ok", variant="primary", disabled=True)
                yield Button("Cancel", id="cancel")

    @on(TextArea.Changed, "#code")
    def _changed(self, event: TextArea.Changed) -> None:
        want = "add" if self.kind == AdminOp.ADD_ALLOCATIONS else None
        ok, info = describe_code(event.text_area.text, want_kind=want, vendors=self.vendors)
        self.query_one("#code-info", Static).update(info)
        self.query_one("#ok", Button).disabled = not ok

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        text = self.query_one("#code", TextArea).text
        want = "add" if self.kind == AdminOp.ADD_ALLOCATIONS else None
        if describe_code(text, want_kind=want, vendors=self.vendors)[0]:
            self.dismiss(CodeRequest(self.kind, " ".join(code_text(text).split())))


# ---------------------------------------------------------------- change distribution


@dataclass(frozen=True, slots=True)
class DistributionRequest:
    license: str
    distribution: dict[str, int]


@dataclass(frozen=True, slots=True)
class LicenseChoice:
    license: str
    hard_limit: int | None
    current: dict[str, int]


class DistributionScreen(_Modal):
    """Per-server inputs, the live sum against the hard limit, the free pool; refuses
    invalid sums (the Apply button stays disabled and Enter does nothing)."""

    def __init__(
        self, choices: Sequence[LicenseChoice], servers: Sequence[str], initial: str | None
    ) -> None:
        super().__init__()
        self.choices = {c.license: c for c in choices}
        self.servers = list(servers)
        self.license = initial if initial in self.choices else next(iter(self.choices))

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Change the distribution", classes="dialog-title")
            yield Select(
                [(name, name) for name in self.choices],
                value=self.license,
                allow_blank=False,
                id="license",
                compact=True,
            )
            for sid in self.servers:
                with Horizontal(classes="field compact"):
                    yield Label(f"server {sid}", classes="field-label")
                    yield Input(
                        id=f"dist-{sid}", type="integer", classes="dist-input", compact=True
                    )
            yield Static(id="dist-sum")
            with Horizontal(classes="buttons"):
                yield Button("Apply", id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        super().on_mount()
        self._fill()
        if self.servers:
            self.query_one(f"#dist-{self.servers[0]}", Input).focus()

    def _fill(self) -> None:
        current = self.choices[self.license].current
        for sid in self.servers:
            self.query_one(f"#dist-{sid}", Input).value = str(current.get(sid, 0))
        self._recheck()

    def inputs(self) -> dict[str, str]:
        return {sid: self.query_one(f"#dist-{sid}", Input).value for sid in self.servers}

    def _recheck(self) -> bool:
        choice = self.choices[self.license]
        check = check_distribution(choice.hard_limit, self.servers, self.inputs())
        limit = "?" if choice.hard_limit is None else str(choice.hard_limit)
        free = "?" if check.free_pool is None else str(check.free_pool)
        text = Text.assemble(
            ("sum ", "dim"),
            (str(check.total), "bold"),
            (" of hard limit ", "dim"),
            (limit, "bold"),
            ("   free pool ", "dim"),
            (free, "bold" if check.ok else "bold red"),
        )
        for err in check.errors:
            text.append(f"\n✗ {err}", style="bold red")
        self.query_one("#dist-sum", Static).update(text)
        self.query_one("#ok", Button).disabled = not check.ok
        return check.ok

    @on(Select.Changed, "#license")
    def _license_changed(self, event: Select.Changed) -> None:
        if isinstance(event.value, str) and event.value in self.choices:
            self.license = event.value
            self._fill()

    @on(Input.Changed, ".dist-input")
    def _changed(self) -> None:
        self._recheck()

    @on(Input.Submitted, ".dist-input")
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        choice = self.choices[self.license]
        check = check_distribution(choice.hard_limit, self.servers, self.inputs())
        if not check.ok:
            self._recheck()
            self.app.bell()
            return
        self.dismiss(DistributionRequest(self.license, check.values))


# ---------------------------------------------------------------- push RLF


@dataclass(frozen=True, slots=True)
class LoadedRlf:
    text: str
    sequence: int
    diff: list[str]
    error: str | None


def load_rlf_for_push(
    path_text: str, current_text: str | None, current_seq: int | None
) -> LoadedRlf:
    """Read, parse and verify an RLF file, and diff it against the pool's current RLF."""
    from lm_core.engine.keys import load_public
    from lm_core.engine.rlf import parse_rlf, render_rlf, verify_rlf
    from lm_core.errors import LmError

    path = Path(path_text.strip()).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return LoadedRlf("", 0, [], f"{path}: {exc.strerror or exc}")
    try:
        new = parse_rlf(text, file=str(path))
        admin_key = None
        current = None
        if current_text is not None:
            current = parse_rlf(current_text, file="current RLF")
            admin_key = load_public(current.admin_key)
        verify_rlf(new, admin_key=admin_key)
    except LmError as exc:
        return LoadedRlf(text, 0, [], str(exc))
    except Exception as exc:  # never a traceback to the operator
        return LoadedRlf(text, 0, [], f"{path}: {exc}")
    old_render = render_rlf(current) if current is not None else ""
    diff = rlf_diff(
        old_render,
        render_rlf(new),
        current_name=f"pool (seq {current_seq})",
        new_name=f"{path.name} (seq {new.sequence})",
    )
    return LoadedRlf(text, new.sequence, diff, check_push(current_seq, new.sequence))


def diff_text(lines: Sequence[str]) -> Text:
    out = Text()
    for line in lines:
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = "dim"
        out.append(line + "\n", style=style)
    if not lines:
        out.append("(no differences)", style="dim")
    return out


class PushScreen(_Modal):
    """Pick a file, see the diff and sequence numbers, confirm, then follow the push."""

    def __init__(
        self,
        current_text: str | None,
        current_seq: int | None,
        push: Callable[[str], None],
        initial_path: str = "",
    ) -> None:
        super().__init__()
        self.current_text = current_text
        self.current_seq = current_seq
        self._push = push
        self._initial_path = initial_path
        self.loaded: LoadedRlf | None = None
        self.pushing = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Push an RLF", classes="dialog-title")
            with Horizontal(classes="field"):
                yield Input(value=self._initial_path, placeholder="path/to/new.rlf", id="path")
                yield Button("Load", id="load")
            yield Static(id="seqs")
            with VerticalScroll(id="diff-box"):
                yield Static(id="diff")
            yield DataTable(id="progress", cursor_type="none")
            with Horizontal(classes="buttons"):
                yield Button("Push", id="ok", variant="warning", disabled=True)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#progress", DataTable)
        table.add_column("server", key="server")
        table.add_column("progress", key="progress")
        table.display = False
        seq = "?" if self.current_seq is None else str(self.current_seq)
        self.query_one("#seqs", Static).update(Text(f"pool sequence {seq}", style="dim"))
        if self._initial_path:
            self._load()

    @on(Input.Submitted, "#path")
    @on(Button.Pressed, "#load")
    def _load(self) -> None:
        if self.pushing:
            return
        loaded = load_rlf_for_push(
            self.query_one("#path", Input).value, self.current_text, self.current_seq
        )
        self.loaded = loaded
        seqs = Text()
        seq = "?" if self.current_seq is None else str(self.current_seq)
        if loaded.sequence:
            seqs.append(f"pool sequence {seq} → file sequence {loaded.sequence}", style="bold")
        if loaded.error:
            seqs.append(("\n" if loaded.sequence else "") + f"✗ {loaded.error}", style="bold red")
        self.query_one("#seqs", Static).update(seqs)
        self.query_one("#diff", Static).update(
            diff_text(loaded.diff) if not loaded.error or loaded.diff else Text("")
        )
        self.query_one("#ok", Button).disabled = loaded.error is not None
        if loaded.error is None:
            self.query_one("#ok", Button).focus()  # Enter now confirms the push

    @on(Button.Pressed, "#ok")
    def _confirm(self) -> None:
        if self.loaded is None or self.loaded.error is not None or self.pushing:
            return
        self.pushing = True
        self.query_one("#ok", Button).disabled = True
        self.query_one("#load", Button).disabled = True
        self.query_one("#path", Input).disabled = True
        self.query_one("#cancel", Button).label = "Close"
        self.query_one("#progress", DataTable).display = True
        self.query_one("#seqs", Static).update(
            Text(f"pushing sequence {self.loaded.sequence}…", style="bold yellow")
        )
        self._push(self.loaded.text)

    def show_status(self, status: PoolStatus) -> None:
        if not self.pushing or self.loaded is None:
            return
        self._rows(push_progress(status, self.loaded.sequence))

    def show_result(self, ok: bool, message: str, per_server: Mapping[str, str]) -> None:
        self._rows(sorted(per_server.items()))
        style = "bold green" if ok else "bold red"
        self.query_one("#seqs", Static).update(
            Text(("pushed: " if ok else "push refused: ") + message, style=style)
        )

    def _rows(self, rows: Sequence[tuple[str, str]]) -> None:
        table = self.query_one("#progress", DataTable)
        for sid, word in rows:
            if sid in table.rows:
                table.update_cell(sid, "progress", word)
            else:
                table.add_row(sid, word, key=sid)


# ---------------------------------------------------------------- key details / reclaim


@dataclass(frozen=True, slots=True)
class ReclaimRequest:
    client_id: str
    license: str
    server: str
    reason: str


def _key_text(row: KeyRow) -> Text:
    return Text.assemble(
        ("client id  ", "dim"),
        (row.client_id + "\n", "bold"),
        ("server     ", "dim"),
        row.server + "\n",
        ("license    ", "dim"),
        row.license + "\n",
        ("count      ", "dim"),
        f"{row.count}\n",
        ("lease      ", "dim"),
        f"expires in {row.lease}\n",
        ("user       ", "dim"),
        f"{row.user or '?'}@{row.host or '?'}\n",
        ("program    ", "dim"),
        f"{row.program or '-'}" + (f" (pid {row.pid})" if row.pid else "") + "\n",
        ("display    ", "dim"),
        f"{row.display or '-'}\n",
        ("since      ", "dim"),
        f"{row.since + ' UTC' if row.since else '-'}",
    )


class KeyDetailsScreen(_Modal):
    """Enter on a key-table row."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape", "cancel", "Close"),
        Binding("r", "reclaim", "Reclaim"),
    ]

    def __init__(self, row: KeyRow) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Authorization", classes="dialog-title")
            yield Static(_key_text(self.row))
            with Horizontal(classes="buttons"):
                yield Button("Reclaim…", id="reclaim", variant="error")
                yield Button("Close", id="cancel")

    @on(Button.Pressed, "#reclaim")
    def action_reclaim(self) -> None:
        self.dismiss("reclaim")


_RECLAIM_HINT = Text("the client loses its seat at its next heartbeat", style="dim")
_RECLAIM_REFUSED = Text(
    "✗ refused: a reason is required (it is logged with the reclaim); type one, then Enter",
    style="bold red",
)


class ReclaimScreen(_Modal):
    """Take a seat back: a reason is required, and the operator confirms."""

    def __init__(self, row: KeyRow) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Reclaim an authorization", classes="dialog-title")
            yield Static(_key_text(self.row))
            yield Input(placeholder="reason (required, logged)", id="reason")
            yield Static(_RECLAIM_HINT, id="reason-why")
            with Horizontal(classes="buttons"):
                yield Button("Reclaim", id="ok", variant="error")
                yield Button("Cancel", id="cancel")

    @on(Input.Changed, "#reason")
    def _changed(self, event: Input.Changed) -> None:
        if event.value.strip():
            self.query_one("#reason-why", Static).update(_RECLAIM_HINT)

    @on(Input.Submitted, "#reason")
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason:
            # Say why nothing happens: the reason goes into the usage log with the reclaim.
            self.query_one("#reason-why", Static).update(_RECLAIM_REFUSED)
            self.query_one("#reason", Input).focus()
            self.app.bell()
            return
        self.dismiss(ReclaimRequest(self.row.client_id, self.row.license, self.row.server, reason))


# ---------------------------------------------------------------- help


class HelpScreen(_Modal):
    """`?`: every key of the console, built from the bindings."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape", "cancel", "Close"),
        Binding("question_mark", "cancel", "Close", show=False),
        Binding("q", "cancel", "Close", show=False),
    ]

    def __init__(self, bindings: Sequence[tuple[str, str]], read_only: bool) -> None:
        super().__init__()
        self.entries = list(bindings)
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("lm-tui keys", classes="dialog-title")
            table: DataTable[str] = DataTable(
                id="help-table", cursor_type="none", show_header=False
            )
            yield table
            note = (
                "read-only: actions are disabled" if self.read_only else "escape closes this help"
            )
            yield Static(Text(note, style="dim"))
            with Horizontal(classes="buttons"):
                yield Button("Close", id="cancel")

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#help-table", DataTable)
        table.add_columns("key", "action")
        for key, description in self.entries:
            table.add_row(Text(key, style="bold"), description)
