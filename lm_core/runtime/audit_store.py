"""The audit log's table in a server's SQLite file (rows from `lm_core.runtime.audit`).

The table is created when a store is opened (``CREATE TABLE IF NOT EXISTS``: a store of
any schema version gains it without a migration; an older lm-daemon ignores it). Rows
are only ever inserted, in the daemon's transaction with the state they describe.
``before`` and ``after`` are JSON text; everything else is a plain column.

Retention: rows older than the RLF's ``retention_days`` are pruned oldest first, never
the newest row; the ``audit_anchor`` table keeps the seq and hash of the last pruned row,
so the chain still verifies from there (`audit.verify_chain`) and removing rows by hand
is still told apart from pruning (the anchor would have to be rewritten too).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from lm_core.runtime.audit import Head

TABLE = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, op TEXT NOT NULL, actor TEXT NOT NULL,
    reason TEXT NOT NULL, what TEXT NOT NULL, rlf_seq INTEGER NOT NULL,
    cfg_term INTEGER NOT NULL, cfg_version INTEGER NOT NULL,
    before TEXT NOT NULL, after TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL
)
"""
ANCHOR = """
CREATE TABLE IF NOT EXISTS audit_anchor (
    id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL,
    pruned_before TEXT NOT NULL
)
"""
_COLS = (
    "seq, at, op, actor, reason, what, rlf_seq, cfg_term, cfg_version, before, after, prev, hash"
)
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def ensure_table(conn: sqlite3.Connection) -> None:
    conn.execute(TABLE)
    conn.execute(ANCHOR)


def prune(conn: sqlite3.Connection, before: str, chunk: int) -> int:
    """Delete up to `chunk` of the oldest rows stamped before `before` (ISO UTC, as in
    `at`), never the newest row, and move the anchor to the last one deleted; returns
    how many. The caller holds the transaction."""
    newest = conn.execute("SELECT MAX(seq) FROM audit").fetchone()[0]
    if newest is None:
        return 0
    rows = conn.execute(
        "SELECT seq, hash FROM audit WHERE at < ? AND seq < ? ORDER BY seq LIMIT ?",
        (before, newest, chunk),
    ).fetchall()
    if not rows:
        return 0
    last_seq, last_hash = rows[-1]
    cur = conn.execute("DELETE FROM audit WHERE seq <= ?", (last_seq,))
    conn.execute(
        "INSERT OR REPLACE INTO audit_anchor (id, seq, hash, pruned_before) VALUES (1, ?, ?, ?)",
        (last_seq, last_hash, before),
    )
    return max(0, cur.rowcount)


def anchor(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """{"seq", "hash", "pruned_before"} of the last pruned row, or None."""
    r = conn.execute("SELECT seq, hash, pruned_before FROM audit_anchor WHERE id = 1").fetchone()
    return None if r is None else {"seq": int(r[0]), "hash": str(r[1]), "pruned_before": r[2]}


def insert(conn: sqlite3.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (inside the caller's transaction)."""
    conn.executemany(
        f"INSERT INTO audit ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r["seq"],
                r["at"],
                r["op"],
                r["actor"],
                r["reason"],
                r["what"],
                r["rlf_seq"],
                r["cfg_term"],
                r["cfg_version"],
                _JSON.encode(r["before"]),
                _JSON.encode(r["after"]),
                r["prev"],
                r["hash"],
            )
            for r in rows
        ],
    )


def _row(t: tuple[Any, ...]) -> dict[str, Any]:
    names = [c.strip() for c in _COLS.split(",")]
    row = dict(zip(names, t, strict=True))
    for k in ("before", "after"):
        # left as text when it is not JSON: its hash will not match, which verify reports
        with contextlib.suppress(TypeError, ValueError):
            row[k] = json.loads(row[k])
    return row


def read(
    conn: sqlite3.Connection, *, since_seq: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    """Rows with seq > since_seq, oldest first, at most `limit`."""
    cur = conn.execute(
        f"SELECT {_COLS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (since_seq, limit)
    )
    return [_row(t) for t in cur.fetchall()]


def last_rows(conn: sqlite3.Connection, n: int) -> list[dict[str, Any]]:
    """The newest `n` rows, oldest first."""
    cur = conn.execute(f"SELECT {_COLS} FROM audit ORDER BY seq DESC LIMIT ?", (n,))
    return [_row(t) for t in reversed(cur.fetchall())]


def head(conn: sqlite3.Connection) -> Head | None:
    r = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return Head(int(r[0]), str(r[1])) if r else None
