"""Shared by the runtime benchmarks: generate a signed pool and run real `lm-daemon`s.

Not a test helper: benchmarks are plain scripts (`python bench/push.py`)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
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
from lm_core.runtime.tlsconfig import load_tls_dir

DAEMON = [sys.executable, "-c", "from lm_core.runtime.daemon import main; main()"]
IDS = "ABCDEFGHIJK"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@dataclass
class BenchPool:
    root: Path
    rlf: Rlf
    admin_private: str
    tls_dir: Path | None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def rlf_path(self) -> Path:
        return self.root / "pool.rlf"

    def start_all(self) -> None:
        for s in self.rlf.servers:
            args = [
                *DAEMON,
                "--rlf",
                str(self.rlf_path),
                "--server-id",
                s.id,
                "--data-dir",
                str(self.root / "data" / s.id),
                "--log-level",
                "warning",
            ]
            args += ["--tls-dir", str(self.tls_dir)] if self.tls_dir else ["--insecure-loopback"]
            log = open(self.root / f"{s.id}.log", "wb")  # noqa: SIM115
            self.procs[s.id] = subprocess.Popen(args, stdout=log, stderr=log)
            log.close()

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
        for p in self.procs.values():
            p.wait()

    def client(self, timeout: float = 2.0) -> AdminClient:
        tls = load_tls_dir(self.tls_dir, "admin") if self.tls_dir else None
        return AdminClient(self.rlf, tls=tls, timeout=timeout)

    async def wait(self, cond: Callable[[dict[str, Any]], bool], limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        async with self.client() as c:
            while True:
                try:
                    if cond(await c.status()):
                        return
                except Exception:  # a benchmark waits through start-up noise
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"pool not ready within {limit} s; logs in {self.root}")
                await asyncio.sleep(0.1)

    def next_rlf(self) -> tuple[Rlf, str]:
        new = dataclasses.replace(self.rlf, sequence=self.rlf.sequence + 1, signature=None)
        signed = sign_rlf(new, load_private(self.admin_private))
        return signed, render_rlf(signed)


def all_up(pool: dict[str, Any]) -> bool:
    return pool["leader"] is not None and all(
        s["reachable"] and s["role"] in ("leader", "follower") for s in pool["servers"]
    )


def make_pool(
    n: int,
    *,
    seats: int,
    dist: dict[str, int] | None,
    timing: Timing,
    tls: bool,
    root: Path | None = None,
) -> BenchPool:
    root = root or Path(tempfile.mkdtemp(prefix="lm-bench-"))
    ids = IDS[:n]
    admin_private, admin_public = generate_keypair()
    vendor_private, vendor_public = generate_keypair()
    rlf = new_rlf(
        "bench",
        [
            ServerEntry(id=s, host="127.0.0.1", port=p)
            for s, p in zip(ids, free_ports(n), strict=True)
        ],
        admin_key=admin_public,
        timing=timing,
    )
    rlf = with_vendor(rlf, "acme", vendor_public)
    today = datetime.date.today()
    code = issue_code(
        load_private(vendor_private),
        vendor="acme",
        product="Application",
        version="1.0",
        seats=seats,
        expires=today + datetime.timedelta(days=30),
        issued=today,
        serial="B1",
    ).text()
    rlf = sign_rlf(with_code(rlf, code, dist), load_private(admin_private))
    (root / "pool.rlf").write_text(render_rlf(rlf))
    tls_dir = None
    if tls:
        tls_dir = root / "tls"
        init_pki(
            tls_dir, pool=rlf.pool, servers=[PkiServer(id=s.id, host=s.host) for s in rlf.servers]
        )
    return BenchPool(root, rlf, admin_private, tls_dir)


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
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
