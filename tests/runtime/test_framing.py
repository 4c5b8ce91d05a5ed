"""Frames on real loopback sockets: good frames pass; oversized, empty, truncated, stalled
and garbage frames close that one connection and the listener keeps serving."""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm_core.engine.messages import Release, Released
from lm_core.runtime.codec import ProtocolError, encode
from lm_core.runtime.connection import (
    Budgets,
    ConnectError,
    Connection,
    ConnectionClosed,
    RequestTimeout,
    close_server,
    connections_of,
    serve,
)
from lm_core.runtime.framing import (
    MAX_FRAME,
    FrameError,
    FrameTimeout,
    frame,
    read_frame,
    write_frame,
)
from lm_core.runtime.kinds import Kind

CAP = 1024
K = Kind.CLIENT  # the kind of a Release; its cap is above CAP


def hdr(n: int, kind: Kind = K) -> bytes:
    """A frame header: kind byte, 4-byte length."""
    return struct.pack("!BI", kind, n)


WAIT = 5.0  # upper bound on any wait for a condition; never a sleep


def release(rid: int = 1) -> Release:
    return Release(pool="eng", sender="c1", request_id=rid, license="Application 1.0")


class EchoServer:
    """Answers every Release with Released; records why each connection ended."""

    def __init__(self) -> None:
        self.ended: list[str] = []
        self.ended_event = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def handler(self, conn: Connection) -> None:
        try:
            while True:
                msg = await conn.recv()
                if msg is None:
                    self.ended.append("eof")
                    return
                assert isinstance(msg, Release)
                await conn.send(
                    Released(pool="eng", sender="A", request_id=msg.request_id, license=msg.license)
                )
        except ProtocolError as exc:
            self.ended.append(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.ended_event.set()

    async def wait_ended(self, n: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.ended) < n:
                self.ended_event.clear()
                await self.ended_event.wait()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    srv = EchoServer()
    srv.server = await serve(
        srv.handler, "127.0.0.1", 0, ssl=None, max_frame=CAP, frame_timeout=0.3
    )
    try:
        yield srv
    finally:
        await close_server(srv.server)


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """True once the peer closed the connection (EOF or reset), bounded by WAIT."""
    async with asyncio.timeout(WAIT):
        try:
            while await reader.read(4096):
                pass
        except ConnectionResetError:
            pass
    return True


async def still_serving(port: int) -> None:
    async with await Connection.open(f"127.0.0.1:{port}", ssl=None) as conn:
        reply = await conn.request(release(99))
        assert isinstance(reply, Released)
        assert reply.request_id == 99


async def test_a_good_frame_gets_an_answer(echo: EchoServer) -> None:
    async with await Connection.open(f"127.0.0.1:{echo.port}", ssl=None) as conn:
        for rid in range(1, 4):
            reply = await conn.request(release(rid))
            assert reply == Released(
                pool="eng", sender="A", request_id=rid, license="Application 1.0"
            )
    await echo.wait_ended(1)
    assert echo.ended == ["eof"]


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("oversized", hdr(CAP + 1) + b"x" * 10, "exceeds the cap"),
        ("huge", hdr(0xFFFFFFFF), "exceeds the cap"),
        ("empty", hdr(0), "empty frame"),
        ("garbage payload", frame(b"\x00\xffgarbage", K), "not UTF-8"),
        ("not a message", frame(b'{"type":"Nope"}', K), "unknown type"),
        (
            "invalid field",
            frame(encode(release()).replace(b'"request_id":1', b'"request_id":"1"'), K),
            "request_id",
        ),
    ],
)
async def test_a_bad_frame_closes_that_connection_only(
    echo: EchoServer, name: str, data: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lm.wire")
    async with await Connection.open(f"127.0.0.1:{echo.port}", ssl=None) as bystander:
        reader, writer = await raw(echo.port)
        writer.write(data)
        await writer.drain()
        assert await closed_by_peer(reader)
        writer.close()
        await echo.wait_ended(1)
        assert why in echo.ended[0]
        # One log line for it, naming why.
        lines = [r.getMessage() for r in caplog.records if r.name == "lm.wire"]
        assert len(lines) == 1
        assert why in lines[0]
        # The other connection and new connections are still served.
        assert isinstance(await bystander.request(release(5)), Released)
    await still_serving(echo.port)


async def test_a_truncated_frame_closes_the_connection(echo: EchoServer) -> None:
    reader, writer = await raw(echo.port)
    writer.write(hdr(100) + b"{" * 10)
    writer.write_eof()
    assert await closed_by_peer(reader)
    writer.close()
    await echo.wait_ended(1)
    assert "closed inside a frame" in echo.ended[0]
    await still_serving(echo.port)


async def test_a_stalled_frame_times_out(echo: EchoServer) -> None:
    reader, writer = await raw(echo.port)
    writer.write(hdr(100) + b"{")  # and then nothing (slowloris)
    await writer.drain()
    assert await closed_by_peer(reader)
    writer.close()
    await echo.wait_ended(1)
    assert echo.ended[0].startswith("FrameTimeout")
    await still_serving(echo.port)


async def test_a_header_split_over_writes_is_fine(echo: EchoServer) -> None:
    reader, writer = await raw(echo.port)
    data = frame(encode(release(7)), K)
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
    payload = await read_frame(reader, idle_timeout=WAIT)
    assert payload is not None
    writer.close()


async def test_clean_eof_between_frames_is_none() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(frame(b"abc", K))
    reader.feed_eof()
    assert await read_frame(reader) == (K, b"abc")
    assert await read_frame(reader) is None


async def test_idle_timeout_is_a_frame_timeout() -> None:
    reader = asyncio.StreamReader()
    with pytest.raises(FrameTimeout, match="no frame within"):
        await read_frame(reader, idle_timeout=0.01)


async def test_frames_read_ahead_whole_or_in_part() -> None:
    """Frames already buffered are taken without waiting; a buffered header whose body
    has not all arrived is admitted once, then its body waits within the frame timeout;
    a buffered bad header is refused before its body is read."""
    admitted: list[tuple[Kind, int]] = []

    def admit(kind: Kind, n: int) -> None:
        admitted.append((kind, n))

    reader = asyncio.StreamReader()
    reader.feed_data(frame(b"one", K) + frame(b"two", K) + hdr(5) + b"th")
    assert await read_frame(reader, admit=admit) == (K, b"one")
    assert await read_frame(reader, admit=admit) == (K, b"two")
    with pytest.raises(FrameTimeout, match="frame not complete"):
        await read_frame(reader, admit=admit, frame_timeout=0.01)
    assert admitted == [(K, 3), (K, 3), (K, 5)]

    reader = asyncio.StreamReader()
    reader.feed_data(hdr(5) + b"fi")
    task = asyncio.create_task(read_frame(reader, admit=admit, frame_timeout=WAIT))
    await asyncio.sleep(0)
    reader.feed_data(b"ve!")
    assert await task == (K, b"five!")

    reader = asyncio.StreamReader()
    reader.feed_data(hdr(5) + b"fi")
    reader.feed_eof()
    with pytest.raises(FrameError, match="inside a frame"):
        await read_frame(reader, admit=admit)

    reader = asyncio.StreamReader()
    reader.feed_data(hdr(CAP + 1) + b"x" * 8)
    with pytest.raises(FrameError, match="exceeds the cap"):
        await read_frame(reader, admit=admit, max_frame=CAP)
    assert admitted == [(K, 3), (K, 3), (K, 5), (K, 5), (K, 5)]


def test_frame_refuses_what_the_peer_would_refuse() -> None:
    with pytest.raises(FrameError, match="empty"):
        frame(b"", K)
    with pytest.raises(FrameError, match="exceeds"):
        frame(b"x" * (CAP + 1), K, max_frame=CAP)
    assert frame(b"x" * CAP, K, max_frame=CAP)[:5] == hdr(CAP)
    assert MAX_FRAME == 4 * 1024 * 1024


async def test_client_side_refuses_an_oversized_reply() -> None:
    async def handler(conn: Connection) -> None:
        await read_frame(conn.reader)
        conn.writer.write(hdr(CAP * 10) + b"x" * 100)
        await conn.writer.drain()
        await conn.reader.read()  # until the client hangs up

    server = await serve(handler, "127.0.0.1", 0, ssl=None)
    port = server.sockets[0].getsockname()[1]
    try:
        conn = await Connection.open(f"127.0.0.1:{port}", ssl=None, max_frame=CAP)
        with pytest.raises(FrameError, match="exceeds the cap"):
            await conn.request(release())
        assert conn.closed
        with pytest.raises(ConnectionClosed):
            await conn.send(release())
    finally:
        await close_server(server)


async def test_request_timeout_leaves_the_connection_usable() -> None:
    got: list[bytes] = []
    answer = asyncio.Event()

    async def handler(conn: Connection) -> None:
        reader, writer = conn.reader, conn.writer
        while (payload := await read_frame(reader)) is not None:
            got.append(payload)
            if len(got) == 2:
                await answer.wait()
                # Answer the first (stale) request, then the second.
                for rid in (1, 2):
                    reply = Released(pool="eng", sender="A", request_id=rid, license="L")
                    await write_frame(writer, encode(reply), Kind.CLIENT_REPLY)

    server = await serve(handler, "127.0.0.1", 0, ssl=None)
    port = server.sockets[0].getsockname()[1]
    try:
        async with await Connection.open(f"127.0.0.1:{port}", ssl=None) as conn:
            with pytest.raises(RequestTimeout):
                await conn.request(release(1), reply_timeout=0.05)
            assert not conn.closed
            task = asyncio.create_task(conn.request(release(2), reply_timeout=WAIT))
            answer.set()  # the server answers once it has both requests
            reply = await task
            assert getattr(reply, "request_id", None) == 2  # the stale reply 1 was skipped
    finally:
        await close_server(server)


async def test_connection_refused_is_a_connect_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
        await Connection.open(f"127.0.0.1:{port}", ssl=None)


@pytest.mark.parametrize("address", ["nohost", "host:", ":80", "h:99999", "h:x"])
async def test_bad_addresses_are_connect_errors(address: str) -> None:
    with pytest.raises(ConnectError):
        await Connection.open(address, ssl=None)


async def test_too_many_connections_from_one_host_are_closed() -> None:
    hold = asyncio.Event()
    both = asyncio.Event()
    entered: list[Connection] = []

    async def handler(conn: Connection) -> None:
        entered.append(conn)
        if len(entered) == 2:
            both.set()
        await hold.wait()

    server = await serve(handler, "127.0.0.1", 0, ssl=None, budgets=Budgets(clients_per_source=2))
    port = server.sockets[0].getsockname()[1]
    try:
        first = [await raw(port) for _ in range(2)]
        async with asyncio.timeout(WAIT):
            await both.wait()
        reader, writer = await raw(port)
        assert await closed_by_peer(reader)
        writer.close()
        assert len(entered) == 2
        for _, w in first:
            w.close()
    finally:
        await close_server(server, grace=0.05)
    assert not hold.is_set()  # close_server ended handlers that would have waited for ever


async def test_a_crashing_handler_ends_only_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def handler(conn: Connection) -> None:
        nonlocal calls
        calls += 1
        msg = await conn.recv()
        if calls == 1:
            raise RuntimeError("a bug in the handler")
        assert isinstance(msg, Release)
        await conn.send(Released(pool="eng", sender="A", request_id=msg.request_id, license="L"))

    caplog.set_level(logging.INFO, logger="lm.wire")
    server = await serve(handler, "127.0.0.1", 0, ssl=None)
    port = server.sockets[0].getsockname()[1]
    try:
        first = await Connection.open(f"127.0.0.1:{port}", ssl=None)
        with pytest.raises(ConnectionClosed):
            await first.request(release(1), reply_timeout=WAIT)
        await first.aclose()
        await still_serving(port)
        assert any("handler failed" in r.getMessage() for r in caplog.records)
    finally:
        await close_server(server)


async def test_close_server_ends_live_connections() -> None:
    both_in = asyncio.Event()
    results: list[object] = []

    async def handler(conn: Connection) -> None:
        if len(connections_of(server)) == 2:
            both_in.set()
        results.append(await conn.recv())

    server = await serve(handler, "127.0.0.1", 0, ssl=None)
    port = server.sockets[0].getsockname()[1]
    clients = [await Connection.open(f"127.0.0.1:{port}", ssl=None) for _ in range(2)]
    async with asyncio.timeout(WAIT):
        await both_in.wait()
    await close_server(server, grace=WAIT)
    assert results == [None, None]  # their recv() saw the end; nobody had to be cancelled
    assert connections_of(server) == []
    for c in clients:
        assert await c.recv() is None
        await c.aclose()


async def test_random_bytes_over_the_socket_never_hurt_the_listener(echo: EchoServer) -> None:
    rng = random.Random(4)  # fixed seed: the same blobs every run
    blobs = [rng.randbytes(rng.randrange(1, 300)) for _ in range(20)]
    # ... and blobs that start with a plausible header, so the payload is what is random.
    blobs += [hdr(len(b)) + b for b in blobs[:10]]
    for blob in blobs:
        reader, writer = await raw(echo.port)
        writer.write(blob)
        writer.write_eof()
        assert await closed_by_peer(reader)
        writer.close()
    await echo.wait_ended(len(blobs))
    # Every connection ended on a protocol error (or a clean EOF), none crashed the handler.
    assert all(e == "eof" or "Error" in e or "Timeout" in e for e in echo.ended)
    await still_serving(echo.port)


async def test_sending_an_oversized_message_keeps_the_connection(echo: EchoServer) -> None:
    async with await Connection.open(f"127.0.0.1:{echo.port}", ssl=None, max_frame=CAP) as conn:
        big = Release(pool="eng", sender="c1", request_id=1, license="x" * CAP)
        with pytest.raises(FrameError, match="exceeds the cap"):
            await conn.send(big)
        assert not conn.closed
        assert isinstance(await conn.request(release(2)), Released)


async def _read_all(data: bytes, cap: int) -> tuple[list[bytes], str | None]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames: list[bytes] = []
    try:
        while (payload := await read_frame(reader, max_frame=cap)) is not None:
            frames.append(payload[1])
    except FrameError as exc:
        return frames, str(exc)
    return frames, None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), max_size=5), st.binary(max_size=12))
def test_any_byte_stream_gives_frames_then_eof_or_a_frame_error(
    payloads: list[bytes], tail: bytes
) -> None:
    cap = 32
    data = b"".join(hdr(len(p)) + p for p in payloads) + tail
    frames, error = asyncio.run(_read_all(data, cap))
    # Whatever came before the first bad frame is read back exactly; then EOF or an error.
    good = []
    for p in payloads:
        if len(p) > cap:
            break
        good.append(p)
    assert frames[: len(good)] == good
    if error is None:
        assert data == b"".join(hdr(len(f)) + f for f in frames)
