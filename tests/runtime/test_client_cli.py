"""`lm client hold` against tiny real license servers (real sockets, their own thread)."""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lm_cli.main import app
from lm_core.engine.codes import issue_code
from lm_core.engine.keys import generate_keypair, load_private
from lm_core.engine.messages import ClientHeartbeat, Release, Request
from lm_core.engine.rlf import ServerEntry, new_rlf, render_rlf, sign_rlf, with_code, with_vendor
from lm_core.runtime.connection import close_server, serve

from .test_client import APP, TinyServer  # type: ignore[import-not-found]

# The tiny servers speak for pool "eng"; the RLF below names the same pool.


class Servers:
    """Three TinyServers on an event loop in a background thread."""

    def __init__(self, seats: list[int]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = [TinyServer(sid, seats=n) for sid, n in zip("ABC", seats, strict=True)]
        for s in self.servers:
            self.call(self._start(s))

    async def _start(self, s: TinyServer) -> None:
        s.changed = asyncio.Event()
        s.server = await serve(s.handle, "127.0.0.1", 0, ssl=None)

    def call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)  # type: ignore[arg-type]

    def close(self) -> None:
        for s in self.servers:
            if s.server is not None:
                self.call(close_server(s.server))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def servers() -> Iterator[Servers]:
    srv = Servers([0, 1, 1])
    yield srv
    srv.close()


def write_rlf(tmp_path: Path, srv: Servers) -> Path:
    admin_private, admin_public = generate_keypair()
    vendor_private, vendor_public = generate_keypair()
    entries = []
    for s in srv.servers:
        assert s.server is not None
        entries.append(ServerEntry(s.sid, "127.0.0.1", s.server.sockets[0].getsockname()[1]))
    rlf = with_vendor(new_rlf("eng", entries, admin_key=admin_public), "acme", vendor_public)
    today = datetime.date.today()
    code = issue_code(
        load_private(vendor_private), vendor="acme", product="Application", version="1.0",
        seats=2, expires=today + datetime.timedelta(days=30), issued=today, serial="T1",
    ).text()  # fmt: skip
    rlf = sign_rlf(with_code(rlf, code, None), load_private(admin_private))
    path = tmp_path / "pool.rlf"
    path.write_text(render_rlf(rlf))
    return path


def test_hold_prints_the_grant_heartbeats_and_releases(servers: Servers, tmp_path: Path) -> None:
    rlf = write_rlf(tmp_path, servers)
    res = CliRunner().invoke(
        app,
        ["client", "hold", "--pool", str(rlf), "--license", APP, "--client-id", "cli-1",
         "--seconds", "0.5", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert events[0]["event"] == "denied" or events[0]["event"] == "authorized"
    granted = [e for e in events if e["event"] == "authorized"]
    assert granted[0]["server"] == "B"  # A has no seats: the client walked on
    assert granted[0]["client_id"] == "cli-1"
    assert events[-1]["event"] == "released"
    a, b, _ = servers.servers
    assert any(isinstance(m, Request) for m in a.received)
    assert any(isinstance(m, ClientHeartbeat) for m in b.received)  # held for 0.5 s > 0.2 s
    assert isinstance(b.received[-1], Release)
    assert b.holders == {}


def test_hold_text_output_and_server_choice(servers: Servers, tmp_path: Path) -> None:
    rlf = write_rlf(tmp_path, servers)
    res = CliRunner().invoke(
        app, ["client", "hold", "--pool", str(rlf), "--license", APP, "--server", "C",
              "--seconds", "0"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "holding 1 x Application 1.0 from server C" in res.stdout
    assert "released Application 1.0 (server C)" in res.stdout
    assert servers.servers[0].received == []


def test_hold_denied_is_exit_1(servers: Servers, tmp_path: Path) -> None:
    rlf = write_rlf(tmp_path, servers)
    res = CliRunner().invoke(
        app, ["client", "hold", "--pool", str(rlf), "--license", APP, "--count", "2",
              "--seconds", "0"],
    )  # fmt: skip
    assert res.exit_code == 1
    assert "denied (no_seats from server A)" in res.stderr
    assert "Traceback" not in res.output


def test_hold_denied_names_the_most_informative_reason(servers: Servers, tmp_path: Path) -> None:
    """Only A is up and it refuses (no majority); B and C are down. The last server asked
    (C) is unreachable, but the denial names A's reason, and A."""
    rlf = write_rlf(tmp_path, servers)
    servers.servers[0].refuse = "no_majority"
    for s in servers.servers[1:]:
        assert s.server is not None
        servers.call(close_server(s.server))
        s.server = None
    res = CliRunner().invoke(
        app, ["client", "hold", "--pool", str(rlf), "--license", APP, "--seconds", "0"]
    )
    assert res.exit_code == 1, res.output
    assert "denied (no_majority from server A): A says no_majority" in res.stderr
    assert "unreachable" not in res.stderr
    assert "denied by the pool: no_majority (server A) -- A says no_majority" in res.stdout
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--server", "Z"], "no server 'Z'"),
        (["--tls-dir", "/nonexistent"], "TLS directory not found"),
        (["--count", "0"], "--count"),
    ],
)
def test_hold_bad_input_is_exit_2(
    servers: Servers, tmp_path: Path, args: list[str], needle: str
) -> None:
    rlf = write_rlf(tmp_path, servers)
    res = CliRunner().invoke(app, ["client", "hold", "--pool", str(rlf), "--license", APP, *args])
    assert res.exit_code == 2
    assert needle in res.stderr
    assert "Traceback" not in res.output
