"""Shared by every runtime benchmark (throughput, failover, push, memory): a freshly
generated, signed pool on loopback and its `lm-daemon` processes (free ports, temp dirs,
always killed at exit; the temp dir is removed unless LM_BENCH_KEEP is set, e.g. to read
the daemons' logs), plus the small helpers the scripts share (`leader_of`, `all_up`,
`table`).

Not a test helper: benchmarks are plain scripts (`python bench/push.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from lm_core.runtime.admin import AdminClient
from lm_core.runtime.pki import PkiServer, init_pki
from lm_core.runtime.tlsconfig import TlsPaths, load_tls_dir

APP = "Application 1.0"
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


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the benchmark dies (Linux), so a killed
    benchmark leaves no daemons behind."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def exit_on_sigterm() -> None:
    """Turn SIGTERM (e.g. from `timeout`) into SystemExit so `finally` blocks clean up."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def daemon_cmd() -> list[str]:
    exe = BIN / "lm-daemon"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from lm_core.runtime.daemon import main; main()"]


@dataclass
class LivePool:
    root: Path
    rlf: Rlf
    rlf_path: Path
    tls_dir: Path | None
    admin_private: str = ""  # signs the next RLF (`next_rlf`)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, sid: str) -> None:
        args = [
            *daemon_cmd(),
            "--rlf", str(self.rlf_path),
            "--server-id", sid,
            "--data-dir", str(self.root / "data" / sid),
            "--log-level", "warning",
        ]  # fmt: skip
        args += ["--tls-dir", str(self.tls_dir)] if self.tls_dir else ["--insecure-loopback"]
        with open(self.root / f"{sid}.log", "ab") as log:
            self.procs[sid] = subprocess.Popen(
                args, stdout=log, stderr=log, preexec_fn=die_with_parent
            )

    def start_all(self) -> None:
        for sid in self.rlf.server_ids:
            self.start(sid)

    def kill(self, sid: str) -> None:
        proc = self.procs[sid]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        if not os.environ.get("LM_BENCH_KEEP"):
            shutil.rmtree(self.root, ignore_errors=True)

    def trust(self, role: str) -> TlsPaths | None:
        return load_tls_dir(self.tls_dir, role) if self.tls_dir else None

    def admin(self, timeout: float = 1.0) -> AdminClient:
        return AdminClient(self.rlf, tls=self.trust("admin"), timeout=timeout)

    async def wait_status(
        self, cond: Callable[[dict[str, Any]], bool], what: str, limit: float = 30.0
    ) -> dict[str, Any]:
        """Poll the merged pool status until `cond` holds (exits after `limit` seconds)."""
        deadline = time.monotonic() + limit
        last: dict[str, Any] = {}
        async with self.admin() as admin:
            while True:
                with contextlib.suppress(Exception):
                    last = await admin.status()
                    if cond(last):
                        return last
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out waiting for {what}; last status: {last}")
                await asyncio.sleep(0.02)

    def next_rlf(self) -> tuple[Rlf, str]:
        """The current RLF with the next sequence, signed: (rlf, text) to push."""
        new = dataclasses.replace(self.rlf, sequence=self.rlf.sequence + 1, signature=None)
        signed = sign_rlf(new, load_private(self.admin_private))
        return signed, render_rlf(signed)


def make_pool(
    *,
    n: int = 3,
    seats: int = 100_000,
    tls: bool = True,
    timing: Timing | None = None,
    dist: dict[str, int] | None = None,
) -> LivePool:
    """A signed pool of `n` servers on free loopback ports: one "Application 1.0" code of
    `seats` seats, distributed by `dist` (None: the even split)."""
    root = Path(tempfile.mkdtemp(prefix="lm-bench-"))
    ids = [chr(ord("A") + i) for i in range(n)]
    ports = free_ports(n)
    admin_private, admin_public = generate_keypair()
    vendor_private, vendor_public = generate_keypair()
    rlf = new_rlf(
        "bench",
        [ServerEntry(id=sid, host="127.0.0.1", port=p) for sid, p in zip(ids, ports, strict=True)],
        admin_key=admin_public,
        timing=timing or Timing(),
    )
    rlf = with_vendor(rlf, "acme", vendor_public)
    today = datetime.date.today()
    code = issue_code(
        load_private(vendor_private),
        vendor="acme",
        product="Application",
        version="1.0",
        seats=seats,
        expires=today + datetime.timedelta(days=365),
        issued=today,
        serial=f"B{os.getpid()}",
    ).text()
    rlf = sign_rlf(with_code(rlf, code, dist), load_private(admin_private))
    path = root / "pool.rlf"
    path.write_text(render_rlf(rlf))
    tls_dir = None
    if tls:
        tls_dir = root / "tls"
        init_pki(tls_dir, pool=rlf.pool, servers=[PkiServer(s.id, s.host) for s in rlf.servers])
    return LivePool(root, rlf, path, tls_dir, admin_private)


def leader_of(status: dict[str, Any]) -> str | None:
    """The leader if a majority is up and it leads, else None."""
    if not status.get("majority", {}).get("ok"):
        return None
    leader = status.get("leader")
    return leader if isinstance(leader, str) else None


def all_up(status: dict[str, Any]) -> bool:
    """Every server reachable as leader or follower, and a leader."""
    return status.get("leader") is not None and all(
        s["reachable"] and s["role"] in ("leader", "follower") for s in status["servers"]
    )


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [title, line, "-" * len(line)]
    out += [
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join(out)
