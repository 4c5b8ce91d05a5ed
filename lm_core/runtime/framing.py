"""Length-prefixed frames on an asyncio stream, with a hard size cap and bounded reads.

A frame is a 4-byte big-endian unsigned length N followed by N payload bytes (one
codec message). 1 <= N <= the cap: an empty frame or a length over the cap is a
protocol error and the connection is closed without reading the payload, so a peer can
make us hold at most ``cap`` bytes per connection.

`MAX_FRAME` (4 MiB) is the default cap on every connection. The biggest legitimate
frames are status replies: about 150 bytes per held authorization in the key table, so
4 MiB fits roughly 25,000 listed clients; a daemon holding more must truncate the list it
reports (and say so in the status) rather than raise the cap.

Reads are bounded in time two ways: `idle_timeout` bounds the wait for the first byte of
the next frame (None = wait for ever: a long-lived connection whose peer speaks only
every few seconds); `frame_timeout` bounds the time from the first header byte to the
last payload byte, so a peer that starts a frame and stalls (slowloris) is dropped.
"""

from __future__ import annotations

import asyncio
import struct

from lm_core.runtime.codec import ProtocolError

MAX_FRAME = 4 * 1024 * 1024
FRAME_TIMEOUT = 10.0
HEADER = struct.Struct("!I")


class FrameError(ProtocolError):
    """A frame that breaks the framing rules (oversized, empty, truncated, too slow)."""


class FrameTimeout(FrameError):
    """No complete frame within the allowed time."""


def frame(payload: bytes, *, max_frame: int = MAX_FRAME) -> bytes:
    """Header + payload for one frame. Raises `FrameError` if the payload is empty or
    bigger than `max_frame` (so we never send what the other side must refuse)."""
    n = len(payload)
    if n == 0:
        raise FrameError("empty frame")
    if n > max_frame:
        raise FrameError(f"frame of {n} bytes exceeds the cap of {max_frame} bytes")
    return HEADER.pack(n) + payload


async def read_frame(
    reader: asyncio.StreamReader,
    *,
    max_frame: int = MAX_FRAME,
    idle_timeout: float | None = None,
    frame_timeout: float | None = FRAME_TIMEOUT,
) -> bytes | None:
    """The next frame's payload, or None at a clean end of stream (EOF between frames).

    Raises `FrameTimeout` if no frame starts within `idle_timeout` or a started frame is
    not complete within `frame_timeout`; `FrameError` for an empty or oversized frame or
    an end of stream inside a frame. Connection errors (`ConnectionError`, `ssl.SSLError`)
    propagate unchanged.
    """
    try:
        async with asyncio.timeout(idle_timeout):
            first = await reader.read(1)
    except TimeoutError:
        raise FrameTimeout(f"no frame within {idle_timeout:g} s") from None
    if not first:
        return None
    try:
        async with asyncio.timeout(frame_timeout):
            rest = await reader.readexactly(HEADER.size - 1)
            (n,) = HEADER.unpack(first + rest)
            if n == 0:
                raise FrameError("empty frame")
            if n > max_frame:
                raise FrameError(f"frame of {n} bytes exceeds the cap of {max_frame} bytes")
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
    *,
    max_frame: int = MAX_FRAME,
    drain_timeout: float | None = FRAME_TIMEOUT,
) -> None:
    """Send one frame and wait (at most `drain_timeout`) until the transport buffer drains.
    A peer that does not read raises `FrameTimeout`."""
    writer.write(frame(payload, max_frame=max_frame))
    try:
        async with asyncio.timeout(drain_timeout):
            await writer.drain()
    except TimeoutError:
        raise FrameTimeout(f"peer did not read a frame within {drain_timeout:g} s") from None
