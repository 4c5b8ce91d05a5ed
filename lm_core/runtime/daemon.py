"""`lm-daemon`: one pool member -- the engine on real sockets, TLS and SQLite.

Theory of operation
-------------------
The daemon is a thin shell around the sans-IO `LicenseServer` (etcd-raft's "Ready"
shape). One loop task owns the engine:

1. take inputs: messages that connection tasks put in the inbox (all that are queued,
   up to `BATCH`), or nothing when the tick is due (every `TICK` s or at the engine's
   `next_deadline`, whichever is sooner);
2. step the engine (`handle` per message, then `tick`), concatenating the effects;
3. carry the effects out: every `PersistState` / `PersistKey` / `LogUsage` of the step
   goes into one `Batch`, committed (one SQLite transaction) before any `Send` / `Reply`
   of the step leaves, in list order -- persist, then send, then reply. All the inputs
   of a step share that one commit: the grant path's group commit. A batch with a
   `PersistState` (or a new RLF) is fsynced in a worker thread before anything is sent;
   a grant-path batch (`PersistKey` / `LogUsage` only) is committed on the loop without
   an fsync -- crash-safe, not power-loss-safe; restart grace (S4) covers that (see
   `store.py`). WAL checkpoints run in a worker thread while the loop goes on. `Event`
   effects are logged as one line each.

The per-request path is kept short. When the loop is idle (waiting, nothing queued, no
tick due), a connection task steps a client message itself (`_step_now`): handle,
commit (no fsync), send and reply, all without an `await` -- so it is atomic with
respect to the loop, exactly as if the loop had taken it. When many connections are
ready in the same event-loop iteration, the steps after the first are carried out
together at the end of it (one commit). A step that needs an fsync is handed to the
loop (`_ready`) instead, which fsyncs before anything of it is sent; the loop carries
out every pending fast step before it steps anything itself.
Otherwise the inbox is a deque that wakes the loop through one future (no task per
wait). A reply is written straight to the transport when nothing is queued before it
and the peer keeps up (else it goes through the connection's writer task, which waits
for the peer to drain).

Who may say what (checked here, before the engine sees a message):

* a server message must come from a server: with TLS, a certificate of role "server"
  whose name equals the message's sender; in plaintext (loopback only), a sender that
  is another server id of the RLF;
* admin messages (status, watch, add code, ...) need an admin certificate (or
  plaintext loopback); a client asking gets a refusal `AdminReply`, not the operation;
* anything else wrong -- a bad frame, an invalid message, a server message from a
  client -- closes that one connection with one log line; the daemon keeps serving.

Client and admin connections are named by tokens ("conn:17"); the engine answers with
`Reply(to=token)`. `StatusRequest` and `Watch` are answered here from
`LicenseServer.status(now)`; a watch pushes a `StatusReply` at most every `WATCH_EVERY`
s, only when something other than ages changed (or every `WATCH_REFRESH` s).

Start-up refuses (one line, exit 2) a bad or unsigned RLF, a server id missing from it,
a foreign or damaged data directory, missing TLS files, and plaintext to a non-loopback
address. SIGTERM/SIGINT: stop listening, commit what is pending, close the store, exit 0
(authorizations stay in the key table: clients re-attach on restart).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import itertools
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lm_core.engine import effects as fx
from lm_core.engine import messages as m
from lm_core.engine.rlf import Rlf, parse_rlf, render_rlf, verify_rlf
from lm_core.errors import InputError, LmError
from lm_core.runtime import tlsconfig
from lm_core.runtime.codec import ProtocolError
from lm_core.runtime.connection import (
    Connection,
    TransportError,
    is_loopback,
    serve,
)
from lm_core.runtime.peers import Peers
from lm_core.runtime.store import Batch, Loaded, Store, StoreError

log = logging.getLogger("lm.daemon")
events = logging.getLogger("lm.event")  # one line per engine Event effect

TICK = 0.05  # seconds between engine ticks at most
BATCH = 512  # inputs stepped before effects are carried out (group commit)
WATCH_EVERY = 0.25  # a watcher gets at most one push per this many seconds
WATCH_REFRESH = 2.0  # ... and at least one per this many, so ages stay fresh
OUT_QUEUE = 4096  # messages queued to one client/admin connection before we drop it
STATUS_MAX_CLIENTS = 10_000  # key-table rows in one StatusReply (frame cap)

CLIENT_MESSAGES: tuple[type[m.Message], ...] = (m.Request, m.ClientHeartbeat, m.Release)
ADMIN_OPS: tuple[type[m.Message], ...] = (
    m.ChangeDistribution,
    m.AddAllocations,
    m.AddLicenseCode,
    m.UpdateRlf,
    m.Reclaim,
)
LOCAL_QUERIES: tuple[type[m.Message], ...] = (m.StatusRequest, m.Watch)


class Engine(Protocol):
    """What the daemon needs of `lm_core.engine.server.LicenseServer`."""

    def handle(self, now: float, sender: str, msg: m.Message) -> list[fx.Effect]: ...
    def tick(self, now: float) -> list[fx.Effect]: ...
    def set_today(self, today: datetime.date) -> None: ...
    def status(self, now: float) -> dict[str, Any]: ...
    @property
    def next_deadline(self) -> float: ...


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


class StartupError(InputError):
    """The daemon cannot start with these arguments (one line, exit 2)."""


# ---------------------------------------------------------------- start-up checks


def load_rlf(path: Path) -> tuple[Rlf, str]:
    """Read, parse and verify the RLF at `path` (InputError naming the file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StartupError(f"cannot read RLF: {exc.strerror}", file=str(path)) from None
    except UnicodeDecodeError:
        raise StartupError("RLF is not UTF-8 text", file=str(path)) from None
    rlf = parse_rlf(text, file=str(path))
    verify_rlf(rlf, file=str(path), text=text)
    return rlf, text


def choose_rlf(given: Rlf, stored: tuple[int, str] | None, where: str) -> Rlf:
    """The RLF to run with: the given one, unless the data dir holds a newer one that the
    same admin key signed (a server that comes back with a newer RLF pushes it: S5)."""
    if stored is None:
        return given
    try:
        old = parse_rlf(stored[1], file=f"{where} (stored RLF)")
        verify_rlf(old)
    except InputError as exc:
        raise StoreError(f"stored RLF does not verify: {exc}", file=where) from None
    if old.pool != given.pool:
        raise StoreError(f"stored RLF is for pool {old.pool!r}, not {given.pool!r}", file=where)
    if old.admin_key != given.admin_key:
        raise StartupError(
            f"signed by admin key {given.admin_key}, but this server's stored RLF "
            f"(seq {old.sequence}) trusts {old.admin_key}",
            field="admin_key",
        )
    if old.sequence > given.sequence:
        log.info(
            "using the stored RLF seq %d (newer than the given seq %d)",
            old.sequence,
            given.sequence,
        )
        return old
    if old.sequence == given.sequence and render_rlf(old) != render_rlf(given):
        raise StartupError(
            f"RLF seq {given.sequence} differs from the stored RLF with the same sequence "
            "(bump the sequence and sign again)",
            field="sequence",
        )
    return given


def check_addresses(rlf: Rlf, server_id: str, *, plaintext: bool) -> None:
    """Plaintext only if every server of the pool is on loopback."""
    rlf.server(server_id)
    if plaintext:
        for s in rlf.servers:
            if not is_loopback(s.host):
                raise StartupError(
                    f"--insecure-loopback: server {s.id} listens on {s.address}, which is not "
                    "loopback; use --tls-dir",
                    field="servers",
                )


# ---------------------------------------------------------------- connections


@dataclass(eq=False)
class Client:
    """One accepted connection that is not a peer server's link."""

    token: str
    conn: Connection
    queue: asyncio.Queue[m.Message | None] = field(default_factory=lambda: asyncio.Queue(OUT_QUEUE))
    watch_id: int | None = None
    watch_sig: str = ""
    watch_sent: float = 0.0

    def put(self, msg: m.Message) -> None:
        # Nothing queued before it (the writer task takes a message off the queue only
        # when it writes it): write now, in order, unless the peer is slow to read.
        if self.queue.empty():
            try:
                if self.conn.send_nowait(msg):
                    return
            except (TransportError, ProtocolError) as exc:
                log.info("closing %s (%s): %s", self.token, self.conn.remote, exc)
                self.conn.abort()
                return
        try:
            self.queue.put_nowait(msg)
        except asyncio.QueueFull:
            log.info("closing %s (%s): not reading its replies", self.token, self.conn.remote)
            self.conn.abort()


def _status_sig(status: dict[str, Any]) -> str:
    """Status without the fields that change every instant (ages, lease times)."""

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {
                k: strip(x)
                for k, x in v.items()
                if not (k.endswith("_age") or k in ("age", "lease_expires_in"))
            }
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return json.dumps(strip(status), sort_keys=True, default=str)


# ---------------------------------------------------------------- the daemon


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
        claim_key: bytes = b"",
    ) -> None:
        self.server_id = server_id
        self.rlf = rlf
        self.store = store
        self.tls = tls
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
        self.inbox: collections.deque[tuple[str, m.Message]] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None  # the loop, waiting for input
        self._waiting_due = 0.0  # ... until then (its next tick)
        self._ready: list[tuple[list[fx.Effect], Batch]] = []  # stepped, not yet carried out
        self._failed: StoreFailed | None = None
        self._fast_iteration = False  # a fast step was carried out in this loop iteration
        self._fast_pending: list[fx.Effect] | None = None  # stepped, to carry out at its end
        self._checkpointing: asyncio.Task[None] | None = None
        # server-to-server messages go first: a flood of clients must not delay the
        # heartbeats and ACKs that keep the leases (S3) alive
        self.peer_inbox: collections.deque[tuple[str, m.Message]] = collections.deque()
        self.clients: dict[str, Client] = {}
        self._tokens = itertools.count(1)
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.peers = Peers(
            server_id,
            {s.id: s.address for s in rlf.servers},
            ssl_ctx=tlsconfig.peer_context(tls) if tls else None,
            on_message=self._from_peer_link,
            connect_timeout=max(0.5, rlf.timing.heartbeat_interval * 2),
            max_backoff=max(0.2, rlf.timing.heartbeat_interval),
        )

    # -- lifecycle

    async def start(self) -> None:
        own = self.rlf.server(self.server_id)
        ctx = tlsconfig.server_context(self.tls) if self.tls else None
        self._server = await serve(self._on_connection, own.host, own.port, ssl=ctx)
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
        self.peers.start()
        self.started.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _enqueue(self, sender: str, msg: m.Message) -> None:
        self.inbox.append((sender, msg))
        self._wake()

    async def run(self) -> None:
        """Serve until `stop()`; then close everything (the store last)."""
        await self.start()
        watcher = asyncio.create_task(self._watch_loop(), name="watch")
        try:
            await self._loop()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
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

    # -- the loop

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
                self._waiting_due = due
                timer = loop.call_later(due - now, _resolve, waiter)
                try:
                    await waiter
                finally:
                    timer.cancel()
                    self._waiter = None
            self._flush_fast()  # steps taken before this wake-up go out first, in order
            if self._failed is not None:
                raise self._failed
            ready, self._ready = self._ready, []
            for stepped, batch in ready:
                await self._apply(stepped, batch)
            inputs: list[tuple[str, m.Message]] = list(self.peer_inbox)
            self.peer_inbox.clear()
            while len(inputs) < BATCH and self.inbox:
                inputs.append(self.inbox.popleft())
            if self._stop.is_set():
                break
            now = time.monotonic()
            effects: list[fx.Effect] = []
            for sender, msg in inputs:
                effects.extend(self._step(sender, msg, now))
            if now >= due:
                today = _today()
                if today != self.today:
                    self.today = today
                    self.engine.set_today(today)
                try:
                    effects.extend(self.engine.tick(now))
                except Exception:
                    log.exception("engine tick failed")
                last_tick = now
            if effects:
                await self._carry_out(effects)
            self._maybe_checkpoint()

    def _step_now(self, sender: str, msg: m.Message) -> bool:
        """The fast path (see the module doc): step `msg` here if the loop is idle.
        False if it is not (then the caller queues it for the loop).

        The first message of an event-loop iteration is carried out at once (one client:
        no hop through the loop task); later ones in the same iteration -- many clients
        ready together -- are stepped now and carried out together at the end of the
        iteration (`_flush_fast`), one commit for all of them: the group commit."""
        waiter = self._waiter
        if (
            waiter is None
            or waiter.done()
            or self.inbox
            or self.peer_inbox
            or self._ready
            or self._stop.is_set()
        ):
            return False
        now = time.monotonic()
        if now >= self._waiting_due:
            return False  # a tick is due: the loop does both, in order
        effects = self._step(sender, msg, now)
        if self._fast_pending is not None:
            self._fast_pending.extend(effects)
        elif self._fast_iteration:
            self._fast_pending = effects
            asyncio.get_running_loop().call_soon(self._flush_fast)
        else:
            self._fast_iteration = True
            asyncio.get_running_loop().call_soon(self._end_fast_iteration)
            self._carry_out_now(effects)
        return True

    def _end_fast_iteration(self) -> None:
        self._fast_iteration = False

    def _flush_fast(self) -> None:
        effects, self._fast_pending = self._fast_pending, None
        if effects is not None:
            self._carry_out_now(effects)

    def _carry_out_now(self, effects: list[fx.Effect]) -> None:
        """`_carry_out` without an await, for the fast path; a batch that needs an fsync
        goes to the loop instead (`_ready`), which commits it in a worker, then sends."""
        batch = self._batch(effects)
        if batch.synchronous:
            self._ready.append((effects, batch))
            self._wake()
            return
        if batch:
            try:
                self.store.commit(batch)
            except Exception as exc:
                self._failed = StoreFailed(f"store write failed, stopping: {exc}")
                self._wake()
                return
        self._send_effects(effects)
        self._maybe_checkpoint()
        if self.engine.next_deadline < self._waiting_due:
            self._wake()

    def _step(self, sender: str, msg: m.Message, now: float) -> list[fx.Effect]:
        try:
            return self.engine.handle(now, sender, msg)
        except Exception:
            log.exception(
                "engine failed on %s from %s; message dropped", type(msg).__name__, sender
            )
            return []

    async def _carry_out(self, effects: Sequence[fx.Effect]) -> None:
        """Persist, then send, then reply. Every persist effect of the list goes into one
        batch committed before the first message leaves: a persist must be durable
        before any *later* send, and making an even later one durable early is harmless
        (it is the state the engine already moved to) -- one commit per step, not per
        grant."""
        await self._apply(effects, self._batch(effects))

    async def _apply(self, effects: Sequence[fx.Effect], batch: Batch) -> None:
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
                batch.log_usage(eff.kind, eff.client_id, eff.license, eff.count, eff.reason)
        self._note_rlf(batch)
        return batch

    def _send_effects(self, effects: Sequence[fx.Effect]) -> None:
        for eff in effects:
            if isinstance(eff, fx.Send):
                self.peers.send(eff.to, eff.msg)
            elif isinstance(eff, fx.Reply):
                client = self.clients.get(eff.to)
                if client is not None:
                    client.put(eff.msg)
            elif isinstance(eff, fx.Event):
                self._log_event(eff)
            elif not isinstance(eff, fx.PersistState | fx.PersistKey | fx.LogUsage):
                log.error("unknown effect %r ignored", eff)

    def _note_rlf(self, batch: Batch) -> None:
        """Keep the store's RLF text in step with the engine's current RLF."""
        rlf: Rlf | None = getattr(self.engine, "rlf", None)
        if rlf is None or rlf.sequence <= self._stored_seq:
            return
        batch.set_rlf(rlf.sequence, render_rlf(rlf))
        self._stored_seq = rlf.sequence
        if rlf is not self.rlf:
            self.rlf = rlf
            self.peers.update({s.id: s.address for s in rlf.servers})

    async def _commit(self, batch: Batch) -> None:
        try:
            if batch.synchronous:
                await asyncio.to_thread(self.store.commit, batch)  # fsync: off the loop
            else:
                self.store.commit(batch)  # no fsync: tens of microseconds
        except Exception as exc:
            # Without a durable store the promises (S2, S6) cannot be kept: stop, and
            # send nothing that depended on this batch.
            raise StoreFailed(f"store write failed, stopping: {exc}") from exc

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

    def _log_event(self, eff: fx.Event) -> None:
        level = logging.WARNING if eff.kind in ("bug", "error") else logging.INFO
        events.log(level, "%s: %s", eff.kind, eff.text)

    # -- connections

    def _from_peer_link(self, peer_id: str, msg: m.Message, conn: Connection) -> None:
        if msg.pool != self.rlf.pool:
            raise ProtocolError(f"message for pool {msg.pool!r}")
        self._from_peer(peer_id, msg)

    def _from_peer(self, peer_id: str, msg: m.Message) -> None:
        self.peer_inbox.append((peer_id, msg))
        self._wake()

    async def _on_connection(self, conn: Connection) -> None:
        token = f"conn:{next(self._tokens)}"
        client = Client(token, conn)
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
                log.info("closing %s (%s): %s", client.token, client.conn.remote, exc)
                client.conn.abort()
                return

    async def _read(self, client: Client) -> None:
        conn = client.conn
        peer = conn.peer
        idle = max(60.0, 3 * self.rlf.timing.client_lease)
        while True:
            msg = await conn.recv(idle_timeout=None if client.watch_id is not None else idle)
            if msg is None:
                return
            if isinstance(msg, CLIENT_MESSAGES):
                if not self._step_now(client.token, msg):
                    self._enqueue(client.token, msg)
                continue
            if isinstance(msg, LOCAL_QUERIES + ADMIN_OPS):
                if not self._may_admin(peer):
                    client.put(_refuse(msg, self, "admin operations need an admin certificate"))
                    continue
                if isinstance(msg, m.StatusRequest):
                    client.put(self._status_reply(msg.request_id))
                elif isinstance(msg, m.Watch):
                    client.watch_id = msg.request_id
                    client.watch_sig = ""
                    client.watch_sent = 0.0
                else:
                    self._enqueue(client.token, msg)
                continue
            # a server message
            if msg.pool != self.rlf.pool:
                raise ProtocolError(f"server message for pool {msg.pool!r}")
            if peer is not None:
                if peer.pool and peer.pool != self.rlf.pool:
                    raise ProtocolError(f"certificate of pool {peer.pool!r}")
                if peer.role != "server" or peer.name != msg.sender:
                    raise ProtocolError(
                        f"{type(msg).__name__} from {msg.sender!r} on a connection certified "
                        f"for {peer.role} {peer.name!r}"
                    )
            elif self.tls is not None:
                raise ProtocolError(f"{type(msg).__name__} without a server certificate")
            if msg.sender not in self.rlf.server_ids or msg.sender == self.server_id:
                raise ProtocolError(f"{type(msg).__name__} from unknown server {msg.sender!r}")
            self._from_peer(msg.sender, msg)

    def _may_admin(self, peer: tlsconfig.PeerIdentity | None) -> bool:
        if self.tls is None:
            return True  # plaintext: loopback only, checked at start-up
        return peer is not None and peer.role in ("admin", "server")

    # -- status and watch

    def status(self) -> dict[str, Any]:
        status = self.engine.status(time.monotonic())
        clients = status.get("clients")
        if isinstance(clients, list) and len(clients) > STATUS_MAX_CLIENTS:
            status["clients"] = clients[:STATUS_MAX_CLIENTS]
            status["clients_total"] = len(clients)
        return status

    def _status_reply(self, request_id: int) -> m.StatusReply:
        return m.StatusReply(
            pool=self.rlf.pool,
            sender=self.server_id,
            request_id=request_id,
            status=self.status(),
        )

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY)
            watchers = [c for c in self.clients.values() if c.watch_id is not None]
            if not watchers:
                continue
            status = self.status()
            sig = _status_sig(status)
            now = time.monotonic()
            for c in watchers:
                if sig != c.watch_sig or now - c.watch_sent >= WATCH_REFRESH:
                    assert c.watch_id is not None
                    c.watch_sig, c.watch_sent = sig, now
                    c.put(
                        m.StatusReply(
                            pool=self.rlf.pool,
                            sender=self.server_id,
                            request_id=c.watch_id,
                            status=status,
                        )
                    )


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _refuse(msg: m.Message, daemon: Daemon, why: str) -> m.AdminReply:
    return m.AdminReply(
        pool=daemon.rlf.pool,
        sender=daemon.server_id,
        request_id=int(getattr(msg, "request_id", 0)),
        ok=False,
        message=why,
    )


def _today() -> datetime.date:
    return datetime.datetime.now(datetime.UTC).date()


# ---------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm-daemon",
        description="Run one license server of a pool (the engine on TCP/TLS and SQLite).",
        epilog=(
            "example: lm-daemon --rlf pool.rlf --server-id A --data-dir /var/lib/lm/A "
            "--tls-dir /etc/lm/tls"
        ),
    )
    p.add_argument("--rlf", required=True, type=Path, help="the pool's signed RLF")
    p.add_argument("--server-id", required=True, help="this server's id in the RLF (e.g. A)")
    p.add_argument(
        "--data-dir", required=True, type=Path, help="where this server keeps its SQLite store"
    )
    tls = p.add_mutually_exclusive_group(required=True)
    tls.add_argument("--tls-dir", type=Path, help="directory written by `lm pki init`")
    tls.add_argument(
        "--insecure-loopback",
        action="store_true",
        help="no TLS; allowed only when every server of the RLF is on 127.0.0.1",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="stderr log level (default: info)",
    )
    return p


def _gmtime(secs: float | None) -> time.struct_time:
    return time.gmtime(secs)


def _setup_logging(level: str, server_id: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter(
        f"%(asctime)s.%(msecs)03dZ {server_id} %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = _gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("asyncio").setLevel(max(logging.INFO, root.level))


def prepare(args: argparse.Namespace) -> tuple[Rlf, Store, Loaded, tlsconfig.TlsPaths | None]:
    """Every start-up check; raises `InputError` (exit 2) with one clear line."""
    given, _ = load_rlf(args.rlf)
    try:
        given.server(args.server_id)
    except InputError:
        raise StartupError(
            f"server id {args.server_id!r} is not in the RLF (servers: "
            f"{', '.join(given.server_ids)})",
            file=str(args.rlf),
        ) from None
    tls = (
        None
        if args.insecure_loopback
        else tlsconfig.load_tls_dir(args.tls_dir, f"server-{args.server_id}")
    )
    if tls is not None:  # load them now so a bad key fails here, not at the first peer
        tlsconfig.server_context(tls)
        tlsconfig.peer_context(tls)
    store = Store.open(args.data_dir, pool=given.pool, server_id=args.server_id)
    try:
        loaded = store.load()
        rlf = choose_rlf(given, loaded.rlf, str(store.path))
        check_addresses(rlf, args.server_id, plaintext=tls is None)
    except BaseException:
        store.close()
        raise
    return rlf, store, loaded, tls


async def _amain(daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop)
    await daemon.run()


def main(argv: Sequence[str] | None = None) -> None:
    """The `lm-daemon` entry point."""
    args = _parser().parse_args(argv)
    _setup_logging(args.log_level, args.server_id)
    try:
        rlf, store, loaded, tls = prepare(args)
        claim_key = tlsconfig.load_claim_key(None if tls is None else args.tls_dir, rlf.pool)
    except InputError as exc:
        print(f"lm-daemon: {exc}", file=sys.stderr)
        sys.exit(2)
    if tls is None:
        log.warning("--insecure-loopback: PLAINTEXT, no TLS; accepted on 127.0.0.1 only")
    if not claim_key:
        log.warning(
            "no claim.key in %s (run `lm pki init` again to add it): seats do not move "
            "with fail-over clients; they wait until their server is fenced",
            args.tls_dir,
        )
    try:
        daemon = Daemon(args.server_id, rlf, store, loaded, tls=tls, claim_key=claim_key)
    except LmError as exc:
        store.close()
        print(f"lm-daemon: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(_amain(daemon))
    except OSError as exc:  # listen failed (address in use, ...)
        store.close()
        own = rlf.server(args.server_id)
        print(f"lm-daemon: cannot listen on {own.address}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    except StoreFailed as exc:
        print(f"lm-daemon: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
