"""The admin client: what `lm status`, `lm code add`, `lm rlf push`... and the TUI use.

Theory of operation
-------------------
`status()` asks every server of the RLF for its own view at once (each with a short
timeout) and merges the answers (`poolstatus.merge_status`); a server that does not
answer is reported unreachable, with the reason in `servers[].error`.

An admin operation goes to the leader when the last status named one, else to the
first reachable server in priority order; a follower forwards it to the leader, and the
answer comes only once the change is durable on a majority (S6). An operation is sent
to the next server only if the connection could not be opened (so never twice); if the
answer does not come in time the result says so ("the change may still apply").

A refusal that means "not now" -- no leader yet, no majority lease yet, forwarded to a
server that no longer leads (`transient_refusal`): the operation was not applied -- is
retried with backoff (asking again who leads) for up to `retry_window` seconds, by
default long enough for a dead leader to be noticed and a new one to be elected
(`election_window`); any other refusal (the operation is invalid) is returned at once.

`push_rlf` verifies the RLF locally first (signature, same pool and admin key, sequence
above the pool's), sends UPDATE_RLF, then polls status until every reachable server
reports the new sequence, and returns what each server said.

The client speaks with whatever operator certificate it was given: an admin
certificate may do everything; a monitor certificate only reads status, and an operation
asked of it is refused here, before anything is sent (the servers refuse it as well).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from lm_core.engine import messages as m
from lm_core.engine.codes import parse_code
from lm_core.engine.rlf import Rlf, parse_rlf, verify_rlf
from lm_core.engine.status_types import PoolStatus, ServerStatus
from lm_core.errors import InputError, RefusedError
from lm_core.runtime import tlsconfig
from lm_core.runtime.codec import ProtocolError
from lm_core.runtime.connection import (
    ConnectError,
    Connection,
    ConnectionClosed,
    RequestTimeout,
    TransportError,
)
from lm_core.runtime.liveness import kill
from lm_core.runtime.poolstatus import merge_status

OP_TIMEOUT = 15.0  # an admin operation waits for majority durability
RETRY_FIRST = 0.1  # the first pause before retrying a "not now" refusal (then doubling)
RETRY_MAX = 1.0  # ... up to this
PUSH_TIMEOUT = 15.0  # push_rlf waits this long for every reachable server
PUSH_POLL = 0.02  # seconds between status rounds while push_rlf waits
USAGE_PAGES_MAX = 10_000  # usage pages read from one server for one window (10 M rows)


@dataclass(frozen=True)
class AdminResult:
    """The answer to one admin operation."""

    ok: bool
    message: str
    server: str  # the server that answered ("" if none could be reached)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PushResult:
    """The outcome of `push_rlf`: per server "seq 3" / "down" / "refused: ..." /
    "still seq 2"."""

    ok: bool
    message: str
    per_server: dict[str, str] = field(default_factory=dict)


def election_window(rlf: Rlf) -> float:
    """How long a pool may be without a leader that can take a change: a dead leader is
    noticed after the leader timeout, the last in priority stands one leader timeout plus
    a heartbeat per rank later, and the winner needs a majority lease -- plus one more
    leader timeout of slack (9 s at the RLF's defaults with 3 servers)."""
    t = rlf.timing
    return 3 * t.leader_timeout + len(rlf.servers) * t.heartbeat_interval + t.server_lease


# The engine's refusals that mean "not now": the operation was not applied and may be
# sent again. `AdminReply` carries only text today, so this is the ONE place that reads
# it (a structured reason on AdminReply would replace the prefixes).
TRANSIENT_PREFIXES = (
    "no leader right now",  # a candidate or a follower without a leader
    "no majority",  # a leader without a majority lease (yet)
)
# Not retried: "leader changed before the change was durable" -- the old leader applied
# it and a majority may still hold it, so a second send could be refused as a duplicate.
TRANSIENT_SUFFIXES = (
    " is not the leader",  # forwarded to a server that stopped leading
    "retry in a moment",  # a resume before the drained server applied its clients' moves
)


def transient_refusal(reply: m.AdminReply) -> bool:
    """True if `reply` refuses for want of a leader or a majority lease (retry), False
    if it refuses the operation itself (invalid: never retried) or accepts it."""
    if reply.ok:
        return False
    reason = getattr(reply, "reason", None)  # a structured reason, once AdminReply has one
    if isinstance(reason, str) and reason:
        return reason in ("no_leader", "no_majority", "not_leader")
    text = reply.message
    return text.startswith(TRANSIENT_PREFIXES) or text.endswith(TRANSIENT_SUFFIXES)


class AdminClient:
    """Talks to every server of a pool as an admin (admin certificate under TLS).

    `retry_window`: how long an operation refused "not now" is retried (None: the
    pool's `election_window`; 0: never)."""

    def __init__(
        self,
        rlf: Rlf,
        *,
        tls: tlsconfig.TlsPaths | None = None,
        timeout: float = 3.0,
        name: str = "admin",
        op_timeout: float = OP_TIMEOUT,
        retry_window: float | None = None,
    ) -> None:
        self.rlf = rlf
        self.timeout = timeout
        self.op_timeout = op_timeout
        self.retry_window = election_window(rlf) if retry_window is None else retry_window
        self.name = name
        self._ssl = tlsconfig.admin_context(tls) if tls is not None else None
        # the role this client speaks with ("admin", "monitor"; None in plaintext)
        self.role = tlsconfig.cert_role(tls.cert) if tls is not None and tls.cert else None
        self._conns: dict[str, Connection] = {}
        self._conn_locks: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        self.leader: str | None = None
        self.errors: dict[str, str] = {}

    # -- connections

    def _address(self, sid: str) -> str:
        return self.rlf.server(sid).address

    async def _conn(self, sid: str) -> Connection:
        """The cached connection to `sid`, opened if needed. One lock per server: two
        concurrent callers must not each open one (the second would replace the first
        in the cache, and the first would leak unclosed)."""
        conn = self._conns.get(sid)
        if conn is not None and not conn.closed:
            return conn
        lock = self._conn_locks.setdefault(sid, asyncio.Lock())
        async with lock:
            conn = self._conns.get(sid)
            if conn is not None and not conn.closed:
                return conn
            conn = await Connection.open(
                self._address(sid), ssl=self._ssl, connect_timeout=self.timeout
            )
            self._conns[sid] = conn
            return conn

    async def _request(self, sid: str, msg: m.Message, reply_timeout: float) -> m.Message:
        """An idempotent request (status): a cached connection the server has closed
        meanwhile (idle timeout, restart) is replaced once."""
        for attempt in (1, 2):
            cached = sid in self._conns and not self._conns[sid].closed
            conn = await self._conn(sid)
            try:
                return await conn.request(msg, reply_timeout=reply_timeout)
            except ConnectionClosed:
                self._forget(sid, conn)
                if not cached or attempt == 2:
                    raise
            except RequestTimeout:
                # a connection that did not answer in time may be stalled (a cut network
                # keeps it open for minutes): the next request dials a fresh one
                self._forget(sid, conn)
                kill(conn)  # at once: a TLS close would wait for the silent peer
                raise
            except (TransportError, ProtocolError):
                if conn.closed:
                    self._forget(sid, conn)
                raise
        raise AssertionError("unreachable")

    def _forget(self, sid: str, conn: Connection) -> None:
        # only this one: a concurrent caller may already have cached a fresh connection
        if self._conns.get(sid) is conn:
            del self._conns[sid]

    async def aclose(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        await asyncio.gather(*(c.aclose() for c in conns))

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _msg_base(self) -> dict[str, Any]:
        return {"pool": self.rlf.pool, "sender": self.name, "request_id": next(self._ids)}

    # -- status

    async def server_status(self, sid: str) -> ServerStatus | None:
        """One server's own status, or None (reason in `self.errors[sid]`)."""
        try:
            reply = await self._request(sid, m.StatusRequest(**self._msg_base()), self.timeout)
        except ConnectError as exc:
            self.errors[sid] = f"unreachable: {exc}"
            return None
        except RequestTimeout:
            self.errors[sid] = f"no answer within {self.timeout:g} s"
            return None
        except (TransportError, ProtocolError) as exc:
            self.errors[sid] = f"connection failed: {exc}"
            return None
        if isinstance(reply, m.StatusReply):
            self.errors.pop(sid, None)
            return cast(ServerStatus, dict(reply.status))  # the per-server status contract
        if isinstance(reply, m.AdminReply) and not reply.ok:
            self.errors[sid] = f"refused: {reply.message}"
            return None
        self.errors[sid] = f"unexpected reply {type(reply).__name__}"
        return None

    async def status(self) -> PoolStatus:
        """The merged pool status (the `lm status --json` contract).

        Raises `RefusedError` if every server that answered refused (e.g. no admin
        certificate)."""
        ids = list(self.rlf.server_ids)
        answers = await asyncio.gather(*(self.server_status(sid) for sid in ids))
        per = dict(zip(ids, answers, strict=True))
        refusals = {self.errors[s] for s in ids if self.errors.get(s, "").startswith("refused:")}
        if refusals and all(
            per[s] is None and self.errors.get(s, "").startswith(("refused:", "unreachable:"))
            for s in ids
        ):
            raise RefusedError(sorted(refusals)[0].removeprefix("refused: "))
        return self._merge(per)

    def _merge(self, per: Mapping[str, ServerStatus | None]) -> PoolStatus:
        pool = merge_status(self.rlf, per, _utc_now())
        for row in pool["servers"]:
            row["error"] = None if row["reachable"] else self.errors.get(row["id"])
        leader = pool["leader"]
        self.leader = leader if leader is not None and per.get(leader) else None
        return pool

    # -- usage log (read-only: an admin or a monitor certificate)

    async def server_usage(
        self, sid: str, since: float, until: float, *, license: str = ""
    ) -> tuple[list[m.UsageRecord], float] | None:
        """One server's usage rows of ``[since, until)`` (every page) and its clock at the
        last answer, or None (reason in `self.errors[sid]`)."""
        rows: list[m.UsageRecord] = []
        after = 0
        now = 0.0
        for _ in range(USAGE_PAGES_MAX):
            ask = m.UsageRequest(**self._msg_base(), since=since, until=until,
                                 after_id=after, license=license)  # fmt: skip
            try:
                reply = await self._request(sid, ask, self.timeout)
            except ConnectError as exc:
                self.errors[sid] = f"unreachable: {exc}"
                return None
            except RequestTimeout:
                self.errors[sid] = f"no answer within {self.timeout:g} s"
                return None
            except (TransportError, ProtocolError) as exc:
                self.errors[sid] = f"connection failed: {exc}"
                return None
            if isinstance(reply, m.AdminReply):
                self.errors[sid] = f"refused: {reply.message}"
                return None
            if not isinstance(reply, m.UsageReply):
                self.errors[sid] = f"unexpected reply {type(reply).__name__}"
                return None
            rows.extend(reply.rows)
            now = reply.now
            if not reply.more or not reply.rows:
                self.errors.pop(sid, None)
                return rows, now
            after = reply.rows[-1].id
        self.errors[sid] = "usage log too long for one report (narrow --since/--until)"
        return None

    # -- operations

    async def _targets(self) -> list[str]:
        if self.leader is None:
            with contextlib.suppress(RefusedError):
                await self.status()
        ids = list(self.rlf.server_ids)
        if self.leader in ids:
            ids.remove(self.leader)
            ids.insert(0, self.leader)
        return ids

    async def _operation(self, make: Any, targets: list[str] | None = None) -> AdminResult:
        """`_operation_once`, again after a "not now" refusal (`transient_refusal`) with
        backoff, asking again who leads, until `retry_window` has passed."""
        start = time.monotonic()
        pause = RETRY_FIRST
        while True:
            result, transient = await self._operation_once(make, targets)
            waited = time.monotonic() - start
            if not transient:
                return result
            if waited + pause > self.retry_window:
                if waited > 0.5:
                    message = f"{result.message} (still so after {waited:.1f} s of retrying)"
                    return replace(result, message=message)
                return result
            await asyncio.sleep(pause)
            pause = min(2 * pause, RETRY_MAX)
            if targets is None:
                self.leader = None  # ask again who leads

    async def _operation_once(
        self, make: Any, targets: list[str] | None
    ) -> tuple[AdminResult, bool]:
        """Send one operation (built by `make(**base)`) to the leader (or `targets`) or the
        first server that accepts a connection; never to two servers. The result, and
        whether it is a "not now" refusal."""
        if self.role == "monitor":
            result = AdminResult(
                False,
                "read-only: this is a monitor certificate; admin operations need the admin "
                "certificate (admin.pem/.key)",
                "",
            )
            return result, False
        tried: list[str] = []
        for sid in targets if targets is not None else await self._targets():
            msg = make(**self._msg_base())
            # a fresh connection of its own: an operation is never sent on one the server
            # may have closed meanwhile (it could not be told apart from a lost answer),
            # and concurrent calls never share (or close) each other's
            try:
                conn = await Connection.open(
                    self._address(sid), ssl=self._ssl, connect_timeout=self.timeout
                )
            except ConnectError as exc:
                tried.append(f"{sid}: {exc}")
                continue
            try:
                reply = await conn.request(msg, reply_timeout=self.op_timeout)
            except RequestTimeout:
                return AdminResult(
                    False,
                    f"no answer from {sid} within {self.op_timeout:g} s (the change may still "
                    "apply; check `lm status`)",
                    sid,
                ), False
            except (TransportError, ProtocolError) as exc:
                return AdminResult(
                    False, f"{sid} closed the connection: {exc} (the change may still apply)", sid
                ), False
            finally:
                await conn.aclose()
            if isinstance(reply, m.AdminReply):
                result = AdminResult(reply.ok, reply.message, sid, dict(reply.data))
                return result, transient_refusal(reply)
            return AdminResult(
                False, f"unexpected reply {type(reply).__name__} from {sid}", sid
            ), False
        return AdminResult(False, "no server reachable (" + "; ".join(tried) + ")", ""), False

    async def add_code(self, code: str, *, reason: str = "") -> AdminResult:
        """ADD_LICENSE_CODE. Raises `CodeError` (InputError) for a malformed code."""
        text = parse_code(code).text()
        why = _reason(reason)
        return await self._operation(lambda **b: m.AddLicenseCode(code=text, reason=why, **b))

    async def add_allocations(self, code: str, *, reason: str = "") -> AdminResult:
        """ADD_ALLOCATIONS with an add-on code. Raises `CodeError` for a malformed code."""
        parsed = parse_code(code)
        if parsed.kind != "add":
            raise InputError(
                f"this is a {parsed.kind!r} code; add allocations takes an add-on code "
                "(use `lm code add` for a new license code)",
                field="code",
            )
        text = parsed.text()
        why = _reason(reason)
        return await self._operation(lambda **b: m.AddAllocations(code=text, reason=why, **b))

    async def set_distribution(
        self, license: str, distribution: dict[str, int], *, reason: str = ""
    ) -> AdminResult:
        """CHANGE_DISTRIBUTION. Raises `InputError` for unknown servers or negative counts."""
        ids = set(self.rlf.server_ids)
        for sid, n in distribution.items():
            if sid not in ids:
                raise InputError(
                    f"unknown server {sid!r} (servers: {', '.join(self.rlf.server_ids)})",
                    field="distribution",
                )
            if n < 0:
                raise InputError(f"{sid}: negative count {n}", field="distribution")
        pairs = tuple(sorted(distribution.items()))
        why = _reason(reason)
        return await self._operation(
            lambda **b: m.ChangeDistribution(license=license, distribution=pairs, reason=why, **b)
        )

    async def drain_server(
        self, server: str, *, drain: bool = True, reason: str = ""
    ) -> AdminResult:
        """Drain `server` for maintenance (it grants nothing; its clients move to other
        servers with their seats) or, with `drain=False`, put it back in service.
        Raises `InputError` for a server that is not in the pool."""
        if server not in self.rlf.server_ids:
            raise InputError(
                f"unknown server {server!r} (servers: {', '.join(self.rlf.server_ids)})",
                field="server",
            )
        why = _reason(reason)
        return await self._operation(
            lambda **b: m.DrainServer(server=server, drain=drain, reason=why, **b)
        )

    async def reclaim(self, client_id: str, license: str, reason: str) -> AdminResult:
        """Take back a stale authorization (logged with the reason) on the server whose key
        table holds it."""
        if not reason.strip():
            raise InputError("a reason is required", field="reason")
        reason = _reason(reason)
        # The key table that holds the authorization is the server that issued it.
        pool = await self.status()
        holders = [
            c["server"]
            for c in pool["clients"]
            if c["client_id"] == client_id and c["license"] == license
        ]
        if not holders:
            return AdminResult(
                False, f"no reachable server holds {license!r} for {client_id}", "", {}
            )
        return await self._operation(
            lambda **b: m.Reclaim(client_id=client_id, license=license, reason=reason, **b),
            holders[:1],
        )

    async def push_rlf(self, rlf_text: str, *, file: str = "<rlf>", reason: str = "") -> PushResult:
        """UPDATE_RLF: verify locally, send, wait until every reachable server runs it.

        Raises `InputError` (bad file, bad signature, other pool or admin key, sequence not
        above the pool's)."""
        new = parse_rlf(rlf_text, file=file)
        verify_rlf(new, file=file, text=rlf_text)
        if new.pool != self.rlf.pool:
            raise InputError(f"RLF is for pool {new.pool!r}, not {self.rlf.pool!r}", file=file)
        if new.admin_key != self.rlf.admin_key:
            raise InputError(
                "signed by a different admin key than the pool's RLF", file=file, field="admin_key"
            )
        pool = await self.status()
        seqs = [s["rlf_seq"] for s in pool["servers"] if s["reachable"] and s["rlf_seq"]]
        current = max([pool["rlf_seq"], *seqs])
        if not any(s["reachable"] for s in pool["servers"]):
            return PushResult(
                False, "no server reachable", {s["id"]: "down" for s in pool["servers"]}
            )
        if new.sequence <= current:
            raise InputError(
                f"sequence {new.sequence} is not above the pool's sequence {current}",
                file=file,
                field="sequence",
            )
        why = _reason(reason)
        result = await self._operation(lambda **b: m.UpdateRlf(rlf_text=rlf_text, reason=why, **b))
        if not result.ok and result.server:
            per = dict.fromkeys(self.rlf.server_ids, "?")
            per[result.server] = f"refused: {result.message}"
            return PushResult(False, result.message, per)
        if not result.ok:
            return PushResult(False, result.message, dict.fromkeys(self.rlf.server_ids, "down"))
        old_rlf = self.rlf
        deadline = time.monotonic() + PUSH_TIMEOUT
        while True:
            pool = await self.status()
            rows = {s["id"]: s for s in pool["servers"]}
            pending = [
                sid
                for sid, s in rows.items()
                if s["reachable"] and (s["rlf_seq"] or 0) < new.sequence
            ]
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(PUSH_POLL)
        per = {}
        for sid in old_rlf.server_ids:
            s = rows[sid]
            if not s["reachable"]:
                per[sid] = "down"
            elif (s["rlf_seq"] or 0) >= new.sequence:
                per[sid] = f"seq {s['rlf_seq']}"
            else:
                per[sid] = f"still seq {s['rlf_seq']}"
        self.rlf = new
        took = sum(1 for v in per.values() if v.startswith("seq "))
        ok = not pending
        msg = f"RLF seq {new.sequence} on {took} of {len(per)} servers"
        if pending:
            msg += f"; not yet on {', '.join(pending)} after {PUSH_TIMEOUT:g} s"
        return PushResult(ok, msg, per)

    # -- audit

    async def server_audit(self, sid: str, *, page: int = 1000) -> dict[str, Any]:
        """Every audit row of one server, oldest first, the head it reports and where its
        pruned chain starts: {"rows": [...], "head": {...}, "anchor": {...} | None} or
        {"error": "..."}."""
        rows: list[dict[str, Any]] = []
        head: dict[str, Any] = {}
        anchor: dict[str, Any] | None = None
        since = 0
        while True:
            msg = m.AuditRequest(since_seq=since, limit=page, **self._msg_base())
            try:
                reply = await self._request(sid, msg, self.timeout)
            except (TransportError, ProtocolError) as exc:
                return {"error": f"unreachable: {exc}"}
            if isinstance(reply, m.AdminReply):
                return {"error": f"refused: {reply.message}"}
            if not isinstance(reply, m.AuditReply):
                return {"error": f"unexpected reply {type(reply).__name__}"}
            got = list(reply.audit.get("rows", []))
            head = dict(reply.audit.get("head", {}))
            if since == 0 and isinstance(reply.audit.get("anchor"), dict):
                anchor = dict(reply.audit["anchor"])
            rows.extend(got)
            if not got or not reply.audit.get("more"):
                return {"rows": rows, "head": head, "anchor": anchor}
            since = int(got[-1]["seq"])

    async def audit(self) -> dict[str, dict[str, Any]]:
        """`server_audit` of every server of the RLF, at once."""
        ids = list(self.rlf.server_ids)
        answers = await asyncio.gather(*(self.server_audit(sid) for sid in ids))
        return dict(zip(ids, answers, strict=True))


REASON_MAX = 1024


def _reason(reason: str) -> str:
    """An admin's reason: one line of at most `REASON_MAX` characters."""
    text = reason.strip()
    if len(text) > REASON_MAX or any(ord(c) < 32 for c in text):
        raise InputError(
            f"a reason is one line of at most {REASON_MAX} printable characters",
            field="--reason",
        )
    return text


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
