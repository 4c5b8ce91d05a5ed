"""The daemon shell in-process, on real TCP/TLS sockets and a real SQLite store, around a
scripted engine (the real engine runs in tests/integration/). What is checked here is the
shell's own job: persist before reply, who may say what, bad input closes one
connection, status, clean stop."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import socket
import sqlite3
import ssl
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lm_core.engine import effects as fx
from lm_core.engine import messages as m
from lm_core.engine.rlf import Rlf, ServerEntry, new_rlf
from lm_core.runtime import tlsconfig
from lm_core.runtime.codec import default_codec
from lm_core.runtime.connection import ConnectError, Connection, ConnectionClosed
from lm_core.runtime.daemon import Daemon
from lm_core.runtime.pki import PkiServer, init_pki
from lm_core.runtime.store import DB_NAME, Store

APP = "Application 1.0"


class ScriptedEngine:
    """Grants every Request (persisting the key first; a Request for 7 seats also
    persists state, like a borrow), acknowledges AddLicenseCode (persisting state
    first), records everything it is given."""

    def __init__(
        self, server_id: str, rlf: Rlf, *, now: float, today: datetime.date, persisted: Any
    ) -> None:
        self.server_id = server_id
        self.rlf = rlf
        self.persisted = persisted
        self.handled: list[tuple[str, m.Message]] = []
        self.ticks = 0
        self.keys: dict[str, int] = {k["client_id"]: k["count"] for k in persisted.keys}
        self.deadline = float("inf")
        self.ticked = asyncio.Event()

    @property
    def next_deadline(self) -> float:
        return self.deadline

    def set_today(self, today: datetime.date) -> None:
        pass

    def tick(self, now: float) -> list[fx.Effect]:
        self.ticks += 1
        self.ticked.set()
        return []

    def handle(self, now: float, sender: str, msg: m.Message) -> list[fx.Effect]:
        self.handled.append((sender, msg))
        base = {"pool": self.rlf.pool, "sender": self.server_id}
        if isinstance(msg, m.Request):
            self.keys[msg.sender] = msg.count
            entry = {"client_id": msg.sender, "license": msg.license, "count": msg.count}
            state: list[fx.Effect] = (
                [fx.PersistState({"borrowed_by": msg.sender})] if msg.count == 7 else []
            )
            return [
                *state,
                fx.PersistKey(msg.sender, msg.license, entry),
                fx.LogUsage("grant", msg.sender, msg.license, msg.count),
                fx.Event("grant", f"{msg.sender} holds {msg.count}"),
                fx.Reply(
                    sender,
                    m.Authorize(
                        **base,
                        request_id=msg.request_id,
                        license=msg.license,
                        count=msg.count,
                        lease=6.0,
                        heartbeat_interval=2.0,
                    ),
                ),
            ]
        if isinstance(msg, m.AddLicenseCode):
            return [
                fx.PersistState({"codes": [msg.code]}),
                fx.Reply(sender, m.AdminReply(**base, request_id=msg.request_id, ok=True)),
            ]
        return []

    def status(self, now: float) -> dict[str, Any]:
        return {
            "id": self.server_id,
            "pool": self.rlf.pool,
            "role": "leader",
            "term": 1,
            "leader": self.server_id,
            "rlf_seq": self.rlf.sequence,
            "clients": [
                {"client_id": c, "license": APP, "count": n, "lease_expires_in": 5.0}
                for c, n in sorted(self.keys.items())
            ],
        }


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _rlf() -> Rlf:
    ports = _free_ports(3)
    return new_rlf(
        "unit",
        [
            ServerEntry(id=sid, host="127.0.0.1", port=p)
            for sid, p in zip("ABC", ports, strict=True)
        ],
    )


class Running:
    def __init__(self, daemon: Daemon, data: Path) -> None:
        self.daemon = daemon
        self.data = data

    @property
    def engine(self) -> ScriptedEngine:
        assert isinstance(self.daemon.engine, ScriptedEngine)
        return self.daemon.engine

    @property
    def address(self) -> str:
        return self.daemon.rlf.server("A").address

    def msg(self, cls: type[m.Message], **kw: Any) -> Any:
        return cls(pool=self.daemon.rlf.pool, **kw)

    def db_state(self) -> Any:
        conn = sqlite3.connect(self.data / DB_NAME)
        try:
            row = conn.execute("SELECT json FROM state WHERE id = 1").fetchone()
            return None if row is None else json.loads(row[0])
        finally:
            conn.close()

    def db_keys(self) -> list[str]:
        conn = sqlite3.connect(self.data / DB_NAME)
        try:
            return [r[0] for r in conn.execute("SELECT client_id FROM keys ORDER BY client_id")]
        finally:
            conn.close()


async def _start(
    tmp_path: Path, tls: tlsconfig.TlsPaths | None = None, rlf: Rlf | None = None
) -> Running:
    rlf = rlf or _rlf()
    data = tmp_path / "data"
    store = Store.open(data, pool=rlf.pool, server_id="A")
    daemon = Daemon("A", rlf, store, store.load(), tls=tls, engine_factory=ScriptedEngine)
    task = asyncio.create_task(daemon.run())
    async with asyncio.timeout(5):
        await daemon.started.wait()
    running = Running(daemon, data)
    running.task = task  # type: ignore[attr-defined]
    return running


@pytest.fixture
async def plain(tmp_path: Path) -> AsyncIterator[Running]:
    running = await _start(tmp_path)
    try:
        yield running
    finally:
        running.daemon.stop()
        async with asyncio.timeout(5):
            await running.task  # type: ignore[attr-defined]


async def _status(r: Running, conn: Connection | None = None) -> dict[str, Any]:
    own = conn is None
    conn = conn or await Connection.open(r.address, ssl=None)
    try:
        reply = await conn.request(
            r.msg(m.StatusRequest, sender="t", request_id=9), reply_timeout=3
        )
    finally:
        if own:
            await conn.aclose()
    assert isinstance(reply, m.StatusReply)
    return reply.status


async def test_grant_is_durable_before_the_reply(plain: Running) -> None:
    async with await Connection.open(plain.address, ssl=None) as conn:
        for i in range(5):
            req = plain.msg(m.Request, sender=f"c{i}", request_id=i, license=APP)
            reply = await conn.request(req, reply_timeout=3)
            assert isinstance(reply, m.Authorize)
            # the key row is on disk (a separate SQLite connection sees it) already
            assert f"c{i}" in plain.db_keys()
    status = await _status(plain)
    assert [c["client_id"] for c in status["clients"]] == [f"c{i}" for i in range(5)]


async def test_a_client_step_that_changes_state_is_durable_before_the_reply(
    plain: Running,
) -> None:
    """A client message whose step persists state (a borrow) is not carried out on the
    fast path: the loop commits it with an fsync first, then replies."""
    async with await Connection.open(plain.address, ssl=None) as conn:
        req = plain.msg(m.Request, sender="big", request_id=1, license=APP, count=7)
        reply = await conn.request(req, reply_timeout=3)
        assert isinstance(reply, m.Authorize)
        assert plain.db_state() == {"borrowed_by": "big"}
        assert "big" in plain.db_keys()
        # and the fast path goes on after it
        req = plain.msg(m.Request, sender="small", request_id=2, license=APP)
        assert isinstance(await conn.request(req, reply_timeout=3), m.Authorize)
        assert "small" in plain.db_keys()


async def test_many_clients_at_once_each_get_a_durable_grant(plain: Running) -> None:
    """Clients ready in the same event-loop iteration are stepped as they arrive and
    committed together; every reply still follows its own key row to disk."""
    conns = [await Connection.open(plain.address, ssl=None) for _ in range(24)]
    try:
        for round_ in range(3):
            replies = await asyncio.gather(
                *(
                    c.request(
                        plain.msg(m.Request, sender=f"c{round_}-{i}", request_id=1, license=APP),
                        reply_timeout=5,
                    )
                    for i, c in enumerate(conns)
                )
            )
            assert all(isinstance(r, m.Authorize) for r in replies)
            keys = set(plain.db_keys())
            assert {f"c{round_}-{i}" for i in range(len(conns))} <= keys
    finally:
        await asyncio.gather(*(c.aclose() for c in conns))
    assert len(plain.engine.handled) == 3 * len(conns)


async def test_a_deadline_in_the_past_does_not_starve_connections(plain: Running) -> None:
    plain.engine.deadline = 0.0  # an engine whose next_deadline stays in the past
    for _ in range(3):
        status = await _status(plain)
        assert status["id"] == "A"
    async with asyncio.timeout(5):
        for _ in range(3):  # and it still ticks
            plain.engine.ticked.clear()
            await plain.engine.ticked.wait()


async def test_admin_op_in_plaintext_loopback_reaches_engine(plain: Running) -> None:
    async with await Connection.open(plain.address, ssl=None) as conn:
        reply = await conn.request(
            plain.msg(m.AddLicenseCode, sender="adm", request_id=1, code="X"), reply_timeout=3
        )
    assert isinstance(reply, m.AdminReply)
    assert reply.ok
    sender, msg = plain.engine.handled[-1]
    assert sender.startswith("conn:")
    assert isinstance(msg, m.AddLicenseCode)


async def _closed_after(r: Running, data: bytes, *, eof: bool = False) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", r.daemon.rlf.server("A").port)
    writer.write(data)
    await writer.drain()
    if eof:
        writer.write_eof()
    try:
        async with asyncio.timeout(5):
            rest = await reader.read()  # until the daemon closes
    finally:
        writer.close()
    return rest == b""


@pytest.mark.parametrize(
    ("case", "data", "eof"),
    [
        ("random bytes", struct.pack("!BI", 1, 64) + bytes(range(200, 256)) + os.urandom(8), False),
        ("oversized frame", struct.pack("!BI", 1, 0xFFFFFFF0) + b"{}", False),
        ("empty frame", struct.pack("!BI", 1, 0), False),
        ("truncated frame", struct.pack("!BI", 1, 100) + b'{"type": "Req', True),
        ("not a message", struct.pack("!BI", 1, 2) + b"{}", False),
        (
            "invalid message",
            (lambda p: struct.pack("!BI", 1, len(p)) + p)(
                json.dumps({"type": "Request", "pool": "unit", "sender": "c1"}).encode()
            ),
            False,
        ),
        (
            "server message from a stranger",
            (lambda p: struct.pack("!BI", 1, len(p)) + p)(
                default_codec().encode(
                    m.Released(pool="unit", sender="Z", request_id=1, license=APP)
                )
            ),
            False,
        ),
    ],
)
async def test_bad_input_closes_one_connection(
    plain: Running, case: str, data: bytes, eof: bool
) -> None:
    async with await Connection.open(plain.address, ssl=None) as bystander:
        before = await _status(plain, bystander)
        keys_before = plain.db_keys()
        assert await _closed_after(plain, data, eof=eof), case
        # the daemon keeps serving, other connections included, and nothing changed
        assert await _status(plain, bystander) == before
        assert await _status(plain) == before
    assert plain.engine.handled == []
    assert plain.db_keys() == keys_before


async def test_stop_closes_store_and_keeps_keys(tmp_path: Path) -> None:
    rlf = _rlf()
    running = await _start(tmp_path, rlf=rlf)
    async with await Connection.open(running.address, ssl=None) as conn:
        req = running.msg(m.Request, sender="keep", request_id=1, license=APP)
        assert isinstance(await conn.request(req, reply_timeout=3), m.Authorize)
    running.daemon.stop()
    async with asyncio.timeout(5):
        await running.task  # type: ignore[attr-defined]
    with pytest.raises(ConnectError):
        await Connection.open(running.address, ssl=None, connect_timeout=1)
    # the store was closed (its lock released) and the key is still there
    again = await _start(tmp_path, rlf=rlf)
    try:
        assert list(again.engine.keys) == ["keep"]
        assert (await _status(again))["clients"][0]["client_id"] == "keep"
    finally:
        again.daemon.stop()
        await again.task  # type: ignore[attr-defined]


# ---------------------------------------------------------------- TLS


@pytest.fixture
async def tls_pool(tmp_path: Path) -> AsyncIterator[tuple[Running, Path]]:
    rlf = _rlf()
    tls_dir = tmp_path / "tls"
    init_pki(tls_dir, pool=rlf.pool, servers=[PkiServer(id=s.id, host=s.host) for s in rlf.servers])
    running = await _start(tmp_path, tls=tlsconfig.load_tls_dir(tls_dir, "server-A"), rlf=rlf)
    try:
        yield running, tls_dir
    finally:
        running.daemon.stop()
        async with asyncio.timeout(5):
            await running.task  # type: ignore[attr-defined]


async def _closed_by_daemon(conn: Connection) -> bool:
    try:
        return await conn.recv(idle_timeout=5) is None
    except (ConnectionClosed, ssl.SSLError, ConnectionError):
        return True


async def _status_works(r: Running, ctx: ssl.SSLContext) -> bool:
    try:
        async with await Connection.open(r.address, ssl=ctx) as conn:
            await _status(r, conn)
    except (ConnectError, ConnectionClosed):
        return False
    return True


async def _open(r: Running, tls_dir: Path, role: str) -> Connection:
    paths = tlsconfig.load_tls_dir(tls_dir, role)
    assert paths is not None
    return await Connection.open(r.address, ssl=tlsconfig.connect_context(paths))


async def test_tls_admin_may_status_and_operate(tls_pool: tuple[Running, Path]) -> None:
    r, tls_dir = tls_pool
    async with await _open(r, tls_dir, "admin") as conn:
        status = await _status(r, conn)
        assert status["id"] == "A"
        reply = await conn.request(
            r.msg(m.AddLicenseCode, sender="adm", request_id=2, code="X"), reply_timeout=3
        )
    assert isinstance(reply, m.AdminReply)
    assert reply.ok


async def test_tls_client_cannot_do_admin_ops(tls_pool: tuple[Running, Path]) -> None:
    r, tls_dir = tls_pool
    async with await _open(r, tls_dir, "client") as conn:
        for op in (
            r.msg(m.AddLicenseCode, sender="c", request_id=3, code="X"),
            r.msg(m.StatusRequest, sender="c", request_id=4),
            r.msg(m.Reclaim, sender="c", request_id=5, client_id="x", license=APP, reason="r"),
        ):
            reply = await conn.request(op, reply_timeout=3)
            assert isinstance(reply, m.AdminReply)
            assert not reply.ok
            assert "admin certificate" in reply.message
        # but it may hold a license
        req = r.msg(m.Request, sender="c", request_id=6, license=APP)
        assert isinstance(await conn.request(req, reply_timeout=3), m.Authorize)
    assert [type(msg) for _, msg in r.engine.handled] == [m.Request]


async def test_tls_peer_cert_must_match_sender(tls_pool: tuple[Running, Path]) -> None:
    r, tls_dir = tls_pool
    # a server certificate for B sending as C: refused, connection closed
    async with await _open(r, tls_dir, "server-B") as conn:
        await conn.send(r.msg(m.Released, sender="C", request_id=1, license=APP))
        assert await _closed_by_daemon(conn)
    # a client certificate sending a server message: refused too
    async with await _open(r, tls_dir, "client") as conn:
        await conn.send(r.msg(m.Released, sender="B", request_id=1, license=APP))
        assert await _closed_by_daemon(conn)
    assert r.engine.handled == []


async def test_tls_cert_from_another_ca_refused(
    tls_pool: tuple[Running, Path], tmp_path: Path
) -> None:
    r, tls_dir = tls_pool
    other = tmp_path / "other-ca"
    init_pki(other, pool=r.daemon.rlf.pool, servers=[PkiServer(id="A", host="127.0.0.1")])
    # trusts the right CA (so it gets past verifying the daemon) but presents a foreign cert
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(tls_dir / "ca.pem"))
    ctx.load_cert_chain(str(other / "admin.pem"), str(other / "admin.key"))
    assert not await _status_works(r, ctx)
    # a client that trusts another CA refuses the daemon
    paths = tlsconfig.load_tls_dir(other, "admin")
    assert paths is not None
    with pytest.raises(ConnectError):
        await Connection.open(r.address, ssl=tlsconfig.connect_context(paths))
    assert r.engine.handled == []
