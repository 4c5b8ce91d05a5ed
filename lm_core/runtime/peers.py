"""Outgoing links from one daemon to the other servers of its pool.

Theory of operation
-------------------
Each pair of servers talks over two TCP (TLS) connections, one per direction: a daemon
*sends* to peer X only on the link it dialled to X, and *receives* X's messages on the
connection X dialled to it (handled by the daemon's listener). So a link here is a
writer; whatever arrives on it anyway is handed to `on_message` like any peer message.

A link keeps reconnecting with exponential backoff (50 ms doubling up to `max_backoff`).
`send` never blocks and never raises: the engine tolerates message loss, delay and
reordering, so a message to a peer that is down (or whose queue is full) is dropped.

A link is abandoned (closed, its queue dropped, dialled again) when a write fails, the
peer does not read within the drain timeout, the connection ends -- or when the peer
has said nothing for `deadline` seconds since we sent it something (`Deadline`; the
daemon reports every frame it gets from a peer, on any connection, with `heard_from`).
The last one is what ends a link into a cut network, which TCP itself would keep
"connected" for minutes while its retransmission backoff grows; `TCP_USER_TIMEOUT` and
keepalive on the socket are the second line (`liveness.tcp_liveness`). An abandoned
connection is reset, discarding what the kernel still held for it, and nothing queued
for it is sent anywhere: a peer that comes back never receives a burst of stale
heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable

from lm_core.engine.messages import Message
from lm_core.runtime.codec import ProtocolError
from lm_core.runtime.connection import ConnectError, Connection, TransportError
from lm_core.runtime.liveness import Deadline, kill, peer_deadline, tcp_liveness
from lm_core.runtime.tlsconfig import TlsPaths
from lm_core.runtime.tlsdiag import explain

log = logging.getLogger("lm.peers")

QUEUE_LIMIT = 1024
LEAVING_GRACE = 5.0  # seconds a link to a server a new RLF dropped stays, to tell it so
MIN_BACKOFF = 0.05
DEFAULT_DEADLINE = peer_deadline(0.5)  # the RLF's default heartbeat interval

OnMessage = Callable[[str, Message, Connection], None]


class PeerLink:
    """The writer link to one peer server."""

    def __init__(
        self,
        peer_id: str,
        address: str,
        *,
        ssl_ctx: ssl.SSLContext | None,
        on_message: OnMessage,
        connect_timeout: float,
        max_backoff: float,
        deadline: float = DEFAULT_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
        tls_paths: TlsPaths | None = None,
    ) -> None:
        self.peer_id = peer_id
        self._tls_paths = tls_paths
        self.address = address
        self._ssl = ssl_ctx
        self._on_message = on_message
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        self._clock = clock
        self.deadline = Deadline(deadline)
        self._queue: asyncio.Queue[Message] = asyncio.Queue(QUEUE_LIMIT)
        self._conn: Connection | None = None
        self._connected_at = 0.0
        self._redial = asyncio.Event()
        self._dialled = False
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.dropped = 0
        self.abandoned = 0  # connections given up for silence (`deadline`)
        self._last_error = ""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer-{self.peer_id}")

    def send(self, msg: Message) -> None:
        if not self.connected:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.dropped += 1

    def heard(self) -> None:
        """The peer said something (on any connection): it is alive and reading."""
        self.deadline.heard(self._clock())

    def redial(self) -> None:
        """The peer restarted (it sent SERVER_UP): the connection we hold may lead to its
        old process -- a graceful exit over TLS is not always seen here as EOF -- so,
        unless ours is itself newer than the silence limit, drop it and dial again."""
        conn = self._conn
        if conn is not None and self._clock() - self._connected_at > self.deadline.limit:
            log.info("peer %s: restarted; dialling it again", self.peer_id)
            self._redial.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            kill(self._conn)

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        while True:
            try:
                conn = await Connection.open(
                    self.address, ssl=self._ssl, connect_timeout=self._connect_timeout
                )
            except ConnectError as exc:
                if str(exc) != self._last_error:
                    self._last_error = str(exc)
                    if not self._tls_failure(str(exc)):
                        log.debug("peer %s: %s", self.peer_id, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = MIN_BACKOFF
            self._last_error = ""
            tcp_liveness(conn, user_timeout=2 * self.deadline.limit, keepalive=True)
            self._conn = conn
            self._connected_at = self._clock()
            self._redial.clear()
            if self._dialled:  # what was queued while the link was down is stale ...
                self._drain_queue()
            self._dialled = True  # ... but not on the first dial (SERVER_UP waits there)
            self.deadline.reset()
            self.connected = True
            log.debug("peer %s: connected to %s", self.peer_id, self.address)
            tasks = [
                asyncio.create_task(self._write(conn), name=f"peer-{self.peer_id}-write"),
                asyncio.create_task(self._read(conn), name=f"peer-{self.peer_id}-read"),
                asyncio.create_task(self._watch(), name=f"peer-{self.peer_id}-watch"),
                asyncio.create_task(self._redial.wait(), name=f"peer-{self.peer_id}-redial"),
            ]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.connected = False
                kill(conn)  # a reset: what the kernel still holds for it is never sent
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._conn = None
                self._drain_queue()
            await asyncio.sleep(backoff)

    async def _write(self, conn: Connection) -> None:
        while True:
            msg = await self._queue.get()
            self.deadline.sent(self._clock())
            try:
                await conn.send(msg, drain_timeout=self._connect_timeout)
            except TransportError as exc:
                log.debug("peer %s: send failed: %s", self.peer_id, exc)
                return
            except ProtocolError as exc:  # a message we cannot encode: a bug, drop it
                log.error("peer %s: cannot send %s: %s", self.peer_id, type(msg).__name__, exc)

    async def _read(self, conn: Connection) -> None:
        try:
            while True:
                msg = await conn.recv()
                if msg is None:
                    return
                if msg.sender != self.peer_id:
                    log.warning(
                        "peer %s: message from %r on its link; closing", self.peer_id, msg.sender
                    )
                    return
                self.heard()
                self._on_message(self.peer_id, msg, conn)
        except (ProtocolError, TransportError) as exc:
            if not self._tls_failure(str(exc)):
                log.info("peer %s: link closed: %s", self.peer_id, exc)

    def _tls_failure(self, error: str) -> bool:
        """Log a TLS failure of this link as one line naming it (wrong CA, expired or
        refused certificate: `tlsdiag.explain`); False if `error` is not one."""
        if self._ssl is None:
            return False
        named = explain(error, self._tls_paths)
        if named is None:
            return False
        log.warning("peer %s: TLS: %s (%s)", self.peer_id, named, error)
        return True

    async def _watch(self) -> None:
        """Return (ending the connection) once the peer has been silent too long."""
        while True:
            now = self._clock()
            if self.deadline.expired(now):
                self.abandoned += 1
                assert self.deadline.waiting_since is not None
                log.info(
                    "peer %s: nothing heard for %.1f s after sending; reconnecting",
                    self.peer_id,
                    now - self.deadline.waiting_since,
                )
                return
            due = self.deadline.due()
            wait = self.deadline.limit if due is None else max(0.01, due - now)
            await asyncio.sleep(min(wait, self.deadline.limit / 4))

    def _drain_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()


class Peers:
    """Writer links to every other server of the RLF."""

    def __init__(
        self,
        own_id: str,
        addresses: dict[str, str],
        *,
        ssl_ctx: ssl.SSLContext | None,
        on_message: OnMessage,
        connect_timeout: float = 1.0,
        max_backoff: float = 1.0,
        deadline: float = DEFAULT_DEADLINE,
        tls_paths: TlsPaths | None = None,
    ) -> None:
        self.own_id = own_id
        self._tls_paths = tls_paths
        self._ssl = ssl_ctx
        self._on_message = on_message
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        self._deadline = deadline
        self.links: dict[str, PeerLink] = {}
        # links to servers a new RLF dropped: kept for `LEAVING_GRACE` so that the RLF
        # that removed them still reaches them (they stop serving when they get it)
        self.leaving: dict[str, PeerLink] = {}
        self._started = False
        self._pending = addresses

    def start(self) -> None:
        self._started = True
        self.update(self._pending)

    def update(self, addresses: dict[str, str]) -> None:
        """Follow a new RLF's server list: start links to new or moved servers, stop
        links to removed ones."""
        self._pending = addresses
        if not self._started:
            return
        for sid, link in list(self.links.items()):
            if addresses.get(sid) != link.address:
                del self.links[sid]
                if sid in addresses:  # moved: the old address is nobody now
                    asyncio.create_task(link.aclose())  # noqa: RUF006 -- fire and forget
                else:
                    self.leaving[sid] = link
                    asyncio.get_running_loop().call_later(LEAVING_GRACE, self._gone, sid, link)
        for sid, address in addresses.items():
            if sid == self.own_id or sid in self.links:
                continue
            link = PeerLink(
                sid,
                address,
                ssl_ctx=self._ssl,
                on_message=self._on_message,
                connect_timeout=self._connect_timeout,
                max_backoff=self._max_backoff,
                deadline=self._deadline,
                tls_paths=self._tls_paths,
            )
            self.links[sid] = link
            link.start()

    def _gone(self, sid: str, link: PeerLink) -> None:
        if self.leaving.get(sid) is link:
            del self.leaving[sid]
        asyncio.create_task(link.aclose())  # noqa: RUF006 -- fire and forget

    def heard_from(self, peer_id: str) -> None:
        """The daemon got a frame from `peer_id` (on any connection): its link is alive."""
        link = self.links.get(peer_id)
        if link is not None:
            link.heard()

    def restarted(self, peer_id: str) -> None:
        """`peer_id` announced a (re)start: see `PeerLink.redial`."""
        link = self.links.get(peer_id)
        if link is not None:
            link.redial()

    def send(self, to: str, msg: Message) -> None:
        link = self.links.get(to) or self.leaving.get(to)
        if link is not None:
            link.send(msg)
        else:
            log.debug("send to unknown server %r dropped", to)

    async def aclose(self) -> None:
        links, self.links = [*self.links.values(), *self.leaving.values()], {}
        self.leaving = {}
        await asyncio.gather(*(link.aclose() for link in links))
