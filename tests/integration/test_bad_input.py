"""Bad input to a live daemon: each case closes that one connection with one log line;
the daemon keeps answering status and its state is unchanged (B1)."""

from __future__ import annotations

import json
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

from lm_core.engine import messages as m
from lm_core.runtime.codec import default_codec

from .conftest import APP, Pool, all_up, held_total

pytestmark = pytest.mark.integration


def _frame(payload: bytes) -> bytes:
    return struct.pack("!BI", 1, len(payload)) + payload


def _stable(st: dict[str, Any] | None) -> Any:
    """A server's status without what moves by itself (ages, lease times, events)."""
    assert st is not None

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {
                k: strip(x)
                for k, x in v.items()
                if not (k.endswith("_age") or k in ("lease_expires_in", "events", "age"))
            }
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(st)


def _closed_by_peer(port: int, data: bytes, *, half_close: bool = False) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True  # recv returned b"": the daemon closed it (a timeout would raise)


rng = random.Random(4)
CASES: dict[str, tuple[bytes, bool]] = {
    "random bytes": (bytes(rng.randrange(256) for _ in range(4096)), False),
    "oversized frame": (struct.pack("!BI", 1, 64 * 1024 * 1024) + b"x" * 1024, False),
    "truncated frame": (struct.pack("!BI", 1, 1000) + b'{"type": "Request", ', True),
    "not JSON": (_frame(b"\xff\xfe not json"), False),
    "invalid message": (_frame(json.dumps({"type": "Request", "pool": "itest"}).encode()), False),
    "unknown type": (_frame(json.dumps({"type": "Explode", "pool": "itest"}).encode()), False),
    "server message from nobody": (
        _frame(
            default_codec().encode(m.Released(pool="itest", sender="Z", request_id=1, license=APP))
        ),
        False,
    ),
}


def test_bad_input_closes_one_connection_and_changes_nothing(
    pool_factory: Callable[..., Pool],
) -> None:
    pool = pool_factory(tls=False)
    for sid in pool.ids:
        pool.start(sid)
    st = pool.wait(all_up, "three servers up with a leader")
    pool.hold("--license", APP, "--client-id", "steady", "--server", "A", "--seconds", "600")
    pool.wait(lambda st: held_total(st) == 1, "one seat held on A")
    port = pool.rlf.server("A").port

    before = _stable(pool.run(lambda c: c.server_status("A")))
    log_before = pool.logs["A"].read_text(errors="replace").count("wire: closed")
    for case, (data, half_close) in CASES.items():
        assert _closed_by_peer(port, data, half_close=half_close), case
        after = _stable(pool.run(lambda c: c.server_status("A")))
        assert after == before, case
    assert pool.alive("A")
    # one log line per closed connection
    deadline = time.monotonic() + 10
    while pool.logs["A"].read_text(errors="replace").count("wire: closed") < log_before + len(
        CASES
    ):
        assert time.monotonic() < deadline, pool.log_tail()
        time.sleep(0.05)
    st = pool.status()
    assert st["leader"] is not None
    assert held_total(st) == 1
