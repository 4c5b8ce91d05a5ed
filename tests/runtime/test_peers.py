"""Peer links give up on a silent peer: the deadline rule alone (no sockets), then
`PeerLink` against a real listener on 127.0.0.1 that reads and never answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from lm_core.engine.messages import Message, ServerHeartbeat
from lm_core.runtime.connection import Connection, close_server, serve
from lm_core.runtime.liveness import Deadline, peer_deadline
from lm_core.runtime.peers import PeerLink

WAIT = 10.0

# ---------------------------------------------------------------- the rule


def test_deadline_runs_only_after_we_spoke() -> None:
    d = Deadline(1.5)
    assert not d.expired(100.0)  # two followers with nothing to say: never
    assert d.due() is None
    d.sent(10.0)
    d.sent(10.5)  # the first unanswered send starts the clock
    assert d.due() == 11.5
    assert not d.expired(11.49)
    assert d.expired(11.5)


def test_hearing_the_peer_stops_the_clock() -> None:
    d = Deadline(1.5)
    d.sent(10.0)
    d.heard(11.0)
    assert not d.expired(50.0)
    assert d.last_heard == 11.0
    d.sent(12.0)  # the next unanswered send starts it again
    assert not d.expired(13.4)
    assert d.expired(13.5)


def test_a_new_connection_has_nothing_outstanding() -> None:
    d = Deadline(1.0)
    d.sent(0.0)
    d.reset()
    assert not d.expired(5.0)


def test_deadline_follows_the_heartbeat_interval() -> None:
    assert peer_deadline(0.5) == pytest.approx(1.5)  # the RLF's defaults
    assert peer_deadline(0.2) == pytest.approx(0.9)  # two beats + the 0.5 s margin
    assert peer_deadline(2.0) == pytest.approx(6.0)  # slow beats: three of them
    with pytest.raises(ValueError, match="> 0"):
        Deadline(0.0)


# ---------------------------------------------------------------- real sockets


@dataclass
class SilentPeer:
    """A listener that reads every message and never answers."""

    conns: list[list[Message]] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)  # how each connection ended
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    async def handle(self, conn: Connection) -> None:
        got: list[Message] = []
        self.conns.append(got)
        self.changed.set()
        try:
            while (msg := await conn.recv()) is not None:
                got.append(msg)
                self.changed.set()
            self.ended.append("eof")
        except Exception as exc:
            self.ended.append(str(exc))
            raise
        finally:
            self.changed.set()

    async def wait_for(self, cond: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not cond():
                self.changed.clear()
                await self.changed.wait()

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def peer() -> AsyncIterator[SilentPeer]:
    p = SilentPeer()
    p.server = await serve(p.handle, "127.0.0.1", 0, ssl=None)
    yield p
    await close_server(p.server)


def heartbeat(seq: int) -> ServerHeartbeat:
    return ServerHeartbeat(pool="p", sender="A", term=1, seq=seq)


async def link_to(peer: SilentPeer, deadline: float) -> PeerLink:
    link = PeerLink(
        "B",
        peer.address,
        ssl_ctx=None,
        on_message=lambda sid, msg, conn: None,
        connect_timeout=1.0,
        max_backoff=0.1,
        deadline=deadline,
    )
    link.start()
    await connected(link)
    return link


async def connected(link: PeerLink) -> None:
    async with asyncio.timeout(WAIT):
        while not link.connected:  # noqa: ASYNC110 -- the link has no event to wait on
            await asyncio.sleep(0.01)


async def test_a_peer_silent_after_we_spoke_is_reset_and_dialled_again(
    peer: SilentPeer,
) -> None:
    link = await link_to(peer, deadline=0.3)
    try:
        link.send(heartbeat(1))
        await peer.wait_for(lambda: len(peer.conns) >= 2)
        assert link.abandoned >= 1
        assert peer.conns[0] == [heartbeat(1)]
        # given up with a reset (queued bytes discarded), not a polite close
        assert peer.ended
        assert "reset" in peer.ended[0].lower()
    finally:
        await link.aclose()


async def test_a_peer_that_answers_keeps_its_link(peer: SilentPeer) -> None:
    link = await link_to(peer, deadline=0.3)
    try:
        seq = 0
        # the peer "answers" (the daemon reports its frames with `heard`) every 50 ms,
        # for ten deadlines' worth of heartbeats
        while len(peer.conns[0]) < 60:
            seq += 1
            link.send(heartbeat(seq))
            await peer.wait_for(lambda n=seq: len(peer.conns[0]) >= n)
            link.heard()
            await asyncio.sleep(0.05)
        assert len(peer.conns) == 1
        assert link.abandoned == 0
    finally:
        await link.aclose()


async def test_nothing_queued_for_an_abandoned_link_is_sent_later(peer: SilentPeer) -> None:
    link = await link_to(peer, deadline=0.3)
    try:
        link.send(heartbeat(1))
        await peer.wait_for(lambda: len(peer.conns) >= 2)
        await connected(link)
        link.send(heartbeat(2))
        await peer.wait_for(lambda: len(peer.conns[1]) >= 1)
        # the new connection carries only what was sent after it opened
        assert peer.conns[1][0] == heartbeat(2)
        assert heartbeat(1) not in peer.conns[1]
    finally:
        await link.aclose()
