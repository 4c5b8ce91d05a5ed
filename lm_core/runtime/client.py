"""The license client library: a thin IO shell around the engine's `ClientMachine`.

Theory of operation
-------------------
A protected program does::

    client = LicenseClient(rlf, trust=load_tls_dir(tls_dir, "client"))
    with client.acquire("Application 1.0") as lease:      # or: async with
        ...  # work while lease.holds; heartbeats and fail-over happen in the background

All decisions (which server to ask, when to heartbeat, when to walk the server list,
how long the lease is believed) are the sans-IO `lm_core.engine.client.ClientMachine`'s.
This module only moves its effects onto sockets and feeds back what comes in:

* one `Connection` per server, opened lazily when the machine first sends to it, with
  a reader task that puts each answer into one inbox;
* one loop task: wait for the inbox or the machine's `next_deadline`, step the machine
  (`handle` / `tick`), carry out its effects, report events;
* a server that cannot be reached (refused, handshake failed, connection lost while
  sending, or closed before answering our last request to it) is reported to the
  machine as a ``Deny(reason="unreachable")`` for that request, so the machine walks
  on at once instead of waiting for its answer timeout; a server that is reachable but
  silent is left to the machine's timeout;
* a connection whose last ask went unanswered when the machine asks again (its answer
  timeout passed: the machine waits for one answer at a time) is retired -- reset,
  discarding anything still queued for it -- and the next ask to that server dials
  fresh: a connection into a cut network stays "open" for minutes while TCP backs off,
  and a request sent into it would be delivered (and granted) long after the client
  moved on. ``TCP_USER_TIMEOUT`` on every connection is the kernel's second line.

Entering `acquire` waits for the first grant; a refusal from every server raises
`LicenseDenied` (with ``wait=True`` it keeps trying until granted or a final refusal).
While held, denials and losses are reported to ``on_event`` and the machine keeps trying
(``lease.holds`` says whether the program may go on). Leaving sends Release to the
holding server, waits briefly for its Released, and closes every connection.

The plain ``with`` form runs the same loop on a private event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import socket
import ssl as _ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from lm_core.engine import identity as ident
from lm_core.engine.client import (
    FINAL_REASONS,
    Authorized,
    ClientEffect,
    ClientMachine,
    Denied,
    Lost,
    ReleasedLocally,
    SendTo,
)
from lm_core.engine.identity import ClientIdentity
from lm_core.engine.leases import ANSWER_TIMEOUT
from lm_core.engine.messages import (
    ClientHeartbeat,
    Deny,
    Message,
    Release,
    Released,
    Request,
    ServerAddress,
)
from lm_core.engine.rlf import Rlf
from lm_core.engine.vocab import DenyReason
from lm_core.errors import InputError, RefusedError
from lm_core.runtime.codec import ProtocolError
from lm_core.runtime.connection import (
    Connection,
    TransportError,
    is_loopback,
    parse_address,
)
from lm_core.runtime.liveness import kill, tcp_liveness
from lm_core.runtime.tlsconfig import TlsPaths, client_context

log = logging.getLogger("lm.client")

UNREACHABLE = DenyReason.UNREACHABLE  # what this shell reports for a server it cannot reach
USER_TIMEOUT_FACTOR = 3  # TCP_USER_TIMEOUT of a connection, in answer timeouts

# When a walk of the server list ends in refusals, the one reported is the most telling:
# a reason a server gave beats "unreachable" (a down server says nothing about the pool),
# in this order; words not listed rank after these and before "unreachable".
REASON_ORDER: tuple[DenyReason, ...] = (
    DenyReason.NO_MAJORITY,
    DenyReason.RESTART_GRACE,
    DenyReason.NO_SEATS,
    DenyReason.DISASSOCIATED,
    DenyReason.UNKNOWN_LICENSE,
    DenyReason.EXPIRED,
    DenyReason.BAD_REQUEST,
    DenyReason.RECLAIMED,
)

EventHandler = Callable[[dict[str, Any]], None]


class LicenseDenied(RefusedError):
    """No seat: every server refused (or none could be reached). `reason` is the most
    informative refusal of the walk (see `REASON_ORDER`: a `DenyReason`
    word, or "unreachable"); `server` is the server that gave it
    (None if unknown)."""

    def __init__(
        self, license: str, reason: str, detail: str = "", server: str | None = None
    ) -> None:
        self.license = license
        self.reason = reason
        self.detail = detail
        self.server = server
        text = f"{license}: denied ({reason}" + (f" from server {server})" if server else ")")
        super().__init__(f"{text}: {detail}" if detail else text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (LicenseDenied, (self.license, self.reason, self.detail, self.server))


def _rank(reason: str) -> int:
    if reason == UNREACHABLE:
        return len(REASON_ORDER) + 1
    try:
        return REASON_ORDER.index(reason)
    except ValueError:
        return len(REASON_ORDER)


def most_informative(refusals: dict[str, tuple[str, str]]) -> tuple[str, str, str] | None:
    """(server, reason, detail) of the most telling refusal; ties go to the server that
    refused first. None if there is none."""
    if not refusals:
        return None
    sid, (reason, detail) = min(refusals.items(), key=lambda kv: _rank(kv[1][0]))
    return sid, reason, detail


def _default_client_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (a container)
        return str(os.getuid()) if hasattr(os, "getuid") else ""


def _display() -> str:
    """The X display, else the SSH terminal, else the controlling terminal ("")."""
    for name in ("DISPLAY", "SSH_TTY"):
        value = os.environ.get(name, "")
        if value:
            return value
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            if stream is not None and stream.isatty():
                return os.ttyname(stream.fileno())
        except (OSError, ValueError, AttributeError):
            continue
    return ""


def process_identity(*, program: str | None = None, version: str = "") -> ClientIdentity:
    """Who this process is: user, host, pid, program (the script's name unless given),
    `version` (the program's own; "" unless given) and display/terminal. Values read from
    the process are made printable ASCII and cut to their bounds, so the defaults are
    always valid; `program` and `version` given here are checked (`IdentityError`)."""
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return ClientIdentity(
        user=ident.sanitize(_user(), ident.USER_MAX),
        host=ident.sanitize(socket.gethostname(), ident.HOST_MAX),
        pid=os.getpid(),
        program=program if program is not None else ident.sanitize(argv0, ident.PROGRAM_MAX),
        version=version,
        display=ident.sanitize(_display(), ident.DISPLAY_MAX),
    )


class LicenseClient:
    """Where the pool is and how to trust it; hands out `Lease`s.

    `servers` is the pool's RLF or a list of ``(id, "host:port")`` in leader-priority order
    (then `pool` is required). `trust` is the pool CA (and optional client certificate)
    from `load_tls_dir(dir, "client")`; None means plaintext, allowed only when every
    server is on loopback. `prefer` names the server to ask first (the patent's clients
    pick their server); otherwise the first of the list. `retry_backoff` is the pause
    after a walk of the whole list found no seat (a server's ``retry_after`` hint may
    lengthen it); short, because during an election every server may refuse for a
    moment. `identity` is who the requests say is asking (`process_identity()` unless
    given: pass ``process_identity(program="cad", version="2.1")`` or a `ClientIdentity`
    of your own to override it).
    """

    def __init__(
        self,
        servers: Rlf | Sequence[tuple[str, str]],
        trust: TlsPaths | None,
        *,
        pool: str | None = None,
        client_id: str | None = None,
        prefer: str | None = None,
        answer_timeout: float = ANSWER_TIMEOUT,
        connect_timeout: float = 1.0,
        release_timeout: float = 1.0,
        retry_backoff: float = 0.5,
        identity: ClientIdentity | None = None,
    ) -> None:
        if identity is not None and not isinstance(identity, ClientIdentity):
            raise InputError("must be a ClientIdentity", field="identity")
        self.identity = identity if identity is not None else process_identity()
        if isinstance(servers, Rlf):
            self.pool = pool if pool is not None else servers.pool
            entries = [ServerAddress(id=s.id, address=s.address) for s in servers.servers]
        else:
            if pool is None:
                raise InputError("a server list needs the pool name", field="pool")
            self.pool = pool
            entries = [ServerAddress(id=sid, address=addr) for sid, addr in servers]
        if not entries:
            raise InputError("no servers to ask", field="servers")
        for entry in entries:
            try:
                host, _ = parse_address(entry.address)
            except ValueError as exc:
                raise InputError(str(exc), field=f"servers.{entry.id}") from None
            if trust is None and not is_loopback(host):
                raise InputError(
                    f"server {entry.id} at {entry.address} is not on loopback: TLS needed "
                    "(give the pool CA)",
                    field="trust",
                )
        if prefer is not None and prefer not in {e.id for e in entries}:
            raise InputError(f"no server {prefer!r} in the pool", field="server")
        self.servers: tuple[ServerAddress, ...] = tuple(entries)
        self.trust = trust
        self.client_id = client_id or _default_client_id()
        self.prefer = prefer
        self.answer_timeout = answer_timeout
        self.connect_timeout = connect_timeout
        self.release_timeout = release_timeout
        self.retry_backoff = retry_backoff
        self._ssl: _ssl.SSLContext | None = client_context(trust) if trust is not None else None

    def acquire(
        self,
        license: str,
        count: int = 1,
        *,
        wait: bool = False,
        on_event: EventHandler | None = None,
    ) -> Lease:
        """A lease to enter with ``with`` or ``async with`` (see the module docstring)."""
        if count < 1:
            raise InputError("count must be at least 1", field="count")
        return Lease(self, license, count, wait=wait, on_event=on_event)


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """A snapshot of a lease for display."""

    license: str
    count: int
    server: str | None
    holds: bool
    expires_in: float | None
    state: str


class Lease:
    """One held authorization (``count`` seats of ``license``). Use as a context manager,
    sync or async, once."""

    def __init__(
        self,
        client: LicenseClient,
        license: str,
        count: int,
        *,
        wait: bool,
        on_event: EventHandler | None,
    ) -> None:
        self.client = client
        self.license = license
        self.count = count
        self.wait = wait
        self.on_event = on_event
        self.machine = ClientMachine(
            client.client_id,
            client.pool,
            license,
            client.servers,
            count=count,
            home=client.prefer,
            answer_timeout=client.answer_timeout,
            retry=True,
            retry_backoff=client.retry_backoff,
            identity=client.identity,
        )
        self._conns: dict[str, Connection] = {}
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._inbox: asyncio.Queue[tuple[str, Message] | None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._released_ids: set[int] = set()
        self._unanswered: dict[str, Request | ClientHeartbeat] = {}  # last ask per server
        # the refusals (server -> reason, detail) since the last grant or reported denial
        self._refusals: dict[str, tuple[str, str]] = {}
        self._stopping = False
        self._used = False
        self._thread: _LoopThread | None = None

    # ------------------------------------------------------------------ queries

    @property
    def server(self) -> str | None:
        """The server holding (or being asked for) the authorization."""
        return self.machine.server

    @property
    def holds(self) -> bool:
        """True while the client believes it holds an unexpired authorization."""
        return self.machine.holds(time.monotonic())

    def info(self) -> LeaseInfo:
        now = time.monotonic()
        exp = self.machine.lease_expires
        return LeaseInfo(
            license=self.license,
            count=self.count,
            server=self.machine.server,
            holds=self.machine.holds(now),
            expires_in=None if exp is None else max(0.0, exp - now),
            state=self.machine.state.value,
        )

    # ------------------------------------------------------------------ async use

    async def __aenter__(self) -> Lease:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Ask for the seat and wait for the first grant; raises `LicenseDenied`."""
        if self._used:
            raise RuntimeError("a Lease is entered once; call acquire() again")
        self._used = True
        loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._first = loop.create_future()
        self._loop_task = asyncio.create_task(self._run(), name=f"lm-client {self.license}")
        try:
            await self._first
        except BaseException:
            # Release whatever a late answer might have granted, without waiting for it.
            await self._shutdown(release=True, wait_released=False)
            raise

    async def stop(self) -> None:
        """Release the seat (waits briefly for the server's Released) and close."""
        await self._shutdown(release=True)

    # ------------------------------------------------------------------ sync use

    def __enter__(self) -> Lease:
        self._thread = _LoopThread(f"lm-client {self.license}")
        try:
            self._thread.run(self.start())
        except BaseException:
            self._thread.close()
            self._thread = None
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            thread.run(self.stop())
        finally:
            thread.close()

    # ------------------------------------------------------------------ the loop

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a broken callback must not stop the heartbeats
                log.exception("lm client: on_event callback failed on %s", event.get("event"))

    async def _run(self) -> None:
        try:
            await self._steps()
        except BaseException as exc:
            # A bug (or a cancel) must not leave `start` waiting for ever.
            first = self._first
            if first is not None and not first.done():
                if isinstance(exc, asyncio.CancelledError):
                    first.cancel()
                else:
                    first.set_exception(exc)
            raise

    async def _steps(self) -> None:
        assert self._inbox is not None
        await self._carry_out(self.machine.acquire(time.monotonic()))
        while True:
            delay = self.machine.next_deadline - time.monotonic()
            item: tuple[str, Message] | None
            try:
                if delay <= 0:
                    item = self._inbox.get_nowait()
                else:
                    async with asyncio.timeout(min(delay, 3600.0)):
                        item = await self._inbox.get()
            except (TimeoutError, asyncio.QueueEmpty):
                await self._carry_out(self.machine.tick(time.monotonic()))
                continue
            if item is None:
                return
            sid, msg = item
            if isinstance(msg, Released):
                self._released_ids.add(msg.request_id)
            elif isinstance(msg, Deny) and msg.license == self.license:
                self._refusals.pop(sid, None)  # keep the walk's order: latest last
                self._refusals[sid] = (msg.reason, msg.detail)
            now = time.monotonic()
            effects = self.machine.handle(now, sid, msg)
            effects += self.machine.tick(now)
            await self._carry_out(effects)

    async def _carry_out(self, effects: list[ClientEffect]) -> None:
        now = time.monotonic()
        for eff in effects:
            if isinstance(eff, SendTo):
                await self._send(eff.server, eff.msg)
            elif isinstance(eff, Authorized):
                self._emit(
                    {
                        "event": "renewed" if eff.renewed else "authorized",
                        "server": eff.server,
                        "license": eff.license,
                        "count": eff.count,
                        "lease_expires_in": round(max(0.0, eff.expires - now), 3),
                    }
                )
                self._refusals.clear()
                if self._first is not None and not self._first.done():
                    self._first.set_result(None)
            elif isinstance(eff, Denied):
                server, reason, detail = self._denial(eff)
                self._emit(
                    {
                        "event": "denied",
                        "server": server,
                        "license": eff.license,
                        "reason": reason,
                        "detail": detail,
                        "final": eff.final,
                    }
                )
                first = self._first
                if first is not None and not first.done() and (eff.final or not self.wait):
                    first.set_exception(LicenseDenied(eff.license, reason, detail, server))
            elif isinstance(eff, Lost):
                self._emit({"event": "lost", "license": eff.license, "reason": eff.reason})
            elif isinstance(eff, ReleasedLocally):
                self._emit(
                    {"event": "released", "license": eff.license, "server": self.machine.server}
                )

    def _denial(self, eff: Denied) -> tuple[str | None, str, str]:
        """What to report for the machine's `Denied`: a final refusal as it is (one
        server's answer ends the walk), else the most informative refusal of the walk."""
        refusals, self._refusals = self._refusals, {}
        best = most_informative(refusals)
        if best is None or eff.reason in FINAL_REASONS:
            server = next((s for s, (r, _) in refusals.items() if r == eff.reason), None)
            return server, eff.reason, eff.detail
        return best

    async def _send(self, sid: str, msg: Message) -> None:
        if isinstance(msg, (Request, ClientHeartbeat)):
            self._retire_unanswered()
            self._unanswered[sid] = msg
        try:
            conn = await self._connection(sid)
            await conn.send(msg)
        except (TransportError, ProtocolError) as exc:
            self._drop(sid)
            self._report_unreachable(sid, str(exc))

    def _retire_unanswered(self) -> None:
        """The machine asks again: every connection whose last ask is still unanswered
        has passed its answer timeout. Retire it; the next ask to that server dials."""
        for sid in list(self._unanswered):
            del self._unanswered[sid]
            if sid in self._conns:
                log.info("lm client: no answer from %s in time; retiring its connection", sid)
                self._drop(sid, reset=True)

    def _report_unreachable(self, sid: str, why: str) -> None:
        """Tell the machine at once that `sid` will not answer our last request to it
        (rather than after its answer timeout). It ignores this if it no longer waits."""
        msg = self._unanswered.pop(sid, None)
        if msg is None or self._stopping:
            return
        assert self._inbox is not None
        deny = Deny(
            pool=self.client.pool,
            sender=sid,
            request_id=msg.request_id,
            license=msg.license,
            reason=UNREACHABLE,
            detail=why,
        )
        self._inbox.put_nowait((sid, deny))

    async def _connection(self, sid: str) -> Connection:
        conn = self._conns.get(sid)
        if conn is not None and not conn.closed:
            return conn
        address = self.machine.address_of(sid)
        if address is None:
            raise TransportError(f"no address for server {sid!r}")
        conn = await Connection.open(
            address, ssl=self.client._ssl, connect_timeout=self.client.connect_timeout
        )
        tcp_liveness(conn, user_timeout=USER_TIMEOUT_FACTOR * self.client.answer_timeout)
        self._conns[sid] = conn
        self._readers[sid] = asyncio.create_task(self._read(sid, conn), name=f"lm-client<-{sid}")
        return conn

    async def _read(self, sid: str, conn: Connection) -> None:
        assert self._inbox is not None
        why = f"{conn.remote}: closed the connection without answering"
        if not conn.tls:
            why += " (does it expect TLS? give the pool CA)"
        try:
            while (msg := await conn.recv()) is not None:
                last = self._unanswered.get(sid)
                if last is not None and getattr(msg, "request_id", None) == last.request_id:
                    del self._unanswered[sid]
                self._inbox.put_nowait((sid, msg))
        except (TransportError, ProtocolError) as exc:
            why = str(exc)
        finally:
            conn.abort()
            if self._conns.get(sid) is conn:
                del self._conns[sid]
                self._readers.pop(sid, None)
                self._report_unreachable(sid, why)

    def _drop(self, sid: str, *, reset: bool = False) -> None:
        """Forget the connection to `sid` and close it (`reset`: discarding whatever is
        still queued for it, for a connection that stalled)."""
        conn = self._conns.pop(sid, None)
        if conn is not None:
            if reset:
                kill(conn)
            else:
                conn.abort()
        task = self._readers.pop(sid, None)
        if task is not None:
            task.cancel()

    async def _shutdown(self, *, release: bool, wait_released: bool = True) -> None:
        if self._stopping:
            return
        self._stopping = True
        task, self._loop_task = self._loop_task, None
        if task is not None and not task.done():
            assert self._inbox is not None
            self._inbox.put_nowait(None)
            await asyncio.wait([task])
        if task is not None and not task.cancelled():
            task.exception()  # retrieved: it was reported through `start` already
        if release:
            effects = self.machine.release(time.monotonic())
            sent: list[int] = []
            for eff in effects:
                if isinstance(eff, SendTo) and isinstance(eff.msg, Release):
                    sent.append(eff.msg.request_id)
            await self._carry_out(effects)
            if sent and self._conns and wait_released:
                await self._await_released(set(sent))
        for sid in list(self._conns):
            conn = self._conns.get(sid)
            self._drop(sid)
            if conn is not None:
                await conn.aclose(wait=0.5)
        readers = list(self._readers.values())
        for r in readers:
            r.cancel()
        if readers:
            await asyncio.wait(readers, timeout=1.0)

    async def _await_released(self, ids: set[int]) -> None:
        """Wait (at most release_timeout) for the Released answering our Release."""
        assert self._inbox is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.client.release_timeout):
                while not ids & self._released_ids:
                    item = await self._inbox.get()
                    if item is not None and isinstance(item[1], Released):
                        self._released_ids.add(item[1].request_id)


class _LoopThread:
    """A private event loop in a daemon thread, for the plain ``with`` form."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        async def _drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
            await self.loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_drain(), self.loop).result(timeout=5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5.0)
        if not self.thread.is_alive():
            self.loop.close()
