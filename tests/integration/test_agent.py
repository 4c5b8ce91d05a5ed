"""`lm agent` on real daemons (TLS pool of three `lm-daemon`s): HTTP clients take and
release seats, a caller that exits loses its seat, errors are JSON with the pool's
words, a seat survives the kill of the server holding it."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from .conftest import APP, LM, Pool, all_up, held_total

pytestmark = pytest.mark.integration


class Agent:
    """One `lm agent` process and an HTTP client for it (urllib: what any program has)."""

    def __init__(self, pool: Pool, *args: str) -> None:
        env = dict(os.environ, LM_POOL=str(pool.rlf_path))
        if pool.tls_dir is not None:
            env["LM_TLS_DIR"] = str(pool.tls_dir)
        self.log = pool.root / f"agent-{time.monotonic_ns()}.log"
        self.err = open(self.log, "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            [*LM, "agent", "--pid-check", "0.1", "--log-level", "debug", *args],
            stdout=subprocess.PIPE,
            stderr=self.err,
            env=env,
        )
        self.urls = self._listening(expect=1 + args.count("--socket") - args.count("--no-tcp"))
        self.base = next((u for u in self.urls if u.startswith("http://")), "")
        self.token = ""

    def _listening(self, expect: int, limit: float = 30.0) -> list[str]:
        assert self.proc.stdout is not None
        urls: list[str] = []
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + limit
        while len(urls) < expect:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                self.stop()
                pytest.fail(f"lm agent did not say where it listens:\n{self.log.read_text()}")
            line = self.proc.stdout.readline().decode()
            if not line:
                self.stop()
                pytest.fail(f"lm agent exited {self.proc.wait()}:\n{self.log.read_text()}")
            if "listening on " in line:
                urls.append(line.split("listening on ", 1)[1].strip())
        sel.close()
        return urls

    def call(
        self, method: str, path: str, body: bytes | dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read())

    def wait(self, cond: Callable[[], bool], what: str, limit: float = 20.0) -> None:
        deadline = time.monotonic() + limit
        while not cond():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for: {what}\n{self.log.read_text()[-4000:]}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        code = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.err.close()
        return code


@pytest.fixture
def agents() -> Iterator[Callable[..., Agent]]:
    started: list[Agent] = []

    def start(pool: Pool, *args: str) -> Agent:
        agent = Agent(pool, *args)
        started.append(agent)
        return agent

    try:
        yield start
    finally:
        for agent in started:
            agent.stop()


@pytest.fixture
def sleeper() -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "600"])
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def up_pool(pool_factory: Callable[..., Pool]) -> Pool:
    pool = pool_factory()
    for sid in pool.ids:
        pool.start(sid)
    pool.wait(all_up, "three servers up with a leader")
    return pool


def test_take_list_release_and_stop(
    pool_factory: Callable[..., Pool], agents: Callable[..., Agent]
) -> None:
    pool = up_pool(pool_factory)
    agent = agents(pool, "--port", "0")

    code, lease = agent.call("POST", "/v1/leases", {"license": APP, "count": 2})
    assert code == 201, lease
    assert lease["holds"] is True
    assert lease["count"] == 2
    assert lease["server"] in pool.ids
    st = pool.wait(lambda st: held_total(st) == 2, "the agent's lease holds 2 seats")
    assert [c["client_id"] for c in st["clients"]] == [lease["client_id"]]

    code, listed = agent.call("GET", "/v1/leases")
    assert code == 200
    assert [x["id"] for x in listed["leases"]] == [lease["id"]]
    code, one = agent.call("GET", f"/v1/leases/{lease['id']}")
    assert (code, one["id"], one["holds"]) == (200, lease["id"], True)

    code, gone = agent.call("DELETE", f"/v1/leases/{lease['id']}")
    assert (code, gone["released"]) == (200, True)
    pool.wait(lambda st: held_total(st) == 0, "the released seats are free")
    code, err = agent.call("DELETE", f"/v1/leases/{lease['id']}")
    assert (code, err["reason"]) == (404, "no_such_lease")
    assert agent.call("GET", "/v1/leases") == (200, {"leases": []})

    # SIGTERM releases what is still held and exits 0
    code, lease = agent.call("POST", "/v1/leases", {"license": APP})
    assert code == 201, lease
    pool.wait(lambda st: held_total(st) == 1, "a second lease holds")
    assert agent.stop() == 0
    pool.wait(lambda st: held_total(st) == 0, "the agent released its seat when stopped")


def test_errors_are_json_with_the_reason(
    pool_factory: Callable[..., Pool], agents: Callable[..., Agent], tmp_path: Path
) -> None:
    pool = up_pool(pool_factory)
    agent = agents(pool, "--port", "0")

    cases: list[tuple[bytes | dict[str, Any], int, str, str | None]] = [
        (b"{not json", 400, "bad_json", None),
        (b"[1, 2]", 400, "bad_json", None),
        ({"count": 1}, 400, "bad_request", "license"),
        ({"license": APP, "count": 0}, 400, "bad_request", "count"),
        ({"license": APP, "count": True}, 400, "bad_request", "count"),
        ({"license": APP, "wait": -1}, 400, "bad_request", "wait"),
        ({"license": APP, "seats": 1}, 400, "bad_request", "seats"),
        ({"license": APP, "pid": 2**31 - 2}, 400, "no_such_process", "pid"),
        ({"license": "Nothing 9.9"}, 404, "unknown_license", None),
        ({"license": APP, "count": 101}, 409, "no_seats", None),
    ]
    for body, status, reason, field in cases:
        code, err = agent.call("POST", "/v1/leases", body)
        assert (code, err["reason"]) == (status, reason), (body, err)
        assert err.get("field") == field, (body, err)
        assert err["detail"], err
    code, err = agent.call("POST", "/v1/leases", {"license": "Nothing 9.9"})
    assert err["server"] in pool.ids  # the server that refused
    assert agent.call("GET", "/v1/nowhere")[1]["reason"] == "not_found"
    code, err = agent.call("PUT", "/v1/leases")
    assert (code, err["reason"]) == (405, "method_not_allowed")
    code, err = agent.call("GET", "/v1/leases/abc")
    assert (code, err["reason"]) == (404, "no_such_lease")
    assert held_total(pool.status()) == 0

    # the agent still serves after all that
    code, lease = agent.call("POST", "/v1/leases", {"license": APP})
    assert code == 201, lease
    code, spec = agent.call("GET", "/openapi.json")
    assert code == 200
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) >= {"/v1/leases", "/v1/leases/{id}"}
    assert (
        "unknown_license" in spec["components"]["schemas"]["Error"]["properties"]["reason"]["enum"]
    )


def test_a_lease_whose_process_exits_is_released(
    pool_factory: Callable[..., Pool],
    agents: Callable[..., Agent],
    sleeper: Callable[[], subprocess.Popen[bytes]],
) -> None:
    pool = up_pool(pool_factory)
    agent = agents(pool, "--port", "0")
    caller, bystander = sleeper(), sleeper()
    code, lease = agent.call("POST", "/v1/leases", {"license": APP, "pid": caller.pid})
    assert code == 201, lease
    assert lease["pid"] == caller.pid
    code, other = agent.call("POST", "/v1/leases", {"license": APP, "pid": bystander.pid})
    assert code == 201, other
    pool.wait(lambda st: held_total(st) == 2, "both leases hold")

    caller.kill()
    caller.wait()
    agent.wait(
        lambda: [x["id"] for x in agent.call("GET", "/v1/leases")[1]["leases"]] == [other["id"]],
        "the agent drops the lease of the exited process",
    )
    st = pool.wait(lambda st: held_total(st) == 1, "the exited process's seat is free")
    assert [c["client_id"] for c in st["clients"]] == [other["client_id"]]


def test_the_seat_survives_the_kill_of_its_server(
    pool_factory: Callable[..., Pool], agents: Callable[..., Agent]
) -> None:
    pool = up_pool(pool_factory)
    agent = agents(pool, "--port", "0")
    code, lease = agent.call("POST", "/v1/leases", {"license": APP})
    assert code == 201, lease
    victim = lease["server"]
    pool.wait(lambda st: held_total(st) == 1, "the seat is held")

    pool.kill(victim)

    def moved() -> bool:
        now = agent.call("GET", f"/v1/leases/{lease['id']}")[1]
        return bool(now["holds"]) and now["server"] not in (None, victim)

    agent.wait(moved, f"the lease is held by a server other than {victim}", limit=30)
    st = pool.wait(
        lambda st: held_total(st) == 1 and all(c["server"] != victim for c in st["clients"]),
        "a live server holds the seat",
        timeout=30,
    )
    assert [c["client_id"] for c in st["clients"]] == [lease["client_id"]]
    now = agent.call("GET", f"/v1/leases/{lease['id']}")[1]
    assert now["lost"] is None, now
    code, _ = agent.call("DELETE", f"/v1/leases/{lease['id']}")
    assert code == 200
    pool.wait(lambda st: held_total(st) == 0, "released after the fail-over")


def test_unix_socket_with_a_token(
    pool_factory: Callable[..., Pool], agents: Callable[..., Agent], tmp_path: Path
) -> None:
    pool = up_pool(pool_factory)
    sock = tmp_path / "agent.sock"
    token_file = tmp_path / "token"
    agent = agents(pool, "--no-tcp", "--socket", str(sock), "--token-file", str(token_file))
    assert agent.urls == [f"unix:{sock}"]
    assert sock.stat().st_mode & 0o777 == 0o600
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()

    async def go() -> None:
        conn = aiohttp.UnixConnector(path=str(sock))
        async with aiohttp.ClientSession(connector=conn) as http:
            url = "http://agent/v1/leases"
            async with http.post(url, json={"license": APP}) as resp:
                assert resp.status == 401
                assert (await resp.json())["reason"] == "unauthorized"
            auth = {"Authorization": f"Bearer {token}"}
            async with http.post(url, json={"license": APP}, headers=auth) as resp:
                lease = await resp.json()
                assert resp.status == 201, lease
            await pool.wait_async(lambda st: held_total(st) == 1, "held over the socket")
            async with http.delete(f"{url}/{lease['id']}", headers=auth) as resp:
                assert resp.status == 200
            await pool.wait_async(lambda st: held_total(st) == 0, "released over the socket")
            async with http.get("http://agent/openapi.json") as resp:
                assert resp.status == 200  # the description needs no token

    asyncio.run(go())
    assert agent.stop() == 0
    assert not sock.exists()


def test_the_openapi_description_lists_every_route() -> None:
    from lm_core.agent.api import make_app
    from lm_core.agent.errors import REASONS, STATUS
    from lm_core.agent.holdings import Holdings
    from lm_core.agent.openapi import openapi
    from lm_core.engine.vocab import DenyReason

    def no_client(client_id: str) -> Any:
        raise AssertionError("not called")

    app = make_app(Holdings(no_client), pool="p")
    routes = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    described = {
        (path, method)
        for path, item in openapi()["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert routes == described
    assert set(DenyReason) <= set(REASONS)
    assert all(400 <= s < 600 for s in STATUS.values())


def test_a_non_loopback_host_needs_a_token(pool_factory: Callable[..., Pool]) -> None:
    pool = pool_factory()
    out = pool.lm("agent", "--host", "0.0.0.0", "--port", "0")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1, out.stderr
    assert "--host" in out.stderr
    assert "token" in out.stderr
