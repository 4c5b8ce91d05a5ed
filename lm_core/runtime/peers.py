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
Messages queued while a connection attempt fails are dropped too, so a peer that comes
back never receives a burst of stale heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from lm_core.engine.messages import Message
from lm_core.runtime.codec import ProtocolError
from lm_core.runtime.connection import ConnectError, Connection, TransportError

log = logging.getLogger("lm.peers")

QUEUE_LIMIT = 1024
MIN_BACKOFF = 0.05

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
    ) -> None:
        self.peer_id = peer_id
        self.address = address
        self._ssl = ssl_ctx
        self._on_message = on_message
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(QUEUE_LIMIT)
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.dropped = 0
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

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.aclose()

    async def _run(self) -> None:
        backoff = MIN_BACKOFF
        while True:
            try:
                conn = await Connection.open(
                    self.address, ssl=self._ssl, connect_timeout=self._connect_timeout
                )
            except ConnectError as exc:
                if str(exc) != self._last_error:
                    log.debug("peer %s: %s", self.peer_id, exc)
                    self._last_error = str(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = MIN_BACKOFF
            self._last_error = ""
            self._conn = conn
            self._drain_queue()
            self.connected = True
            log.debug("peer %s: connected to %s", self.peer_id, self.address)
            reader = asyncio.create_task(self._read(conn), name=f"peer-{self.peer_id}-read")
            try:
                await self._write(conn)
            finally:
                self.connected = False
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await conn.aclose()
                self._conn = None
                self._drain_queue()
            await asyncio.sleep(backoff)

    async def _write(self, conn: Connection) -> None:
        while True:
            msg = await self._queue.get()
            if msg is None:  # the reader saw the connection end
                return
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
                    break
                if msg.sender != self.peer_id:
                    log.warning(
                        "peer %s: message from %r on its link; closing", self.peer_id, msg.sender
                    )
                    break
                self._on_message(self.peer_id, msg, conn)
        except (ProtocolError, TransportError) as exc:
            log.info("peer %s: link closed: %s", self.peer_id, exc)
        finally:
            conn.abort()
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)

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
    ) -> None:
        self.own_id = own_id
        self._ssl = ssl_ctx
        self._on_message = on_message
        self._connect_timeout = connect_timeout
        self._max_backoff = max_backoff
        self.links: dict[str, PeerLink] = {}
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
                asyncio.create_task(link.aclose())  # noqa: RUF006 -- fire and forget
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
            )
            self.links[sid] = link
            link.start()

    def send(self, to: str, msg: Message) -> None:
        link = self.links.get(to)
        if link is not None:
            link.send(msg)
        else:
            log.debug("send to unknown server %r dropped", to)

    async def aclose(self) -> None:
        links, self.links = list(self.links.values()), {}
        await asyncio.gather(*(link.aclose() for link in links))
