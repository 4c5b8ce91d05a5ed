"""Fuzz `framing.read_frame` on arbitrary byte streams: frames or `FrameError`, nothing
else; no frame above the cap is ever returned."""

from __future__ import annotations

import asyncio
import struct

from hypothesis import example, given
from hypothesis import strategies as st

from lm_core.runtime.framing import FrameError, read_frame

from .budget import fuzz

CAP = 64


async def _frames(data: bytes) -> list[bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out: list[bytes] = []
    while True:
        try:
            payload = await read_frame(reader, max_frame=CAP, frame_timeout=1.0)
        except FrameError:
            return out
        if payload is None:
            return out
        assert 1 <= len(payload) <= CAP
        out.append(payload)


HEADER = st.integers(0, 2**32 - 1).map(lambda n: struct.pack("!I", n))
SMALL = st.integers(1, CAP).map(lambda n: struct.pack("!I", n) + b"x" * n)


@fuzz(300)
@given(st.lists(st.one_of(HEADER, SMALL, st.binary(max_size=80)), max_size=8).map(b"".join))
@example(b"")
@example(struct.pack("!I", 0))
@example(struct.pack("!I", 2**32 - 1) + b"x" * 10)
def test_random_streams(data: bytes) -> None:
    frames = asyncio.run(_frames(data))
    assert sum(len(f) + 4 for f in frames) <= len(data)
