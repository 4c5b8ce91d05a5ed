"""`Daemon`: one pool member -- the engine on real sockets, TLS and SQLite.

Theory of operation
-------------------
The daemon is a thin shell around the sans-IO `LicenseServer` (etcd-raft's "Ready"
shape). One loop task owns the engine, and it is the only place that steps it:

1. take inputs: server messages first (all that are queued), then client and admin
   messages (up to `BATCH`), or nothing when the tick is due (every `TICK` s or at the
   engine's `next_deadline`, whichever is sooner);
2. step the engine (`handle` per message, then `tick`), concatenating the effects;
3. carry the effects out (`_carry_out`): **persist, then send.** Every `PersistState` /
   `PersistKey` / `LogUsage` of the step goes into one `Batch`, committed (one SQLite
   transaction) before any `Send` / `Reply` of the step leaves, in list order. All the
   inputs of a step share that one commit: the grant path's group commit. A batch with a
   `PersistState` (or a new RLF) is fsynced in a worker thread before anything is sent;
   a grant-path batch (`PersistKey` / `LogUsage` only) is committed on the loop without
   an fsync -- crash-safe, not power-loss-safe; restart grace (S4) covers that (see
   `store.py`). WAL checkpoints run in a worker thread while the loop goes on. `Event`
   effects are logged as one line each.

Connection tasks only read: a frame's header names its kind, `admission.admit_frame`
decides from the connection's certificate whether that kind may come from it before
the body is read, and the decoded message goes into an inbox (server messages into
their own, which the loop empties first: a flood of clients must not delay the
heartbeats and ACKs that keep the leases alive). A refused admin operation is answered
with a refusal `AdminReply` and never reaches the engine; status is answered here from
`engine.status(now)`. An RLF carried by a push or a transfer is parsed and verified in a
worker thread before the engine sees it, so a large or broken RLF cannot stall the loop.
A license request whose connection is already closed (the client sent it and hung up)
is not stepped: nobody could receive the grant. Anything else wrong -- a bad frame, an
invalid message, a kind the sender may not send -- closes that one connection with one
(rate-limited, escaped) log line; the daemon keeps serving.

Client and admin connections are named by tokens ("conn:17"); the engine answers with
`Reply(to=token)`. A reply is written straight to the transport when nothing is queued
before it and the peer keeps up (else it goes through the connection's writer task,
which waits for the peer to drain; a peer that lets `OUT_QUEUE` replies pile up is
dropped).

`stop()`: stop listening, commit what is pending, close the store (authorizations stay in
the key table: clients re-attach on restart). Start-up and arguments: `startup.py`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import itertools
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from lm_core.engine import effects as fx
from lm_core.engine import messages as m
from lm_core.engine import vocab
from lm_core.engine.rlf import Rlf, parse_rlf, render_rlf, verify_rlf
from lm_core.engine.status_types import ServerStatus
from lm_core.errors import InputError, LmError
from lm_core.runtime import identity, tlsconfig, tlsdiag
from lm_core.runtime.admission import (
    Verdict,
    admit_frame,
    admit_server_sender,
    describe,
    reaches_nobody,
)
from lm_core.runtime.audit import NOTES_KEPT, AuditLog, Head, actor_of, notes_from_rows
from lm_core.runtime.codec import ProtocolError
from lm_core.runtime.connection import Budgets, Connection, TransportError, buffer_of, serve
from lm_core.runtime.framing import BufferBudget
from lm_core.runtime.kinds import Kind
from lm_core.runtime.liveness import peer_deadline
from lm_core.runtime.logsafe import PeerLog, escape
from lm_core.runtime.metrics import MetricsServer, Snapshot, UsageCounters
from lm_core.runtime.peers import Peers
from lm_core.runtime.store import Batch, Loaded, Store
from lm_core.runtime.usage import prune_usage, usage_reply

log = logging.getLogger("lm.daemon")
events = logging.getLogger("lm.event")  # one line per engine Event effect

TICK = 0.05  # seconds between engine ticks at most
BATCH = 512  # inputs stepped before effects are carried out (group commit)
OUT_QUEUE = 4096  # messages queued to one client/admin connection before we drop it
IN_FLIGHT = 8  # messages of one connection in the inbox at once; its reader waits for more
STATUS_MAX_CLIENTS = 10_000  # key-table rows in one StatusReply (frame cap)
AUDIT_REPLY_ROWS = 1000  # audit rows in one AuditReply at most
AUDIT_REPLY_CHARS = 2_000_000  # ... and about this much JSON (frame cap 4 MiB)
# messages whose step may produce an audit row (admin changes, syncs carrying authors)
_AUDITED = (*vocab.ADMIN_OPS, m.ForwardedAdmin, m.DistributionSync, m.RlfTransfer)
TOKEN = "conn:"  # prefix of the token that names a client or admin connection


class Engine(Protocol):
    """What the daemon needs of `lm_core.engine.server.LicenseServer`."""

    def handle(self, now: float, sender: str, msg: m.Message) -> list[fx.Effect]: ...
    def tick(self, now: float) -> list[fx.Effect]: ...
    def set_today(self, today: datetime.date) -> None: ...
    def status(self, now: float) -> ServerStatus: ...
    @property
    def next_deadline(self) -> float: ...
    @property
    def rlf(self) -> Rlf: ...


EngineFactory = Callable[..., Engine]


def license_server(
    server_id: str,
    rlf: Rlf,
    *,
    now: float,
    today: datetime.date,
    persisted: fx.Persisted,
    claim_key: bytes = b"",
) -> Engine:
    """The real engine (imported here so start-up checks run without loading it)."""
    from lm_core.engine.server import LicenseServer

    return LicenseServer(
        server_id, rlf, now=now, today=today, persisted=persisted, claim_key=claim_key
    )


class StoreFailed(LmError):
    """A store write failed: the daemon stops (exit 1) rather than break a promise."""


def check_rlf_text(text: str) -> str | None:
    """Why an RLF text carried by a push or transfer is unusable (None if it parses and
    its signature verifies). Runs in a worker thread: a megabyte of broken RLF takes
    long to locate its error in."""
    try:
        verify_rlf(parse_rlf(text, file="pushed RLF"), file="pushed RLF", text=text)
    except InputError as exc:
        return str(exc)
    return None


def _rlf_text(msg: m.Message) -> str | None:
    if isinstance(msg, m.UpdateRlf | m.RlfTransfer):
        return msg.rlf_text
    if isinstance(msg, m.ForwardedAdmin) and isinstance(msg.op, m.UpdateRlf):
        return msg.op.rlf_text
    return None


@dataclass(eq=False)
class Client:
    """One accepted connection that is not a peer server's link."""

    token: str
    conn: Connection
    peer_log: PeerLog
    queue: asyncio.Queue[m.Message | None] = field(default_factory=lambda: asyncio.Queue(OUT_QUEUE))
    in_flight: int = 0  # its messages in the inbox, not yet stepped
    room: asyncio.Event = field(default_factory=asyncio.Event)  # set: below IN_FLIGHT

    def put(self, msg: m.Message) -> None:
        # Nothing queued before it (the writer task takes a message off the queue only
        # when it writes it): write now, in order, unless the peer is slow to read.
        if self.conn.closed:
            return
        if self.queue.empty():
            try:
                if self.conn.send_nowait(msg):
                    return
            except (TransportError, ProtocolError) as exc:
                self.close(str(exc))
                return
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.close("not reading its replies")

    def close(self, why: str) -> None:
        self.peer_log.log(
            log, logging.INFO, self.token, self.conn.source, "closing %s (%s): %s",
            self.token, self.conn.remote, why,
        )  # fmt: skip
        self.conn.abort()


class Daemon:
    """One pool member. Build with `Daemon(...)`, then `await run()` until `stop()`."""

    def __init__(
        self,
        server_id: str,
        rlf: Rlf,
        store: Store,
        loaded: Loaded,
        *,
        tls: tlsconfig.TlsPaths | None,
        engine_factory: EngineFactory = license_server,
        budgets: Budgets | None = None,
        claim_key: bytes = b"",
        metrics: tuple[str, int] | None = None,
    ) -> None:
        self.server_id = server_id
        self.rlf = rlf
        self.store = store
        self.tls = tls
        self.budgets = budgets or Budgets()
        self.today = _today()
        extra = {"claim_key": claim_key} if claim_key else {}
        self.engine: Engine = engine_factory(
            server_id,
            rlf,
            now=time.monotonic(),
            today=self.today,
            persisted=fx.Persisted(state=loaded.state, keys=list(loaded.keys)),
            **extra,
        )
        self._stored_seq = loaded.rlf[0] if loaded.rlf else 0
        head, tail = store.audit_tail(NOTES_KEPT)
        self.audit = AuditLog(rlf.pool, server_id, head, notes_from_rows(tail))
        self.audit_committed: Head = self.audit.head  # the last audit row on disk
        self._audit_rows: list[dict[str, Any]] = []  # rows of this step, not yet committed
        self._store_idle = asyncio.Event()  # clear while a commit runs in a worker thread
        self._store_idle.set()
        self.inbox: collections.deque[tuple[str, m.Message]] = collections.deque()
        self.peer_inbox: collections.deque[tuple[str, m.Message]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None  # the loop, waiting for input
        self._checkpointing: asyncio.Task[None] | None = None
        self._prune_at = 0.0  # when to prune the usage log next (0: at start-up)
        self.clients: dict[str, Client] = {}
        self._tokens = itertools.count(1)
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self._server: asyncio.Server | None = None
        # V1: my identity (my TLS key) and each peer's, from its certificate on the links
        # it speaks on, with when I last heard it (see engine/binding.py)
        self.identity = identity.file_identity(tls.cert) if tls is not None and tls.cert else ""
        self._peer_ident: dict[str, tuple[str, float]] = {}
        self._conn_ident: weakref.WeakKeyDictionary[Connection, str] = (
            weakref.WeakKeyDictionary()
        )
        self._present: frozenset[str] | None = None
        self._ident_deadline = peer_deadline(rlf.timing.heartbeat_interval)
        self.peer_log = PeerLog()
        self.counters = UsageCounters()  # grants and denials since start (metrics)
        self.metrics = (
            MetricsServer(metrics[0], metrics[1], self.metrics_snapshot) if metrics else None
        )
        self.event_log = PeerLog(per_conn=20, per_source=50, overall=500)
        self.peers = Peers(
            server_id,
            {s.id: s.address for s in rlf.servers},
            ssl_ctx=tlsconfig.peer_context(tls) if tls else None,
            on_message=self._from_peer_link,
            connect_timeout=max(0.5, rlf.timing.heartbeat_interval * 2),
            max_backoff=max(0.2, rlf.timing.heartbeat_interval),
            deadline=peer_deadline(rlf.timing.heartbeat_interval),
            tls_paths=tls,
        )

    @property
    def buffer(self) -> BufferBudget | None:
        """The listener's buffer budget (bytes of frames in flight now, and the peak)."""
        return buffer_of(self._server) if self._server is not None else None

    # -- lifecycle

    async def start(self) -> None:
        own = self.rlf.server(self.server_id)
        ctx = tlsconfig.server_context(self.tls) if self.tls else None
        self._server = await serve(
            self._on_connection,
            own.host,
            own.port,
            ssl=ctx,
            budgets=self.budgets,
            peer_log=self.peer_log,
        )
        log.info(
            "%s of pool %r listening on %s (%s), RLF seq %d",
            self.server_id,
            self.rlf.pool,
            own.address,
            "TLS 1.3" if ctx else "PLAINTEXT, loopback only",
            self.rlf.sequence,
        )
        if self._stored_seq < self.rlf.sequence:
            batch = Batch()
            batch.set_rlf(self.rlf.sequence, render_rlf(self.rlf))
            await asyncio.to_thread(self.store.commit, batch)
            self._stored_seq = self.rlf.sequence
        if self.tls is not None:
            problem = tlsdiag.local_problem(self.tls, role=f"server {self.server_id}")
            if problem is not None:  # peers will refuse us (or we them): say why, once
                log.error("TLS: %s", problem)
        self.peers.start()
        if self.metrics is not None:
            self.metrics.start()
        self.started.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self) -> None:
        """Serve until `stop()`; then close everything (the store last)."""
        await self.start()
        try:
            await self._loop()
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        for c in list(self.clients.values()):
            c.conn.abort()
        await self.peers.aclose()
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._server.wait_closed()
        if self._checkpointing is not None:  # a worker thread: it cannot be cancelled
            await asyncio.shield(self._checkpointing)
        self.store.close()
        log.info("%s stopped; store closed", self.server_id)

    # -- the loop: take inputs, step, persist, send

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_tick = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            due = last_tick + TICK
            deadline = self.engine.next_deadline
            if deadline > last_tick:  # a deadline already ticked past waits for TICK
                due = min(due, deadline)
            if self.inbox or self.peer_inbox or due <= now:
                await asyncio.sleep(0)  # never starve the connections
            else:
                waiter = self._waiter = loop.create_future()
                timer = loop.call_later(due - now, _resolve, waiter)
                try:
                    await waiter
                finally:
                    timer.cancel()
                    self._waiter = None
            if self._stop.is_set():
                break
            inputs: list[tuple[str, m.Message]] = list(self.peer_inbox)
            self.peer_inbox.clear()
            while len(inputs) < BATCH and self.inbox:
                inputs.append(self.inbox.popleft())
            now = time.monotonic()
            effects: list[fx.Effect] = []
            for sender, msg in inputs:
                effects.extend(self._step(sender, msg, now))
            if now >= due:
                self._update_present(now)
                today = _today()
                if today != self.today:
                    self.today = today
                    self.engine.set_today(today)
                try:
                    effects.extend(self.engine.tick(now))
                except Exception:
                    log.exception("engine tick failed")
                last_tick = now
            if effects or self._audit_rows:
                await self._carry_out(effects)
            self._maybe_checkpoint()
            if now >= self._prune_at:
                self._prune_at = now + prune_usage(self.store, self.engine.rlf.retention_days)

    def _step(self, sender: str, msg: m.Message, now: float) -> list[fx.Effect]:
        client = self.clients.get(sender)
        if client is not None:
            client.in_flight -= 1
            client.room.set()
        if sender.startswith(TOKEN) and reaches_nobody(
            msg, open=client is not None and not client.conn.closed
        ):
            return []  # the client hung up: a grant would hold a seat for nobody
        pending = (
            self.audit.pending_for(msg, f"forwarded by server {sender}", self.engine)
            if isinstance(msg, _AUDITED)
            else None
        )
        try:
            effects = self.engine.handle(now, sender, msg)
            if pending is not None:
                self._audit_rows.extend(
                    self.audit.rows_after(pending, self.engine, effects, time.time())
                )
        except Exception:
            log.exception(
                "engine failed on %s from %s; message dropped",
                type(msg).__name__,
                escape(sender),
            )
            return []
        if client is None:
            return effects
        # Events caused by a client are rate-limited per connection and source address.
        for eff in effects:
            if isinstance(eff, fx.Event):
                self.event_log.log(
                    events, _event_level(eff), sender, client.conn.source, "%s: %s",
                    eff.kind, eff.text,
                )  # fmt: skip
        return [e for e in effects if not isinstance(e, fx.Event)]

    async def _carry_out(self, effects: Sequence[fx.Effect]) -> None:
        """Persist, then send. Every persist effect of the list goes into one batch,
        committed before the first message leaves: a persist must be durable before any
        *later* send, and making an even later one durable early is harmless (it is the
        state the engine already moved to) -- one commit per step, not per grant."""
        batch = self._batch(effects)
        if batch:
            await self._commit(batch)
        self._send_effects(effects)

    def _batch(self, effects: Sequence[fx.Effect]) -> Batch:
        """The persist effects of one step, as one store batch (plus a new RLF)."""
        batch = Batch()
        for eff in effects:
            if isinstance(eff, fx.PersistState):
                batch.set_state(eff.state)
            elif isinstance(eff, fx.PersistKey):
                batch.put_key(eff.client_id, eff.license, eff.entry)
            elif isinstance(eff, fx.LogUsage):
                batch.log_usage(
                    eff.kind, eff.client_id, eff.license, eff.count, eff.reason,
                    None if eff.identity is None else eff.identity.as_json(), eff.ago,
                )  # fmt: skip
                self.counters.note(eff.kind, eff.license, eff.count, eff.reason)
        self._note_rlf(batch)
        if self._audit_rows:
            batch.audit.extend(self._audit_rows)
            self._audit_rows.clear()
        return batch

    async def _commit(self, batch: Batch) -> None:
        try:
            if batch.synchronous:
                self._store_idle.clear()
                try:
                    await asyncio.to_thread(self.store.commit, batch)  # fsync: off the loop
                finally:
                    self._store_idle.set()
            else:
                self.store.commit(batch)  # no fsync: tens of microseconds
            if batch.audit:
                last = batch.audit[-1]
                self.audit_committed = Head(last["seq"], last["hash"])
        except Exception as exc:
            # Without a durable store the promises (S2, S6) cannot be kept: stop, and
            # send nothing that depended on this batch.
            raise StoreFailed(f"store write failed, stopping: {exc}") from exc

    def _send_effects(self, effects: Sequence[fx.Effect]) -> None:
        notes = self.audit.recent_notes
        for eff in effects:
            if isinstance(eff, fx.Send):
                msg = eff.msg
                if notes and isinstance(msg, m.DistributionSync):
                    msg = replace(msg, changes=notes)  # who made the latest changes (audit)
                self.peers.send(eff.to, msg)
            elif isinstance(eff, fx.Reply):
                client = self.clients.get(eff.to)
                if client is not None:
                    client.put(eff.msg)
            elif isinstance(eff, fx.Event):
                events.log(_event_level(eff), "%s: %s", eff.kind, escape(eff.text))
            elif not isinstance(eff, fx.PersistState | fx.PersistKey | fx.LogUsage):
                log.error("unknown effect %r ignored", eff)

    def _note_rlf(self, batch: Batch) -> None:
        """Keep the store's RLF text in step with the engine's current RLF."""
        rlf = self.engine.rlf
        if rlf.sequence <= self._stored_seq:
            return
        batch.set_rlf(rlf.sequence, render_rlf(rlf))
        self._stored_seq = rlf.sequence
        if rlf is not self.rlf:
            self.rlf = rlf
            self.peers.update({s.id: s.address for s in rlf.servers})

    def _maybe_checkpoint(self) -> None:
        """Start a WAL checkpoint in a worker when one is due; the loop does not wait
        for it (it copies committed pages on a connection of its own)."""
        if self.store.checkpoint_due and (
            self._checkpointing is None or self._checkpointing.done()
        ):
            self._checkpointing = asyncio.create_task(self._checkpoint(), name="checkpoint")

    async def _checkpoint(self) -> None:
        try:
            await asyncio.to_thread(self.store.checkpoint)
        except Exception as exc:  # the WAL just grows; the next one tries again
            log.warning("WAL checkpoint failed: %s", exc)

    # -- connections: read, admit, queue for the loop

    def _from_peer_link(self, peer_id: str, msg: m.Message, conn: Connection) -> None:
        if msg.pool != self.rlf.pool:
            raise ProtocolError(f"message for pool {msg.pool!r}")
        self._heard_identity(peer_id, conn)
        self._from_peer(peer_id, msg)

    def _heard_identity(self, peer_id: str, conn: Connection) -> None:
        ident = self._conn_ident.get(conn)
        if ident is None:  # once per connection: its certificate does not change
            ident = identity.peer_identity(conn.writer.get_extra_info("ssl_object"))
            self._conn_ident[conn] = ident
        self._peer_ident[peer_id] = (ident, time.monotonic())

    def _update_present(self, now: float) -> None:
        """Tell the engine which servers are present: me, and each peer heard from
        within the peer deadline (by the identity of its certificate)."""
        present = frozenset(
            {self.identity}
            | {i for i, t in self._peer_ident.values() if i and now - t <= self._ident_deadline}
        ) - {""}
        if present != self._present:
            self._present = present
            set_identities = getattr(self.engine, "set_identities", None)
            if set_identities is not None:
                set_identities(self.identity, present)

    def _from_peer(self, peer_id: str, msg: m.Message) -> None:
        if isinstance(msg, m.ServerUp):
            # the peer (re)started: the link we hold to it may lead to its old process
            self.peers.restarted(peer_id)
        self.peers.heard_from(peer_id)
        self.peer_inbox.append((peer_id, msg))
        self._wake()

    async def _enqueue(self, client: Client, msg: m.Message) -> None:
        """Queue a client's or admin's message for the loop. A connection has at most
        `IN_FLIGHT` messages queued: a client pipelining thousands of requests waits
        here (and stops being read), so the inbox stays short and every other
        connection's message is stepped after a bounded number of the flood's."""
        while client.in_flight >= IN_FLIGHT:
            client.room.clear()
            await client.room.wait()
        client.in_flight += 1
        self.inbox.append((client.token, msg))
        self._wake()

    async def _on_connection(self, conn: Connection) -> None:
        token = f"{TOKEN}{next(self._tokens)}"
        client = Client(token, conn, self.peer_log)
        self.clients[token] = client
        writer = asyncio.create_task(self._write(client), name=f"write-{token}")
        try:
            await self._read(client)
        finally:
            del self.clients[token]
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(writer, 1.0)
            writer.cancel()

    async def _write(self, client: Client) -> None:
        while True:
            msg = await client.queue.get()
            if msg is None:
                return
            try:
                await client.conn.send(msg)
            except (TransportError, ProtocolError) as exc:
                client.close(str(exc))
                return

    def _admit(self, conn: Connection, kind: Kind, size: int) -> None:
        decision = admit_frame(conn.peer, kind, size, tls=self.tls is not None, pool=self.rlf.pool)
        if decision.verdict is Verdict.CLOSE:
            raise ProtocolError(f"{kind.name} frame refused: {decision.reason}")

    async def _read(self, client: Client) -> None:
        conn = client.conn
        tls = self.tls is not None
        conn.admit = lambda kind, size: self._admit(conn, kind, size)
        idle = max(60.0, 3 * self.rlf.timing.client_lease)
        while True:
            msg = await conn.recv(idle_timeout=idle)
            if msg is None:
                return
            kind = conn.last_kind
            assert kind is not None
            decision = admit_frame(conn.peer, kind, 0, tls=tls, pool=self.rlf.pool)
            if decision.verdict is Verdict.REFUSE:
                self.peer_log.log(
                    log, logging.WARNING, client.token, conn.source,
                    "refused %s from %s (%s): %s",
                    type(msg).__name__, conn.remote, describe(conn.peer), decision.reason,
                )  # fmt: skip
                client.put(self._refusal(msg, decision.reason))
                continue
            if kind is Kind.CLIENT:
                if reaches_nobody(msg, open=not conn.eof_seen):
                    continue  # sent by a client that has already hung up
                await self._enqueue(client, msg)
            elif isinstance(msg, m.UsageRequest):  # read-only (STATUS kind): the store answers
                client.put(await usage_reply(self.store, msg, self.server_id))
            elif kind is Kind.STATUS:
                if isinstance(msg, m.AuditRequest):
                    client.put(await self._audit_reply(msg))
                else:
                    client.put(self._status_reply(getattr(msg, "request_id", 0)))
            elif kind in (Kind.ADMIN, Kind.ADMIN_RLF):
                why = await self._check_rlf(msg)
                if why is not None:
                    client.put(self._refusal(msg, why))
                else:
                    # the audit log's author is the certificate, never what the admin says
                    await self._enqueue(client, _stamped(msg, _actor(conn)))
            else:  # a server message, on a connection a peer dialled (or plaintext)
                # A server of a newer RLF that lists it may offer that RLF before it is a
                # member (engine `membership`); anything else comes from members only.
                members = self.rlf.server_ids
                if isinstance(msg, m.RlfTransfer) and msg.sender not in members:
                    members = (*members, msg.sender)
                sender = admit_server_sender(
                    conn.peer, msg.sender, msg.pool, tls=tls, pool=self.rlf.pool,
                    server_ids=members, own_id=self.server_id,
                )  # fmt: skip
                if sender.verdict is not Verdict.ACCEPT:
                    raise ProtocolError(f"{type(msg).__name__}: {sender.reason}")
                self._heard_identity(msg.sender, conn)
                why = await self._check_rlf(msg)
                if why is not None:
                    self.peer_log.log(
                        log, logging.WARNING, client.token, conn.source,
                        "dropped %s from %s: %s", type(msg).__name__, msg.sender, why,
                    )  # fmt: skip
                    continue
                self._from_peer(msg.sender, msg)

    async def _check_rlf(self, msg: m.Message) -> str | None:
        text = _rlf_text(msg)
        return None if text is None else await asyncio.to_thread(check_rlf_text, text)

    def _refusal(self, msg: m.Message, why: str) -> m.AdminReply:
        return m.AdminReply(
            pool=self.rlf.pool,
            sender=self.server_id,
            request_id=int(getattr(msg, "request_id", 0)),
            ok=False,
            message=why,
        )

    # -- status

    def status(self) -> ServerStatus:
        status = self.engine.status(time.monotonic())
        clients = status.get("clients")
        if isinstance(clients, list) and len(clients) > STATUS_MAX_CLIENTS:
            status["clients"] = clients[:STATUS_MAX_CLIENTS]
            status["clients_total"] = len(clients)
        return status

    async def _audit_reply(self, msg: m.AuditRequest) -> m.AuditReply:
        # read between commits: the rows on disk and the head reported are the same ones
        while not self._store_idle.is_set():
            await self._store_idle.wait()
        rows = self.store.audit_rows(
            since_seq=msg.since_seq, limit=max(1, min(msg.limit, AUDIT_REPLY_ROWS))
        )
        size, keep = 0, list[dict[str, Any]]()
        for r in rows:
            size += len(str(r))
            if keep and size > AUDIT_REPLY_CHARS:
                break
            keep.append(r)
        head = self.audit_committed
        return m.AuditReply(
            pool=self.rlf.pool,
            sender=self.server_id,
            request_id=msg.request_id,
            audit={
                "server": self.server_id,
                "pool": self.rlf.pool,
                "head": {"seq": head.seq, "hash": head.hash},
                "anchor": self.store.audit_anchor(),
                "rows": keep,
                "more": len(keep) < len(rows) or len(rows) == max(1, min(msg.limit, 1000)),
            },
        )

    def metrics_snapshot(self) -> Snapshot:
        """The status and counters for one metrics scrape (called on the loop)."""
        return Snapshot(self.status(), self.counters.copy())

    def _status_reply(self, request_id: int) -> m.StatusReply:
        return m.StatusReply(
            pool=self.rlf.pool,
            sender=self.server_id,
            request_id=request_id,
            status=dict(self.status()),
        )


def _stamped(msg: m.Message, actor: str) -> m.Message:
    return replace(msg, actor=actor) if hasattr(msg, "actor") else msg  # type: ignore[call-arg]


def _actor(conn: Connection) -> str:
    ssl_object = conn.writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return actor_of(conn.peer, der, conn.remote)


def _event_level(eff: fx.Event) -> int:
    return logging.WARNING if eff.kind in ("bug", "error") else logging.INFO


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()
