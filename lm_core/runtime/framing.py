"""Typed, length-prefixed frames on an asyncio stream, with per-kind caps and bounded reads.

A frame is a 5-byte header -- one kind byte (`kinds.Kind`) and a 4-byte big-endian
unsigned length N -- followed by N payload bytes (one codec message of that kind).
1 <= N <= the kind's cap (`kinds.CAPS`, never above `MAX_FRAME`). An unknown kind, an
empty frame or a length over the cap is a protocol error and the connection is closed
without reading the payload.

The kind comes first so that a receiver can refuse a frame before it holds a byte of
its body: `read_frame(admit=...)` calls ``admit(kind, length)`` between header and body;
it raises `ProtocolError` to close the connection. The daemon checks there that the
sender's certificate allows this kind (`admission`) and reserves the body's bytes in its
global buffer budget (`BufferBudget`). A client message is at most 8 KiB, so a peer
without a certificate can make the daemon hold at most that (plus the stream's read-ahead)
per connection.

`MAX_FRAME` (4 MiB) is the cap of the biggest kinds: status replies (about 150 bytes per
held authorization in the key table, so roughly 25,000 listed clients; a daemon holding
more truncates the list it reports and says so), RLF pushes and transfers.

Reads are bounded in time two ways: `idle_timeout` bounds the wait for the first byte of
the next frame (None = wait for ever: a long-lived connection whose peer speaks only
every few seconds); `frame_timeout` bounds the time from the first header byte to the
last payload byte, so a peer that starts a frame and stalls (slowloris) is dropped.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from lm_core.runtime.codec import ProtocolError
from lm_core.runtime.kinds import CAPS, MAX_FRAME, Kind, kind_from_byte

__all__ = ["FRAME_TIMEOUT", "HEADER", "MAX_FRAME", "BufferBudget", "FrameError", "frame"]

FRAME_TIMEOUT = 10.0
HEADER = struct.Struct("!BI")

Admit = Callable[[Kind, int], None]


class FrameError(ProtocolError):
    """A frame that breaks the framing rules (oversized, empty, truncated, too slow)."""


class FrameTimeout(FrameError):
    """No complete frame within the allowed time."""


class BufferBudget:
    """Bytes of frame bodies being read or decoded, over all connections of a listener.

    `reserve(n)` before reading a body of n bytes (False: over budget, refuse the frame),
    `release(n)` once it is decoded or dropped. With per-kind caps this bounds what the
    frames in flight can hold at once, whatever the number of connections."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0

    def reserve(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        self.peak = max(self.peak, self.used)
        return True

    def release(self, n: int) -> None:
        self.used -= n
        if self.used < 0:
            raise AssertionError("buffer budget released more than it reserved")


def cap_of(kind: Kind, max_frame: int = MAX_FRAME) -> int:
    """The largest body a frame of `kind` may have (never above `max_frame`)."""
    return min(CAPS[kind], max_frame)


def frame(payload: bytes, kind: Kind, *, max_frame: int = MAX_FRAME) -> bytes:
    """Header + payload for one frame. Raises `FrameError` if the payload is empty or
    bigger than the kind's cap (so we never send what the other side must refuse)."""
    n = len(payload)
    if n == 0:
        raise FrameError("empty frame")
    cap = cap_of(kind, max_frame)
    if n > cap:
        raise FrameError(f"{kind.name} frame of {n} bytes exceeds the cap of {cap} bytes")
    return HEADER.pack(kind, n) + payload


def _header(byte: int, n: int, max_frame: int) -> Kind:
    """The kind of a frame whose header reads (`byte`, `n`); `FrameError` if the header
    breaks the rules (unknown kind, empty, over the kind's cap)."""
    kind = kind_from_byte(byte)
    if kind is None:
        raise FrameError(f"unknown frame kind {byte}")
    if n == 0:
        raise FrameError("empty frame")
    cap = cap_of(kind, max_frame)
    if n > cap:
        raise FrameError(f"{kind.name} frame of {n} bytes exceeds the cap of {cap} bytes")
    return kind


def _buffered(reader: asyncio.StreamReader) -> bytearray | None:
    """The bytes `reader` holds already (CPython's StreamReader keeps them in ``_buffer``;
    None if this reader does not), read-only: to see whether a whole frame is there."""
    buf = getattr(reader, "_buffer", None)
    return buf if isinstance(buf, bytearray) else None


async def read_frame(
    reader: asyncio.StreamReader,
    *,
    max_frame: int = MAX_FRAME,
    idle_timeout: float | None = None,
    frame_timeout: float | None = FRAME_TIMEOUT,
    admit: Admit | None = None,
) -> tuple[Kind, bytes] | None:
    """The next frame's kind and payload, or None at a clean end of stream (EOF between
    frames).

    Raises `FrameTimeout` if no frame starts within `idle_timeout` or a started frame is
    not complete within `frame_timeout`; `FrameError` for an unknown kind, an empty or
    oversized frame or an end of stream inside a frame; whatever `admit` raises.
    Connection errors (`ConnectionError`, `ssl.SSLError`) propagate unchanged.

    A frame already read ahead whole (a busy connection: several frames arrive in one
    TLS record or segment) is taken without arming the two timeouts: nothing can stall
    there, and the timers cost several times the read itself. A frame whose first bytes
    arrive after a wait arms the frame timeout only if part of it is still missing.
    """
    buf = _buffered(reader)
    if buf is not None and len(buf) >= HEADER.size:
        byte, n = HEADER.unpack_from(buf)
        kind = _header(byte, n, max_frame)
        if admit is not None:
            admit(kind, n)
        if len(buf) >= HEADER.size + n:
            data = await reader.readexactly(HEADER.size + n)  # buffered: does not wait
            return kind, data[HEADER.size :]
        await reader.readexactly(HEADER.size)  # buffered: does not wait
        return kind, await _body(reader, n, frame_timeout)
    try:
        async with asyncio.timeout(idle_timeout):
            first = await reader.read(1)
    except TimeoutError:
        raise FrameTimeout(f"no frame within {idle_timeout:g} s") from None
    if not first:
        return None
    buf = _buffered(reader)
    if buf is not None and len(buf) >= HEADER.size - 1:
        # the rest of the header came with the first byte (the usual case): the body
        # may be here too, and only a missing part of it needs the frame timeout
        byte, n = HEADER.unpack(first + bytes(buf[: HEADER.size - 1]))
        kind = _header(byte, n, max_frame)
        if admit is not None:
            admit(kind, n)
        await reader.readexactly(HEADER.size - 1)  # buffered: does not wait
        if len(buf) >= n:
            return kind, await reader.readexactly(n)  # buffered: does not wait
        return kind, await _body(reader, n, frame_timeout)
    try:
        async with asyncio.timeout(frame_timeout):
            rest = await reader.readexactly(HEADER.size - 1)
            byte, n = HEADER.unpack(first + rest)
            kind = _header(byte, n, max_frame)
            if admit is not None:
                admit(kind, n)
            return kind, await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        raise FrameError(
            f"connection closed inside a frame ({len(exc.partial)} bytes short read)"
        ) from None
    except TimeoutError:
        raise FrameTimeout(f"frame not complete within {frame_timeout:g} s") from None


async def _body(reader: asyncio.StreamReader, n: int, frame_timeout: float | None) -> bytes:
    """The `n` body bytes of a frame whose header was read, within `frame_timeout`."""
    try:
        async with asyncio.timeout(frame_timeout):
            return await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        raise FrameError(
            f"connection closed inside a frame ({len(exc.partial)} bytes short read)"
        ) from None
    except TimeoutError:
        raise FrameTimeout(f"frame not complete within {frame_timeout:g} s") from None


async def write_frame(
    writer: asyncio.StreamWriter,
    payload: bytes,
    kind: Kind,
    *,
    max_frame: int = MAX_FRAME,
    drain_timeout: float | None = FRAME_TIMEOUT,
) -> None:
    """Send one frame and wait (at most `drain_timeout`) until the transport buffer drains.
    A peer that does not read raises `FrameTimeout`."""
    writer.write(frame(payload, kind, max_frame=max_frame))
    try:
        async with asyncio.timeout(drain_timeout):
            await writer.drain()
    except TimeoutError:
        raise FrameTimeout(f"peer did not read a frame within {drain_timeout:g} s") from None
