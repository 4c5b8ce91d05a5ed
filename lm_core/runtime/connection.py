"""One message connection over TCP (optionally TLS): frames + codec on asyncio streams.

Used by the daemon (both sides of server<->server links, and the listening side for
clients and admins), the license client library and the admin client. Nothing else
touches sockets' bytes.

Errors a caller sees (httpcore-style: one family per layer):

* `ProtocolError` (from the codec / `FrameError` from framing) -- the peer sent
  something malformed, oversized, truncated or too slow. The connection is closed.
* `TransportError` -- could not connect (`ConnectError`), the peer went away
  (`ConnectionClosed`), or no reply in time (`RequestTimeout`). The connection is
  closed, except after a `RequestTimeout`, which leaves it usable.

Plaintext connections (``ssl=None``) are refused to and from anything but loopback
(127.0.0.0/8, ::1, "localhost"): `check_plaintext_allowed`.

`serve` runs a listener that wraps each accepted stream in a `Connection`, bounds the
number of connections (in total and per remote host), and closes a connection whose
handler raises `ProtocolError`, logging one line for it. Stop it with `close_server`,
which also ends the live connections and waits for their handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl as _ssl
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from lm_core.engine.messages import Message
from lm_core.errors import LmError
from lm_core.runtime.codec import Codec, ProtocolError, default_codec
from lm_core.runtime.framing import FRAME_TIMEOUT, MAX_FRAME, frame, read_frame
from lm_core.runtime.tlsconfig import PeerIdentity, peer_identity

log = logging.getLogger("lm.wire")

CONNECT_TIMEOUT = 3.0
SEND_NOWAIT_LIMIT = 64 * 1024  # unsent bytes above which send_nowait declines (peer is slow)


class TransportError(LmError):
    """A connection-level failure (not the peer's malformed input: see ProtocolError)."""


class ConnectError(TransportError):
    """Could not open a connection (refused, unreachable, TLS handshake failed,
    plaintext to a non-loopback address)."""


class ConnectionClosed(TransportError):
    """The peer closed the connection, or it broke, while we waited for a message."""


class RequestTimeout(TransportError):
    """No matching reply within the timeout (the connection stays open)."""


def parse_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port". Raises `ValueError`."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"bad address {address!r} (expected host:port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"bad port in address {address!r}")
    return host, port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plaintext_allowed(host: str) -> None:
    """Raise `ConnectError` unless plaintext to/from `host` is allowed (loopback only)."""
    if not is_loopback(host):
        raise ConnectError(f"plaintext is allowed only on loopback, not {host!r}; use TLS")


class Connection:
    """A framed, validated message stream. Safe for one reader task and any number of
    writer tasks; `request` calls are serialized by a lock."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        codec: Codec | None = None,
        max_frame: int = MAX_FRAME,
        frame_timeout: float | None = FRAME_TIMEOUT,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.codec = codec if codec is not None else default_codec()
        self.max_frame = max_frame
        self.frame_timeout = frame_timeout
        self.peer: PeerIdentity | None = peer_identity(writer.get_extra_info("ssl_object"))
        peername = writer.get_extra_info("peername")
        self.remote = _format_peer(peername)
        self.tls = writer.get_extra_info("ssl_object") is not None
        self._closed = False
        self._request_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        address: str,
        *,
        ssl: _ssl.SSLContext | None,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_frame: int = MAX_FRAME,
        codec: Codec | None = None,
    ) -> Connection:
        """Connect to "host:port" (TLS if `ssl` is given, else loopback plaintext) within
        `connect_timeout` seconds, handshake included. Raises `ConnectError`."""
        try:
            host, port = parse_address(address)
        except ValueError as exc:
            raise ConnectError(str(exc)) from None
        if ssl is None:
            check_plaintext_allowed(host)
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ssl, server_hostname=host if ssl is not None else None
                )
        except TimeoutError:
            raise ConnectError(f"{address}: no connection within {connect_timeout:g} s") from None
        except _ssl.SSLError as exc:
            why = getattr(exc, "verify_message", None) or exc.reason or str(exc)
            raise ConnectError(f"{address}: TLS handshake failed: {why}") from None
        except OSError as exc:
            why = exc.strerror or str(exc) or type(exc).__name__
            if ssl is not None and isinstance(exc, ConnectionResetError):
                why = f"TLS handshake failed: connection reset by the server ({why})"
            raise ConnectError(f"{address}: {why}") from None
        return cls(reader, writer, codec=codec, max_frame=max_frame)

    # -- state

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        who = f"{self.peer.role}:{self.peer.name}" if self.peer else "anonymous"
        return f"<Connection {self.remote} {'tls' if self.tls else 'plain'} {who}>"

    # -- io

    async def send(self, msg: Message, *, drain_timeout: float | None = FRAME_TIMEOUT) -> None:
        """Encode and send one message.

        Raises `ProtocolError` if `msg` cannot be encoded or its frame would exceed the
        cap (nothing is sent; the connection stays open), `ConnectionClosed` if the
        connection is gone or the peer does not read within `drain_timeout` (then it is
        closed)."""
        if self._closed:
            raise ConnectionClosed(f"{self.remote}: connection closed")
        data = frame(self.codec.encode(msg), max_frame=self.max_frame)
        try:
            self.writer.write(data)
            async with asyncio.timeout(drain_timeout):
                await self.writer.drain()
        except TimeoutError:
            self.abort()
            raise ConnectionClosed(
                f"{self.remote}: peer did not read within {drain_timeout:g} s"
            ) from None
        except (OSError, _ssl.SSLError, RuntimeError) as exc:
            self.abort()
            raise ConnectionClosed(f"{self.remote}: {exc or type(exc).__name__}") from None

    def send_nowait(self, msg: Message, *, buffer_limit: int = SEND_NOWAIT_LIMIT) -> bool:
        """Encode and hand one message to the transport without waiting, if the transport
        holds fewer than `buffer_limit` unsent bytes; False (nothing written) otherwise,
        and then the caller must `send` (which drains). Saves a task switch per reply
        when the peer keeps up. Raises like `send`: `ProtocolError` for an unencodable or
        over-cap message (nothing written), `ConnectionClosed` if the connection is gone."""
        if self._closed:
            raise ConnectionClosed(f"{self.remote}: connection closed")
        transport = self.writer.transport
        if transport.is_closing():
            self.abort()
            raise ConnectionClosed(f"{self.remote}: connection closed")
        if transport.get_write_buffer_size() >= buffer_limit:
            return False
        data = frame(self.codec.encode(msg), max_frame=self.max_frame)
        try:
            self.writer.write(data)
        except (OSError, _ssl.SSLError, RuntimeError) as exc:
            self.abort()
            raise ConnectionClosed(f"{self.remote}: {exc or type(exc).__name__}") from None
        return True

    async def recv(self, *, idle_timeout: float | None = None) -> Message | None:
        """The next message, or None when the peer closed cleanly between messages.

        Raises `ProtocolError` (connection closed) for a bad frame or message,
        `FrameTimeout` (a `ProtocolError`) if nothing arrives within `idle_timeout`,
        `ConnectionClosed` if the connection broke.
        """
        if self._closed:
            return None
        try:
            payload = await read_frame(
                self.reader,
                max_frame=self.max_frame,
                idle_timeout=idle_timeout,
                frame_timeout=self.frame_timeout,
            )
        except ProtocolError:
            self.abort()
            raise
        except (OSError, _ssl.SSLError) as exc:
            self.abort()
            raise ConnectionClosed(f"{self.remote}: {exc}") from None
        if payload is None:
            self.abort()
            return None
        try:
            msg: Message = self.codec.decode(payload)
        except ProtocolError:
            self.abort()
            raise
        return msg

    async def request(self, msg: Message, *, reply_timeout: float = 3.0) -> Message:
        """Send `msg` and return the first reply carrying the same ``request_id`` (other
        messages arriving meanwhile -- stale replies -- are dropped). Raises
        `RequestTimeout`, `ConnectionClosed` or `ProtocolError`."""
        want = getattr(msg, "request_id", None)
        async with self._request_lock:
            await self.send(msg)
            try:
                async with asyncio.timeout(reply_timeout):
                    while True:
                        reply = await self.recv()
                        if reply is None:
                            raise ConnectionClosed(f"{self.remote}: closed by peer")
                        if want is None or getattr(reply, "request_id", None) == want:
                            return reply
            except TimeoutError:
                raise RequestTimeout(
                    f"{self.remote}: no reply within {reply_timeout:g} s"
                ) from None

    # -- closing

    def abort(self) -> None:
        """Close now without waiting (idempotent)."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self.writer.close()

    async def aclose(self, *, wait: float = 1.0) -> None:
        """Close and wait (bounded) until the transport is gone (idempotent)."""
        self.abort()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(wait):
                await self.writer.wait_closed()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _format_peer(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        host = str(peername[0])
        return f"[{host}]:{peername[1]}" if ":" in host else f"{host}:{peername[1]}"
    return str(peername)


Handler = Callable[[Connection], Awaitable[None]]


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None,
    max_connections: int = 4096,
    max_per_host: int = 1024,
    max_frame: int = MAX_FRAME,
    frame_timeout: float | None = FRAME_TIMEOUT,
    handshake_timeout: float = 5.0,
    codec: Codec | None = None,
) -> asyncio.Server:
    """Start a listener on host:port calling `handler(conn)` for each connection.

    The connection is closed when the handler returns or raises. A `ProtocolError` or
    `TransportError` from the handler is logged as one line (``lm.wire`` logger) and
    only that connection ends; anything else is logged with its traceback (a bug) and
    still only that connection ends. Connections over `max_connections` in total or
    `max_per_host` from one remote host are closed at once. Plaintext (ssl None) is
    refused unless `host` is loopback (`ConnectError`).
    """
    if ssl is None:
        check_plaintext_allowed(host)
    state = _Serving()
    active: dict[str, int] = {}

    async def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(
            reader, writer, codec=codec, max_frame=max_frame, frame_timeout=frame_timeout
        )
        remote_host = conn.remote.rpartition(":")[0]
        if (
            state.closing
            or len(state.conns) >= max_connections
            or active.get(remote_host, 0) >= max_per_host
        ):
            if not state.closing:
                log.warning("wire: refused %s: too many connections", conn.remote)
            conn.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        state.conns[conn] = task
        active[remote_host] = active.get(remote_host, 0) + 1
        try:
            await handler(conn)
        except (ProtocolError, TransportError) as exc:
            log.info("wire: closed %r: %s", conn, exc)
        except Exception:
            log.exception("wire: handler failed on %r", conn)
        finally:
            del state.conns[conn]
            left = active[remote_host] - 1
            if left:
                active[remote_host] = left
            else:
                del active[remote_host]
            conn.abort()

    server = await asyncio.start_server(
        on_accept,
        host,
        port,
        ssl=ssl,
        ssl_handshake_timeout=handshake_timeout if ssl is not None else None,
    )
    _serving[server] = state
    return server


class _Serving:
    """The live connections of one `serve` listener (for `close_server`)."""

    def __init__(self) -> None:
        self.conns: dict[Connection, asyncio.Task[Any]] = {}
        self.closing = False


_serving: weakref.WeakKeyDictionary[asyncio.Server, _Serving] = weakref.WeakKeyDictionary()


def connections_of(server: asyncio.Server) -> list[Connection]:
    """The connections a `serve` listener is currently handling."""
    state = _serving.get(server)
    return list(state.conns) if state is not None else []


async def close_server(server: asyncio.Server, *, grace: float = 1.0) -> None:
    """Stop a `serve` listener: stop accepting, close every live connection, give the
    handlers `grace` seconds to return (their `recv` sees the end), cancel the rest, and
    wait until all are gone. (Python 3.11's `Server.wait_closed` does not wait for the
    handlers; this does.)"""
    server.close()
    state = _serving.get(server)
    if state is not None:
        state.closing = True
        for conn in list(state.conns):
            conn.abort()
        tasks = [t for t in state.conns.values() if t is not asyncio.current_task()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
    await server.wait_closed()
