"""The audit log: every admin change, who made it, why, before and after (promise A1).

Theory of operation
-------------------
Each server keeps its own append-only audit log in its SQLite file (`audit_store`).
A row is written on **every server that applied a change**, in the same transaction as
the state the change produced (persist, then send):

* the leader applies an admin operation (add code, add allocations, change distribution,
  push RLF) -- taken from an admin connection or forwarded by a follower -- and records
  it with the operation's `actor` and `reason`;
* a follower installs the leader's distribution table (DISTRIBUTION_SYNC): the sync
  carries `ChangeNote`s naming the author of the latest admin changes (the leader's
  daemon adds them to every sync it sends), and the follower records each change whose
  config version it has just reached;
* the server holding an authorization records an operator's reclaim.

`actor` is never what the admin client says: the daemon that reads an admin operation
from a connection overwrites it with that connection's certificate identity,
``admin:<name> sha256:<first 16 hex of the certificate's SHA-256>`` (`actor_of`); a
plaintext loopback connection is ``no certificate (<address>)``.

Chain: row n carries ``prev`` = the hash of row n-1 (row 1: `genesis(pool, server)`) and
``hash = SHA-256(prev || "\\n" || canonical JSON of the row's other fields)``. Editing a
row breaks its own hash; removing or inserting one breaks the next row's ``prev``;
rewriting the whole tail consistently on one server is caught (a) by the daemon's own
head -- the last (seq, hash) it wrote, reported beside the rows -- while it runs, and
(b) by comparing servers: a pool-wide change carries the same config version, author
and reason on every server that applied it (`verify_pool`). docs/SECURITY.md says what
this does not stop.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lm_core.engine import messages as m
from lm_core.engine.vocab import ADMIN_MESSAGES, AdminOp

DOMAIN = "lm-audit-v1"
NOTES_KEPT = 32  # change notes a leader sends with each DISTRIBUTION_SYNC
CONFIG_OPS = frozenset(
    {
        AdminOp.ADD_LICENSE_CODE,
        AdminOp.ADD_ALLOCATIONS,
        AdminOp.CHANGE_DISTRIBUTION,
        AdminOp.UPDATE_RLF,
        AdminOp.DRAIN_SERVER,
    }
)
OP_OF: dict[type[m.Message], AdminOp] = {cls: op for op, cls in ADMIN_MESSAGES.items()}
FIELDS = (
    "seq",
    "at",
    "op",
    "actor",
    "reason",
    "what",
    "rlf_seq",
    "cfg_term",
    "cfg_version",
    "before",
    "after",
    "prev",
    "hash",
)


def genesis(pool: str, server: str) -> str:
    """The ``prev`` of a server's first row."""
    return hashlib.sha256(f"{DOMAIN}|{pool}|{server}".encode()).hexdigest()


def canonical(content: Mapping[str, Any]) -> bytes:
    """The bytes a row's hash covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(prev: str, content: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev.encode("ascii", "replace") + b"\n" + canonical(content)).hexdigest()


def content_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed fields of a row (all but ``prev`` and ``hash``)."""
    return {k: row.get(k) for k in FIELDS if k not in ("prev", "hash")}


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: str


def make_row(
    head: Head,
    *,
    at: str,
    op: str,
    actor: str,
    reason: str,
    what: str,
    rlf_seq: int,
    cfg: tuple[int, int],
    before: Any,
    after: Any,
) -> dict[str, Any]:
    """The next row after `head`, hashed."""
    row: dict[str, Any] = {
        "seq": head.seq + 1,
        "at": at,
        "op": op,
        "actor": actor,
        "reason": reason,
        "what": what,
        "rlf_seq": rlf_seq,
        "cfg_term": cfg[0],
        "cfg_version": cfg[1],
        "before": before,
        "after": after,
    }
    digest = row_hash(head.hash, row)  # over every field but prev and hash
    row["prev"] = head.hash
    row["hash"] = digest
    return row


def utc_stamp(epoch: float) -> str:
    return (
        datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="milliseconds")
    ).replace("+00:00", "Z")


# ---------------------------------------------------------------- who and what


def actor_of(peer: Any, der: bytes | None, remote: str) -> str:
    """The identity an admin connection speaks with: its certificate's CN and the first
    16 hex digits of the certificate's SHA-256 fingerprint."""
    if peer is None:
        return f"no certificate ({remote})"
    fp = hashlib.sha256(der).hexdigest()[:16] if der else "?"
    return f"{peer.role}:{peer.name} sha256:{fp}"


def config_view(engine: Any) -> dict[str, Any]:
    """What an admin change can alter, as plain JSON: the RLF sequence, the config
    version, the run-time codes, and per license the hard limit, free pool and
    distribution. (An engine without a distribution table gives just the RLF.)"""
    view: dict[str, Any] = {"rlf_seq": engine.rlf.sequence}
    table = getattr(engine, "table", None)
    if table is None:
        return view
    view["config"] = list(table.cfg)
    view["codes"] = len(table.codes)
    view["licenses"] = {
        lic: {"hard_limit": st.hard_limit, "free_pool": st.free, "distribution": dict(st.rows)}
        for lic, st in table.licenses.items()
    }
    return view


def cfg_of(engine: Any) -> tuple[int, int]:
    table = getattr(engine, "table", None)
    return (int(table.cfg[0]), int(table.cfg[1])) if table is not None else (0, 0)


def describe_op(msg: m.Message) -> str:
    """One line saying what an admin operation asks for."""
    if isinstance(msg, m.ChangeDistribution):
        dist = " ".join(f"{s}:{n}" for s, n in msg.distribution)
        return f"distribution of {msg.license}: {dist}"
    if isinstance(msg, m.AddLicenseCode | m.AddAllocations):
        from lm_core.engine.codes import parse_code

        try:
            return f"code {parse_code(msg.code).describe()}"
        except Exception:
            return "code (unreadable)"
    if isinstance(msg, m.UpdateRlf):
        return "RLF pushed"
    if isinstance(msg, m.Reclaim):
        return f"{msg.client_id} {msg.license}"
    if isinstance(msg, m.DrainServer):
        return f"{'drain' if msg.drain else 'resume'} server {msg.server}"
    return type(msg).__name__


def diff_views(before: Any, after: Any) -> str:
    """A short human diff of two `config_view`s."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ""
    parts: list[str] = []
    if before.get("rlf_seq") != after.get("rlf_seq"):
        parts.append(f"RLF seq {before.get('rlf_seq')} -> {after.get('rlf_seq')}")
    bl, al = before.get("licenses") or {}, after.get("licenses") or {}
    for lic in sorted(set(bl) | set(al)):
        b, a = bl.get(lic), al.get(lic)
        if b == a:
            continue
        if b is None or a is None:
            parts.append(f"{lic}: new" if b is None else f"{lic}: removed")
            continue
        if b["hard_limit"] != a["hard_limit"]:
            parts.append(f"{lic}: hard limit {b['hard_limit']} -> {a['hard_limit']}")
        if b["distribution"] != a["distribution"]:
            parts.append(f"{lic}: {_dist(b['distribution'])} -> {_dist(a['distribution'])}")
    return "; ".join(parts)


def _dist(d: Mapping[str, Any]) -> str:
    return " ".join(f"{k}:{v}" for k, v in sorted(d.items()))


# ---------------------------------------------------------------- the daemon's log


@dataclass(slots=True)
class Pending:
    """What the daemon saw before stepping a message that may change the config."""

    op: str
    actor: str
    reason: str
    what: str
    before: dict[str, Any]
    cfg: tuple[int, int]
    notes: tuple[m.ChangeNote, ...] = ()


class AuditLog:
    """One server's audit chain: its head, and the change notes it passes on."""

    def __init__(self, pool: str, server: str, head: Head | None, notes: Iterable[m.ChangeNote]):
        self.pool = pool
        self.server = server
        self.head = head or Head(0, genesis(pool, server))
        self.notes: collections.deque[m.ChangeNote] = collections.deque(notes, NOTES_KEPT)
        self._notes_tuple: tuple[m.ChangeNote, ...] = tuple(self.notes)
        # a follower adopts a pushed RLF (RLF_TRANSFER) a step before the sync that names
        # its author: the config before the RLF, kept for that row (rlf_seq, view)
        self._before_rlf: tuple[int, dict[str, Any]] | None = None

    def _note(self, note: m.ChangeNote) -> None:
        key = (note.cfg_term, note.cfg_version, note.rlf_seq)
        if any((n.cfg_term, n.cfg_version, n.rlf_seq) == key for n in self.notes):
            return
        self.notes.append(note)
        self._notes_tuple = tuple(self.notes)

    @property
    def recent_notes(self) -> tuple[m.ChangeNote, ...]:
        return self._notes_tuple

    def append(
        self,
        *,
        epoch: float,
        op: str,
        actor: str,
        reason: str,
        what: str,
        rlf_seq: int,
        cfg: tuple[int, int],
        before: Any,
        after: Any,
    ) -> dict[str, Any]:
        """The next row (hashed); the head moves on. The caller commits it."""
        row = make_row(
            self.head,
            at=utc_stamp(epoch),
            op=op,
            actor=actor,
            reason=reason,
            what=what,
            rlf_seq=rlf_seq,
            cfg=cfg,
            before=before,
            after=after,
        )
        self.head = Head(row["seq"], row["hash"])
        if op in CONFIG_OPS:
            self._note(
                m.ChangeNote(
                    cfg_term=cfg[0],
                    cfg_version=cfg[1],
                    rlf_seq=rlf_seq,
                    op=op,
                    actor=actor[:1024],
                    reason=reason[:1024],
                    what=what[:1024],
                )
            )
        return row

    def pending_for(self, msg: m.Message, actor_hint: str, engine: Any) -> Pending | None:
        """A `Pending` if stepping `msg` may produce an audited change, else None."""
        op_msg = msg.op if isinstance(msg, m.ForwardedAdmin) else msg
        op = OP_OF.get(type(op_msg))
        if op is not None:
            return Pending(
                op=op,
                actor=str(getattr(op_msg, "actor", "")) or actor_hint,
                reason=str(getattr(op_msg, "reason", "")),
                what=describe_op(op_msg),
                before=config_view(engine) if op in CONFIG_OPS else {},
                cfg=cfg_of(engine),
            )
        if isinstance(msg, m.RlfTransfer):
            return Pending(
                "rlf_transfer",
                f"server {msg.sender} (an RLF signed with the pool's admin key)",
                "",
                "RLF received from a server",
                config_view(engine),
                cfg_of(engine),
            )
        if isinstance(msg, m.DistributionSync) and msg.changes:
            return Pending("sync", "", "", "", config_view(engine), cfg_of(engine), msg.changes)
        return None

    def rows_after(
        self, p: Pending, engine: Any, effects: Sequence[Any], epoch: float
    ) -> list[dict[str, Any]]:
        """The rows that stepping the message of `p` produced (none if nothing changed)."""
        cfg = cfg_of(engine)
        rlf_seq = int(engine.rlf.sequence)
        if p.op == AdminOp.RECLAIM:
            done = [
                e
                for e in effects
                if type(e).__name__ == "LogUsage" and getattr(e, "kind", "") == "reclaim"
            ]
            return [
                self.append(
                    epoch=epoch,
                    op=p.op,
                    actor=p.actor,
                    reason=p.reason,
                    what=p.what,
                    rlf_seq=rlf_seq,
                    cfg=cfg,
                    before={"client_id": e.client_id, "license": e.license, "count": e.count},
                    after=None,
                )
                for e in done
            ]
        if cfg == p.cfg and rlf_seq == p.before.get("rlf_seq"):
            return []  # forwarded, refused, or not applied here
        after = config_view(engine)
        if p.op == "rlf_transfer":
            if cfg == p.cfg:  # a follower: recorded with its author when the sync comes
                self._before_rlf = (rlf_seq, p.before)
                return []
            # the leader took a newer RLF from a server (one that came back with it):
            # no admin pushed it here; the RLF's admin signature is its authority
            return [
                self.append(
                    epoch=epoch,
                    op=AdminOp.UPDATE_RLF,
                    actor=p.actor,
                    reason="",
                    what=p.what,
                    rlf_seq=rlf_seq,
                    cfg=cfg,
                    before=p.before,
                    after=after,
                )
            ]
        if p.op != "sync":
            return [
                self.append(
                    epoch=epoch,
                    op=p.op,
                    actor=p.actor,
                    reason=p.reason,
                    what=p.what,
                    rlf_seq=rlf_seq,
                    cfg=cfg,
                    before=p.before,
                    after=after,
                )
            ]
        rows = []
        for n in p.notes:
            if p.cfg < (n.cfg_term, n.cfg_version) <= cfg:
                self._note(n)
                before = p.before
                kept = self._before_rlf
                if n.op == AdminOp.UPDATE_RLF and kept is not None and kept[0] == n.rlf_seq:
                    before = kept[1]
                rows.append(
                    self.append(
                        epoch=epoch,
                        op=n.op,
                        actor=n.actor,
                        reason=n.reason,
                        what=n.what,
                        rlf_seq=n.rlf_seq,
                        cfg=(n.cfg_term, n.cfg_version),
                        before=before,
                        after=after,
                    )
                )
        return rows


def notes_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[m.ChangeNote]:
    """The change notes of stored rows (a restarted leader passes them on)."""
    return [
        m.ChangeNote(
            cfg_term=int(r["cfg_term"]),
            cfg_version=int(r["cfg_version"]),
            rlf_seq=int(r["rlf_seq"]),
            op=str(r["op"]),
            actor=str(r["actor"])[:1024],
            reason=str(r["reason"])[:1024],
            what=str(r["what"])[:1024],
        )
        for r in rows
        if r.get("op") in CONFIG_OPS
    ]


# ---------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class Break:
    """Where one server's chain (or the pool's agreement) is broken."""

    server: str
    seq: int  # the first row that does not check (0: the server as a whole)
    why: str

    def line(self) -> str:
        where = f"server {self.server}" + (f" row {self.seq}" if self.seq else "")
        return f"{where}: {self.why}"


def verify_chain(
    pool: str,
    server: str,
    rows: Sequence[Mapping[str, Any]],
    head: Mapping[str, Any] | None,
    anchor: Mapping[str, Any] | None = None,
) -> Break | None:
    """The first break in one server's rows (all of them, oldest first), or None.

    `head` is what the running daemon says it last wrote ({"seq", "hash"}); `anchor` the
    last row its retention pruned ({"seq", "hash"}): the chain starts after it."""
    prev = genesis(pool, server)
    expect = 1
    if anchor:
        prev, expect = str(anchor.get("hash")), int(anchor.get("seq", 0)) + 1
    for r in rows:
        seq = r.get("seq")
        if not isinstance(seq, int) or seq != expect:
            return Break(
                server, expect, f"row {expect} is missing (the next row is {seq!r}): removed"
            )
        if r.get("prev") != prev:
            return Break(
                server,
                seq,
                "its link to the previous row does not match: a row before it "
                "was removed, inserted or rewritten",
            )
        if row_hash(prev, content_of(r)) != r.get("hash"):
            return Break(server, seq, "its content does not match its hash: edited or forged")
        prev = str(r["hash"])
        expect += 1
    if head:
        last = rows[-1] if rows else None
        hseq, hhash = head.get("seq", 0), head.get("hash")
        if (last is None and hseq) or (last is not None and last.get("seq") != hseq):
            lseq = int(last["seq"]) if last else 0
            return Break(
                server,
                min(lseq, int(hseq)) + 1,
                f"the daemon's last row is {hseq}, the file's is {lseq}: rows were "
                + ("removed" if lseq < hseq else "added")
                + " outside the daemon",
            )
        if last is not None and last.get("hash") != hhash:
            return Break(server, int(last["seq"]), "differs from the row the daemon wrote")
    return None


def verify_pool(per_server: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Break]:
    """Cross-check servers: one pool-wide change (same op, RLF sequence and config
    version) must name the same author and reason on every server that recorded it.
    Where they disagree, the servers in the minority are named."""
    seen: dict[tuple[Any, ...], dict[str, tuple[Any, ...]]] = {}
    for sid, rows in per_server.items():
        for r in rows:
            if r.get("op") not in CONFIG_OPS:
                continue
            key = (r.get("op"), r.get("rlf_seq"), r.get("cfg_term"), r.get("cfg_version"))
            seen.setdefault(key, {})[sid] = (r.get("actor"), r.get("reason"), r.get("seq"))
    breaks: list[Break] = []
    for key, by in seen.items():
        votes = collections.Counter((a, why) for a, why, _ in by.values())
        if len(votes) < 2:
            continue
        common, _ = votes.most_common(1)[0]
        for sid, (a, why, seq) in sorted(by.items()):
            if (a, why) != common:
                breaks.append(
                    Break(
                        sid,
                        int(seq or 0),
                        f"{key[0]} at config {key[2]}.{key[3]} says actor "
                        f"{a!r} reason {why!r}; the other servers say {common[0]!r} {common[1]!r}",
                    )
                )
    return breaks
