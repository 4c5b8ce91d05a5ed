"""The license client library against tiny real license servers (real sockets) that speak
Request / ClientHeartbeat / Release and answer Authorize / Deny / Released."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lm_core.engine.messages import (
    Authorize,
    ClientHeartbeat,
    Deny,
    Message,
    Release,
    Released,
    Request,
    ServerAddress,
)
from lm_core.errors import InputError, RefusedError
from lm_core.runtime.client import LicenseClient, LicenseDenied, most_informative
from lm_core.runtime.connection import Connection, close_server, serve
from lm_core.runtime.pki import PkiServer, init_pki
from lm_core.runtime.tlsconfig import load_tls_dir, server_context

POOL = "eng"
APP = "Application 1.0"
WAIT = 10.0


@dataclass
class TinyServer:
    """One license server: `seats` seats of APP, short leases so tests run fast."""

    sid: str
    seats: int
    lease: float = 3.0
    heartbeat_interval: float = 0.2
    holders: dict[str, int] = field(default_factory=dict)
    received: list[Message] = field(default_factory=list)
    server: asyncio.Server | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    peers: tuple[ServerAddress, ...] = ()
    refuse: str | None = None  # deny every request with this reason (e.g. "no_majority")
    accepted: int = 0  # connections accepted so far
    live: dict[int, Connection] = field(default_factory=dict)  # connection number -> open one
    stalled: set[int] = field(default_factory=set)  # connections that no longer answer

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def authorize(self, msg: Request | ClientHeartbeat) -> Authorize:
        return Authorize(
            pool=POOL, sender=self.sid, request_id=msg.request_id, license=msg.license,
            count=msg.count, lease=self.lease, heartbeat_interval=self.heartbeat_interval,
            servers=self.peers,
        )  # fmt: skip

    def deny(self, msg: Request | ClientHeartbeat, reason: str) -> Deny:
        return Deny(
            pool=POOL, sender=self.sid, request_id=msg.request_id, license=msg.license,
            reason=reason, detail=f"{self.sid} says {reason}",
        )  # fmt: skip

    def answer(self, msg: Message) -> Message:
        if isinstance(msg, Release):
            self.holders.pop(msg.sender, None)
            return Released(pool=POOL, sender=self.sid, request_id=msg.request_id, license=APP)
        assert isinstance(msg, (Request, ClientHeartbeat))
        if msg.license != APP:
            return self.deny(msg, "unknown_license")
        if self.refuse is not None:
            return self.deny(msg, self.refuse)
        if msg.sender in self.holders:
            return self.authorize(msg)
        if isinstance(msg, ClientHeartbeat) and not msg.failover:
            return self.deny(msg, "no_seats")
        if sum(self.holders.values()) + msg.count > self.seats:
            return self.deny(msg, "no_seats")
        self.holders[msg.sender] = msg.count
        return self.authorize(msg)

    def stall(self) -> None:
        """Every connection open now stops answering (and stays open), like one into a
        cut network; new connections are answered."""
        self.stalled |= set(self.live)

    async def handle(self, conn: Connection) -> None:
        self.accepted += 1
        number = self.accepted
        self.live[number] = conn
        try:
            while (msg := await conn.recv()) is not None:
                assert msg.pool == POOL
                self.received.append(msg)
                self.changed.set()
                if number in self.stalled:
                    continue
                await conn.send(self.answer(msg))
        finally:
            del self.live[number]
            self.changed.set()

    async def wait_for(self, cond: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not cond():
                self.changed.clear()
                await self.changed.wait()

    def heartbeats(self) -> int:
        return sum(isinstance(m, ClientHeartbeat) for m in self.received)


async def start(server: TinyServer, ctx: Any = None) -> TinyServer:
    server.server = await serve(server.handle, "127.0.0.1", 0, ssl=ctx)
    return server


@pytest.fixture
async def pool() -> AsyncIterator[list[TinyServer]]:
    servers = [await start(TinyServer("A", seats=1)), await start(TinyServer("B", seats=1))]
    peers = tuple(ServerAddress(id=s.sid, address=s.address) for s in servers)
    for s in servers:
        s.peers = peers
    yield servers
    for s in servers:
        if s.server is not None:
            await close_server(s.server)


def client_for(servers: list[TinyServer], **kw: Any) -> LicenseClient:
    return LicenseClient([(s.sid, s.address) for s in servers], None, pool=POOL, **kw)


async def free_address() -> str:
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    address = f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    srv.close()
    await srv.wait_closed()
    return address


async def test_async_acquire_holds_heartbeats_and_releases(pool: list[TinyServer]) -> None:
    a, b = pool
    events: list[dict[str, Any]] = []
    client = client_for(pool, client_id="c1")
    async with client.acquire(APP, on_event=events.append) as lease:
        assert lease.holds
        assert lease.server == "A"
        assert a.holders == {"c1": 1}
        await a.wait_for(lambda: a.heartbeats() >= 2)  # automatic heartbeats keep it
        assert lease.holds
        info = lease.info()
        assert info.server == "A"
        assert info.expires_in is not None
        assert 0 < info.expires_in <= a.lease
    assert a.holders == {}  # clean release, answered with Released
    assert isinstance(a.received[-1], Release)
    assert not lease.holds
    assert b.received == []
    kinds = [e["event"] for e in events]
    assert kinds[0] == "authorized"
    assert "renewed" in kinds
    assert kinds[-1] == "released"


async def test_sync_with_runs_its_own_loop(pool: list[TinyServer]) -> None:
    a, _ = pool
    client = client_for(pool, client_id="sync1")
    main_thread = threading.get_ident()
    seen_threads: set[int] = set()

    def acquire_sync() -> tuple[bool, str | None]:
        with client.acquire(
            APP, on_event=lambda e: seen_threads.add(threading.get_ident())
        ) as lease:
            return lease.holds, lease.server

    holds, server = await asyncio.to_thread(acquire_sync)
    assert holds
    assert server == "A"
    assert main_thread not in seen_threads
    await a.wait_for(lambda: any(isinstance(m, Release) for m in a.received))
    assert a.holders == {}


async def test_no_free_seat_anywhere_raises_license_denied(pool: list[TinyServer]) -> None:
    a, b = pool
    a.holders["other1"] = 1
    b.holders["other2"] = 1
    with pytest.raises(LicenseDenied) as info:
        async with client_for(pool).acquire(APP):
            raise AssertionError("granted")
    assert info.value.reason == "no_seats"
    assert info.value.license == APP
    assert isinstance(info.value, RefusedError)
    assert {type(m) for m in a.received} >= {Request}
    assert any(isinstance(m, Request) for m in b.received)  # walked the whole list


async def test_a_full_first_server_sends_the_client_to_the_next(pool: list[TinyServer]) -> None:
    a, b = pool
    a.holders["other"] = 1
    async with client_for(pool, client_id="c2").acquire(APP) as lease:
        assert lease.server == "B"
        assert b.holders == {"c2": 1}
    assert b.holders == {}


async def test_unknown_license_is_final(pool: list[TinyServer]) -> None:
    with pytest.raises(LicenseDenied, match="unknown_license"):
        async with client_for(pool).acquire("Nothing 9.9"):
            pass


async def test_unreachable_servers_raise_license_denied() -> None:
    client = LicenseClient(
        [("A", await free_address()), ("B", await free_address())], None, pool=POOL
    )
    with pytest.raises(LicenseDenied) as info:
        async with client.acquire(APP):
            pass
    assert info.value.reason == "unreachable"


async def test_prefer_asks_that_server_first(pool: list[TinyServer]) -> None:
    a = pool[0]
    async with client_for(pool, prefer="B").acquire(APP) as lease:
        assert lease.server == "B"
    assert a.received == []


async def test_fail_over_when_the_holding_server_dies(pool: list[TinyServer]) -> None:
    a, b = pool
    events: list[dict[str, Any]] = []
    moved = asyncio.Event()

    def on_event(e: dict[str, Any]) -> None:
        events.append(e)
        if e["event"] == "authorized" and e["server"] == "B":
            moved.set()

    async with client_for(pool, client_id="c3").acquire(APP, on_event=on_event) as lease:
        assert lease.server == "A"
        assert a.server is not None
        await close_server(a.server)  # A goes away with the client's seat
        a.server = None
        async with asyncio.timeout(WAIT):
            await moved.wait()
        assert lease.server == "B"
        assert lease.holds  # never stopped believing: B adopted it within the lease
        hb = [m for m in b.received if isinstance(m, ClientHeartbeat)]
        assert hb[0].failover  # B was asked with a fail-over heartbeat (FIG. 10)
        assert b.holders == {"c3": 1}
    assert b.holders == {}
    assert not any(e["event"] == "lost" for e in events)


async def test_an_answer_timeout_retires_the_connection() -> None:
    """A connection that stops answering (a cut network keeps it open) is closed after
    the answer timeout, and the next request to that server goes on a fresh one."""
    a = await start(TinyServer("A", seats=1))  # names no other server to walk to
    client = client_for([a], client_id="c-stall", answer_timeout=0.3, retry_backoff=0.1)
    granted = asyncio.Event()

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] in ("authorized", "renewed"):
            granted.set()

    try:
        async with client.acquire(APP, wait=True, on_event=on_event) as lease:
            assert a.accepted == 1
            a.stall()
            # the next heartbeat goes unanswered; the client retires that connection and
            # asks again on a new one, which A answers
            await a.wait_for(lambda: a.accepted >= 2 and 1 not in a.live)
            granted.clear()
            async with asyncio.timeout(WAIT):
                await granted.wait()
            assert lease.holds
            assert lease.server == "A"
            assert list(a.live) == [a.accepted]  # only the fresh connection is open
    finally:
        assert a.server is not None
        await close_server(a.server)


async def test_count_is_sent_and_checked(pool: list[TinyServer]) -> None:
    with pytest.raises(LicenseDenied, match="no_seats"):
        async with client_for(pool).acquire(APP, count=2):
            pass
    with pytest.raises(InputError, match="count"):
        client_for(pool).acquire(APP, count=0)


async def test_client_over_tls(tmp_path: Path) -> None:
    init_pki(tmp_path, pool=POOL, servers=[PkiServer("A", "127.0.0.1")])
    paths = load_tls_dir(tmp_path, "server-A")
    assert paths is not None
    a = await start(TinyServer("A", seats=1), server_context(paths))
    try:
        client = LicenseClient([("A", a.address)], load_tls_dir(tmp_path, "client"), pool=POOL)
        async with client.acquire(APP) as lease:
            assert lease.server == "A"
    finally:
        assert a.server is not None
        await close_server(a.server)


def test_constructor_refuses_bad_configuration() -> None:
    with pytest.raises(InputError, match="TLS needed"):
        LicenseClient([("A", "10.0.0.1:27001")], None, pool=POOL)
    with pytest.raises(InputError, match="pool name"):
        LicenseClient([("A", "127.0.0.1:27001")], None)
    with pytest.raises(InputError, match="no server 'Z'"):
        LicenseClient([("A", "127.0.0.1:27001")], None, pool=POOL, prefer="Z")
    with pytest.raises(InputError, match="expected host:port"):
        LicenseClient([("A", "nowhere")], None, pool=POOL)
    with pytest.raises(InputError, match="no servers"):
        LicenseClient([], None, pool=POOL)


def test_license_denied_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(LicenseDenied(APP, "no_seats", "full")))
    assert (err.license, err.reason, err.detail, err.server) == (APP, "no_seats", "full", None)
    assert str(err) == "Application 1.0: denied (no_seats): full"
    err = pickle.loads(pickle.dumps(LicenseDenied(APP, "no_majority", "x", server="B")))
    assert (err.reason, err.server) == ("no_majority", "B")
    assert str(err) == "Application 1.0: denied (no_majority from server B): x"


async def test_denial_reports_the_most_informative_refusal(pool: list[TinyServer]) -> None:
    """A's "no_majority" says more than the "unreachable" of the servers after it (the
    last in the walk): it is the reason reported, with the server that gave it."""
    a = pool[0]
    a.refuse = "no_majority"
    events: list[dict[str, Any]] = []
    client = LicenseClient(
        [(a.sid, a.address), ("C", await free_address()), ("D", await free_address())],
        None,
        pool=POOL,
    )
    with pytest.raises(LicenseDenied) as info:
        async with client.acquire(APP, on_event=events.append):
            raise AssertionError("granted")
    assert (info.value.reason, info.value.server) == ("no_majority", "A")
    assert info.value.detail == "A says no_majority"
    denied = [e for e in events if e["event"] == "denied"]
    assert [(e["reason"], e["server"]) for e in denied] == [("no_majority", "A")]


def test_most_informative_order() -> None:
    refusals = {"A": ("unreachable", "down"), "B": ("no_seats", "full"), "C": ("no_majority", "")}
    assert most_informative(refusals) == ("C", "no_majority", "")
    assert most_informative({"A": ("unreachable", "x"), "B": ("odd_word", "y")}) == (
        "B",
        "odd_word",
        "y",
    )
    assert most_informative({"A": ("no_seats", "1"), "B": ("no_seats", "2")}) == (
        "A",
        "no_seats",
        "1",
    )
    assert most_informative({}) is None


async def test_wait_keeps_trying_until_a_seat_frees(pool: list[TinyServer]) -> None:
    a, b = pool
    a.seats = b.seats = 0
    denied = asyncio.Event()

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "denied":
            denied.set()

    lease = client_for(pool, client_id="patient").acquire(APP, wait=True, on_event=on_event)
    task = asyncio.create_task(lease.start())
    async with asyncio.timeout(WAIT):
        await denied.wait()
    assert not task.done()  # a refusal everywhere does not end a waiting acquire
    b.seats = 1  # a seat frees up; the machine retries after its back-off
    async with asyncio.timeout(WAIT):
        await task
    assert lease.server == "B"
    await lease.stop()
    assert b.holders == {}


async def test_sync_denied_raises_in_the_caller(pool: list[TinyServer]) -> None:
    for s in pool:
        s.seats = 0
    client = client_for(pool)
    threads_before = threading.active_count()

    def acquire_sync() -> None:
        with client.acquire(APP):
            raise AssertionError("granted")

    with pytest.raises(LicenseDenied, match="no_seats"):
        await asyncio.to_thread(acquire_sync)
    # The private loop thread is gone (to_thread's worker stays in its pool: +1 at most).
    assert threading.active_count() <= threads_before + 1
    assert not [t for t in threading.enumerate() if t.name.startswith("lm-client")]


async def test_a_failing_event_callback_does_not_stop_heartbeats(
    pool: list[TinyServer], caplog: pytest.LogCaptureFixture
) -> None:
    a = pool[0]

    def bad_callback(event: dict[str, Any]) -> None:
        raise ValueError("callback bug")

    async with client_for(pool).acquire(APP, on_event=bad_callback) as lease:
        await a.wait_for(lambda: a.heartbeats() >= 2)
        assert lease.holds
    assert "on_event callback failed" in caplog.text


async def test_plaintext_to_a_tls_server_says_so_quickly(tmp_path: Path) -> None:
    init_pki(tmp_path, pool=POOL, servers=[PkiServer("A", "127.0.0.1")])
    paths = load_tls_dir(tmp_path, "server-A")
    assert paths is not None
    a = await start(TinyServer("A", seats=1), server_context(paths))
    try:
        client = LicenseClient([("A", a.address)], None, pool=POOL, answer_timeout=WAIT)
        lease = client.acquire(APP)
        with pytest.raises(LicenseDenied) as info:
            await asyncio.wait_for(lease.start(), WAIT / 2)  # well before the answer timeout
        assert info.value.reason == "unreachable"
        assert "does it expect TLS?" in info.value.detail
    finally:
        assert a.server is not None
        await close_server(a.server)
