"""View model of the operator console: pool status (the `lm status --json` contract) -> rows.

Nothing here imports Textual; every function is pure (or, for `EventLog` and `InUseHistory`,
a small accumulator fed by the caller with explicit times), so the console's logic has plain
unit tests and the widgets only copy cells into tables.

Conventions:
* A "don't care" cell (a follower's view of another server, the patent's "X") is `None`;
  the widget layer shows it as `X`. A missing row (no leader, server unreachable) is `None`
  as well.
* Usage thresholds are on in use / distribution of a server: `warn` at >= 70 %, `crit` at
  >= 90 % (and any use of a zero distribution is `crit`).
* Row keys are stable strings, so tables update in place by key.
"""

from __future__ import annotations

import difflib
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lm_core.engine.binding import binding_note
from lm_core.engine.status_types import PoolStatus

T = TypeVar("T")

WARN = 0.70
CRIT = 0.90


def usage_level(in_use: int | None, distribution: int | None) -> str:
    """'ok' / 'warn' / 'crit' for one server's use of its distribution."""
    if in_use is None or distribution is None:
        return "ok"
    if distribution <= 0:
        return "crit" if in_use > 0 else "ok"
    ratio = in_use / distribution
    if ratio >= CRIT:
        return "crit"
    if ratio >= WARN:
        return "warn"
    return "ok"


def _fmt_age(age: float | None) -> str:
    if age is None:
        return "—"
    if age < 10:
        return f"{age:.1f}s"
    if age < 120:
        return f"{age:.0f}s"
    if age < 7200:
        return f"{age / 60:.0f}m"
    return f"{age / 3600:.0f}h"


# ------------------------------------------------------------------------- header


@dataclass(frozen=True, slots=True)
class HeaderView:
    pool: str
    rlf_seq: str
    leader: str
    term: str
    majority: str
    serving: bool
    updated: str
    banners: tuple[str, ...]


def header_view(
    status: PoolStatus | None,
    *,
    updated_age: float | None,
    error: str | None = None,
    paused: bool = False,
    pool_name: str = "?",
) -> HeaderView:
    """The header line and its banners. `status` is the last status received (or None);
    `error` is the last poll's failure (the pool could not be reached at all)."""
    banners: list[str] = []
    if status is None:
        if error:
            banners.append(f"cannot reach the pool: {error}")
        return HeaderView(
            pool=pool_name,
            rlf_seq="?",
            leader="?",
            term="?",
            majority="no status yet",
            serving=False,
            updated="never" if updated_age is None else f"{_fmt_age(updated_age)} ago",
            banners=tuple(banners),
        )
    majority = status.get("majority") or {}
    up, size, ok = majority.get("up", 0), majority.get("size", 0), bool(majority.get("ok"))
    majority_text = f"{up}/{size} up, majority ok" if ok else f"{up}/{size} up — NOT SERVING"
    leader = status.get("leader")
    if error:
        banners.append(f"cannot reach the pool: {error} (showing the last status)")
    unreachable = [s["id"] for s in status.get("servers", []) if not s.get("reachable", True)]
    if status.get("tls_error"):
        # a TLS failure looks like servers down: name it (wrong CA, expired, TLS needed)
        banners.append(f"TLS: {status['tls_error']}")
    else:
        for s in status.get("servers", []):
            if s.get("tls_error"):
                banners.append(f"TLS, server {s['id']}: {s['tls_error']}")
    if unreachable:
        banners.append("cannot reach server " + ", ".join(unreachable))
    if not ok and 2 * up > size:
        banners.append(
            f"NOT SERVING: {up} of {size} servers up, but no leader in contact with a majority "
            "(election in progress?)"
        )
    elif not ok:
        banners.append(f"NO MAJORITY: {up} of {size} servers up — the pool issues no licenses")
    if leader is None:
        banners.append("NO LEADER: an election is pending or a majority is missing")
    elif leader in unreachable:
        banners.append(f"the leader {leader} cannot be reached: followers will elect a new one")
    updated = "never" if updated_age is None else f"{_fmt_age(updated_age)} ago"
    if paused:
        updated += " (paused)"
    return HeaderView(
        pool=str(status.get("pool", pool_name)),
        rlf_seq=str(status.get("rlf_seq", "?")),
        leader=str(leader) if leader is not None else "none",
        term=str(status.get("term", "?")),
        majority=majority_text,
        serving=ok and leader is not None,
        updated=updated,
        banners=tuple(banners),
    )


# ------------------------------------------------------------------------- servers


@dataclass(frozen=True, slots=True)
class ServerRow:
    key: str
    id: str
    address: str
    role: str
    term: str
    rlf_seq: str
    behind: bool
    up: bool
    heartbeat: str


def server_rows(status: PoolStatus) -> list[ServerRow]:
    """One row per server in leader-priority order; `behind` flags an RLF sequence lower
    than the pool's."""
    servers = list(status.get("servers", []))
    pool_seq = status.get("rlf_seq")
    seqs = [seq for s in servers if isinstance(seq := s.get("rlf_seq"), int)]
    newest = max([*seqs, pool_seq] if isinstance(pool_seq, int) else seqs, default=None)
    rows = []
    for s in servers:
        seq = s.get("rlf_seq")
        up = bool(s.get("up"))
        rows.append(
            ServerRow(
                key=str(s["id"]),
                id=str(s["id"]),
                address=str(s.get("address", "")),
                role=str(s.get("role") or ("down" if not up else "?"))
                + (" (drained)" if s.get("drained") else ""),
                term="—" if s.get("term") is None else str(s["term"]),
                rlf_seq="—" if seq is None else str(seq),
                behind=isinstance(seq, int) and newest is not None and seq < newest,
                up=up,
                heartbeat=_fmt_age(s.get("last_heartbeat_age")),
            )
        )
    return rows


# ------------------------------------------------------------------------- distribution


@dataclass(frozen=True, slots=True)
class DistRow:
    """One server's line in a license's distribution table: the leader's global view
    (`distribution`, `in_use`, `available`) beside the server's own report (`own_*`)."""

    key: str
    server: str
    up: bool
    distribution: int | None
    in_use: int | None
    available: int | None
    level: str
    own_distribution: int | None
    own_in_use: int | None
    own_available: int | None

    @property
    def percent(self) -> str:
        if self.in_use is None or not self.distribution:
            return "—"
        return f"{100 * self.in_use / self.distribution:.0f}%"


@dataclass(frozen=True, slots=True)
class DistributionView:
    license: str
    hard_limit: int | None
    pool_available: int | None
    free_pool: int | None
    in_use: int
    rows: tuple[DistRow, ...]
    binding: str = ""  # V1: "unbound", "bound to this pool", "bound: REFUSED on A" or ""


def _num(row: Mapping[str, Any] | None, name: str) -> int | None:
    if not row:
        return None
    value = row.get(name)
    return value if isinstance(value, int) else None


def distribution_views(status: PoolStatus) -> list[DistributionView]:
    """One view per license, rows in the RLF's server order."""
    order = [str(s["id"]) for s in status.get("servers", [])]
    up = {str(s["id"]): bool(s.get("up")) for s in status.get("servers", [])}
    leader = status.get("leader")
    views = []
    for lic in status.get("licenses", []):
        global_rows: Mapping[str, Any] = lic.get("servers") or {}
        own_rows: Mapping[str, Any] = lic.get("own") or {}
        ids = order + [sid for sid in list(global_rows) + list(own_rows) if sid not in order]
        rows = []
        total = 0
        for sid in ids:
            g = global_rows.get(sid)
            own = own_rows.get(sid)
            if own is None and sid == leader:
                own = g
            in_use = _num(g, "in_use")
            if in_use is None:
                in_use = _num(own, "in_use")
            total += in_use or 0
            rows.append(
                DistRow(
                    key=sid,
                    server=sid,
                    up=up.get(sid, False),
                    distribution=_num(g, "distribution"),
                    in_use=_num(g, "in_use"),
                    available=_num(g, "available"),
                    level=usage_level(_num(g, "in_use"), _num(g, "distribution")),
                    own_distribution=_num(own, "distribution"),
                    own_in_use=_num(own, "in_use"),
                    own_available=_num(own, "available"),
                )
            )
        views.append(
            DistributionView(
                license=str(lic["license"]),
                hard_limit=lic.get("hard_limit"),
                pool_available=lic.get("pool_available"),
                free_pool=lic.get("free_pool"),
                in_use=total,
                rows=tuple(rows),
                binding=binding_note(dict(lic.get("binding") or {})),
            )
        )
    return views


DIFF_FIELDS = (
    "distribution",
    "in_use",
    "available",
    "own_distribution",
    "own_in_use",
    "own_available",
)


def changed_cells(
    before: Sequence[DistributionView], after: Sequence[DistributionView]
) -> set[tuple[str, str, str]]:
    """(license, server, field) of every cell whose value changed. New licenses and new
    rows are not "changed" (nothing to compare with); header totals use server "*"."""
    old = {v.license: v for v in before}
    changed: set[tuple[str, str, str]] = set()
    for view in after:
        prev = old.get(view.license)
        if prev is None:
            continue
        for name in ("hard_limit", "pool_available", "free_pool"):
            if getattr(prev, name) != getattr(view, name):
                changed.add((view.license, "*", name))
        prev_rows = {r.key: r for r in prev.rows}
        for row in view.rows:
            p = prev_rows.get(row.key)
            if p is None:
                continue
            for name in DIFF_FIELDS:
                if getattr(p, name) != getattr(row, name):
                    changed.add((view.license, row.key, name))
    return changed


BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int], top: int | None, width: int = 24) -> str:
    """The last `width` values as block characters scaled 0..top (the hard limit), so
    the height means the same thing on every license; no data -> empty string."""
    data = list(values)[-width:]
    if not data:
        return ""
    scale = top if top and top > 0 else max(max(data), 1)
    out = []
    for v in data:
        level = min(max(v, 0) / scale, 1.0)
        out.append(BLOCKS[min(len(BLOCKS) - 1, int(level * (len(BLOCKS) - 1) + 0.5))])
    return "".join(out)


class InUseHistory:
    """In-use totals per license over time, for the sparklines (bounded)."""

    def __init__(self, size: int = 60) -> None:
        self._size = size
        self._data: dict[str, deque[int]] = {}

    def add(self, views: Iterable[DistributionView]) -> None:
        for view in views:
            self._data.setdefault(view.license, deque(maxlen=self._size)).append(view.in_use)

    def series(self, license: str) -> list[int]:
        return list(self._data.get(license, ()))


# ------------------------------------------------------------------------- key table


@dataclass(frozen=True, slots=True)
class KeyRow:
    key: str
    client_id: str
    server: str
    license: str
    count: int
    lease_expires_in: float | None
    # who holds it, as the client stated (`ClientIdentity`; "" / 0 when not known)
    user: str = ""
    host: str = ""
    program: str = ""  # program and version
    display: str = ""
    pid: int = 0
    since: str = ""  # checkout start, "YYYY-MM-DD HH:MM:SS" UTC

    @property
    def lease(self) -> str:
        return _fmt_age(self.lease_expires_in)

    def cells(self) -> tuple[str, ...]:
        return (
            self.client_id, self.server, self.license, str(self.count), self.lease,
            self.user or "-", self.host or "-", self.program or "-", self.since[11:] or "-",
        )  # fmt: skip


# who holds a seat comes after the seat itself: the columns an 80-column screen shows
# first stay the same, the identity scrolls in from the right
KEY_COLUMNS = (
    "client_id", "server", "license", "count", "lease_expires_in", "user", "host",
    "program", "since",
)  # fmt: skip
KEY_HEADERS = (
    "client id", "server", "license", "count", "lease expires in", "user", "host",
    "program", "since (UTC)",
)  # fmt: skip


def key_rows(status: PoolStatus) -> list[KeyRow]:
    rows = []
    for c in status.get("clients", []):
        server, lic, cid = str(c.get("server", "?")), str(c["license"]), str(c["client_id"])
        expires = c.get("lease_expires_in")
        who = c.get("identity") or {}
        since = c.get("since")
        rows.append(
            KeyRow(
                key=f"{cid}\x1f{server}\x1f{lic}",
                client_id=cid,
                server=server,
                license=lic,
                count=int(c.get("count", 1)),
                lease_expires_in=float(expires) if expires is not None else None,
                user=str(who.get("user") or ""),
                host=str(who.get("host") or ""),
                program=" ".join(str(who[k]) for k in ("program", "version") if who.get(k)),
                display=str(who.get("display") or ""),
                pid=int(who.get("pid") or 0),
                since=since.replace("T", " ").removesuffix("Z") if isinstance(since, str) else "",
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class RowFilter:
    """A compiled `/` filter: a case-insensitive regex; a leading `!` inverts it."""

    text: str
    error: str | None
    _match: Callable[[str], bool]

    def __call__(self, haystack: str) -> bool:
        return self._match(haystack)


def compile_filter(text: str) -> RowFilter:
    """Empty text matches everything; an invalid regex matches everything and says why."""
    pattern, invert = text, False
    if pattern.startswith("!"):
        pattern, invert = pattern[1:], True
    if not pattern:
        return RowFilter(text, None, lambda _s: True)
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        return RowFilter(text, f"bad regex: {exc}", lambda _s: True)
    if invert:
        return RowFilter(text, None, lambda s: regex.search(s) is None)
    return RowFilter(text, None, lambda s: regex.search(s) is not None)


def filter_rows(rows: Iterable[T], flt: RowFilter, text_of: Callable[[T], str]) -> list[T]:
    return [r for r in rows if flt(text_of(r))]


def sort_key_rows(rows: Iterable[KeyRow], column: str, reverse: bool = False) -> list[KeyRow]:
    """Sort by one of KEY_COLUMNS; ties broken by the row key so the order is total."""

    def key(r: KeyRow) -> tuple[Any, ...]:
        value = getattr(r, column)
        if value is None:
            return (1, 0, r.key)
        return (0, value, r.key)

    return sorted(rows, key=key, reverse=reverse)


def key_row_text(row: KeyRow) -> str:
    """What the `/` filter searches: the client id first (so ``^name`` anchors on it),
    then the other cells."""
    return " ".join((row.client_id, row.server, row.license, str(row.count), row.lease,
                     row.user, row.host, row.program, row.display, row.since))  # fmt: skip


# ------------------------------------------------------------------------- event log


@dataclass(frozen=True, slots=True)
class EventRow:
    key: str
    at: float  # the console's clock when the event happened (now - age)
    server: str
    kind: str
    text: str

    def cells(self, now: float) -> tuple[str, ...]:
        return (_fmt_age(max(0.0, now - self.at)), self.server, self.kind, self.text)


@dataclass
class EventLog:
    """Events accumulated across status snapshots, deduplicated, newest first.

    Each snapshot lists a server's recent events with their age; the same event shows up
    in many snapshots with a growing age. Two sightings are the same event when server,
    kind and text agree and their estimated times differ by less than `tolerance`.
    """

    size: int = 500
    tolerance: float = 1.5
    _rows: list[EventRow] = field(default_factory=list)
    _next: int = 0

    def add(self, status: PoolStatus, now: float) -> list[EventRow]:
        """Take the events of one snapshot seen at `now`; return the new ones."""
        new: list[EventRow] = []
        for ev in status.get("events", []):
            at = now - float(ev.get("age", 0.0))
            server, kind, text = str(ev.get("server", "?")), str(ev["kind"]), str(ev["text"])
            if any(
                r.server == server
                and r.kind == kind
                and r.text == text
                and abs(r.at - at) < self.tolerance
                for r in self._rows
            ):
                continue
            row = EventRow(key=f"ev{self._next}", at=at, server=server, kind=kind, text=text)
            self._next += 1
            self._rows.append(row)
            new.append(row)
        self._rows.sort(key=lambda r: (r.at, r.key))
        del self._rows[: max(0, len(self._rows) - self.size)]
        return new

    def rows(self, flt: RowFilter | None = None) -> list[EventRow]:
        rows = list(reversed(self._rows))
        if flt is None:
            return rows
        return [r for r in rows if flt(f"{r.server} {r.kind} {r.text}")]


# ------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class DistributionCheck:
    ok: bool
    total: int
    free_pool: int | None
    values: dict[str, int]
    errors: tuple[str, ...]


def check_distribution(
    hard_limit: int | None, servers: Sequence[str], inputs: Mapping[str, str]
) -> DistributionCheck:
    """Validate a new distribution typed per server: whole numbers >= 0, every server
    filled in, sum <= hard limit; the rest goes to the free pool."""
    errors: list[str] = []
    values: dict[str, int] = {}
    for sid in servers:
        raw = inputs.get(sid, "").strip()
        if not raw:
            errors.append(f"{sid}: enter a number")
            continue
        try:
            n = int(raw)
        except ValueError:
            errors.append(f"{sid}: {raw!r} is not a whole number")
            continue
        if n < 0:
            errors.append(f"{sid}: must not be negative")
            continue
        values[sid] = n
    total = sum(values.values())
    free = None if hard_limit is None else hard_limit - total
    if hard_limit is None:
        errors.append("the hard limit is unknown (no leader): cannot check the sum")
    elif total > hard_limit:
        errors.append(f"sum {total} exceeds the hard limit {hard_limit}")
    return DistributionCheck(not errors, total, free, values, tuple(errors))


def _signed_lines(text: str) -> list[str]:
    """The lines that matter: comments and blank lines are not signed, so not shown."""
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def rlf_diff(current: str, new: str, *, current_name: str, new_name: str) -> list[str]:
    """Unified diff of two RLF texts (callers pass canonical renderings), comments and
    blank lines left out."""
    return list(
        difflib.unified_diff(
            _signed_lines(current),
            _signed_lines(new),
            fromfile=current_name,
            tofile=new_name,
            lineterm="",
            n=1,
        )
    )


def check_push(current_seq: int | None, new_seq: int) -> str | None:
    """Why a push would be refused by the pool (S5), or None."""
    if current_seq is not None and new_seq <= current_seq:
        return f"sequence {new_seq} is not higher than the pool's sequence {current_seq}"
    return None


def push_progress(status: PoolStatus, target_seq: int) -> list[tuple[str, str]]:
    """Per server: 'seq N ✓' once it reports the target sequence, 'seq N …' before,
    'down' while down."""
    out = []
    for s in status.get("servers", []):
        seq = s.get("rlf_seq")
        if not s.get("up") and not s.get("reachable"):
            out.append((str(s["id"]), "down"))
        elif isinstance(seq, int) and seq >= target_seq:
            out.append((str(s["id"]), f"seq {seq} ✓"))
        else:
            out.append((str(s["id"]), f"seq {seq} …"))
    return out
