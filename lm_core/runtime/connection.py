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

`serve` runs a listener that wraps each accepted stream in a `Connection` and closes a
connection whose handler raises `ProtocolError`, logging one line for it. Stop it with
`close_server`, which also ends the live connections and waits for their handlers.

Budgets (`Budgets`): the listener does the TLS handshake itself, so it bounds the
handshakes in progress (in total and per source address, each within a timeout) before a
byte of TLS is processed. Once the handshake names the peer, the connection is counted in
one of three separate budgets by its certificate's role: peers (server certificates),
operators (admin and monitor certificates), and clients (everything else, also capped per
source address). A flood of anonymous connections therefore fills at most the client
budget -- at most `clients_per_source` of it per source -- and never the room kept for
peers, operators or clients from other addresses. Every refusal and every failed
handshake is logged (rate-limited, `logsafe.PeerLog`) with the source and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl as _ssl
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from lm_core.engine.messages import Message
from lm_core.errors import LmError
from lm_core.runtime.codec import Codec, ProtocolError, default_codec
from lm_core.runtime.framing import (
    FRAME_TIMEOUT,
    MAX_FRAME,
    BufferBudget,
    FrameError,
    frame,
    read_frame,
)
from lm_core.runtime.kinds import Kind, MiB, kind_of
from lm_core.runtime.logsafe import Limiter, PeerLog, escape
from lm_core.runtime.tlsconfig import PeerIdentity, peer_identity
from lm_core.runtime.tlsdiag import explain_inbound

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
        budget: BufferBudget | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.codec = codec if codec is not None else default_codec()
        self.max_frame = max_frame
        self.frame_timeout = frame_timeout
        self.budget = budget
        # Called with (kind, length) before a frame's body is read; raises ProtocolError
        # to refuse it (the daemon's admission check). None: every kind is taken.
        self.admit: Callable[[Kind, int], None] | None = None
        self.peer: PeerIdentity | None = peer_identity(writer.get_extra_info("ssl_object"))
        peername = writer.get_extra_info("peername")
        self.remote = _format_peer(peername)
        self.source = _source_of(peername)
        self.tls = writer.get_extra_info("ssl_object") is not None
        self.last_kind: Kind | None = None  # the kind of the last frame `recv` returned
        self._closed = False
        self._reserved = 0
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
        data = frame(self.codec.encode(msg), kind_of(type(msg)), max_frame=self.max_frame)
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
        data = frame(self.codec.encode(msg), kind_of(type(msg)), max_frame=self.max_frame)
        try:
            self.writer.write(data)
        except (OSError, _ssl.SSLError, RuntimeError) as exc:
            self.abort()
            raise ConnectionClosed(f"{self.remote}: {exc or type(exc).__name__}") from None
        return True

    @property
    def eof_seen(self) -> bool:
        """The peer has closed its side and every byte it sent has been read: nothing it
        is sent now can reach anyone who is waiting for it."""
        return self.reader.at_eof()

    def _admit(self, kind: Kind, n: int) -> None:
        if self.admit is not None:
            self.admit(kind, n)
        if self.budget is not None:
            if not self.budget.reserve(n):
                raise FrameError(
                    f"{kind.name} frame of {n} bytes: the daemon's buffer budget "
                    f"({self.budget.limit // MiB} MiB) is exhausted"
                )
            self._reserved = n

    async def recv(self, *, idle_timeout: float | None = None) -> Message | None:
        """The next message, or None when the peer closed cleanly between messages.

        Raises `ProtocolError` (connection closed) for a bad frame or message, a frame
        `admit` refused, or a message that is not of the kind its header announced;
        `FrameTimeout` (a `ProtocolError`) if nothing arrives within `idle_timeout`,
        `ConnectionClosed` if the connection broke.
        """
        if self._closed:
            return None
        try:
            try:
                got = await read_frame(
                    self.reader,
                    max_frame=self.max_frame,
                    idle_timeout=idle_timeout,
                    frame_timeout=self.frame_timeout,
                    admit=self._admit,
                )
            except ProtocolError:
                self.abort()
                raise
            except (OSError, _ssl.SSLError) as exc:
                self.abort()
                raise ConnectionClosed(f"{self.remote}: {exc}") from None
            if got is None:
                self.abort()
                return None
            kind, payload = got
            try:
                msg: Message = self.codec.decode(payload)
            except ProtocolError:
                self.abort()
                raise
            del payload
        finally:
            if self._reserved and self.budget is not None:
                self.budget.release(self._reserved)
            self._reserved = 0
        if kind_of(type(msg)) is not kind:
            self.abort()
            raise FrameError(f"a {type(msg).__name__} in a {kind.name} frame")
        self.last_kind = kind
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


def _source_of(peername: Any) -> str:
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return str(peername)


Handler = Callable[[Connection], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Budgets:
    """What one listener admits at once (see the module doc)."""

    peers: int = 32  # connections with a server certificate
    operators: int = 64  # connections with an admin or monitor certificate
    clients: int = 2048  # every other connection
    clients_per_source: int = 128  # ... from one source address
    handshakes: int = 128  # TLS handshakes in progress
    handshakes_per_source: int = 16  # ... from one source address
    handshake_rate: int = 20  # TLS handshakes started per second per source address
    handshake_timeout: float = 5.0  # seconds a TLS handshake may take
    buffer_bytes: int = 64 * MiB  # frame bodies being read or decoded, all connections
    read_ahead: int = 16 * 1024  # StreamReader limit: bytes read ahead of the decoder


def budget_class(peer: PeerIdentity | None) -> str:
    """Which budget a connection counts in: "peers", "operators" or "clients"."""
    if peer is None:
        return "clients"
    if peer.role == "server":
        return "peers"
    if peer.role in ("admin", "monitor"):
        return "operators"
    return "clients"


def handshake_failure(exc: BaseException) -> str:
    """One line saying why a TLS handshake failed."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
    return f"{type(exc).__name__}: {why or 'closed'}"


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    ssl: _ssl.SSLContext | None,
    budgets: Budgets | None = None,
    max_frame: int = MAX_FRAME,
    frame_timeout: float | None = FRAME_TIMEOUT,
    codec: Codec | None = None,
    peer_log: PeerLog | None = None,
) -> asyncio.Server:
    """Start a listener on host:port calling `handler(conn)` for each connection.

    The connection is closed when the handler returns or raises. A `ProtocolError` or
    `TransportError` from the handler is logged as one line (``lm.wire`` logger,
    rate-limited) and only that connection ends; anything else is logged with its
    traceback (a bug) and still only that connection ends. Connections and handshakes
    over the `budgets` are closed at once, with a line saying which budget was full.
    Plaintext (ssl None) is refused unless `host` is loopback (`ConnectError`).
    """
    if ssl is None:
        check_plaintext_allowed(host)
    b = budgets or Budgets()
    plog = peer_log or PeerLog()
    state = _Serving(BufferBudget(b.buffer_bytes))
    rate = Limiter(burst=b.handshake_rate, window=1.0)

    def refuse(writer: asyncio.StreamWriter, remote: str, source: str, why: str) -> None:
        plog.log(log, logging.WARNING, remote, source, "wire: refused %s: %s", remote, why)
        writer.transport.abort()

    async def handshake(
        writer: asyncio.StreamWriter, remote: str, source: str, ctx: _ssl.SSLContext
    ) -> bool:
        if (
            state.handshakes >= b.handshakes
            or state.handshakes_by.get(source, 0) >= b.handshakes_per_source
        ):
            refuse(writer, remote, source, "too many TLS handshakes in progress")
            return False
        if state.by_source.get(("clients", source), 0) >= b.clients_per_source:
            # the source already holds its share: no handshake (CPU) for another one
            refuse(writer, remote, source, f"{b.clients_per_source} connections from {source}")
            return False
        if rate.take(source) is None:
            refuse(writer, remote, source, f"over {b.handshake_rate} TLS handshakes per second")
            return False
        state.handshakes += 1
        state.handshakes_by[source] = state.handshakes_by.get(source, 0) + 1
        try:
            async with asyncio.timeout(b.handshake_timeout):
                await writer.start_tls(ctx, ssl_handshake_timeout=b.handshake_timeout + 1)
            return True
        except Exception as exc:  # any failure ends this connection, with one line
            why = handshake_failure(exc)
            named = explain_inbound(why)  # wrong CA, expired, missing: said in words
            plog.log(
                log,
                logging.WARNING,
                remote,
                source,
                "wire: TLS handshake from %s failed: %s",
                remote,
                f"{named} ({why})" if named else why,
            )
            writer.transport.abort()
            return False
        finally:
            state.handshakes -= 1
            left = state.handshakes_by[source] - 1
            if left:
                state.handshakes_by[source] = left
            else:
                del state.handshakes_by[source]

    async def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        remote, source = _format_peer(peername), _source_of(peername)
        if state.closing:
            writer.transport.abort()
            return
        if ssl is not None and not await handshake(writer, remote, source, ssl):
            return
        conn = Connection(
            reader,
            writer,
            codec=codec,
            max_frame=max_frame,
            frame_timeout=frame_timeout,
            budget=state.buffer,
        )
        cls = budget_class(conn.peer)
        limit = {"peers": b.peers, "operators": b.operators, "clients": b.clients}[cls]
        if state.closing:
            conn.abort()
            return
        if state.by_class.get(cls, 0) >= limit:
            refuse(writer, remote, source, f"the {cls} budget ({limit}) is full")
            conn.abort()
            return
        key = (cls, source)
        if cls == "clients" and state.by_source.get(key, 0) >= b.clients_per_source:
            refuse(writer, remote, source, f"{b.clients_per_source} connections from {source}")
            conn.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        state.conns[conn] = task
        state.by_class[cls] = state.by_class.get(cls, 0) + 1
        state.by_source[key] = state.by_source.get(key, 0) + 1
        try:
            await handler(conn)
        except (ProtocolError, TransportError) as exc:
            plog.log(log, logging.INFO, conn, source, "wire: closed %s: %s", repr(conn), exc)
        except Exception:
            log.exception("wire: handler failed on %s", escape(repr(conn)))
        finally:
            del state.conns[conn]
            state.by_class[cls] -= 1
            left = state.by_source[key] - 1
            if left:
                state.by_source[key] = left
            else:
                del state.by_source[key]
            conn.abort()

    server = await asyncio.start_server(on_accept, host, port, limit=b.read_ahead)
    _serving[server] = state
    return server


class _Serving:
    """The live connections of one `serve` listener (for `close_server`) and its counts."""

    def __init__(self, buffer: BufferBudget) -> None:
        self.conns: dict[Connection, asyncio.Task[Any]] = {}
        self.closing = False
        self.buffer = buffer
        self.handshakes = 0
        self.handshakes_by: dict[str, int] = {}
        self.by_class: dict[str, int] = {}
        self.by_source: dict[tuple[str, str], int] = {}


_serving: weakref.WeakKeyDictionary[asyncio.Server, _Serving] = weakref.WeakKeyDictionary()


def buffer_of(server: asyncio.Server) -> BufferBudget | None:
    """The buffer budget of a `serve` listener (its `used` and `peak` bytes)."""
    state = _serving.get(server)
    return state.buffer if state is not None else None


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
