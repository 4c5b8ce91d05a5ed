"""Real `lm-daemon` processes on 127.0.0.1: a freshly generated, signed pool per test.

`pool_factory(...)` writes a vendor key, an admin key, a license code, a signed RLF with
short timings and free ports, and (by default) the pool's TLS directory from `lm pki`;
`Pool.start(sid)` runs one daemon as a subprocess. Waits are on conditions with timeouts
(`Pool.wait`), never bare sleeps. Every process is killed in teardown, even on failure,
and a failing test prints the tail of each daemon's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lm_core.engine.codes import issue_code
from lm_core.engine.keys import generate_keypair, load_private
from lm_core.engine.rlf import (
    Rlf,
    ServerEntry,
    Timing,
    new_rlf,
    render_rlf,
    sign_rlf,
    with_code,
    with_vendor,
)
from lm_core.errors import LmError
from lm_core.runtime.admin import AdminClient
from lm_core.runtime.pki import PkiServer, init_pki
from lm_core.runtime.tlsconfig import load_tls_dir

APP = "Application 1.0"
FAST = Timing(
    heartbeat_interval=0.2,
    leader_timeout=0.8,
    server_lease=0.6,
    client_heartbeat=0.4,
    client_lease=2.0,
    drift=0.05,
)
BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cmd(entry: str, module_main: str) -> list[str]:
    exe = BIN / entry
    if exe.exists():
        return [str(exe)]
    mod, _, fn = module_main.partition(":")
    return [sys.executable, "-c", f"from {mod} import {fn}; {fn}()"]


DAEMON = _cmd("lm-daemon", "lm_core.runtime.daemon:main")
LM = _cmd("lm", "lm_cli.main:main")


@dataclass
class Pool:
    """A generated pool on disk and the daemons running it."""

    root: Path
    rlf: Rlf
    rlf_path: Path
    admin_private: str
    vendor_private: str
    tls_dir: Path | None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    holders: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return list(self.rlf.server_ids)

    def data_dir(self, sid: str) -> Path:
        return self.root / "data" / sid

    # -- processes

    def daemon_args(self, sid: str, *, rlf_path: Path | None = None) -> list[str]:
        args = [
            *DAEMON,
            "--rlf",
            str(rlf_path or self.rlf_path),
            "--server-id",
            sid,
            "--data-dir",
            str(self.data_dir(sid)),
            "--log-level",
            "debug",
        ]
        if self.tls_dir is not None:
            args += ["--tls-dir", str(self.tls_dir)]
        else:
            args += ["--insecure-loopback"]
        return args

    def start(self, sid: str) -> subprocess.Popen[bytes]:
        assert sid not in self.procs or self.procs[sid].poll() is not None, f"{sid} runs"
        log = self.root / f"{sid}.log"
        self.logs[sid] = log
        fh = open(log, "ab")  # noqa: SIM115 -- the child owns it
        fh.write(f"---- start {time.strftime('%H:%M:%S')}\n".encode())
        fh.flush()
        proc = subprocess.Popen(self.daemon_args(sid), stdout=fh, stderr=fh)
        fh.close()
        self.procs[sid] = proc
        return proc

    def kill(self, sid: str) -> None:
        """kill -9."""
        proc = self.procs[sid]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def terminate(self, sid: str) -> int:
        proc = self.procs[sid]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=10)

    def alive(self, sid: str) -> bool:
        return sid in self.procs and self.procs[sid].poll() is None

    def close(self) -> None:
        for proc in [*self.holders, *self.procs.values()]:
            if proc.poll() is None:
                proc.kill()
        for proc in [*self.holders, *self.procs.values()]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def log_tail(self, n: int = 30) -> str:
        out = []
        for sid, path in self.logs.items():
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            out.append(f"==== {sid} ({len(lines)} lines)\n" + "\n".join(lines[-n:]))
        return "\n".join(out)

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

        async def go() -> dict[str, Any]:
            last: dict[str, Any] = {}
            deadline = time.monotonic() + timeout
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
                            f"timed out after {timeout:g} s waiting for: {what}\n"
                            f"last status: {json.dumps(last, indent=1)[:4000]}\n" + self.log_tail()
                        )
                    await asyncio.sleep(0.05)

        return asyncio.run(go())

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
        today = datetime.date.today()
        code = issue_code(
            load_private(self.vendor_private),
            vendor="acme",
            product=product,
            version=version,
            seats=seats,
            expires=today + datetime.timedelta(days=365),
            issued=today,
            serial=serial or f"S{time.monotonic_ns()}",
            kind=kind,
        )
        return code.text()

    def signed(self, rlf: Rlf, path: Path) -> Path:
        path.write_text(render_rlf(sign_rlf(rlf, load_private(self.admin_private))))
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
) -> Pool:
    ids = [chr(ord("A") + i) for i in range(n)]
    ports = free_ports(n)
    admin_private, admin_public = generate_keypair()
    vendor_private, vendor_public = generate_keypair()
    rlf = new_rlf(
        "itest",
        [ServerEntry(id=sid, host="127.0.0.1", port=p) for sid, p in zip(ids, ports, strict=True)],
        admin_key=admin_public,
        timing=timing,
        majority_rule=majority_rule,
    )
    rlf = with_vendor(rlf, "acme", vendor_public)
    pool = Pool(root, rlf, root / "pool.rlf", admin_private, vendor_private, None)
    code = pool.issue(seats=seats)
    if dist is None and n == 3 and seats == 100:
        dist = {"A": 40, "B": 30, "C": 30}
    rlf = with_code(rlf, code, dist)
    signed = sign_rlf(rlf, load_private(admin_private))
    pool.rlf = signed
    pool.rlf_path.write_text(render_rlf(signed))
    if tls:
        pool.tls_dir = root / "tls"
        init_pki(
            pool.tls_dir,
            pool=signed.pool,
            servers=[PkiServer(id=s.id, host=s.host) for s in signed.servers],
        )
    return pool


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


def all_up(status: dict[str, Any]) -> bool:
    """A leader (whichever) and every server up in its view and answering."""
    return status.get("leader") is not None and all(
        s["up"] and s["reachable"] for s in status.get("servers", [])
    )
