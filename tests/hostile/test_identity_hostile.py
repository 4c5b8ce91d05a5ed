"""Issue 10, item 1: an oversized or malformed client identity is refused on the wire --
that one connection is closed with a log line naming the field -- and changes nothing:
no seat is granted to it, the seat held before is still held, the pool serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl

import pytest

from lm_core.engine import messages as m
from lm_core.engine.identity import ClientIdentity
from lm_core.runtime.codec import encode
from lm_core.runtime.kinds import Kind

from .conftest import APP, SOURCES, HostilePool, header, still_serving

pytestmark = pytest.mark.integration


def _frame(body: dict[str, object]) -> bytes:
    payload = json.dumps(body).encode()
    return header(Kind.CLIENT, len(payload)) + payload


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(10):
            while await reader.read(4096):
                pass
    except (ConnectionError, ssl.SSLError):
        pass
    return True


async def test_bad_identities_close_their_connection_and_change_nothing(
    hostile_pool: HostilePool,
) -> None:
    pool = hostile_pool
    good = m.Request(pool=pool.rlf.pool, sender="bad-identity", request_id=1, license=APP,
                     identity=ClientIdentity(user="mallory"))  # fmt: skip
    base = json.loads(encode(good))
    attacks = {
        "identity.user": {**base["identity"], "user": "m" * 1_000},  # fits the frame, not the field
        "identity.host": {**base["identity"], "host": "evil\nINFO forged line"},
        "identity.pid": {**base["identity"], "pid": -5},
        "identity: ClientIdentity: unknown field": {**base["identity"], "uid": 0},
    }
    before = await pool.status()
    for i, (needle, ident) in enumerate(attacks.items()):
        r, w = await pool.raw(SOURCES[i % len(SOURCES)])
        w.write(_frame({**base, "identity": ident}))
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await w.drain()
        assert await _closed(r)
        w.close()
        lines = await pool.wait_log(needle.split(":")[0])
        assert lines, needle
    assert "bad-identity" not in await pool.holders()
    after = await pool.status()
    assert [lic["servers"] for lic in after["licenses"]] == [
        lic["servers"] for lic in before["licenses"]
    ]
    for line in pool.log("A").splitlines():
        assert not line.startswith("INFO forged line"), line
    await still_serving(pool, "after-identities")
