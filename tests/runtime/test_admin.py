"""AdminClient against in-process daemons (real sockets, real store, scripted engine):
merging, unreachable servers, refusals, local checks before anything is sent."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from lm_core.engine import effects as fx
from lm_core.engine import messages as m
from lm_core.engine.codes import issue_code
from lm_core.engine.keys import generate_keypair, load_private
from lm_core.engine.rlf import (
    Rlf,
    ServerEntry,
    new_rlf,
    render_rlf,
    sign_rlf,
    with_code,
    with_vendor,
)
from lm_core.errors import CodeError, InputError, RefusedError, SignatureError
from lm_core.runtime import tlsconfig
from lm_core.runtime.admin import AdminClient, election_window, transient_refusal
from lm_core.runtime.daemon import Daemon
from lm_core.runtime.pki import PkiServer, init_pki
from lm_core.runtime.store import Store

from .test_daemon import ScriptedEngine, _free_ports

APP = "Application 1.0"


@dataclasses.dataclass
class Keys:
    admin: str
    vendor: str


def _pool(keys: Keys, admin_public: str, vendor_public: str, n: int = 3) -> Rlf:
    ports = _free_ports(n)
    rlf = new_rlf(
        "adm",
        [ServerEntry(id=s, host="127.0.0.1", port=p) for s, p in zip("ABC", ports, strict=True)],
        admin_key=admin_public,
    )
    rlf = with_vendor(rlf, "acme", vendor_public)
    rlf = with_code(rlf, _code(keys, 100), {"A": 40, "B": 30, "C": 30})
    return sign_rlf(rlf, load_private(keys.admin))


def _code(keys: Keys, seats: int, kind: str = "base") -> str:
    today = datetime.date.today()
    return issue_code(
        load_private(keys.vendor),
        vendor="acme",
        product="Application",
        version="1.0",
        seats=seats,
        expires=today + datetime.timedelta(days=30),
        issued=today,
        serial=f"S{seats}{kind}",
        kind=kind,
    ).text()


@pytest.fixture(scope="module")
def keys_and_rlf() -> tuple[Keys, Rlf]:
    admin_private, admin_public = generate_keypair()
    vendor_private, vendor_public = generate_keypair()
    keys = Keys(admin_private, vendor_private)
    return keys, _pool(keys, admin_public, vendor_public)


@pytest.fixture
async def one_up(
    tmp_path: Path, keys_and_rlf: tuple[Keys, Rlf]
) -> AsyncIterator[tuple[Daemon, Keys, Rlf]]:
    """Server A runs (scripted engine, plaintext); B and C are down."""
    keys, rlf = keys_and_rlf
    store = Store.open(tmp_path / "A", pool=rlf.pool, server_id="A")
    daemon = Daemon("A", rlf, store, store.load(), tls=None, engine_factory=ScriptedEngine)
    task = asyncio.create_task(daemon.run())
    async with asyncio.timeout(5):
        await daemon.started.wait()
    try:
        yield daemon, keys, rlf
    finally:
        daemon.stop()
        async with asyncio.timeout(5):
            await task


async def test_status_marks_unreachable_servers(one_up: tuple[Daemon, Keys, Rlf]) -> None:
    _, _, rlf = one_up
    async with AdminClient(rlf, timeout=1.0) as admin:
        pool = await admin.status()
    assert pool["pool"] == "adm"
    assert pool["leader"] == "A"
    rows = {s["id"]: s for s in pool["servers"]}
    assert rows["A"]["reachable"] is True
    assert rows["A"]["error"] is None
    assert rows["B"]["reachable"] is False
    assert rows["B"]["error"].startswith("unreachable: ")
    assert rows["C"]["up"] is False


async def test_admin_op_goes_to_a_reachable_server(one_up: tuple[Daemon, Keys, Rlf]) -> None:
    daemon, keys, rlf = one_up
    async with AdminClient(rlf, timeout=1.0) as admin:
        result = await admin.add_code(_code(keys, 10, "base"))
    assert result.ok
    assert result.server == "A"
    engine = daemon.engine
    assert isinstance(engine, ScriptedEngine)
    assert isinstance(engine.handled[-1][1], m.AddLicenseCode)


async def test_local_checks_before_sending(one_up: tuple[Daemon, Keys, Rlf]) -> None:
    daemon, keys, rlf = one_up
    async with AdminClient(rlf, timeout=1.0) as admin:
        with pytest.raises(CodeError):
            await admin.add_code("not a code")
        with pytest.raises(InputError, match="add-on code"):
            await admin.add_allocations(_code(keys, 5, "base"))
        with pytest.raises(InputError, match="unknown server 'Z'"):
            await admin.set_distribution(APP, {"A": 10, "Z": 5})
        with pytest.raises(InputError, match="negative"):
            await admin.set_distribution(APP, {"A": -1})
        with pytest.raises(InputError, match="reason"):
            await admin.reclaim("c1", APP, "  ")
    engine = daemon.engine
    assert isinstance(engine, ScriptedEngine)
    assert engine.handled == []


async def test_push_refuses_bad_rlfs_locally(one_up: tuple[Daemon, Keys, Rlf]) -> None:
    daemon, keys, rlf = one_up
    newer = dataclasses.replace(rlf, sequence=rlf.sequence + 1, signature=None)
    good = render_rlf(sign_rlf(newer, load_private(keys.admin)))
    tampered = good.replace("borrowing_threshold = 0.8", "borrowing_threshold = 0.7")
    assert tampered != good
    same = render_rlf(rlf)
    other_admin, other_public = generate_keypair()
    stranger = render_rlf(
        sign_rlf(dataclasses.replace(newer, admin_key=other_public), load_private(other_admin))
    )
    other_pool = render_rlf(
        sign_rlf(dataclasses.replace(newer, pool="other"), load_private(keys.admin))
    )
    async with AdminClient(rlf, timeout=1.0) as admin:
        with pytest.raises(SignatureError):
            await admin.push_rlf(tampered, file="new.rlf")
        with pytest.raises(InputError, match="not above the pool's sequence"):
            await admin.push_rlf(same, file="new.rlf")
        with pytest.raises(InputError, match="pool 'other'"):
            await admin.push_rlf(other_pool, file="new.rlf")
        with pytest.raises(InputError, match="different admin key"):
            await admin.push_rlf(stranger, file="new.rlf")
    engine = daemon.engine
    assert isinstance(engine, ScriptedEngine)
    assert not any(isinstance(msg, m.UpdateRlf) for _, msg in engine.handled)


async def test_client_certificate_cannot_read_status(
    tmp_path: Path, keys_and_rlf: tuple[Keys, Rlf]
) -> None:
    _, rlf = keys_and_rlf
    tls_dir = tmp_path / "tls"
    init_pki(tls_dir, pool=rlf.pool, servers=[PkiServer(id=s.id, host=s.host) for s in rlf.servers])
    store = Store.open(tmp_path / "A", pool=rlf.pool, server_id="A")
    daemon = Daemon(
        "A",
        rlf,
        store,
        store.load(),
        tls=tlsconfig.load_tls_dir(tls_dir, "server-A"),
        engine_factory=ScriptedEngine,
    )
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(5):
            await daemon.started.wait()
        async with AdminClient(rlf, tls=tlsconfig.load_tls_dir(tls_dir, "client")) as admin:
            with pytest.raises(RefusedError, match="admin certificate"):
                await admin.status()
        async with AdminClient(rlf, tls=tlsconfig.load_tls_dir(tls_dir, "admin")) as admin:
            pool: dict[str, Any] = await admin.status()
        assert pool["servers"][0]["reachable"]
    finally:
        daemon.stop()
        await task
    assert fx  # effects module is what the scripted engine speaks


async def test_status_survives_a_connection_the_server_closed(
    one_up: tuple[Daemon, Keys, Rlf],
) -> None:
    daemon, _, rlf = one_up
    async with AdminClient(rlf, timeout=1.0) as admin:
        assert (await admin.status())["servers"][0]["reachable"]
        for client in list(daemon.clients.values()):  # e.g. the daemon's idle timeout
            client.conn.abort()
        pool = await admin.status()
    assert pool["servers"][0]["reachable"], pool["servers"][0]["error"]


async def test_concurrent_calls_share_one_connection_per_server(
    one_up: tuple[Daemon, Keys, Rlf],
) -> None:
    """Two calls racing to open the first connection to a server: one is opened, both
    use it (without the per-server lock each opened its own and one leaked unclosed --
    a ResourceWarning, an error under filterwarnings=error)."""
    daemon, keys, rlf = one_up
    async with AdminClient(rlf, timeout=1.0) as admin:
        first, second = await asyncio.gather(admin.server_status("A"), admin.server_status("A"))
        assert first is not None
        assert second is not None
        assert len(daemon.clients) == 1  # the daemon accepted one connection, not two
        # operations use a connection of their own, closed after (a leak would be a
        # ResourceWarning), even side by side, and leave the cached one alone
        results = await asyncio.gather(
            admin.add_code(_code(keys, 7, "base")), admin.add_code(_code(keys, 8, "base"))
        )
        assert all(r.ok for r in results), results
        assert await admin.server_status("A") is not None


# ---------------------------------------------------------------- retry across an election


class ElectingEngine(ScriptedEngine):
    """Refuses AddLicenseCode with the next of `REFUSALS` (the engine's own words) while
    any are left, then accepts like ScriptedEngine."""

    REFUSALS: ClassVar[list[str]] = []

    def handle(self, now: float, sender: str, msg: m.Message) -> list[fx.Effect]:
        if isinstance(msg, m.AddLicenseCode) and self.REFUSALS:
            self.handled.append((sender, msg))
            text = self.REFUSALS.pop(0)
            base = {"pool": self.rlf.pool, "sender": self.server_id}
            reply = m.AdminReply(**base, request_id=msg.request_id, ok=False, message=text)
            return [fx.Reply(sender, reply)]
        return super().handle(now, sender, msg)


@pytest.fixture
async def electing(
    tmp_path: Path, keys_and_rlf: tuple[Keys, Rlf]
) -> AsyncIterator[tuple[Daemon, Keys, Rlf]]:
    keys, rlf = keys_and_rlf
    store = Store.open(tmp_path / "A", pool=rlf.pool, server_id="A")
    daemon = Daemon("A", rlf, store, store.load(), tls=None, engine_factory=ElectingEngine)
    task = asyncio.create_task(daemon.run())
    async with asyncio.timeout(5):
        await daemon.started.wait()
    try:
        yield daemon, keys, rlf
    finally:
        ElectingEngine.REFUSALS = []
        daemon.stop()
        async with asyncio.timeout(5):
            await task


def _ops(daemon: Daemon) -> int:
    engine = daemon.engine
    assert isinstance(engine, ElectingEngine)
    return sum(isinstance(msg, m.AddLicenseCode) for _, msg in engine.handled)


async def test_an_operation_is_retried_until_a_leader_takes_it(
    electing: tuple[Daemon, Keys, Rlf],
) -> None:
    daemon, keys, rlf = electing
    ElectingEngine.REFUSALS = [
        "no leader right now (election in progress); retry shortly",
        "B is not the leader",
        "no majority: 2/3 servers in contact",
        "no majority lease yet: 2/3 in contact, last majority ACK 1.6 s ago",
    ]
    async with AdminClient(rlf, timeout=1.0, retry_window=20.0) as admin:
        result = await admin.add_code(_code(keys, 11, "base"))
    assert result.ok, result
    assert _ops(daemon) == 5  # four refusals, then the accepted one


async def test_an_invalid_operation_is_not_retried(electing: tuple[Daemon, Keys, Rlf]) -> None:
    daemon, keys, rlf = electing
    ElectingEngine.REFUSALS = ["code S12base of 'Application 1.0' is already in the pool"]
    async with AdminClient(rlf, timeout=1.0, retry_window=20.0) as admin:
        result = await admin.add_code(_code(keys, 12, "base"))
    assert not result.ok
    assert result.message == "code S12base of 'Application 1.0' is already in the pool"
    assert _ops(daemon) == 1


async def test_a_change_that_may_have_applied_is_not_sent_twice(
    electing: tuple[Daemon, Keys, Rlf],
) -> None:
    daemon, keys, rlf = electing
    ElectingEngine.REFUSALS = ["leader changed before the change was durable; retry"]
    async with AdminClient(rlf, timeout=1.0, retry_window=20.0) as admin:
        result = await admin.add_code(_code(keys, 13, "base"))
    assert not result.ok
    assert _ops(daemon) == 1


async def test_retrying_ends_after_the_window_with_the_last_refusal(
    electing: tuple[Daemon, Keys, Rlf],
) -> None:
    daemon, keys, rlf = electing
    ElectingEngine.REFUSALS = ["no leader right now (election in progress); retry shortly"] * 50
    async with AdminClient(rlf, timeout=1.0, retry_window=1.0) as admin:
        result = await admin.add_code(_code(keys, 14, "base"))
    assert not result.ok
    assert result.message.startswith("no leader right now (election in progress)")
    assert "of retrying" in result.message
    assert 2 <= _ops(daemon) < 50


def test_the_default_window_covers_an_election(keys_and_rlf: tuple[Keys, Rlf]) -> None:
    _, rlf = keys_and_rlf  # default timings, 3 servers
    t = rlf.timing
    window = AdminClient(rlf).retry_window
    assert window == election_window(rlf)
    # a dead leader noticed (leader timeout), the last in rank standing (one more leader
    # timeout + its rank's heartbeats), its majority lease: all inside the window
    assert window >= 2 * t.leader_timeout + 2 * t.heartbeat_interval + t.server_lease
    assert AdminClient(rlf, retry_window=0).retry_window == 0


def test_transient_refusals_are_read_in_one_place() -> None:
    def reply(text: str, ok: bool = False) -> m.AdminReply:
        return m.AdminReply(pool="p", sender="A", request_id=1, ok=ok, message=text)

    assert transient_refusal(reply("no leader right now (election in progress); retry"))
    assert transient_refusal(reply("no majority: 1/3 servers in contact"))
    assert transient_refusal(reply("C is not the leader"))
    assert not transient_refusal(reply("a server is listed twice"))
    assert not transient_refusal(reply("leader changed before the change was durable; retry"))
    assert not transient_refusal(reply("no majority", ok=True))
