"""Real `lm-daemon` processes on 127.0.0.1: a freshly generated, signed pool per test.

`pool_factory(...)` writes a vendor key, an admin key, a license code, a signed RLF with
short timings and free ports, and (by default) the pool's TLS directory from `lm pki`;
`Pool.start(sid)` runs one daemon as a subprocess (the mechanics are
`lm_core.runtime.localpool`'s). Waits are on conditions with timeouts
(`Pool.wait`), never bare sleeps. Every process is killed in teardown, even on failure,
and a failing test prints the tail of each daemon's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lm_core.engine.rlf import Rlf, Timing
from lm_core.errors import LmError
from lm_core.runtime.admin import AdminClient
from lm_core.runtime.localpool import (
    APP,
    FAST_TIMING,
    LocalPool,
    PoolKeys,
    console_command,
    daemon_command,
    server_ids,
    write_pool,
    write_signed,
    year_code,
)
from lm_core.runtime.tlsconfig import load_tls_dir

__all__ = ["APP"]

FAST = FAST_TIMING
DAEMON = daemon_command()
LM = console_command("lm", "lm_cli.main:main")


class Pool(LocalPool):
    """A generated pool on disk and the daemons running it (log level debug; killed, not
    terminated, in teardown, with the background `lm client hold` processes)."""

    def __init__(
        self,
        root: Path,
        rlf: Rlf,
        rlf_path: Path,
        tls_dir: Path | None,
        keys: PoolKeys,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(
            root,
            rlf,
            rlf_path,
            tls_dir,
            log_level="debug",
            stop_grace=0.0,
            extra_args=extra_args,
        )
        self.admin_private = keys.admin_private
        self.vendor_private = keys.vendor_private
        self.holders: list[subprocess.Popen[bytes]] = []
        self.hold_logs: list[Path] = []  # each holder's stdout + stderr, in `holders` order

    @property
    def logs(self) -> dict[str, Path]:
        """Each started server's log file (the same dict as `log_paths`)."""
        return self.log_paths

    # -- processes

    def daemon_args(self, sid: str, *, rlf_path: Path | None = None) -> list[str]:
        return self.args(sid, rlf_path=rlf_path)

    def terminate(self, sid: str) -> int:
        return self.kill(sid, signal.SIGTERM)

    def close(self) -> None:
        for proc in self.holders:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        self.stop_all()

    # -- the admin side

    def client(self, **kw: Any) -> AdminClient:
        tls = load_tls_dir(self.tls_dir, "admin") if self.tls_dir else None
        return AdminClient(self.rlf, tls=tls, timeout=kw.pop("timeout", 1.0), **kw)

    def run(self, fn: Callable[[AdminClient], Any]) -> Any:
        async def go() -> Any:
            async with self.client() as c:
                return await fn(c)

        return asyncio.run(go())

    def status(self) -> dict[str, Any]:
        return self.run(lambda c: c.status())  # type: ignore[no-any-return]

    def wait(
        self, cond: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20.0
    ) -> dict[str, Any]:
        """Poll the merged status until `cond(status)`; fail with the last one if not."""
        return asyncio.run(self.wait_async(cond, what, limit=timeout))

    async def wait_async(
        self, cond: Callable[[dict[str, Any]], bool], what: str, limit: float = 20.0
    ) -> dict[str, Any]:
        """`wait` inside a running event loop (an async test); `limit` is the timeout."""
        last: dict[str, Any] = {}
        deadline = time.monotonic() + limit
        async with self.client() as c:
            while True:
                try:
                    last = await c.status()
                except LmError:
                    last = {}
                if last and cond(last):  # an assert inside cond fails the test
                    return last
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"timed out after {limit:g} s waiting for: {what}\n"
                        f"last status: {json.dumps(last, indent=1)[:4000]}\n" + self.log_tail()
                    )
                await asyncio.sleep(0.05)

    def start_led_by(self, leader: str) -> dict[str, Any]:
        """`start_led_by_async` from synchronous code."""
        return asyncio.run(self.start_led_by_async(leader))

    async def start_led_by_async(self, leader: str, limit: float = 60.0) -> dict[str, Any]:
        """Start every server, `leader` first, and return the status once `leader` leads
        all the others. Should another server win the first election (start-up is slow on
        a loaded machine), that winner is killed until `leader` leads, then restarted."""
        self.start(leader)
        await self.wait_listening_async(leader)
        for sid in self.ids:
            if sid != leader:
                self.start(sid)
        deadline = time.monotonic() + limit
        while True:
            st = await self.wait_async(led_by_one, "one leader, every other server following")
            if st["leader"] == leader:
                return st
            if time.monotonic() > deadline:
                pytest.fail(f"{leader} never led; last status: {json.dumps(st)[:2000]}")
            winner = st["leader"]
            self.kill(winner)
            await self.wait_async(
                lambda st, w=winner: st.get("leader") not in (None, w) and st["majority"]["ok"],
                f"a leader other than {winner}",
            )
            self.start(winner)

    def lm(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, LM_POOL=str(self.rlf_path))
        if self.tls_dir is not None:
            env["LM_TLS_DIR"] = str(self.tls_dir)
        return subprocess.run(
            [*LM, *args], capture_output=True, text=True, env=env, timeout=timeout, input=input
        )

    def hold(self, *args: str) -> subprocess.Popen[bytes]:
        """`lm client hold ...` in the background (killed in teardown)."""
        env = dict(os.environ, LM_POOL=str(self.rlf_path))
        if self.tls_dir is not None:
            env["LM_TLS_DIR"] = str(self.tls_dir)
        log = self.root / f"hold-{len(self.holders)}.log"
        self.hold_logs.append(log)
        with open(log, "wb") as fh:
            proc = subprocess.Popen([*LM, "client", "hold", *args], stdout=fh, stderr=fh, env=env)
        self.holders.append(proc)
        return proc

    # -- RLF editing

    def issue(
        self,
        *,
        seats: int,
        kind: str = "base",
        product: str = "Application",
        version: str = "1.0",
        serial: str | None = None,
    ) -> str:
        return year_code(
            self.vendor_private,
            seats=seats,
            serial=serial or f"S{time.monotonic_ns()}",
            product=product,
            version=version,
            kind=kind,
        )

    def signed(self, rlf: Rlf, path: Path) -> Path:
        write_signed(rlf, self.admin_private, path)
        return path


def make_pool(
    root: Path,
    *,
    n: int = 3,
    seats: int = 100,
    dist: dict[str, int] | None = None,
    tls: bool = True,
    timing: Timing = FAST,
    majority_rule: bool = True,
    extra_args: Sequence[str] = (),
) -> Pool:
    if dist is None and n == 3 and seats == 100:
        dist = {"A": 40, "B": 30, "C": 30}
    keys = PoolKeys.generate()
    files = write_pool(
        root,
        server_ids(n),
        name="itest",
        keys=keys,
        seats=seats,
        serial=f"S{time.monotonic_ns()}",
        dist=dist,
        timing=timing,
        majority_rule=majority_rule,
        tls=tls,
    )
    return Pool(root, files.rlf, files.rlf_path, files.tls_dir, keys, extra_args)


@pytest.fixture
def pool_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Pool]]:
    pools: list[Pool] = []

    def factory(**kw: Any) -> Pool:
        root = tmp_path / f"pool{len(pools)}"
        root.mkdir()
        pool = make_pool(root, **kw)
        pools.append(pool)
        return pool

    try:
        yield factory
    finally:
        failed = getattr(request.node, "rep_call", None)
        for pool in pools:
            pool.close()
            if failed is not None and failed.failed:
                print(pool.log_tail(60))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
    return rep


# ---------------------------------------------------------------- status helpers


def license_of(status: dict[str, Any], name: str = APP) -> dict[str, Any] | None:
    for lic in status.get("licenses", []):
        if lic["license"] == name:
            return lic  # type: ignore[no-any-return]
    return None


def rows(status: dict[str, Any], name: str = APP) -> dict[str, tuple[Any, Any, Any]]:
    """The leader's table for `name` as {server: (distribution, in_use, available)}."""
    lic = license_of(status, name) or {"servers": {}}
    return {
        sid: (r.get("distribution"), r.get("in_use"), r.get("available"))
        for sid, r in lic["servers"].items()
    }


def conserved(status: dict[str, Any]) -> bool:
    """S2 in the leader's table: sum(distribution) + free pool == hard limit, and
    in use never above distribution + what could have been borrowed (<= hard limit)."""
    for lic in status.get("licenses", []):
        table = [r for r in lic["servers"].values() if r]
        if not table or lic.get("free_pool") is None:
            continue
        dist = sum(r["distribution"] for r in table)
        if dist + lic["free_pool"] != lic["hard_limit"]:
            return False
        if sum(r["in_use"] for r in table) > lic["hard_limit"]:
            return False
    return True


def held_total(status: dict[str, Any], name: str = APP) -> int:
    """Seats held according to the servers' key tables (every reachable server); a client
    listed by two servers (re-adopted after a restart) counts once."""
    per_client: dict[str, int] = {}
    for c in status.get("clients", []):
        if c["license"] == name:
            per_client[c["client_id"]] = max(per_client.get(c["client_id"], 0), c["count"])
    return sum(per_client.values())


def led_by_one(status: dict[str, Any]) -> bool:
    """One leader with a majority lease, every server answering and up in its view, each
    the leader or its follower."""
    leader = status.get("leader")
    return (
        leader is not None
        and bool(status.get("majority", {}).get("ok"))
        and all(
            s["up"]
            and s["reachable"]
            and s.get("role") == ("leader" if s["id"] == leader else "follower")
            for s in status.get("servers", [])
        )
    )


def all_up(status: dict[str, Any]) -> bool:
    """A leader (whichever) and every server up in its view and answering."""
    return status.get("leader") is not None and all(
        s["up"] and s["reachable"] for s in status.get("servers", [])
    )
