"""The protocol vectors replayed byte for byte against a real TLS daemon pool.

A plain TLS socket (Python's `ssl`, not the project's `Connection`), trusting only the
pool CA and presenting no certificate, sends each vector's frames to each server and
checks every answer (kind, fields, values; variable fields by type), or that the server
closed the connection without a word. After the bad frames every server still serves,
and after the vectors no vector's client holds a seat.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import uuid
from typing import Any

import pytest

from .conftest import (
    HEADER,
    ProtocolPool,
    clients_of,
    mismatches,
    serving_all,
    step_frame,
    wire_vectors,
)

pytestmark = pytest.mark.integration

TIMEOUT = 5.0


class Wire:
    """One TLS connection to one server, speaking raw frames."""

    def __init__(self, pp: ProtocolPool, sid: str) -> None:
        host, port = pp.address(sid)
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
        if pp.tls_dir is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_verify_locations(cafile=str(pp.tls_dir / "ca.pem"))
            self.sock: socket.socket = ctx.wrap_socket(raw, server_hostname=host)
        else:
            self.sock = raw
        self.sock.settimeout(TIMEOUT)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exact(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                chunk = b""
            if not chunk:
                return buf if buf else None
            buf += chunk
        return buf

    def read(self) -> tuple[int, dict[str, Any]] | None:
        """The next frame (kind, JSON object), or None if the server closed."""
        head = self._exact(HEADER.size)
        if head is None:
            return None
        assert len(head) == HEADER.size, f"a truncated header {head!r}"
        kind, n = HEADER.unpack(head)
        body = self._exact(n)
        assert body is not None, "no body"
        assert len(body) == n, "a truncated body"
        value: dict[str, Any] = json.loads(body.decode("utf-8"))
        return kind, value

    def close(self) -> None:
        self.sock.close()


def _replay(pp: ProtocolPool, sid: str, vec: dict[str, Any]) -> str:
    client = f"vec-{vec['name']}-{sid}-{uuid.uuid4().hex[:6]}"
    values = pp.values(sid, client)
    wire = Wire(pp, sid)
    try:
        for i, step in enumerate(vec["steps"]):
            where = f"{vec['name']} step {i} on {sid} ({step.get('why', '')})"
            if step.get("tls_only") and pp.tls_dir is None:
                continue
            if step.get("connection") == "new":
                wire.close()
                wire = Wire(pp, sid)
            # the server may close before it took every byte; read() says
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                wire.send(step_frame(step, values))
            got = wire.read()
            if step["expect"].get("closed"):
                assert got is None, f"{where}: expected the connection closed, got {got}"
                continue
            assert got is not None, f"{where}: the server closed the connection"
            kind, answer = got
            assert kind == step["expect"]["kind"], f"{where}: frame kind {kind}"
            problems = mismatches(step["expect"], answer, values)
            assert problems == [], f"{where}: {problems}\nanswer: {answer}"
    finally:
        wire.close()
    return client


def test_vectors_on_every_server(protocol_pool: ProtocolPool) -> None:
    pp = protocol_pool
    clients = []
    for sid in pp.pool.ids:
        for vec in wire_vectors():
            clients.append(_replay(pp, sid, vec))
    # nothing crashed, nothing leaked: every server serves, no vector's client holds
    st = pp.wait(serving_all, "every server still serving after the bad frames")
    for sid in pp.pool.ids:
        assert pp.pool.alive(sid), f"{sid} died"
    held = [c for c in clients if clients_of(st, c)]
    assert held == [], f"vector clients still holding: {held}"


def test_a_grant_is_counted_until_released(protocol_pool: ProtocolPool) -> None:
    """The grant vector's seat is in the server's key table between grant and release."""
    pp = protocol_pool
    vec = next(v for v in wire_vectors() if v["name"] == "grant_renew_release")
    client = f"vec-held-{uuid.uuid4().hex[:6]}"
    values = pp.values("B", client)
    wire = Wire(pp, "B")
    try:
        wire.send(step_frame(vec["steps"][0], values))
        got = wire.read()
        assert got is not None
        assert mismatches(vec["steps"][0]["expect"], got[1], values) == []
        st = pp.wait(lambda s: bool(clients_of(s, client)), "the vector's client listed")
        assert [(c["server"], c["count"]) for c in clients_of(st, client)] == [("B", 1)]
        wire.send(step_frame(vec["steps"][2], values))  # Release #3
        got = wire.read()
        assert got is not None
        assert got[1]["type"] == "Released"
        pp.wait(lambda s: not clients_of(s, client), "the vector's client released")
    finally:
        wire.close()


def test_header_struct_is_the_documented_one() -> None:
    assert HEADER.size == 5
    assert HEADER.pack(1, 258) == b"\x01\x00\x00\x01\x02"
    assert struct.calcsize("!BI") == 5
