"""Attacks on real `lm-daemon` processes (TLS, three servers on loopback), scaled down to
seconds: the daemons run with small connection budgets so that a flood fills them fast.

`hostile_pool` starts the pool, waits for a leader, and gives every test the same tools:
`grant(cid)` (a good license client on 127.0.0.1: Request -> Authorize?), `release`,
`status()` (the admin's view), `log(sid)` (the daemon's log text), `tls(role)` (an SSL
context presenting the pool's `role` certificate, or none), and `source(i)` (the
loopback address 127.0.0.i an attacker connects from).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lm_core.engine import messages as m
from lm_core.runtime.admin import AdminClient
from lm_core.runtime.codec import encode
from lm_core.runtime.connection import ConnectError, Connection
from lm_core.runtime.kinds import Kind, kind_of
from lm_core.runtime.localpool import (
    APP,
    FAST_TIMING,
    LocalPool,
    PoolKeys,
    console_command,
    server_ids,
    write_pool,
)
from lm_core.runtime.tlsconfig import TlsPaths, connect_context, load_tls_dir

BUDGET_ARGS = [
    "--max-clients", "48",
    "--max-clients-per-source", "6",
    "--max-handshakes-per-source", "3",
]  # fmt: skip
PER_SOURCE = 6
SOURCES = [f"127.0.0.{i}" for i in range(2, 6)]
WAIT = 20.0

__all__ = ["APP", "PER_SOURCE", "SOURCES", "HostilePool", "frame_of", "send_then_close"]


def frame_of(msg: m.Message) -> bytes:
    """The bytes of one well-formed frame carrying `msg`."""
    payload = encode(msg)
    return bytes([kind_of(type(msg))]) + len(payload).to_bytes(4, "big") + payload


def header(kind: Kind, n: int) -> bytes:
    return bytes([kind]) + n.to_bytes(4, "big")


class HostilePool(LocalPool):
    def args(self, sid: str, *, rlf_path: Path | None = None) -> list[str]:
        return [*super().args(sid, rlf_path=rlf_path), *BUDGET_ARGS]

    # -- the good side

    def address(self, sid: str = "A") -> tuple[str, int]:
        s = self.rlf.server(sid)
        return s.host, s.port

    def tls(self, role: str | None = "client") -> ssl.SSLContext:
        assert self.tls_dir is not None
        if role is None:
            return connect_context(TlsPaths(ca=self.tls_dir / "ca.pem"))
        paths = load_tls_dir(self.tls_dir, role)
        assert paths is not None
        return connect_context(paths)

    async def open(self, sid: str = "A", role: str | None = None) -> Connection:
        return await Connection.open(self.rlf.server(sid).address, ssl=self.tls(role))

    async def grant(self, cid: str, sid: str = "A") -> m.Message:
        """One good client's Request on a fresh connection from 127.0.0.1."""
        async with await self.open(sid) as conn:
            return await conn.request(
                m.Request(pool=self.rlf.pool, sender=cid, request_id=1, license=APP),
                reply_timeout=5.0,
            )

    async def release(self, cid: str, sid: str = "A") -> m.Message:
        async with await self.open(sid) as conn:
            return await conn.request(
                m.Release(pool=self.rlf.pool, sender=cid, request_id=2, license=APP),
                reply_timeout=5.0,
            )

    async def status(self) -> dict[str, Any]:
        assert self.tls_dir is not None
        async with AdminClient(
            self.rlf, tls=load_tls_dir(self.tls_dir, "admin"), timeout=3.0
        ) as admin:
            return await admin.status()

    async def holders(self) -> set[str]:
        return {c["client_id"] for c in (await self.status())["clients"]}

    def log(self, sid: str = "A") -> str:
        return self.log_paths[sid].read_text(errors="replace")

    async def wait_log(self, needle: str, sid: str = "A") -> list[str]:
        """The log lines of `sid` containing `needle`, once there is one."""
        deadline = time.monotonic() + WAIT
        while True:
            lines = [ln for ln in self.log(sid).splitlines() if needle in ln]
            if lines:
                return lines
            if time.monotonic() > deadline:
                pytest.fail(f"no log line with {needle!r} within {WAIT:g} s\n" + self.log_tail())
            await asyncio.sleep(0.05)

    async def wait_granted(self, cid: str) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                reply: m.Message | str = await self.grant(cid)
            except ConnectError as exc:
                # 127.0.0.1 is every server's and every good client's source here: while the
                # peers dial each other it can be at its handshake cap for a moment
                reply = str(exc)
            if isinstance(reply, m.Authorize):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"{cid} never granted: {reply}\n" + self.log_tail())
            await asyncio.sleep(0.1)

    async def wait_holding(self, cid: str) -> None:
        deadline = time.monotonic() + WAIT
        while cid not in await self.holders():
            if time.monotonic() > deadline:
                pytest.fail(f"{cid} holds no seat\n" + self.log_tail())
            await asyncio.sleep(0.1)

    def assert_up(self) -> None:
        for sid in self.ids:
            assert self.alive(sid), f"{sid} died:\n" + self.log_tail()

    # -- the attacker's side

    @staticmethod
    def source(i: int) -> str:
        return SOURCES[i % len(SOURCES)]

    async def raw(
        self, src: str, sid: str = "A", role: str | None = None, tls: bool = True
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection from `src` (TLS with `role`'s certificate, or plain TCP)."""
        host, port = self.address(sid)
        return await asyncio.open_connection(
            host,
            port,
            local_addr=(src, 0),
            ssl=self.tls(role) if tls else None,
            server_hostname=host if tls else None,
        )


def send_then_close(pool: HostilePool, src: str, data: bytes, role: str | None = None) -> None:
    """Connect from `src` over TLS, then send `data`, TLS close_notify and FIN in one
    write -- what a daemon sees from a client that sent a request and hung up before it
    arrived (e.g. across a healed partition). Blocking; run it in a thread."""
    host, port = pool.address()
    ctx = pool.tls(role)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=host)
    with socket.create_connection((host, port), timeout=10, source_address=(src, 0)) as sock:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed during the handshake") from None
                incoming.write(chunk)
        sock.sendall(outgoing.read())
        tls.write(data)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()  # writes close_notify; would wait for the daemon's
        sock.sendall(outgoing.read())  # request + close_notify together
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass


def _loopback_aliases_work() -> bool:
    try:
        with socket.socket() as s:
            s.bind((SOURCES[0], 0))
        return True
    except OSError:
        return False


@pytest.fixture
def hostile_pool(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[HostilePool]:
    if not _loopback_aliases_work():
        pytest.skip("cannot bind 127.0.0.2 on this machine (no 127/8 loopback)")
    keys = PoolKeys.generate()
    files = write_pool(
        tmp_path,
        server_ids(3),
        name="hostile",
        keys=keys,
        seats=100,
        serial=f"S{time.monotonic_ns()}",
        dist={"A": 40, "B": 30, "C": 30},
        timing=FAST_TIMING,
    )
    pool = HostilePool(
        tmp_path, files.rlf, files.rlf_path, files.tls_dir, log_level="info", stop_grace=0.0
    )
    try:
        pool.start_all()
        for sid in pool.ids:
            pool.wait_listening(sid)
        asyncio.run(pool.wait_granted("probe"))
        asyncio.run(pool.release("probe"))
        # a seat held through the attack (a real client library, heartbeating): the state
        env = dict(os.environ, LM_POOL=str(pool.rlf_path), LM_TLS_DIR=str(pool.tls_dir))
        holder = subprocess.Popen(
            [*console_command("lm", "lm_cli.main:main"), "client", "hold",
             "--license", APP, "--client-id", "before", "--server", "A"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            asyncio.run(pool.wait_holding("before"))
            yield pool
            pool.assert_up()
            assert holder.poll() is None, "the holder lost its seat"
        finally:
            holder.kill()
            holder.wait()
    except BaseException:
        print(pool.log_tail(40))
        raise
    finally:
        pool.stop_all()


Check = Callable[[HostilePool], None]


async def still_serving(pool: HostilePool, cid: str) -> None:
    """The pool after an attack: every daemon up, a new good client granted, the seat
    held before the attack still held, the admin's status answered."""
    pool.assert_up()
    reply = await pool.grant(cid)
    assert isinstance(reply, m.Authorize), reply
    holders = await pool.holders()
    assert {"before", cid} <= holders, holders
    released = await pool.release(cid)
    assert isinstance(released, m.Released)


def no_forged_lines(text: str, marker: str) -> None:
    """`marker` (text an attacker put after a newline) never starts a log line."""
    for line in text.splitlines():
        if marker in line:
            assert not line.startswith(marker), line
