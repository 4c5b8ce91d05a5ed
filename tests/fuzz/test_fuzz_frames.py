"""Fuzz `framing.read_frame` on arbitrary byte streams: frames or `FrameError`, nothing
else; no frame of an unknown kind or above the cap is ever returned."""

from __future__ import annotations

import asyncio
import struct

from hypothesis import example, given
from hypothesis import strategies as st

from lm_core.runtime.framing import HEADER as FRAME_HEADER
from lm_core.runtime.framing import FrameError, read_frame
from lm_core.runtime.kinds import Kind

from .budget import fuzz

CAP = 64


async def _frames(data: bytes) -> list[bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out: list[bytes] = []
    while True:
        try:
            got = await read_frame(reader, max_frame=CAP, frame_timeout=1.0)
        except FrameError:
            return out
        if got is None:
            return out
        kind, payload = got
        assert isinstance(kind, Kind)
        assert 1 <= len(payload) <= CAP
        out.append(payload)


BYTE = st.integers(0, 255)
KIND = st.sampled_from(list(Kind))
HEADER = st.tuples(BYTE, st.integers(0, 2**32 - 1)).map(lambda h: struct.pack("!BI", *h))
SMALL = st.tuples(KIND, st.integers(1, CAP)).map(
    lambda h: struct.pack("!BI", *h) + b"x" * h[1]
)


@fuzz(300)
@given(st.lists(st.one_of(HEADER, SMALL, st.binary(max_size=80)), max_size=8).map(b"".join))
@example(b"")
@example(struct.pack("!BI", Kind.CLIENT, 0))
@example(struct.pack("!BI", Kind.CLIENT, 2**32 - 1) + b"x" * 10)
@example(struct.pack("!BI", 0, 3) + b"xxx")  # kind 0 names no kind
def test_random_streams(data: bytes) -> None:
    frames = asyncio.run(_frames(data))
    assert sum(len(f) + FRAME_HEADER.size for f in frames) <= len(data)
