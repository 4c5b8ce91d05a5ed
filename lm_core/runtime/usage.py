"""The usage log through the admin API: the daemon's side (answer `UsageRequest` from the
store, prune by retention) and the reader's side (every reachable server's rows of a
time window, paged), for `lm report` and the TUI's usage tab.

A `UsageRequest` is read-only and travels as a STATUS frame, so a monitor certificate
may send it (`admission`). The daemon answers it from the store's own read connection in
a worker thread: a long report never holds up the daemon's loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lm_core.engine import messages as m
from lm_core.engine.identity import identity_or_none
from lm_core.engine.limits import CLOCK_MAX, USAGE_PAGE_MAX
from lm_core.runtime.audit import utc_stamp
from lm_core.runtime.store import PRUNE_CHUNK, PRUNE_EVERY, Store, UsageRow

if TYPE_CHECKING:
    from lm_core.runtime.admin import AdminClient

log = logging.getLogger("lm.usage")

DAY = 86_400.0
PRUNE_STEPS = 4  # chunks per prune run (the rest waits PRUNE_AGAIN seconds)
PRUNE_AGAIN = 1.0


# ---------------------------------------------------------------- daemon side


def _record(row: UsageRow) -> m.UsageRecord:
    return m.UsageRecord(
        id=row.id,
        at=min(max(row.at, 0.0), CLOCK_MAX),
        kind=row.kind,
        client_id=row.client_id,
        license=row.license,
        count=row.count,
        reason=row.reason,
        attempts=row.attempts,
        last_at=0.0 if row.last_at is None else min(max(row.last_at, 0.0), CLOCK_MAX),
        identity=identity_or_none(row.identity),
    )


async def usage_reply(store: Store, msg: m.UsageRequest, server_id: str) -> m.Message:
    """The answer to `msg`: one page of the window's rows (or a refusal)."""
    until = msg.until or CLOCK_MAX
    if until < msg.since:
        return m.AdminReply(
            pool=msg.pool, sender=server_id, request_id=msg.request_id, ok=False,
            message=f"usage window ends ({until:.0f}) before it starts ({msg.since:.0f})",
        )  # fmt: skip
    try:
        rows, more = await asyncio.to_thread(
            store.usage_window, msg.since, until, after_id=msg.after_id,
            limit=min(msg.limit, USAGE_PAGE_MAX), license=msg.license,
        )  # fmt: skip
    except sqlite3.Error as exc:
        log.warning("usage log read failed: %s", exc)
        return m.AdminReply(
            pool=msg.pool, sender=server_id, request_id=msg.request_id, ok=False,
            message=f"usage log read failed: {exc}",
        )  # fmt: skip
    return m.UsageReply(
        pool=msg.pool,
        sender=server_id,
        request_id=msg.request_id,
        rows=tuple(_record(r) for r in rows),
        more=more,
        now=time.time(),
    )


def prune_usage(store: Store, retention_days: int, *, now: float | None = None) -> float:
    """Delete usage and audit rows older than `retention_days` (a few bounded chunks;
    the audit chain keeps an anchor, see `audit_store`); returns the
    seconds until the next run (soon if rows are left, else `PRUNE_EVERY`)."""
    before = (time.time() if now is None else now) - retention_days * DAY
    try:
        for _ in range(PRUNE_STEPS):
            deleted = store.prune_audit(utc_stamp(before))
            if deleted:
                log.info("pruned %d audit rows older than %d days", deleted, retention_days)
            if deleted < PRUNE_CHUNK:
                break
        for _ in range(PRUNE_STEPS):
            deleted = store.prune_usage(before)
            if deleted:
                log.info("pruned %d usage rows older than %d days", deleted, retention_days)
            if deleted < PRUNE_CHUNK:
                return PRUNE_EVERY
    except sqlite3.Error as exc:
        log.warning("usage log prune failed (tried again later): %s", exc)
        return PRUNE_EVERY
    return PRUNE_AGAIN


# ---------------------------------------------------------------- reader side


@dataclass
class UsageFetch:
    """Every reachable server's rows of one window."""

    since: float
    until: float
    rows: dict[str, list[m.UsageRecord]] = field(default_factory=dict)  # server -> rows
    now: dict[str, float] = field(default_factory=dict)  # server -> its clock at answer
    errors: dict[str, str] = field(default_factory=dict)  # server -> why not read

    @property
    def servers(self) -> list[str]:
        return sorted(self.rows)


async def fetch_usage(
    admin: AdminClient, since: float, until: float, *, license: str = ""
) -> UsageFetch:
    """Read the window from every server of the pool at once."""
    out = UsageFetch(since=since, until=until)
    ids = list(admin.rlf.server_ids)
    results = await asyncio.gather(
        *(admin.server_usage(sid, since, until, license=license) for sid in ids)
    )
    for sid, got in zip(ids, results, strict=True):
        if got is None:
            out.errors[sid] = admin.errors.get(sid, "no answer")
        else:
            out.rows[sid], out.now[sid] = got
    return out
